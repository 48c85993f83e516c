"""``ReasoningAgent``: solves on fakes, on each provider of the loopback server (which
plays the Game of 24) and on the embedded model (live_local).
"""

from __future__ import annotations

import pytest

from benchmarks.game24_model import scripted_game24_reply
from pygent_lc.agents import AgentFactory, NoAnswerError, ReasoningAgent
from pygent_lc.testing import ScriptedChatModel
from pygent_lc.tot import Game24Task, ToTConfig, check_24
from tests.agents.fakes import reasoning_agent, settings_for
from tests.loopback_server import Fault, LoopbackServer


async def test_reasoning_agent_solves_and_reports_usage_and_progress() -> None:
    agent = reasoning_agent(max_depth=2, n_select_sample=1)
    seen: list[tuple[int, int]] = []
    result = await agent.solve(
        "What is 2 + 2?", on_progress=lambda p: seen.append((p.level, p.calls))
    )
    assert result.solved
    assert result.best is not None and result.best.text == "4"
    assert agent.last_result is result
    totals = agent.usage.totals()
    assert totals.calls == result.stats.llm_calls == 3  # 1 proposal call, 2 value calls
    assert totals.cost_usd == pytest.approx(0.003)
    assert seen[0] == (1, 0)  # level 1 before the first call
    assert max(calls for _, calls in seen) == 3


async def test_process_returns_the_best_partial_answer_when_unsolved() -> None:
    def reply(prompt: str) -> str:
        return "Try harder." if "Possible next steps:" in prompt else "Score: 5"

    agent = reasoning_agent(reply, max_depth=1)
    assert await agent.process("Think.") == "Try harder."


async def test_process_without_any_answer_raises_no_answer_error() -> None:
    agent = reasoning_agent(max_depth=2, max_llm_calls=1)  # budget ends before any value
    with pytest.raises(NoAnswerError, match="max_llm_calls"):
        await agent.process("What is 2 + 2?")


async def test_the_task_s_own_depth_is_the_agent_s_and_its_progress_line_s() -> None:
    model = ScriptedChatModel(reply=scripted_game24_reply, provider="fake")
    agent = ReasoningAgent(model, task=Game24Task())  # no max_depth: the task's 4 steps
    lines: list[str] = []
    result = await agent.solve("4 9 10 13", on_progress=lambda p: lines.append(p.line()))
    assert result.solved
    assert agent.config.max_depth == Game24Task.STEPS
    assert "level 4/4" in lines[-1]
    set_by_the_caller = ReasoningAgent(model, config=ToTConfig(max_depth=2), task=Game24Task())
    assert set_by_the_caller.config.max_depth == 2


def test_solve_sync_works_without_a_loop() -> None:
    result = reasoning_agent(max_depth=1).solve_sync("What is 2 + 2?")
    assert result.solved


# --- on the loopback server ---------------------------------------------------


@pytest.mark.live_local
@pytest.mark.parametrize("provider", ["openrouter", "ollama"])
async def test_reasoning_agent_solves_game24_on_each_provider(
    server: LoopbackServer, provider: str
) -> None:
    factory = AgentFactory(settings_for(server))
    agent = await factory.create_agent(
        "reasoning", custom_config={"provider": provider, "task": "game24", "n_select_sample": 2}
    )
    assert isinstance(agent, ReasoningAgent)
    result = await agent.solve("4 9 10 13")
    assert result.solved
    assert result.best is not None and result.best.correct is True
    assert check_24(await agent.process("1 1 4 6"), "1 1 4 6")
    [entry] = agent.usage.summary().values()
    assert entry.provider == provider
    assert entry.usage.calls == server.request_count(provider)  # type: ignore[arg-type]
    if provider == "openrouter":
        assert entry.usage.cost_usd > 0  # OpenRouter's usage.cost, summed
    else:
        assert entry.usage.cost_usd == 0


@pytest.mark.live_local
async def test_reasoning_agent_falls_back_when_openrouter_is_down(server: LoopbackServer) -> None:
    server.script("openrouter", [Fault.status(503)] * 200)
    factory = AgentFactory(settings_for(server))
    agent = await factory.create_agent(
        "reasoning",
        custom_config={
            "provider": "openrouter",
            "fallbacks": ["ollama"],
            "task": "game24",
            "n_select_sample": 1,
        },
    )
    assert isinstance(agent, ReasoningAgent)
    result = await agent.solve("4 9 10 13")
    assert result.solved
    served = {key[0]: entry for key, entry in agent.usage.summary().items()}
    assert served["ollama"].usage.calls == result.stats.llm_calls
    assert served["openrouter"].usage.failures == served["openrouter"].usage.calls > 0


# --- on the embedded model ----------------------------------------------------


@pytest.mark.live_local
async def test_reasoning_agent_solves_on_the_local_model() -> None:
    agent = await AgentFactory().create_agent(
        "reasoning",
        custom_config={
            "provider": "local",
            "max_depth": 1,
            "n_select_sample": 1,
            "n_evaluate_sample": 1,
            "max_tokens": 16,
            "temperature": 0.0,
        },
    )
    assert isinstance(agent, ReasoningAgent)
    result = await agent.solve("What is 2 + 2?")
    stats = result.stats
    assert stats.generation_calls == 1
    assert stats.evaluation_calls == len(result.tree.nodes) - 1 >= 1  # one value call a child
    assert stats.failed_calls == 0
    assert result.best is not None and result.best.text.strip()
    assert result.best.path == [result.best.path[0]]  # depth 1: one thought below the problem
    [entry] = agent.usage.summary().values()
    assert entry.provider == "local"
    assert entry.usage.calls == stats.llm_calls
    assert 0 < entry.usage.output_tokens <= 16 * stats.llm_calls
    assert result.to_mermaid().startswith("flowchart TD")
