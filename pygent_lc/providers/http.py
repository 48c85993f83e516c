"""The HTTP transport under every provider model's SDK client: one connection pool per
event loop, a :class:`Deadline` over connect, every read and the whole body, and async
connections on asyncio's streams. Why each: ARCHITECTURE.md (code map, invariants).
"""

from __future__ import annotations

import asyncio
import functools
import os
import select
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import suppress
from contextvars import ContextVar, Token
from types import ModuleType
from typing import Any, TypeVar

import httpcore
import httpx
import openai

try:  # openai >= 3 runs on httpx2; older SDKs, and the ollama client, on classic httpx
    import httpcore2
    import httpx2
    from httpx2 import AsyncByteStream as _AsyncByteStream2
    from httpx2 import SyncByteStream as _SyncByteStream2

    _CORES = {httpx: httpcore, httpx2: httpcore2}  # each httpx library installed: its httpcore
except ImportError:  # pragma: no cover - openai < 3 does not install it
    httpx2 = httpcore2 = None  # type: ignore[assignment]
    _CORES = {httpx: httpcore}

    class _SyncByteStream2:  # type: ignore[no-redef]
        """Stands in for httpx2's base class where httpx2 is not installed."""

    class _AsyncByteStream2:  # type: ignore[no-redef]
        """Stands in for httpx2's base class where httpx2 is not installed."""


T = TypeVar("T")

#: Every httpx library installed: classic httpx, and httpx2 where present.
HTTPX_LIBS: tuple[ModuleType, ...] = tuple(_CORES)

#: The httpx library the installed openai SDK is built on (its default client's).
OPENAI_HTTPX: ModuleType = (
    httpx2
    if httpx2 is not None and issubclass(openai.DefaultAsyncHttpxClient, httpx2.AsyncClient)
    else httpx
)
# openai's defaults for its own clients (openai.DefaultHttpxClient).
CONNECTION_LIMITS = {"max_connections": 1000, "max_keepalive_connections": 100}


