"""Agents without sockets: custom_config validation, ReasoningAgent and ChatAgent on fakes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

import pygent_lc.agents
from pygent_lc import Settings
from pygent_lc.agents import (
    AgentError,
    AgentFactory,
    ChatAgent,
    NoAnswerError,
    ReasoningAgent,
    SolveProgress,
)
from pygent_lc.agents.spec import parse_spec
from pygent_lc.cli.doctor import diagnose
from pygent_lc.errors import (
    ConfigurationError,
    InvalidInputError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
)
from pygent_lc.testing import ScriptedChatModel
from pygent_lc.tot import ToTConfig
from pygent_lc.tot.tasks.game24 import Game24Task


class ReplyChatModel(BaseChatModel):
    """Answers each prompt with ``reply(prompt)``; counts tokens as words, 0.001 $ a call."""

    reply: Callable[[str], str]
    prompts: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "reply"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider="fake", ls_model_name="fake-model")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = messages[-1].text
        self.prompts.append(prompt)
        text = self.reply(prompt)
        message = AIMessage(
            content=text,
            usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
            response_metadata={"cost": 0.001},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def generic_reply(prompt: str) -> str:
    if "Possible next steps:" in prompt:
        return "Add the numbers.\nFinal answer: 4"
    return "Score: 9" if "Final answer" in prompt else "Score: 3"


def reasoning_agent(reply: Callable[[str], str] = generic_reply, **config: Any) -> ReasoningAgent:
    model = ReplyChatModel(reply=reply)
    tot = ToTConfig(n_evaluate_sample=1, **config)
    return ReasoningAgent(model, name="r", config=tot, providers=["fake"])


# --- custom_config ------------------------------------------------------------


def test_agent_error_is_a_configuration_error() -> None:
    assert issubclass(AgentError, ConfigurationError)
    assert issubclass(AgentError, ValueError)


@pytest.mark.parametrize(
    ("agent_type", "config", "field"),
    [
        ("planner", {}, "agent_type"),
        (None, {}, "agent_type"),
        ("reasoning", {"provider": "anthropic"}, "provider"),
        ("reasoning", {"provider": "local", "fallbacks": ["gemini"]}, "fallbacks"),
        ("reasoning", {"provider": "local", "fallbacks": ["local"]}, "fallbacks"),
        ("reasoning", {"model_name": "llama3.2"}, "model_name"),  # auto has no one model
        ("reasoning", {"temprature": 0.2}, "temprature"),
        ("reasoning", {"task": "chess"}, "task"),
        ("reasoning", {"check_model": "yes"}, "check_model"),
        ("chat", {"max_depth": 3}, "max_depth"),  # a ToT setting on a chat agent
        ("chat", {"task": "game24"}, "task"),
    ],
)
def test_bad_requests_raise_agent_error_naming_the_field(
    agent_type: Any, config: dict[str, Any], field: str
) -> None:
    with pytest.raises(AgentError) as caught:
        parse_spec(agent_type, config)
    assert type(caught.value) is AgentError
    assert caught.value.field == field


def test_spec_reads_every_documented_key() -> None:
    spec = parse_spec(
        "Reasoning",
        {
            "provider": "Ollama",
            "model_name": "llama3.2",
            "ollama_url": "http://127.0.0.1:1",
            "openrouter_api_key": "sk-or-v1-secret-value",
            "fallbacks": "openrouter, local",
            "task": "game24",
            "max_depth": 2,
        },
    )
    assert (spec.agent_type, spec.provider, spec.task) == ("reasoning", "ollama", "game24")
    assert spec.fallbacks == ("openrouter", "local")
    assert spec.tot == {"max_depth": 2}
    assert "sk-or-v1-secret-value" not in repr(spec)


async def test_unknown_type_and_provider_fail_before_any_agent_exists() -> None:
    factory = AgentFactory(Settings())
    with pytest.raises(AgentError, match="unknown agent type 'planner'"):
        await factory.create_agent("planner")
    with pytest.raises(AgentError, match="unknown provider 'anthropic'"):
        await factory.create_agent("reasoning", custom_config={"provider": "anthropic"})
    assert factory.agents == {}


async def test_openrouter_without_a_key_is_an_agent_error() -> None:
    with pytest.raises(AgentError, match="OPENROUTER_API_KEY") as caught:
        await AgentFactory(Settings()).create_agent(
            "reasoning", custom_config={"provider": "openrouter"}
        )
    assert type(caught.value) is AgentError
    assert caught.value.field == "openrouter_api_key"


async def test_ollama_without_a_model_is_an_agent_error() -> None:
    with pytest.raises(AgentError, match="OLLAMA_MODEL") as caught:
        await AgentFactory(Settings()).create_agent("chat", custom_config={"provider": "ollama"})
    assert type(caught.value) is AgentError


async def test_auto_with_nothing_usable_lists_every_reason() -> None:
    settings = Settings(providers=["openrouter", "ollama"])
    with pytest.raises(AgentError, match="no provider is usable") as caught:
        await AgentFactory(settings).create_agent("reasoning")
    assert "OPENROUTER_API_KEY" in str(caught.value)
    assert "OLLAMA_MODEL" in str(caught.value)


async def test_bad_tot_and_chat_settings_are_agent_errors() -> None:
    settings = Settings(openrouter_api_key="sk-or-v1-x", providers=["openrouter"])
    factory = AgentFactory(settings)
    with pytest.raises(AgentError, match="max_depth") as caught:
        await factory.create_agent("reasoning", custom_config={"max_depth": 0})
    assert type(caught.value) is AgentError
    with pytest.raises(AgentError, match="temperature"):
        await factory.create_agent("chat", custom_config={"temperature": 9})
    with pytest.raises(AgentError, match="ollama_url"):
        await factory.create_agent("chat", custom_config={"ollama_url": "localhost:11434"})


async def test_factory_names_agents_and_refuses_duplicates() -> None:
    factory = AgentFactory(Settings(openrouter_api_key="sk-or-v1-x", providers=["openrouter"]))
    first = await factory.create_agent("reasoning")
    named = await factory.create_agent("chat", name="helper")
    assert isinstance(first, ReasoningAgent)
    assert isinstance(named, ChatAgent)
    assert first.name == "reasoning-1"
    assert factory.get_agent("helper") is named
    assert first.providers == ["openrouter"]
    assert first.config.max_concurrency == 8  # a cloud provider's concurrency
    with pytest.raises(AgentError, match="already exists"):
        await factory.create_agent("chat", name="helper")
    factory.remove_agent("helper")
    with pytest.raises(AgentError, match="no agent named"):
        factory.get_agent("helper")


async def test_game24_agent_gets_four_steps_and_local_concurrency() -> None:
    factory = AgentFactory(Settings(ollama_model="llama3.2", providers=["ollama"]))
    agent = await factory.create_agent("reasoning", custom_config={"task": "game24"})
    assert isinstance(agent, ReasoningAgent)
    assert isinstance(agent.task, Game24Task)
    assert agent.config.max_depth == Game24Task.STEPS
    assert agent.config.max_concurrency == 2


# --- ReasoningAgent -----------------------------------------------------------


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


async def test_progress_reports_levels_and_spend() -> None:
    def reply(prompt: str) -> str:
        return "Keep going." if "Possible next steps:" in prompt else "Score: 5"

    agent = reasoning_agent(reply, max_depth=3, n_select_sample=1)
    snapshots: list[SolveProgress] = []
    result = await agent.solve(
        "Think.", on_progress=lambda p: snapshots.append(SolveProgress(**vars(p)))
    )
    assert not result.solved
    levels = [s.level for s in snapshots]
    assert list(dict.fromkeys(levels)) == [1, 2, 3]
    assert levels == sorted(levels)  # BFS goes down one level at a time
    last = snapshots[-1]
    # 3 proposals and 1 value: a level's only state needs no value until the
    # last level, where the best state is the answer
    assert (last.calls, last.in_flight) == (4, 0)
    assert last.usage.cost_usd == pytest.approx(0.004)
    assert last.usage.input_tokens == 40
    assert "level 3/3 · 4 calls" in last.line()


async def test_process_returns_the_best_partial_answer_when_unsolved() -> None:
    def reply(prompt: str) -> str:
        return "Try harder." if "Possible next steps:" in prompt else "Score: 5"

    agent = reasoning_agent(reply, max_depth=1)
    assert await agent.process("Think.") == "Try harder."


async def test_process_without_any_answer_raises_no_answer_error() -> None:
    agent = reasoning_agent(max_depth=2, max_llm_calls=1)  # budget ends before any value
    with pytest.raises(NoAnswerError, match="max_llm_calls"):
        await agent.process("What is 2 + 2?")


def test_solve_sync_works_without_a_loop() -> None:
    result = reasoning_agent(max_depth=1).solve_sync("What is 2 + 2?")
    assert result.solved


# --- ChatAgent ----------------------------------------------------------------


async def test_chat_agent_remembers_the_conversation_and_sends_parameters() -> None:
    model = ScriptedChatModel(provider="fake", outcomes=["Hi Ada.", "Your name is Ada."])
    agent = ChatAgent(model, system_prompt="Be terse.", max_tokens=16, temperature=0.1)
    assert await agent.process("I am Ada.") == "Hi Ada."
    assert await agent.process("Who am I?") == "Your name is Ada."
    assert [m.text for m in agent.history] == [
        "I am Ada.",
        "Hi Ada.",
        "Who am I?",
        "Your name is Ada.",
    ]
    assert model.calls[-1]["max_tokens"] == 16
    assert model.calls[-1]["temperature"] == 0.1
    assert agent.usage.totals().calls == 2
    agent.reset()
    assert agent.history == []


async def test_chat_agent_streams_and_keeps_partial_text_on_failure() -> None:
    model = ScriptedChatModel(
        provider="fake",
        outcomes=[
            "one two three",
            ("half a", RateLimitError("slow down", provider="fake")),
        ],
    )
    agent = ChatAgent(model)
    assert [piece async for piece in agent.stream("count")] == ["one", " two", " three"]
    with pytest.raises(StreamInterruptedError) as caught:
        async for _ in agent.stream("again"):
            pass
    assert caught.value.partial_text == "half a"
    assert len(agent.history) == 2  # the broken exchange is not remembered


async def test_chat_agent_rejects_empty_replies_and_prompts() -> None:
    agent = ChatAgent(ScriptedChatModel(provider="fake", outcomes=["  "]))
    with pytest.raises(ProviderUnavailableError, match="no text"):
        await agent.process("hello")
    with pytest.raises(InvalidInputError):
        await agent.process("   ")


# --- doctor and public names ----------------------------------------------------


def test_doctor_without_configuration_touches_no_network() -> None:
    report = {h.provider: h for h in diagnose(Settings(), ["openrouter", "ollama"])}
    assert report["openrouter"].status == "not configured"
    assert "OPENROUTER_API_KEY" in report["openrouter"].detail
    assert report["ollama"].status == "not configured"


def test_agents_all() -> None:
    assert set(pygent_lc.agents.__all__) == {
        "AGENT_TYPES",
        "PROVIDER_CHOICES",
        "TASK_NAMES",
        "Agent",
        "AgentError",
        "AgentFactory",
        "ChatAgent",
        "NoAnswerError",
        "ReasoningAgent",
        "SolveProgress",
    }
    for name in pygent_lc.agents.__all__:
        assert getattr(pygent_lc.agents, name) is not None


async def test_state_values_outlive_a_solve_with_progress_too() -> None:
    agent = reasoning_agent(max_depth=2, n_select_sample=1)
    model = agent.backend.runnable
    assert isinstance(model, ReplyChatModel)
    await agent.solve("What is 2 + 2?", on_progress=lambda p: None)
    valued_first = [p for p in model.prompts if "Possible next steps:" not in p]
    model.prompts.clear()
    await agent.solve("What is 2 + 2?", on_progress=lambda p: None)
    valued_again = [p for p in model.prompts if "Possible next steps:" not in p]
    assert valued_first and valued_again == []  # every state's value came from the cache
