"""Cassette tier: OpenRouter's extras and error formats, and Ollama's API, replayed offline.

Recorded from the loopback server (tests/loopback_server), which speaks the
documented protocols; re-record with ``pytest --record-mode=rewrite``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import exchanged, request_json
from loopback_server import Fault, LoopbackServer

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.errors import (
    AuthenticationError,
    ProviderUnavailableError,
    StreamInterruptedError,
)
from pygent_lc.providers import openrouter_model

pytestmark = pytest.mark.vcr

# Where requests go when replaying: nothing listens there, vcrpy answers.
REPLAY_URL = "http://127.0.0.1:9"


@pytest.fixture
def server(recording: bool) -> Iterator[LoopbackServer | None]:
    if not recording:
        yield None
        return
    with LoopbackServer(ollama_models=["llama3.2:latest"]) as live:
        yield live


def settings_for(server: LoopbackServer | None) -> Settings:
    base = server.base_url if server else REPLAY_URL
    return Settings(
        openrouter_api_key="sk-or-v1-cassette-test",
        openrouter_base_url=f"{base}/api/v1",
        openrouter_model="openai/gpt-4o-mini",
        ollama_base_url=base,
        ollama_model="llama3.2",
        retry_initial_wait=0.0,
        retry_max_wait=0.0,
    )


def script(server: LoopbackServer | None, protocol: str, faults: list[Fault]) -> None:
    if server is not None:
        server.script(protocol, faults)  # type: ignore[arg-type]


def test_openrouter_invoke_keeps_cost_provider_and_generation_id(server, vcr) -> None:
    reply = openrouter_model(settings_for(server)).invoke("one two three", max_tokens=5)
    meta = reply.response_metadata
    assert reply.content == "echo: one two three"
    assert meta["generation_id"].startswith("gen-")
    assert meta["provider"] == "LoopbackAI"
    assert meta["native_finish_reason"] == "stop"
    assert meta["cost"] == pytest.approx(1.1e-5)
    assert reply.usage_metadata["cost"] == meta["cost"]
    assert request_json(vcr)["max_tokens"] == 5


def test_openrouter_stream_keeps_usage_and_cost(server, vcr) -> None:
    merged = None
    for chunk in openrouter_model(settings_for(server)).stream("one two three"):
        merged = chunk if merged is None else merged + chunk
    assert merged.content == "echo: one two three"
    assert merged.usage_metadata["output_tokens"] == 4
    assert merged.response_metadata["cost"] == pytest.approx(1.1e-5)
    assert request_json(vcr)["stream_options"] == {"include_usage": True}


def test_openrouter_error_inside_200_body_is_typed(server, vcr) -> None:
    script(server, "openrouter", [Fault.error_in_200()] * 3)
    backend = LangChainBackend(build_chat_model(settings_for(server), ["openrouter"]))
    with pytest.raises(ProviderUnavailableError, match="Provider returned error") as caught:
        backend.generate_sync("hello")
    assert caught.value.status_code == 429
    assert len(exchanged(vcr)) == 3  # retried, as the policy promises


def test_openrouter_mid_stream_error_keeps_partial_text(server, vcr) -> None:
    script(server, "openrouter", [Fault.mid_stream_error(after_chunks=2)])
    model = openrouter_model(settings_for(server))
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        for chunk in model.stream("one two three four"):
            seen.append(str(chunk.content))
    assert caught.value.partial_text == "".join(seen) == "echo: one"


def test_openrouter_401_falls_back_to_ollama(server, vcr) -> None:
    script(server, "openrouter", [Fault.status(401, message="No auth credentials found")])
    backend = LangChainBackend(build_chat_model(settings_for(server), ["openrouter", "ollama"]))
    assert backend.generate_sync("hello there") == "echo: hello there"
    assert [r.path for r in exchanged(vcr)] == ["/api/v1/chat/completions", "/api/chat"]
    alone = LangChainBackend(build_chat_model(settings_for(server), ["openrouter"]))
    script(server, "openrouter", [Fault.status(401, message="No auth credentials found")])
    with pytest.raises(AuthenticationError, match="No auth credentials"):
        alone.generate_sync("hello there")


def test_openrouter_429_then_success(server, vcr) -> None:
    script(server, "openrouter", [Fault.status(429, retry_after=0), Fault.ok()])
    backend = LangChainBackend(build_chat_model(settings_for(server), ["openrouter"]))
    assert backend.generate_sync("hello there") == "echo: hello there"
    assert len(exchanged(vcr)) == 2


def test_ollama_generation_options_and_stream(server, vcr) -> None:
    backend = LangChainBackend(build_chat_model(settings_for(server), ["ollama"]))
    assert backend.generate_sync("one two three", temperature=0.2, max_tokens=2) == "echo: one"
    options = request_json(vcr)["options"]
    assert (options["temperature"], options["num_predict"]) == (0.2, 2)
    [entry] = backend.usage.summary().values()
    assert entry.provider == "ollama"
    assert (entry.usage.output_tokens, entry.usage.cost_usd) == (2, 0.0)
