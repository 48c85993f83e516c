"""``UsageTracker``: its arithmetic, and its totals through a built chain on the loopback
server (OpenRouter's cost, none from Ollama).
"""

from __future__ import annotations

import pytest

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.usage import _percentile
from tests.loopback_server import LoopbackServer


def test_p95_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert _percentile(samples, 0.95) == 95.0
    assert _percentile([3.0], 0.95) == 3.0
    assert _percentile([1.0, 2.0], 0.95) == 2.0


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
