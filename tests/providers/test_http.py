"""``pygent_lc.providers.http``: the package's own transports, without a socket.

A deadline that has passed fails a request before any connection is tried
(pytest-socket would fail the test on any socket), on the transports alone and
through each provider model built with them.

Under real use, against the loopback server (live_local): the transports build
their connection pools themselves and take no inner transport, so a
``MockTransport`` cannot be put under them.

- Any number of successive event loops, and threads each with its own loop,
  on one chain (langchain-openai's process-wide cached async client broke the
  second ``asyncio.run``).
- ``request_timeout`` is a deadline for a provider's whole part of a call: a
  reply that drips one byte at a time, or a slow error followed by a hang,
  cannot stretch it; a stream gets it again for every gap between chunks.
- ``aclose()`` returns the process to its open-descriptor baseline.
"""

from __future__ import annotations

import asyncio
import gc
import os
import queue
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr

from benchmarks.game24_model import scripted_game24_reply
from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.agents import AgentFactory, ReasoningAgent
from pygent_lc.errors import ProviderUnavailableError
from pygent_lc.providers.boundary import ProviderBoundary
from pygent_lc.providers.http import (
    HTTPX_LIBS,
    OPENAI_HTTPX,
    Deadline,
    ProviderHttp,
    _AsyncioBackend,
    current_deadline,
)
from pygent_lc.providers.local import LocalChatModel
from pygent_lc.providers.ollama import ollama_model
from pygent_lc.providers.openrouter.model import openrouter_model
from tests.helpers import loopback_settings
from tests.loopback_server import Fault, LoopbackServer
from tests.loopback_server.answers import last_user_text

URL = "http://127.0.0.1:9/v1/chat/completions"
PASSED = r"the deadline \(request_timeout=2s\) passed before the request"


@pytest.fixture
def passed_deadline() -> Iterator[Deadline]:
    """A deadline of 2 s that has already run out, current for the test."""
    deadline = Deadline(2)
    deadline.expires_at = time.monotonic() - 0.001
    token = current_deadline.set(deadline)
    yield deadline
    current_deadline.reset(token)


def test_deadline_remaining_and_restart() -> None:
    deadline = Deadline(5)
    assert 4.9 < deadline.remaining() <= 5
    deadline.expires_at -= 10
    assert deadline.remaining() < 0
    deadline.restart()  # a stream's next chunk gets the full time again
    assert 4.9 < deadline.remaining() <= 5
    assert current_deadline.get() is None  # none unless a call sets one


def test_a_deadline_is_the_current_one_for_its_block_counted_from_its_start() -> None:
    deadline = Deadline(5)
    deadline.expires_at -= 10  # made long before the call: its time starts with the block
    with deadline as entered:
        assert entered is deadline and current_deadline.get() is deadline
        assert 4.9 < deadline.remaining() <= 5
    assert current_deadline.get() is None


LIBS = pytest.mark.parametrize("lib", HTTPX_LIBS, ids=lambda lib: lib.__name__)


@LIBS
def test_the_sync_transport_fails_before_connecting(passed_deadline: Deadline, lib: Any) -> None:
    transport = ProviderHttp(timeout=None, lib=lib)
    with pytest.raises(lib.ConnectTimeout, match=PASSED):  # the library's own error
        transport.handle_request(lib.Request("POST", URL))


@LIBS
async def test_the_async_transport_fails_before_connecting(
    passed_deadline: Deadline, lib: Any
) -> None:
    transport = ProviderHttp(timeout=None, lib=lib)
    with pytest.raises(lib.ConnectTimeout, match=PASSED):
        await transport.handle_async_request(lib.Request("POST", URL))
    await transport.aclose()


@LIBS
async def test_async_connections_run_on_asyncio_streams(lib: Any) -> None:
    """Pins httpx's private ``_pool`` and httpcore's ``_network_backend``: where they
    moved, the pools keep httpcore's own (anyio) backend and this fails."""
    transport = ProviderHttp(timeout=None, lib=lib)
    pool = transport._pool(asyncio.get_running_loop())
    assert isinstance(pool._pool._network_backend, _AsyncioBackend)
    await transport.aclose()


