"""The real provider classes against the loopback server: faults, policy, fallbacks.

Each scenario checks the typed error a provider raises alone, the fallback
result in a chain, and the number of requests the server saw.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.errors import (
    AuthenticationError,
    ContentRefusedError,
    InsufficientCreditsError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
)
from tests.helpers import closed_port, loopback_settings
from tests.loopback_server import Fault, LoopbackServer

pytestmark = pytest.mark.live_local


def alone(server: LoopbackServer, **overrides: Any) -> LangChainBackend:
    return LangChainBackend(
        build_chat_model(loopback_settings(server, **overrides), ["openrouter"])
    )


def chained(server: LoopbackServer, **overrides: Any) -> LangChainBackend:
    return LangChainBackend(
        build_chat_model(loopback_settings(server, **overrides), ["openrouter", "ollama"])
    )


# (fault script, typed error alone, requests the policy promises with max_retries=2)
SCENARIOS = [
    pytest.param([Fault.error_in_200()] * 3, ProviderUnavailableError, 3, id="error-in-200-body"),
    pytest.param([Fault.status(400)], ProviderError, 1, id="400"),
    pytest.param([Fault.status(401)], AuthenticationError, 1, id="401"),
    pytest.param([Fault.status(402)], InsufficientCreditsError, 1, id="402"),
    pytest.param([Fault.status(403)], ContentRefusedError, 1, id="403"),
    pytest.param([Fault.status(404)], ModelNotFoundError, 1, id="404"),
    pytest.param([Fault.status(408)] * 3, ProviderUnavailableError, 3, id="408"),
    pytest.param([Fault.status(429)] * 3, RateLimitError, 3, id="429"),
    pytest.param([Fault.status(500)] * 3, ProviderUnavailableError, 3, id="500"),
    pytest.param([Fault.status(502)] * 3, ProviderUnavailableError, 3, id="502"),
    pytest.param([Fault.status(503)] * 3, ProviderUnavailableError, 3, id="503"),
    pytest.param([Fault.malformed_json()] * 3, ProviderUnavailableError, 3, id="malformed-json"),
    pytest.param([Fault.reset()] * 3, ProviderUnavailableError, 3, id="connection-reset"),
]


@pytest.mark.parametrize(("script", "error", "attempts"), SCENARIOS)
async def test_fault_alone_raises_typed_error_after_promised_attempts(
    loopback: LoopbackServer, script: list[Fault], error: type[ProviderError], attempts: int
) -> None:
    loopback.script("openrouter", script)
    with pytest.raises(error) as caught:
        await alone(loopback).generate("hello there")
    assert type(caught.value) is error
    assert caught.value.provider == "openrouter"
    assert loopback.request_count("openrouter") == attempts


@pytest.mark.parametrize(("script", "error", "attempts"), SCENARIOS)
async def test_fault_in_chain_falls_back_to_ollama(
    loopback: LoopbackServer, script: list[Fault], error: type[ProviderError], attempts: int
) -> None:
    loopback.script("openrouter", script)
    assert await chained(loopback).generate("hello there") == "echo: hello there"
    assert loopback.request_count("openrouter") == attempts
    assert loopback.request_count("ollama") == 1


async def test_429_then_success_retries_once_after_retry_after(loopback: LoopbackServer) -> None:
    loopback.script("openrouter", [Fault.status(429, retry_after=1), Fault.ok()])
    started = time.perf_counter()
    assert await alone(loopback).generate("hello there") == "echo: hello there"
    assert time.perf_counter() - started >= 0.9
    assert loopback.request_count("openrouter") == 2


async def test_500_twice_then_success(loopback: LoopbackServer) -> None:
    loopback.script("openrouter", [Fault.status(500), Fault.status(500), Fault.ok()])
    assert await alone(loopback).generate("hello there") == "echo: hello there"
    assert loopback.request_count("openrouter") == 3


async def test_refused_primary_falls_over_in_milliseconds(loopback: LoopbackServer) -> None:
    backend = chained(loopback, openrouter_base_url=f"http://127.0.0.1:{closed_port()}/api/v1")
    await backend.generate("warm up")  # first call pays for imports and client setup
    started = time.perf_counter()
    assert await backend.generate("hello there") == "echo: hello there"
    assert time.perf_counter() - started < 0.25
    with pytest.raises(ProviderUnavailableError, match="refused") as caught:
        await alone(
            loopback, openrouter_base_url=f"http://127.0.0.1:{closed_port()}/api/v1"
        ).generate("hi")
    assert caught.value.retryable is False


async def test_hang_past_timeout_is_a_timeout_then_falls_back(loopback: LoopbackServer) -> None:
    loopback.script("openrouter", [Fault.hang(10)])
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailableError, match="timed out"):
        await alone(loopback, request_timeout=0.5, max_retries=0).generate("hi")
    assert time.perf_counter() - started < 3
    loopback.script("openrouter", [Fault.hang(10)])
    backend = chained(loopback, request_timeout=0.5, max_retries=0)
    assert await backend.generate("hello there") == "echo: hello there"


async def test_mid_stream_error_raises_stream_interrupted_with_partial_text(
    loopback: LoopbackServer,
) -> None:
    loopback.script("openrouter", [Fault.mid_stream_error(after_chunks=2)])
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        async for part in chained(loopback).stream("one two three four"):
            seen.append(part)
    assert caught.value.partial_text == "".join(seen)
    assert caught.value.partial_text.startswith("echo:")
    assert loopback.request_count("ollama") == 0  # text was delivered: no fallback


async def test_truncated_stream_raises_stream_interrupted(loopback: LoopbackServer) -> None:
    loopback.script("openrouter", [Fault.truncated_stream(after_chunks=2)])
    with pytest.raises(StreamInterruptedError) as caught:
        _ = [part async for part in alone(loopback).stream("one two three four")]
    assert caught.value.partial_text


async def test_stream_error_before_first_token_falls_back(loopback: LoopbackServer) -> None:
    loopback.script("openrouter", [Fault.error_in_200()] * 3)
    text = "".join([part async for part in chained(loopback).stream("hello there")])
    assert text == "echo: hello there"


async def test_ollama_errors_are_typed(loopback: LoopbackServer) -> None:
    backend = LangChainBackend(build_chat_model(loopback_settings(loopback), ["ollama"]))
    loopback.script("ollama", [Fault.status(500)] * 3)
    with pytest.raises(ProviderUnavailableError):
        await backend.generate("hi")
    assert loopback.request_count("ollama") == 3
    missing = LangChainBackend(
        build_chat_model(loopback_settings(loopback, ollama_model="nope:7b"), ["ollama"])
    )
    with pytest.raises(ModelNotFoundError):
        await missing.generate("hi")
    loopback.script("ollama", [Fault.mid_stream_error(after_chunks=2)])
    with pytest.raises(StreamInterruptedError):
        _ = [part async for part in backend.stream("one two three")]


async def test_ollama_hang_is_bounded_by_the_client_timeout(loopback: LoopbackServer) -> None:
    loopback.script("ollama", [Fault.hang(10)])
    backend = LangChainBackend(
        build_chat_model(
            loopback_settings(loopback, request_timeout=0.5, max_retries=0), ["ollama"]
        )
    )
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailableError, match="timed out"):
        await backend.generate("hi")
    assert time.perf_counter() - started < 3


async def test_ollama_refused_is_typed_and_not_retried() -> None:
    settings = Settings(
        ollama_base_url=f"http://127.0.0.1:{closed_port()}", ollama_model="llama3.2"
    )
    with pytest.raises(ProviderUnavailableError, match="refused") as caught:
        await LangChainBackend(build_chat_model(settings, ["ollama"])).generate("hi")
    assert caught.value.retryable is False


async def test_hung_primary_costs_one_timeout_even_with_retries(loopback: LoopbackServer) -> None:
    """request_timeout bounds all attempts of a call: no retry would finish in time."""
    loopback.script("openrouter", [Fault.hang(10)] * 3)
    backend = chained(loopback, request_timeout=0.5, max_retries=2)
    started = time.perf_counter()
    assert await backend.generate("hello there") == "echo: hello there"
    assert time.perf_counter() - started < 1.5
    assert loopback.request_count("openrouter") == 1
