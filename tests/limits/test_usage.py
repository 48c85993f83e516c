"""``UsageTracker``: its arithmetic, and its totals through a built chain on the loopback
server (OpenRouter's cost, none from Ollama).
"""

from __future__ import annotations

import logging
import math
import uuid

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.limits.usage import (
    LATENCY_SAMPLES,
    CallMeter,
    UsageTracker,
    plausible_usd,
)
from pygent_lc.testing import ScriptedChatModel
from tests.loopback_server import LoopbackServer


@pytest.mark.parametrize(
    ("latencies", "p95"),
    [([float(i) for i in range(1, 101)], 95.0), ([3.0], 3.0), ([1.0, 2.0], 2.0)],
)
def test_p95_is_nearest_rank(latencies: list[float], p95: float) -> None:
    tracker = UsageTracker()
    for latency in reversed(latencies):  # the order they came in does not matter
        tracker.count("p", "m", latency)
    assert tracker.summary()[("p", "m")].p95_latency_s == p95


def test_tracker_keeps_the_latest_latencies_as_the_store_does() -> None:
    """Its p95 is over the latest LATENCY_SAMPLES requests (memory stays bounded in a long
    run); the mean is over every request."""
    tracker = UsageTracker()
    for latency in [9.0] * 500 + [0.5] * LATENCY_SAMPLES:
        tracker.count("p", "m", latency)
    entry = tracker.summary()[("p", "m")]
    assert entry.usage.calls == 500 + LATENCY_SAMPLES
    assert entry.p95_latency_s == 0.5
    mean = (9.0 * 500 + 0.5 * LATENCY_SAMPLES) / entry.usage.calls
    assert entry.mean_latency_s == pytest.approx(mean)


# --- through a built chain, on the loopback server ----------------------------


def settings_for(server: LoopbackServer) -> Settings:
    return Settings(
        openrouter_api_key="sk-or-v1-wire-test",
        openrouter_base_url=server.openrouter_base_url,
        openrouter_model="openai/gpt-4o-mini",
        app_url="https://pygent.example",
        app_title="PyGent Factory",
        ollama_base_url=server.ollama_base_url,
        ollama_model="llama3.2",
    )


@pytest.mark.live_local
async def test_usage_tracker_reports_openrouter_cost_for_invoke_and_stream(
    loopback: LoopbackServer,
) -> None:
    backend = LangChainBackend(build_chat_model(settings_for(loopback), ["openrouter", "ollama"]))
    await backend.generate("one two three")
    _ = [part async for part in backend.stream("four five")]
    summary = backend.usage.summary()
    entry = summary[("openrouter", "openai/gpt-4o-mini")]
    assert entry.usage.calls == 2
    # The loopback server bills 1e-6 USD per prompt word and 2e-6 per reply word:
    # "one two three" -> "echo: one two three", "four five" -> "echo: four five".
    assert (entry.usage.input_tokens, entry.usage.output_tokens) == (3 + 2, 4 + 3)
    assert entry.usage.cost_usd == pytest.approx(5e-6 + 7 * 2e-6)


@pytest.mark.live_local
async def test_usage_tracker_reports_zero_cost_for_ollama(loopback: LoopbackServer) -> None:
    backend = LangChainBackend(build_chat_model(settings_for(loopback), ["ollama"]))
    await backend.generate("one two three")
    [entry] = backend.usage.summary().values()
    assert (entry.provider, entry.model, entry.usage.cost_usd) == ("ollama", "llama3.2", 0.0)
    assert entry.usage.output_tokens == 4


# --- a reply's cost is an amount, or a fault ------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "amount"),
    [(None, 0.0), (0, 0.0), (0.25, 0.25), ("0.5", 0.5), (1000, 1000.0)],
)
def test_plausible_amounts(reported: object, amount: float) -> None:
    assert plausible_usd(reported) == amount


@pytest.mark.parametrize(
    "reported", [math.nan, math.inf, -math.inf, -1e308, 1e308, -0.01, 1000.01, "abc", True, [1]]
)
def test_implausible_amounts(reported: object) -> None:
    assert plausible_usd(reported) is None


@pytest.mark.parametrize("field", ["cost", "cache_discount"])
def test_a_faulty_reply_is_counted_and_warned_about_once(
    field: str, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = UsageTracker()
    model = ScriptedChatModel(cost_per_call=0.5)
    faulty = AIMessage(
        content="ok", id=f"run-{uuid.uuid4()}", response_metadata={"cost": 0.5, field: math.nan}
    )
    with caplog.at_level(logging.WARNING):
        tracker.on_chat_model_start({}, [[]], run_id=uuid.UUID(int=1))
        tracker.on_llm_end(
            LLMResult(generations=[[ChatGeneration(message=faulty)]]), run_id=uuid.UUID(int=1)
        )
        meter = CallMeter("p", "m")
        meter.observe(faulty)  # the policy's meter reads the same reply: no second warning
        model.invoke("hi", config={"callbacks": [tracker]})
    totals = tracker.totals()
    assert totals.cost_faults == 1
    assert meter.usage.cost_faults == 1
    assert totals.cost_usd == (0.5 if field == "cache_discount" else 0.0) + 0.5
    assert math.isfinite(totals.cache_discount_usd)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_a_request_with_n_choices_counts_its_usage_once() -> None:
    """The wire's usage covers every choice, and LangChain copies it onto each choice's
    message: three choices are one request's tokens and cost, not three times them."""

    def choice(text: str) -> ChatGeneration:
        usage = {"input_tokens": 40, "output_tokens": 9, "total_tokens": 49}
        message = AIMessage(content=text, usage_metadata=usage, response_metadata={"cost": 0.003})
        return ChatGeneration(message=message)

    result = LLMResult(generations=[[choice("a"), choice("b"), choice("c")]])
    tracker = UsageTracker()
    tracker.on_chat_model_start({}, [[]], run_id=uuid.UUID(int=2))
    tracker.on_llm_end(result, run_id=uuid.UUID(int=2))
    meter = CallMeter("p", "m")
    meter.on_llm_end(result)
    for totals in (tracker.totals(), meter.usage):
        assert (totals.input_tokens, totals.output_tokens) == (40, 9)
        assert totals.cost_usd == pytest.approx(0.003)
    assert tracker.totals().calls == 1