async def one_reply_server(
    replies: list[bytes], *, close_after: bool, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.Server, list[int]]:
    """A server that answers each request on a connection with the next of ``replies``
    (closing the connection after each when ``close_after``); the list counts its
    connections."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        with suppress(asyncio.IncompleteReadError, ConnectionError):  # the client left
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(replies.pop(0))
                await writer.drain()
                if close_after:
                    break
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls), connections


def reply(text: str) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(text)}\r\n\r\n{text}".encode()


@pytest.mark.live_local
@LIBS
@pytest.mark.parametrize("close_after", [False, True], ids=["kept", "closed by the server"])
async def test_an_idle_connection_is_reused_unless_the_server_closed_it(
    lib: Any, close_after: bool
) -> None:
    server, connections = await one_reply_server(
        [reply("one"), reply("two")], close_after=close_after
    )
    port = server.sockets[0].getsockname()[1]
    client = ProviderHttp(timeout=5, lib=lib).async_client()
    try:
        first = await client.get(f"http://127.0.0.1:{port}/")
        await asyncio.sleep(0.05)  # the server's close, if any, arrives
        second = await client.get(f"http://127.0.0.1:{port}/")
    finally:
        await client.aclose()
        server.close()
    assert (first.text, second.text) == ("one", "two")
    assert len(connections) == (2 if close_after else 1)


@contextmanager
def one_reply_server_in_a_thread(replies: list[bytes]) -> Iterator[tuple[int, list[int]]]:
    """:func:`one_reply_server` closing after each reply, on its own loop in a thread: it
    closes while the test's loop is busy."""
    ready: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Server, list[int]]]
    ready = queue.Queue()

    def run() -> None:
        loop = asyncio.new_event_loop()
        server, connections = loop.run_until_complete(one_reply_server(replies, close_after=True))
        ready.put((loop, server, connections))
        loop.run_forever()
        server.close()
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    loop, server, connections = ready.get(timeout=10)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.mark.live_local
@LIBS
async def test_a_connection_closed_while_the_loop_was_busy_is_not_reused(lib: Any) -> None:
    with one_reply_server_in_a_thread([reply("one"), reply("two")]) as (port, connections):
        client = ProviderHttp(timeout=5, lib=lib).async_client()
        try:
            first = await client.get(f"http://127.0.0.1:{port}/")
            # The server's close arrives while this loop runs other work (a loaded machine).
            time.sleep(0.1)  # noqa: ASYNC251
            second = await client.get(f"http://127.0.0.1:{port}/")
        finally:
            await client.aclose()
    assert (first.text, second.text) == ("one", "two")
    assert len(connections) == 2


