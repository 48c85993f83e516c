"""pygent_lc.testing: the scripted fakes users test their own code with."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

import pygent_lc.testing as testing
from pygent_lc import LangChainBackend, LLMBackend
from pygent_lc.errors import ProviderUnavailableError, RateLimitError, StreamInterruptedError
from pygent_lc.testing import ScriptedBackend, ScriptedChatModel, count_words
from pygent_lc.tot import ToTConfig, ToTEngine


def test_public_names() -> None:
    assert sorted(testing.__all__) == [
        "DEFAULT_REPLY",
        "Outcome",
        "ScriptedBackend",
        "ScriptedChatModel",
        "count_words",
    ]
    assert testing.DEFAULT_REPLY == "ok"
    assert (count_words("one two  three"), count_words(""), count_words("   ")) == (3, 1, 1)


# --- ScriptedBackend ------------------------------------------------------------


async def test_backend_answers_ok_without_a_script() -> None:
    backend = ScriptedBackend()
    assert isinstance(backend, LLMBackend)
    assert await backend.generate("hi", temperature=0.2) == "ok"
    assert (backend.calls, backend.prompts, backend.kwargs) == (1, ["hi"], [{"temperature": 0.2}])
    assert backend.model_id is None
    assert backend.usage_totals() is None  # no price: usage not tracked


async def test_backend_takes_outcomes_first_then_reply() -> None:
    down = ProviderUnavailableError("down", provider="scripted")
    backend = ScriptedBackend(str.upper, outcomes=["first", down])
    assert await backend.generate("a") == "first"
    with pytest.raises(ProviderUnavailableError) as caught:
        await backend.generate("b")
    assert caught.value is down
    assert await backend.generate("c") == "C"
    assert await backend.generate("d") == "D"
    assert backend.prompts == ["a", "b", "c", "d"]
    assert not backend.outcomes


async def test_backend_fail_sees_the_prompt_and_the_call_index() -> None:
    seen: list[tuple[str, int]] = []

    def fail(prompt: str, index: int) -> Exception | None:
        seen.append((prompt, index))
        return RateLimitError("slow down", provider="scripted") if index == 1 else None

    backend = ScriptedBackend(outcomes=["kept"], fail=fail)
    assert await backend.generate("x") == "kept"
    with pytest.raises(RateLimitError):
        await backend.generate("y")
    assert await backend.generate("z") == "ok"
    assert seen == [("x", 0), ("y", 1), ("z", 2)]


async def test_backend_usage_per_call_and_per_token() -> None:
    per_call = ScriptedBackend(lambda p: "two words", cost_per_call=0.5, model_id="m")
    await per_call.generate("three word prompt")
    per_call.outcomes.append(ValueError("boom"))
    with pytest.raises(ValueError):
        await per_call.generate("again")
    totals = per_call.usage_totals()
    assert totals is not None
    assert (totals.calls, totals.failures) == (2, 1)
    assert (totals.input_tokens, totals.output_tokens, totals.cost_usd) == (3, 2, 0.5)

    per_token = ScriptedBackend(lambda p: "a b", price_per_1k_tokens=(1.0, 2.0))
    await per_token.generate("x y z w")
    totals = per_token.usage_totals()
    assert totals is not None
    assert totals.cost_usd == pytest.approx((4 * 1.0 + 2 * 2.0) / 1000)


async def test_backend_latency_runs_calls_concurrently() -> None:
    backend = ScriptedBackend(latency_s=0.02)
    results = await asyncio.gather(*(backend.generate(str(i)) for i in range(5)))
    assert results == ["ok"] * 5
    assert backend.peak_in_flight == 5
    assert backend.in_flight == 0


async def test_backend_cancelled_call_leaves_nothing_in_flight() -> None:
    backend = ScriptedBackend(latency_s=10, cost_per_call=1.0)
    call = asyncio.ensure_future(backend.generate("slow"))
    await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert backend.in_flight == 0
    totals = backend.usage_totals()
    assert totals is not None and totals.calls == 0


async def test_backend_subclass_overrides_reply_and_tokens() -> None:
    class Echo(ScriptedBackend):
        def reply(self, prompt: str) -> str:
            return f"echo: {prompt}"

        def count_tokens(self, text: str) -> int:
            return len(text)

    backend = Echo(cost_per_call=0.0)
    assert await backend.generate("abc") == "echo: abc"
    totals = backend.usage_totals()
    assert totals is not None
    assert (totals.input_tokens, totals.output_tokens) == (3, 9)


async def test_backend_drives_the_tot_engine() -> None:
    def reply(prompt: str) -> str:
        if "Possible next steps:" in prompt:
            return "Final answer: 4"
        return "Score: 9"

    backend = ScriptedBackend(reply, cost_per_call=0.001)
    result = await ToTEngine(ToTConfig(max_depth=1, n_evaluate_sample=1), backend).solve("2 + 2?")
    assert result.solved and result.best is not None and result.best.text == "4"
    assert result.stats.llm_calls == backend.calls
    assert result.stats.usage is not None
    assert result.stats.usage.cost_usd == pytest.approx(0.001 * backend.calls)


# --- ScriptedChatModel ----------------------------------------------------------


def test_chat_model_follows_the_script() -> None:
    model = ScriptedChatModel(outcomes=["one", RateLimitError("slow", provider="scripted")])
    reply = model.invoke("hi", stop=["\n"], max_tokens=5)
    assert isinstance(reply, AIMessage) and reply.content == "one"
    with pytest.raises(RateLimitError):
        model.invoke("again")
    assert model.invoke("then").content == "ok"
    assert model.calls == [{"stop": ["\n"], "max_tokens": 5}, {"stop": None}, {"stop": None}]
    assert model.prompts == ["hi", "again", "then"]


def test_chat_model_reply_sees_the_last_message() -> None:
    model = ScriptedChatModel(reply=lambda prompt: prompt[::-1])
    reply = model.invoke([SystemMessage("be brief"), HumanMessage("abc")])
    assert reply.content == "cba"


def test_chat_model_reports_usage_and_cost() -> None:
    model = ScriptedChatModel(outcomes=["three word reply"], cost_per_call=0.25)
    reply = model.invoke([SystemMessage("sys"), HumanMessage("two words")])
    assert isinstance(reply, AIMessage)
    assert reply.usage_metadata == {"input_tokens": 3, "output_tokens": 3, "total_tokens": 6}
    assert reply.response_metadata["cost"] == 0.25


def test_chat_model_streams_word_by_word_with_usage_last() -> None:
    model = ScriptedChatModel(outcomes=["one two three"], cost_per_call=0.5)
    chunks = list(model.stream("hi"))
    assert [c.content for c in chunks[:3]] == ["one", " two", " three"]
    assert all(c.usage_metadata is None for c in chunks[:3])
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.content == "one two three"
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["output_tokens"] == 3
    assert whole.response_metadata["cost"] == 0.5


async def test_chat_model_stream_fails_after_partial_text() -> None:
    gone = ProviderUnavailableError("gone", provider="scripted")
    model = ScriptedChatModel(outcomes=[("half a", gone), ("x", gone)])
    parts: list[str] = []
    with pytest.raises(ProviderUnavailableError):
        async for chunk in model.astream("hi"):
            parts.append(str(chunk.content))
    assert parts == ["half", " a"]
    with pytest.raises(ProviderUnavailableError):
        await model.ainvoke("a plain call just raises")


def test_chat_model_cost_per_call_list_bills_each_call_its_own() -> None:
    model = ScriptedChatModel(cost_per_call=[0.5, 0.25])
    costs = [model.invoke("q").response_metadata["cost"] for _ in range(3)]
    streamed = [c.response_metadata["cost"] for c in model.stream("q") if c.response_metadata]
    assert costs == [0.5, 0.25, 0.25]  # the last one repeats
    assert streamed == [0.25]
    with pytest.raises(ValidationError):
        ScriptedChatModel(cost_per_call=[])
    with pytest.raises(ValidationError):
        ScriptedChatModel(latency_s=-1)


async def test_chat_model_latency_runs_calls_concurrently() -> None:
    model = ScriptedChatModel(latency_s=0.05)
    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(model.ainvoke(f"q{i}") for i in range(4)))
    assert asyncio.get_running_loop().time() - started >= 0.05
    assert (model.peak_in_flight, model.in_flight) == (4, 0)
    model.invoke("sync")
    assert model.in_flight == 0


async def test_chat_model_cancelled_call_leaves_nothing_in_flight() -> None:
    model = ScriptedChatModel(latency_s=10)
    call = asyncio.ensure_future(model.ainvoke("slow"))
    await asyncio.sleep(0.05)
    assert model.in_flight == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert model.in_flight == 0


def test_chat_model_batch_takes_each_outcome_once() -> None:
    model = ScriptedChatModel(outcomes=[str(i) for i in range(20)])
    replies = model.batch([f"q{i}" for i in range(20)])
    assert sorted(int(str(r.content)) for r in replies) == list(range(20))
    assert len(model.calls) == 20 and not model.outcomes


async def test_chat_model_under_langchain_backend() -> None:
    model = ScriptedChatModel(
        provider="acme",
        outcomes=[RateLimitError("slow down", provider="acme"), "four"],
        cost_per_call=0.01,
    )
    backend = LangChainBackend(model)
    with pytest.raises(RateLimitError):
        await backend.generate("2 + 2?")
    assert await backend.generate("2 + 2?") == "four"
    summary = backend.usage.summary()[("acme", "acme-model")]
    assert (summary.usage.calls, summary.usage.failures, summary.usage.cost_usd) == (2, 1, 0.01)


async def test_chat_model_stream_error_is_typed_under_langchain_backend() -> None:
    gone = ProviderUnavailableError("gone", provider="scripted")
    backend = LangChainBackend(ScriptedChatModel(outcomes=[("partial text", gone)]))
    with pytest.raises(StreamInterruptedError) as caught:
        _ = [part async for part in backend.stream("hi")]
    assert caught.value.partial_text == "partial text"


def test_scripted_chat_model_takes_tools_and_records_them() -> None:
    def get_weather(city: str) -> str:
        """Get the weather in a city."""
        return city

    model = ScriptedChatModel(outcomes=["sunny"])
    reply = model.bind_tools([get_weather], tool_choice="auto").invoke("Paris?")
    assert reply.content == "sunny"
    [called] = model.calls
    assert [tool["function"]["name"] for tool in called["tools"]] == ["get_weather"]
    assert called["tool_choice"] == "auto"
