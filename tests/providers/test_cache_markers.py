"""Prompt caching on the wire: ``cache_prefix`` becomes a ``cache_control`` breakpoint
only where the model needs one, plain text everywhere else, and the cache's
savings come back in usage."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import SecretStr

from pygent_lc import LangChainBackend, build_chat_model
from pygent_lc.providers.cache_markers import (
    CACHE_CONTROL,
    cached_prefix_message,
    needs_explicit_breakpoints,
    without_cache_markers,
)
from pygent_lc.providers.local import LocalChatModel
from tests.helpers import loopback_settings
from tests.loopback_server import Fault, LoopbackServer

PREFIX = "Examples:\nalpha beta gamma delta\nepsilon zeta eta theta\n"


REST = "Input: one two\n"


def _user_content(body: dict[str, Any]) -> Any:
    [message] = [m for m in body["messages"] if m["role"] == "user"]
    return message["content"]


@pytest.mark.parametrize(
    ("model", "explicit"),
    [
        ("anthropic/claude-sonnet-4.5", True),
        ("~anthropic/claude-haiku-latest", True),
        ("google/gemini-2.5-flash", True),
        ("google/gemma-3-27b-it", False),
        ("openai/gpt-4o-mini", False),
        ("deepseek/deepseek-chat", False),
    ],
)
def test_explicit_breakpoints_per_model(model: str, explicit: bool) -> None:
    assert needs_explicit_breakpoints([model]) is explicit


def test_without_markers_is_the_unsplit_prompt_byte_for_byte() -> None:
    message = cached_prefix_message(PREFIX, REST)
    assert message.content[0] == {"type": "text", "text": PREFIX, "cache_control": CACHE_CONTROL}
    [plain] = without_cache_markers([message])
    assert plain.content == PREFIX + REST
    untouched = [SystemMessage("s"), HumanMessage(content=[{"type": "text", "text": "x"}])]
    assert without_cache_markers(untouched) == untouched


@pytest.mark.live_local
async def test_openrouter_marks_the_prefix_for_an_anthropic_model(
    loopback: LoopbackServer,
) -> None:
    settings = loopback_settings(loopback, openrouter_model="anthropic/claude-sonnet-4.5")
    backend = LangChainBackend(build_chat_model(settings, ["openrouter"]))
    await backend.generate(PREFIX + REST, cache_prefix=PREFIX)
    [request] = loopback.requests("openrouter")
    assert _user_content(request.json) == [
        {"type": "text", "text": PREFIX, "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": REST},
    ]


@pytest.mark.live_local
async def test_openrouter_sends_plain_text_to_an_openai_model(loopback: LoopbackServer) -> None:
    backend = LangChainBackend(build_chat_model(loopback_settings(loopback), ["openrouter"]))
    await backend.generate(PREFIX + REST, cache_prefix=PREFIX)
    _ = [part async for part in backend.stream(PREFIX + REST, cache_prefix=PREFIX)]
    for request in loopback.requests("openrouter"):
        assert _user_content(request.json) == PREFIX + REST
        assert b"cache_control" not in request.body


@pytest.mark.live_local
async def test_openrouter_marks_when_a_fallback_model_needs_it(loopback: LoopbackServer) -> None:
    settings = loopback_settings(
        loopback, openrouter_models=["openai/gpt-4o-mini", "google/gemini-2.5-flash"]
    )
    backend = LangChainBackend(build_chat_model(settings, ["openrouter"]))
    await backend.generate(PREFIX + REST, cache_prefix=PREFIX)
    [request] = loopback.requests("openrouter")
    assert _user_content(request.json)[0]["cache_control"] == {"type": "ephemeral"}


@pytest.mark.live_local
async def test_cached_tokens_and_discount_reach_the_usage_tracker(
    loopback: LoopbackServer,
) -> None:
    settings = loopback_settings(loopback, openrouter_model="anthropic/claude-sonnet-4.5")
    backend = LangChainBackend(build_chat_model(settings, ["openrouter"]))
    await backend.generate(PREFIX + REST, cache_prefix=PREFIX)  # writes the cache
    first = backend.usage_totals()
    assert (first.cached_input_tokens, first.cache_discount_usd) == (0, 0.0)
    await backend.generate(PREFIX + "Input: three\n", cache_prefix=PREFIX)
    _ = [part async for part in backend.stream(PREFIX + REST, cache_prefix=PREFIX)]
    words = len(PREFIX.split())
    totals = backend.usage_totals() - first
    assert totals.cached_input_tokens == 2 * words
    # The loopback server bills cached words at a tenth of 1e-6 USD.
    assert totals.cache_discount_usd == pytest.approx(2 * words * 0.9e-6)
    [entry] = backend.usage.summary().values()
    usage = entry.usage
    assert usage.cached_input_tokens == 2 * words
    assert usage.cost_usd == pytest.approx(
        usage.input_tokens * 1e-6 - totals.cache_discount_usd + usage.output_tokens * 2e-6
    )


@pytest.mark.live_local
async def test_ollama_gets_the_plain_prompt(loopback: LoopbackServer) -> None:
    backend = LangChainBackend(build_chat_model(loopback_settings(loopback), ["ollama"]))
    assert await backend.generate(PREFIX + REST, cache_prefix=PREFIX)
    _ = [part async for part in backend.stream(PREFIX + REST, cache_prefix=PREFIX)]
    for request in loopback.requests("ollama"):
        [message] = request.json["messages"]
        assert message["content"] == PREFIX + REST


@pytest.mark.live_local
async def test_local_model_gets_the_plain_prompt(loopback: LoopbackServer) -> None:
    # The local class against an OpenAI-wire server: the request it would send llama.cpp.
    model = LocalChatModel(model="m", base_url=loopback.openrouter_base_url, api_key=SecretStr("k"))
    backend = LangChainBackend(model)
    assert await backend.generate(PREFIX + REST, cache_prefix=PREFIX)
    [request] = loopback.requests("openrouter")
    assert _user_content(request.json) == PREFIX + REST


@pytest.mark.live_local
async def test_a_fallback_chain_marks_only_where_the_model_needs_it(
    loopback: LoopbackServer,
) -> None:
    loopback.script("openrouter", [Fault.status(503)])
    settings = loopback_settings(
        loopback, openrouter_model="anthropic/claude-sonnet-4.5", max_retries=0
    )
    backend = LangChainBackend(build_chat_model(settings, ["openrouter", "ollama"]))
    assert await backend.generate(PREFIX + REST, cache_prefix=PREFIX)
    [sent] = loopback.requests("openrouter")
    assert _user_content(sent.json)[0]["cache_control"] == {"type": "ephemeral"}
    [fallback] = loopback.requests("ollama")
    assert fallback.json["messages"][0]["content"] == PREFIX + REST