@pytest.fixture
def tls_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server's TLS context for 127.0.0.1, whose certificate the transports trust."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl makes the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.live_local
@LIBS
async def test_tls_on_one_kept_connection_and_an_untrusted_certificate(
    lib: Any, tls_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, connections = await one_reply_server(
        [reply("one"), reply("two")], close_after=False, tls=tls_context
    )
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    client = ProviderHttp(timeout=5, lib=lib).async_client()
    try:
        answers = [(await client.get(url)).text for _ in range(2)]
        monkeypatch.delenv("SSL_CERT_FILE")  # the system's CAs: the certificate is not trusted
        untrusted = ProviderHttp(timeout=5, lib=lib).async_client()
        with pytest.raises(lib.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.get(url)
        await untrusted.aclose()
    finally:
        await client.aclose()
        server.close()
    assert answers == ["one", "two"]
    assert len(connections) == 1  # both on one; the untrusted handshake never completed


@pytest.mark.live_local
@LIBS
async def test_a_refused_connection_is_the_library_s_connect_error(lib: Any) -> None:
    transport = ProviderHttp(timeout=None, lib=lib)
    with pytest.raises(lib.ConnectError):
        await transport.handle_async_request(lib.Request("GET", "http://127.0.0.1:9/"))
    await transport.aclose()


@LIBS
def test_provider_http_clients_use_the_transports_and_the_timeout(
    passed_deadline: Deadline, lib: Any
) -> None:
    pools = ProviderHttp(timeout=7.5, lib=lib)
    client = pools.sync_client(headers={"x-test": "1"})
    async_client = pools.async_client()
    assert isinstance(client, lib.Client) and isinstance(async_client, lib.AsyncClient)
    assert client.timeout == lib.Timeout(7.5) == async_client.timeout
    assert client.follow_redirects and async_client.follow_redirects
    assert client.headers["x-test"] == "1"
    with pytest.raises(lib.ConnectTimeout, match=PASSED):  # through the deadline transport
        client.post(URL)

    async def post() -> None:
        await async_client.post(URL)

    with pytest.raises(lib.ConnectTimeout, match=PASSED):
        asyncio.run(post())
    pools.close()  # nothing opened: nothing to release, and no error
    asyncio.run(pools.aclose())


def test_openai_wire_models_use_the_openai_sdk_s_own_httpx_and_ollama_classic_httpx() -> None:
    """openai >= 3 runs on httpx2: its models get httpx2 clients (no compatibility
    shim per call); openai 2 gets classic httpx; the ollama client needs classic httpx."""
    sdk_default = openai.DefaultAsyncHttpxClient
    expected = next(lib for lib in HTTPX_LIBS if issubclass(sdk_default, lib.AsyncClient))
    assert OPENAI_HTTPX is expected
    model = openrouter_model(Settings(openrouter_api_key=SecretStr("sk-or-v1-x")))
    assert isinstance(model.http_async_client, expected.AsyncClient)
    assert isinstance(model.http_client, expected.Client)
    ollama = ollama_model(Settings(ollama_model="llama3.2"))
    assert ollama.http_pools is not None and ollama.http_pools.lib is httpx


def test_closing_keeps_the_clients_usable(passed_deadline: Deadline) -> None:
    pools = ProviderHttp(timeout=None)
    client = pools.sync_client()
    pools.close()
    with pytest.raises(httpx.ConnectTimeout, match=PASSED):  # not "client closed"
        client.post(URL)


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
@pytest.mark.parametrize("provider", ["openrouter", "ollama", "local"])
async def test_each_model_built_with_its_own_clients_honours_the_deadline(
    passed_deadline: Deadline, provider: str, mode: str
) -> None:
    model: ProviderBoundary
    if provider == "openrouter":
        model = openrouter_model(Settings(openrouter_api_key=SecretStr("sk-or-v1-x")))
    elif provider == "ollama":
        model = ollama_model(Settings(ollama_model="llama3.2"))
    else:
        model = LocalChatModel(
            model="m", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k"), max_retries=0
        )
    assert model.http_pools is not None
    with pytest.raises(ProviderUnavailableError) as caught:
        if mode == "invoke":
            model.invoke("hi")
        elif mode == "ainvoke":
            await model.ainvoke("hi")
        elif mode == "stream":
            list(model.stream("hi"))
        else:
            _ = [chunk async for chunk in model.astream("hi")]
    error = caught.value
    assert error.message == (
        "request timed out: the deadline (request_timeout=2s) passed before the request"
    )
    assert (error.provider, error.retryable) == (provider, True)


async def test_a_closed_model_stays_usable(passed_deadline: Deadline) -> None:
    model = openrouter_model(Settings(openrouter_api_key=SecretStr("sk-or-v1-x")))
    model.close()
    await model.aclose()
    with pytest.raises(ProviderUnavailableError, match="deadline"):  # not "client closed"
        await model.ainvoke("hi")
    with pytest.raises(ProviderUnavailableError, match="deadline"):
        model.invoke("hi")


# --- under real use, on the loopback server (live_local) ----------------------


PROTOCOLS = ["openrouter", "ollama"]


def game24_responder(protocol: str, body: Mapping[str, Any]) -> str:
    return scripted_game24_reply(last_user_text(body))


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(responder=game24_responder, max_hang=10) as live:
        yield live


def backend_for(server: LoopbackServer, provider: str, **changes: Any) -> LangChainBackend:
    return LangChainBackend(build_chat_model(loopback_settings(server, **changes), [provider]))


async def collect(backend: LangChainBackend, prompt: str) -> str:
    return "".join([part async for part in backend.stream(prompt)])


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.live_local
@pytest.mark.parametrize("provider", PROTOCOLS)
def test_successive_event_loops_share_one_backend(server: LoopbackServer, provider: str) -> None:
    backend = backend_for(server, provider)
    answers = [asyncio.run(backend.generate(f"loop {i}")) for i in range(3)]
    answers += [asyncio.run(collect(backend, f"stream {i}")) for i in range(3)]
    assert len(answers) == 6 and all(answers)
    assert server.request_count(provider) == 6  # type: ignore[arg-type]


@pytest.mark.live_local
@pytest.mark.parametrize("provider", PROTOCOLS)
def test_threads_each_with_their_own_loops(server: LoopbackServer, provider: str) -> None:
    backend = backend_for(server, provider, request_timeout=10)
    failures: list[BaseException] = []
    slowest: list[float] = []

    def worker() -> None:
        for i in range(5):
            started = time.perf_counter()
            try:
                asyncio.run(backend.generate(f"thread call {i}"))
            except BaseException as exc:
                failures.append(exc)
            slowest.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)  # nothing hung
    assert failures == []
    assert len(slowest) == 40
    assert server.request_count(provider) == 40  # type: ignore[arg-type]


@pytest.mark.live_local
def test_solve_sync_and_engine_invoke_twice(server: LoopbackServer) -> None:
    settings = loopback_settings(server, max_retries=0)
    agent = asyncio.run(
        AgentFactory(settings).create_agent(
            "reasoning",
            custom_config={"provider": "openrouter", "task": "game24", "n_select_sample": 1},
        )
    )
    assert isinstance(agent, ReasoningAgent)
    assert agent.solve_sync("4 9 10 13").solved
    assert agent.solve_sync("1 1 4 6").solved
    assert agent.engine.invoke("4 9 10 13").solved
    assert agent.engine.invoke({"problem": "1 1 4 6"}).solved


@pytest.mark.live_local
@pytest.mark.parametrize("provider", PROTOCOLS)
@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
def test_a_dripping_reply_ends_at_the_deadline(
    server: LoopbackServer, provider: str, mode: str
) -> None:
    """One byte every 0.1 s: each read succeeds, yet the call ends within 1.5 s."""
    server.script(provider, [Fault.drip(0.1)] * 3)  # type: ignore[arg-type]
    chain = build_chat_model(loopback_settings(server, request_timeout=1), [provider])

    async def astream() -> None:
        async for _ in chain.astream("drip please"):
            pass

    calls: dict[str, Callable[[], object]] = {
        "invoke": lambda: chain.invoke("drip please"),
        "ainvoke": lambda: asyncio.run(chain.ainvoke("drip please")),
        "stream": lambda: list(chain.stream("drip please")),
        "astream": lambda: asyncio.run(astream()),
    }
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailableError, match=r"timed out|deadline"):
        calls[mode]()
    assert time.perf_counter() - started < 1.5


