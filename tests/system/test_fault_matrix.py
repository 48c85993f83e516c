"""The fault matrix: both protocols, invoke and stream, alone and in a chain.

``test_provider_faults.py`` covers OpenRouter ``invoke`` and a few single
scenarios; this module covers the rest of the matrix: OpenRouter streams, and
Ollama (its ``invoke`` and its streams), plus ``Retry-After`` timing, refused
and hung primaries when streaming, a stream that stalls mid-way, and the
circuit breaker against a real dead primary. For each fault: the typed error
a provider raises alone, the number of requests the policy promises
(``max_retries=2``: 3 for retryable errors, 1 otherwise), and the fallback
result of a chain whose primary has the fault. Every test has a hard timeout:
nothing may hang.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from pygent_lc import LangChainBackend, build_chat_model
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
from pygent_lc.limits.breaker import CircuitOpenError
from tests.helpers import closed_port, loopback_settings
from tests.loopback_server import Fault, LoopbackServer, Protocol

pytestmark = [
    pytest.mark.live_local,
    pytest.mark.timeout(20),
    pytest.mark.asyncio(loop_scope="module"),
]

Mode = Literal["invoke", "stream"]
PROMPT = "hello there"
ECHO = "echo: hello there"
OTHER: dict[Protocol, Protocol] = {"openrouter": "ollama", "ollama": "openrouter"}
PU = ProviderUnavailableError


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    """One server for the module (faults are per request); cleared before each test."""
    with LoopbackServer(ollama_models=["llama3.2:latest"], max_hang=5) as srv:
        yield srv
    _BUILT.clear()


@pytest.fixture
def loop_server(server: LoopbackServer) -> LoopbackServer:
    server.reset()
    return server


_BUILT: dict[tuple[int, tuple[str, ...], str], LangChainBackend] = {}


def backend(server: LoopbackServer, *providers: Protocol, **overrides: Any) -> LangChainBackend:
    """A backend for this configuration, built once per server.

    Building is what costs here (``ChatOllama`` makes two SSL contexts, ~50 ms);
    reuse is safe because the matrix runs with the breaker off and one event loop.
    """
    key = (server.port, providers, repr(sorted(overrides.items())))
    if key not in _BUILT:
        _BUILT[key] = fresh_backend(server, *providers, **overrides)
    return _BUILT[key]


def fresh_backend(
    server: LoopbackServer, *providers: Protocol, **overrides: Any
) -> LangChainBackend:
    return LangChainBackend(
        build_chat_model(loopback_settings(server, **overrides), list(providers))
    )


async def ask(backend: LangChainBackend, mode: Mode) -> str:
    if mode == "invoke":
        return await backend.generate(PROMPT)
    return "".join([part async for part in backend.stream(PROMPT)])


def dead_url(protocol: Protocol) -> dict[str, str]:
    port = closed_port()
    if protocol == "openrouter":
        return {"openrouter_base_url": f"http://127.0.0.1:{port}/api/v1"}
    return {"ollama_base_url": f"http://127.0.0.1:{port}"}


# (fault script, typed error alone, requests the policy promises with max_retries=2)
BEFORE_TEXT = {
    "400": ([Fault.status(400)], ProviderError, 1),
    "401": ([Fault.status(401)], AuthenticationError, 1),
    "402": ([Fault.status(402)], InsufficientCreditsError, 1),
    "403": ([Fault.status(403)], ContentRefusedError, 1),
    "404": ([Fault.status(404)], ModelNotFoundError, 1),
    "408": ([Fault.status(408)] * 3, PU, 3),
    "429": ([Fault.status(429)] * 3, RateLimitError, 3),
    "429-retry-after": ([Fault.status(429, retry_after=0.05)] * 3, RateLimitError, 3),
    "500": ([Fault.status(500)] * 3, PU, 3),
    "502": ([Fault.status(502)] * 3, PU, 3),
    "503": ([Fault.status(503)] * 3, PU, 3),
    "503-retry-after": ([Fault.status(503, retry_after=0.05)] * 3, PU, 3),
    "error-in-200": ([Fault.error_in_200()] * 3, PU, 3),
    "malformed-json": ([Fault.malformed_json()] * 3, PU, 3),
    "connection-reset": ([Fault.reset()] * 3, PU, 3),
    "truncated-before-text": ([Fault.truncated_stream(after_chunks=0)] * 3, PU, 3),
}
# Faults after text: a stream cannot be retried nor fall back once text was delivered.
AFTER_TEXT = {
    "mid-stream-error": [Fault.mid_stream_error(after_chunks=2)],
    "truncated-after-text": [Fault.truncated_stream(after_chunks=2)],
}
# OpenRouter invoke is covered by test_provider_faults.py.
CELLS = [("openrouter", "stream"), ("ollama", "invoke"), ("ollama", "stream")]


def matrix() -> list[Any]:
    params = []
    for protocol, mode in CELLS:
        for name, (script, error, attempts) in BEFORE_TEXT.items():
            params.append(
                pytest.param(
                    protocol, mode, script, error, attempts, id=f"{protocol}-{mode}-{name}"
                )
            )
        if mode == "invoke":  # Ollama's invoke streams internally: a cut reply is retried
            for name, script in AFTER_TEXT.items():
                params.append(
                    pytest.param(protocol, mode, script * 3, PU, 3, id=f"{protocol}-{mode}-{name}")
                )
    return params


@pytest.mark.parametrize(("protocol", "mode", "script", "error", "attempts"), matrix())
async def test_fault_alone_and_in_a_chain(
    loop_server: LoopbackServer,
    protocol: Protocol,
    mode: Mode,
    script: list[Fault],
    error: type[ProviderError],
    attempts: int,
) -> None:
    server = loop_server
    server.script(protocol, script)
    with pytest.raises(error) as caught:
        await ask(backend(server, protocol), mode)
    assert type(caught.value) is error
    assert caught.value.provider == protocol
    assert server.request_count(protocol) == attempts
    assert server.pending(protocol) == 0

    server.reset()
    server.script(protocol, script)
    assert await ask(backend(server, protocol, OTHER[protocol]), mode) == ECHO
    assert server.request_count(protocol) == attempts
    assert server.request_count(OTHER[protocol]) == 1


@pytest.mark.parametrize("protocol", ["openrouter", "ollama"])
@pytest.mark.parametrize("name", list(AFTER_TEXT))
async def test_stream_fault_after_text_keeps_the_text_and_does_not_fall_back(
    loop_server: LoopbackServer, protocol: Protocol, name: str
) -> None:
    loop_server.script(protocol, AFTER_TEXT[name])
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        async for part in backend(loop_server, protocol, OTHER[protocol]).stream(PROMPT):
            seen.append(part)
    assert caught.value.partial_text == "".join(seen)
    assert caught.value.partial_text
    assert caught.value.provider == protocol
    assert loop_server.request_count(protocol) == 1  # not retried: text was delivered
    assert loop_server.request_count(OTHER[protocol]) == 0  # nor fallen back


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_openrouter_retry_after_is_waited_for(
    loop_server: LoopbackServer, mode: Mode
) -> None:
    loop_server.script("openrouter", [Fault.status(429, retry_after=0.15)] * 2)
    started = time.perf_counter()
    assert await ask(backend(loop_server, "openrouter"), mode) == ECHO
    assert time.perf_counter() - started >= 0.28
    assert loop_server.request_count("openrouter") == 3


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_429_without_retry_after_backs_off_briefly(
    loop_server: LoopbackServer, mode: Mode
) -> None:
    for protocol in ("openrouter", "ollama"):
        loop_server.reset()
        loop_server.script(protocol, [Fault.status(429)] * 2)
        started = time.perf_counter()
        assert await ask(backend(loop_server, protocol), mode) == ECHO
        assert time.perf_counter() - started < 0.5
        assert loop_server.request_count(protocol) == 3


async def test_ollama_retry_after_is_waited_for(loop_server: LoopbackServer) -> None:
    loop_server.script("ollama", [Fault.status(429, retry_after=0.3)] * 2)
    started = time.perf_counter()
    assert await ask(backend(loop_server, "ollama"), "invoke") == ECHO
    assert time.perf_counter() - started >= 0.55


@pytest.mark.parametrize("protocol", ["openrouter", "ollama"])
@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_a_retry_after_past_the_cap_is_not_waited_for_and_falls_back(
    loop_server: LoopbackServer, protocol: Protocol, mode: Mode
) -> None:
    loop_server.script(protocol, [Fault.status(429, retry_after=3600)] * 3)
    with pytest.raises(RateLimitError) as raised:
        await ask(fresh_backend(loop_server, protocol), mode)
    assert raised.value.retry_after is not None and raised.value.retry_after > 3000
    assert loop_server.request_count(protocol) == 1
    loop_server.script(protocol, [Fault.status(429, retry_after=3600)])
    started = time.perf_counter()
    assert await ask(fresh_backend(loop_server, protocol, OTHER[protocol]), mode) == ECHO
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("protocol", ["openrouter", "ollama"])
async def test_an_html_error_page_is_summarised(
    loop_server: LoopbackServer, protocol: Protocol
) -> None:
    loop_server.script(protocol, [Fault.html_error(502)] * 3)
    with pytest.raises(ProviderUnavailableError) as raised:
        await ask(backend(loop_server, protocol), "invoke")
    assert raised.value.status_code == 502
    assert raised.value.message == "HTML error page: 502 Bad Gateway"


@pytest.mark.parametrize("protocol", ["openrouter", "ollama"])
async def test_refused_stream_is_typed_not_retried_and_falls_over(
    loop_server: LoopbackServer, protocol: Protocol
) -> None:
    dead = dead_url(protocol)
    with pytest.raises(PU, match="refused") as caught:
        await ask(backend(loop_server, protocol, **dead), "stream")
    assert caught.value.retryable is False
    chain = backend(loop_server, protocol, OTHER[protocol], **dead)
    await ask(chain, "stream")  # warm-up: imports, client setup
    started = time.perf_counter()
    assert await ask(chain, "stream") == ECHO
    assert time.perf_counter() - started < 0.25


@pytest.mark.parametrize("protocol", ["openrouter", "ollama"])
async def test_stream_hang_past_timeout_is_bounded_then_falls_back(
    loop_server: LoopbackServer, protocol: Protocol
) -> None:
    loop_server.script(protocol, [Fault.hang(3)])
    started = time.perf_counter()
    with pytest.raises(PU, match="timed out"):
        await ask(backend(loop_server, protocol, request_timeout=0.2, max_retries=0), "stream")
    assert time.perf_counter() - started < 2
    loop_server.script(protocol, [Fault.hang(3)])
    chain = backend(loop_server, protocol, OTHER[protocol], request_timeout=0.2, max_retries=0)
    assert await ask(chain, "stream") == ECHO


@pytest.mark.parametrize("protocol", ["openrouter", "ollama"])
async def test_stream_stalling_after_text_times_out_with_the_partial_text(
    protocol: Protocol,
) -> None:
    with LoopbackServer(chunk_delay=1.0, max_hang=2) as slow:
        # 0.5 s: under 1 s between chunks, and above a loaded machine's first-call imports
        b = fresh_backend(slow, protocol, OTHER[protocol], request_timeout=0.5, max_retries=0)
        started = time.perf_counter()
        with pytest.raises(StreamInterruptedError) as caught:
            await ask(b, "stream")
        assert time.perf_counter() - started < 2
        assert caught.value.partial_text
        assert slow.request_count(OTHER[protocol]) == 0


async def test_breaker_skips_a_hung_primary_after_three_timeouts(
    loop_server: LoopbackServer,
) -> None:
    loop_server.script("openrouter", [Fault.hang(3)] * 3)
    chain = fresh_backend(
        loop_server,
        "openrouter",
        "ollama",
        request_timeout=0.2,
        max_retries=0,
        breaker_failures=3,
        breaker_cooldown=30,
    )
    mode: Mode
    for mode in ("invoke", "stream", "invoke"):
        assert await ask(chain, mode) == ECHO  # each pays the timeout
    started = time.perf_counter()
    for mode in ("invoke", "stream") * 3:
        assert await ask(chain, mode) == ECHO
    assert (time.perf_counter() - started) / 6 < 0.15  # no 0.2 s timeout any more (loaded CI)
    assert loop_server.request_count("openrouter") == 3  # the open circuit made no request
    primary_alone = LangChainBackend(chain.runnable.providers[0])  # type: ignore[attr-defined]
    for mode in ("invoke", "stream"):
        with pytest.raises(CircuitOpenError, match="cooling down"):
            await ask(primary_alone, mode)
