"""Prompt caching in the ToT engine: a fixed prompt start, handed only to backends
that take ``cache_prefix``, and the cache's savings in the search's stats."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableLambda

from benchmarks.game24_model import ScriptedGame24Backend
from pygent_lc import LangChainBackend, build_chat_model
from pygent_lc.tot import Game24Task, GenericTask, ToTConfig, ToTEngine
from pygent_lc.tot.tasks import SplitPrompt, split_template
from tests.helpers import loopback_settings
from tests.loopback_server import LoopbackServer


class CachingGame24Backend(ScriptedGame24Backend):
    """The scripted Game-of-24 model, taking ``cache_prefix`` like ``LangChainBackend``."""

    accepts_cache_prefix = True

    def __init__(self) -> None:
        super().__init__()
        self.prefixes: list[str] = []

    async def generate(self, prompt: str, **kwargs: Any) -> str:
        prefix = kwargs.pop("cache_prefix", "")
        assert prompt.startswith(prefix)
        self.prefixes.append(prefix)
        return await super().generate(prompt, **kwargs)


def _kind(prompt: str) -> str:
    stripped = prompt.rstrip()
    if stripped.endswith("Possible next steps:"):
        return "propose"
    if stripped.startswith("Evaluate if given numbers"):
        return "value"
    return "cot"


def test_split_template_cuts_before_the_first_field_line() -> None:
    prompt = split_template("fixed\nInput: {x}\nend\n", x="7")
    assert (prompt.static, prompt.dynamic) == ("fixed\n", "Input: 7\nend\n")
    prompt = split_template("one\ntwo\nInput: {x}\n", x="{y}")
    assert prompt == "one\ntwo\nInput: {y}\n"
    assert (prompt.static, prompt.dynamic) == ("one\ntwo\n", "Input: {y}\n")
    assert SplitPrompt("a", "b") == "ab" and isinstance(SplitPrompt("a", "b"), str)


@pytest.mark.parametrize("task", [Game24Task(), GenericTask()], ids=["game24", "generic"])
def test_every_prompt_starts_with_its_static_part(task: Any) -> None:
    problem = "4 5 6 10" if isinstance(task, Game24Task) else "Plan a picnic."
    steps = ["5 + 6 = 11 (left: 4 10 11)"] if isinstance(task, Game24Task) else ["Pick a day."]
    prompts = [
        task.propose_prompt(problem, steps),
        task.sample_prompt(problem, steps),
        task.value_prompt(problem, steps),
        task.vote_prompt(problem, [steps, steps]),
    ]
    for prompt in prompts:
        assert isinstance(prompt, SplitPrompt)
        assert prompt.static and prompt == prompt.static + prompt.dynamic
        # the state asked about is never in the static part
        assert steps[0] not in prompt.static


async def test_game24_prefixes_are_byte_identical_across_a_solve() -> None:
    backend = CachingGame24Backend()
    engine = ToTEngine(ToTConfig(seed=0), backend, task=Game24Task())
    result = await engine.solve("4 5 6 10")
    assert result.solved
    by_kind: dict[str, set[str]] = defaultdict(set)
    for prompt, prefix in zip(backend.prompts, backend.prefixes, strict=True):
        by_kind[_kind(prompt)].add(prefix)
    assert set(by_kind) >= {"propose", "value"}
    for kind, prefixes in by_kind.items():
        [prefix] = prefixes  # one prefix per kind of prompt, whatever the state
        assert len(prefix) > 200, kind  # the few-shot examples
        assert "4 5 6 10" not in prefix


async def test_generic_prefix_is_the_problem_for_every_call_of_a_solve(
    scripted: Any, ladder: Any
) -> None:
    seen: list[tuple[str, str]] = []

    class Caching(scripted):  # type: ignore[misc]
        accepts_cache_prefix = True

        async def generate(self, prompt: str, **kwargs: Any) -> str:
            seen.append((prompt, kwargs.pop("cache_prefix")))
            reply: str = await super().generate(prompt, **kwargs)
            return reply

    engine = ToTEngine(ToTConfig(max_depth=3), Caching(ladder))
    await engine.solve("What is the plan?")
    assert any(p.endswith("Possible next steps:\n") for p, _ in seen)  # propose calls
    assert any("Score: N" in p for p, _ in seen)  # value calls
    assert {prefix for _, prefix in seen} == {"Problem:\nWhat is the plan?\n\n"}


async def test_backends_without_the_keyword_never_get_it(scripted: Any, ladder: Any) -> None:
    backend = scripted(ladder)
    engine = ToTEngine(ToTConfig(max_depth=2), backend)
    await engine.solve("What is the plan?")
    assert backend.calls > 0
    assert all("cache_prefix" not in kwargs for kwargs in backend.kwargs)


async def test_a_langchain_backend_over_any_runnable_gets_plain_prompts(ladder: Any) -> None:
    seen: list[list[BaseMessage]] = []

    def reply(messages: list[BaseMessage], **_: Any) -> AIMessage:
        seen.append(messages)
        return AIMessage(content=ladder(messages[0].text))

    engine = ToTEngine(ToTConfig(max_depth=2), LangChainBackend(RunnableLambda(reply)))
    assert (await engine.solve("What is the plan?")).stats.llm_calls == len(seen) > 0
    assert all(isinstance(messages[0].content, str) for messages in seen)


@pytest.mark.live_local
async def test_cached_tokens_and_discount_land_in_tot_stats(ladder: Any) -> None:
    def over_the_wire(protocol: str, body: Mapping[str, Any]) -> str:
        [user] = [m for m in body["messages"] if m["role"] == "user"]
        content = user["content"]
        text = content if isinstance(content, str) else "".join(p["text"] for p in content)
        return str(ladder(text))

    with LoopbackServer(responder=over_the_wire) as server:
        settings = loopback_settings(server, openrouter_model="anthropic/claude-sonnet-4.5")
        backend = LangChainBackend(build_chat_model(settings, ["openrouter"]))
        engine = ToTEngine(ToTConfig(max_depth=2), backend, model_id="ladder")
        problem = "What is the plan for the long afternoon by the lake?"
        result = await engine.solve(problem)
        requests = server.requests("openrouter")
    stats = result.stats
    assert stats.llm_calls == len(requests) > 1
    assert stats.usage is not None
    for request in requests:
        [user] = request.json["messages"]
        assert user["content"][0]["cache_control"] == {"type": "ephemeral"}
    # Every call after the first reads the problem statement from the cache.
    prefix_words = len(f"Problem:\n{problem}\n\n".split())
    cached = stats.usage.cached_input_tokens
    assert cached == prefix_words * (stats.llm_calls - 1)
    assert stats.usage.cache_discount_usd == pytest.approx(cached * 0.9e-6)
    usage = backend.usage_totals()
    assert stats.usage.cost_usd == pytest.approx(usage.cost_usd)
    full_price = usage.input_tokens * 1e-6 + usage.output_tokens * 2e-6
    assert stats.usage.cost_usd == pytest.approx(full_price - stats.usage.cache_discount_usd)


async def test_stats_report_no_cache_for_backends_without_it(scripted: Any, ladder: Any) -> None:
    backend = scripted(ladder, cost_per_call=0.001)
    result = await ToTEngine(ToTConfig(max_depth=2), backend).solve("What is the plan?")
    assert result.stats.usage is not None
    assert (result.stats.usage.cached_input_tokens, result.stats.usage.cache_discount_usd) == (
        0,
        0.0,
    )