@pytest.mark.live_local
@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_a_slow_error_then_a_hang_costs_one_deadline(
    server: LoopbackServer, provider: str
) -> None:
    """A 503 after 1.8 s, then a hang: the retry gets what is left of the 2 s, not 2 s more."""
    server.script(provider, [Fault.status(503, delay=1.8), Fault.hang(8)])  # type: ignore[arg-type]
    backend = backend_for(server, provider, request_timeout=2, retry_initial_wait=0.05)
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailableError):
        await backend.generate("slow then hung")
    assert time.perf_counter() - started < 2.4


@pytest.mark.live_local
@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_a_stream_gets_the_deadline_for_each_gap_not_for_the_whole_reply(
    provider: str,
) -> None:
    """Ten chunks 0.3 s apart (3 s in all) with request_timeout=1 stream to the end."""
    with LoopbackServer(chunk_delay=0.3) as slow:
        backend = backend_for(slow, provider, request_timeout=1, max_retries=0)
        started = time.perf_counter()
        text = await collect(backend, "one two three four five six seven eight nine ten")
        assert time.perf_counter() - started > 1.5
        assert text.endswith("ten")


@pytest.mark.live_local
@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_aclose_returns_descriptors_to_the_baseline(
    server: LoopbackServer, provider: str
) -> None:
    backend = backend_for(server, provider)
    await backend.generate("warm up")  # imports, lazily created objects
    await backend.aclose()
    gc.collect()
    baseline = open_descriptors()
    await asyncio.gather(*(backend.generate(f"burst {i}") for i in range(200)))
    assert open_descriptors() > baseline  # the pool really holds connections
    await backend.aclose()
    await asyncio.sleep(0.05)
    assert open_descriptors() <= baseline
    assert await backend.generate("after close")  # still usable


@pytest.mark.live_local
@pytest.mark.parametrize("provider", PROTOCOLS)
def test_chain_and_backend_are_context_managers(server: LoopbackServer, provider: str) -> None:
    with build_chat_model(loopback_settings(server), [provider]) as chain:
        assert chain.invoke("sync").content

    async def use() -> str:
        async with backend_for(server, provider) as backend:
            return await backend.generate("async")

    assert asyncio.run(use())