class Deadline:
    """When a provider's part of a call must finish (monotonic clock); as a context manager,
    :data:`current_deadline` for its block, counted from the block's start."""

    __slots__ = ("_token", "expires_at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self._token: Token[Deadline | None] | None = None

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()

    def restart(self) -> None:
        """Give the next step (the next chunk of a stream) the full time again."""
        self.expires_at = time.monotonic() + self.seconds

    def __enter__(self) -> Deadline:
        self.restart()
        self._token = current_deadline.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        token, self._token = self._token, None
        if token is not None:
            with suppress(ValueError):  # exited from another context (a stream closed there)
                current_deadline.reset(token)


current_deadline: ContextVar[Deadline | None] = ContextVar("current_deadline", default=None)
"""The deadline of the provider call in progress (set by the retry policy)."""


@functools.cache
def _ssl_context(lib: ModuleType, cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """The TLS context of every pool on ``lib`` and CA settings (the variables ``lib`` reads):
    made once, not per pool, since making one loads the CA store (~50 ms)."""
    context: ssl.SSLContext = lib.create_ssl_context()
    return context


def _cap_timeouts(request: httpx.Request, deadline: Deadline, lib: ModuleType) -> None:
    remaining = deadline.remaining()
    if remaining <= 0:
        raise lib.ConnectTimeout(
            f"the deadline (request_timeout={deadline.seconds:g}s) passed before the request",
            request=request,
        )
    timeouts = dict(request.extensions.get("timeout") or {})
    for key in ("connect", "read", "write", "pool"):
        value = timeouts.get(key)
        timeouts[key] = remaining if value is None else min(value, remaining)
    request.extensions["timeout"] = timeouts


class _DeadlineBody(
    httpx.SyncByteStream, httpx.AsyncByteStream, _SyncByteStream2, _AsyncByteStream2
):
    """A response body (sync or async) that must arrive by ``deadline``: checked after
    each part, as a server dripping a byte at a time trips no read timeout."""

    def __init__(self, inner: Any, request: Any, deadline: Deadline, lib: ModuleType) -> None:
        self._inner, self._request, self._deadline, self._lib = inner, request, deadline, lib

    def _on_time(self, part: bytes) -> bytes:
        if self._deadline.remaining() <= 0:
            raise self._lib.ReadTimeout(
                f"no reply within the deadline (request_timeout={self._deadline.seconds:g}s)",
                request=self._request,
            )
        return part

    def __iter__(self) -> Iterator[bytes]:
        return map(self._on_time, self._inner)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            yield self._on_time(part)

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _AsyncioStream:
    """An httpcore network stream on asyncio's; it raises ``core``'s errors (httpcore or 2)."""

    def __init__(self, core: ModuleType, reader: asyncio.StreamReader, writer: Any) -> None:
        self._core, self._reader, self._writer = core, reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        core = self._core
        return await _io(self._reader.read(max_bytes), timeout, core.ReadTimeout, core.ReadError)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if buffer:
            self._writer.write(buffer)
            await _io(self._writer.drain(), timeout, self._core.WriteTimeout, self._core.WriteError)

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> _AsyncioStream:
        tls = self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        await _io(tls, timeout, self._core.ConnectTimeout, self._core.ConnectError)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle connection the server closed: not reused
            if self._reader.at_eof() or self._reader.exception() is not None:
                return True
            # The loop may not have read the close yet (a busy machine): ask the socket.
            sock = self._writer.get_extra_info("socket")
            return sock is None or sock.fileno() < 0 or _has_input(sock.fileno())
        names = {"client_addr": "sockname", "server_addr": "peername"}
        return self._writer.get_extra_info(names.get(info, info))


def _has_input(fd: int) -> bool:
    if not hasattr(select, "poll"):  # Windows, whose select() takes any descriptor
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _AsyncioBackend:
    def __init__(self, core: ModuleType) -> None:
        self._core = core

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> _AsyncioStream:
        opening = asyncio.open_connection(
            host,
            port,
            local_addr=None if local_address is None else (local_address, 0),
            # No race for an IP literal: asyncio's costs ~4 KiB a connection even for one address.
            happy_eyeballs_delay=None if ":" in host or host.replace(".", "").isdigit() else 0.25,
        )
        core = self._core
        reader, writer = await _io(opening, timeout, core.ConnectTimeout, core.ConnectError)
        for option in socket_options or ():
            writer.get_extra_info("socket").setsockopt(*option)
        return _AsyncioStream(core, reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _io(step: Awaitable[T], seconds: float | None, timed_out: type, failed: type) -> T:
    """Await ``step`` within ``seconds``, its failures as httpcore's errors (as
    httpcore's ``map_exceptions`` raises them)."""
    try:
        async with asyncio.timeout(seconds):
            return await step
    except TimeoutError as exc:
        raise timed_out(exc) from exc
    except OSError as exc:
        raise failed(exc) from exc


class ProviderHttp(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """One provider model's HTTP clients and their transport: a pool for sync calls and one
    per running event loop, each request under :data:`current_deadline`; usable after closing.
    ``lib``: the SDK's httpx library (:data:`OPENAI_HTTPX` for openai)."""

    def __init__(
        self,
        timeout: float | None,
        socket_options: tuple[tuple[int, int, int], ...] = (),
        lib: ModuleType = httpx,
    ) -> None:
        self.timeout, self.socket_options, self.lib = timeout, socket_options, lib
        self._lock = threading.Lock()
        self._pools: dict[asyncio.AbstractEventLoop | None, Any] = {}  # None: the sync pool

    def sync_client(self, **kwargs: object) -> Any:
        return self.lib.Client(
            transport=self, timeout=self.timeout, follow_redirects=True, **kwargs
        )

    def async_client(self, **kwargs: object) -> Any:
        return self.lib.AsyncClient(
            transport=self, timeout=self.timeout, follow_redirects=True, **kwargs
        )

    def _pool(self, loop: asyncio.AbstractEventLoop | None) -> Any:
        with self._lock:
            pool = self._pools.get(loop)
            if pool is None:
                self._forget_closed_loops()
                lib = self.lib
                make = lib.HTTPTransport if loop is None else lib.AsyncHTTPTransport
                cas = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
                pool = self._pools[loop] = make(
                    verify=_ssl_context(lib, *cas),
                    limits=lib.Limits(**CONNECTION_LIMITS),
                    socket_options=self.socket_options or None,
                )
                # Private to httpx and httpcore: where either has moved, anyio's backend stays.
                core_pool: Any = getattr(pool, "_pool", None)
                if loop is not None and hasattr(core_pool, "_network_backend"):
                    core_pool._network_backend = _AsyncioBackend(_CORES[lib])
            return pool

    def _forget_closed_loops(self) -> None:  # their sockets close when collected
        for stale in [loop for loop in self._pools if loop is not None and loop.is_closed()]:
            del self._pools[stale]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = current_deadline.get()
        if deadline is not None:
            _cap_timeouts(request, deadline, self.lib)
        response: httpx.Response = self._pool(None).handle_request(request)
        if deadline is not None:
            response.stream = _DeadlineBody(response.stream, request, deadline, self.lib)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = current_deadline.get()
        pool = self._pool(asyncio.get_running_loop())
        if deadline is not None:
            _cap_timeouts(request, deadline, self.lib)
        response: httpx.Response = await pool.handle_async_request(request)
        if deadline is not None:
            response.stream = _DeadlineBody(response.stream, request, deadline, self.lib)
        return response

    def close(self) -> None:
        """Close the sync pool and drop those of closed loops."""
        with self._lock:
            self._forget_closed_loops()
            pool = self._pools.pop(None, None)
        if pool is not None:
            pool.close()

    async def aclose(self) -> None:
        """:meth:`close`, and close the running loop's pool too."""
        self.close()
        with self._lock:
            pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()
