"""The HTTP clients every provider model uses: loop-safe, deadline-aware, closable.

Two problems of the SDKs' default clients are fixed here, below the SDKs, so
langchain-openai, the openai SDK and the ollama client keep working unchanged:

- **Event loops.** An ``httpx.AsyncClient`` pools connections bound to the
  event loop that opened them. langchain-openai caches one client per process,
  so a second ``asyncio.run`` (or another thread's loop) reuses sockets of a
  closed loop: ``RuntimeError: Event loop is closed``, or a hang.
  :class:`LoopBoundTransport` keeps one connection pool per running loop.
- **Deadlines.** httpx timeouts apply to each read, so a server that drips a
  byte at a time never times out. A :class:`Deadline` set for the length of one
  provider's part of a call (see :mod:`pygent_lc.policy`) caps connect, every
  read and the whole body; a stream moves it forward after each chunk it
  delivers, so it bounds the time to the first token and between tokens.

The transports are built on either ``httpx`` library: classic ``httpx``, or
``httpx2`` (the API-identical successor openai >= 3 runs on), so each SDK
talks through its own stack (:data:`OPENAI_HTTPX`). Their async connections
run on asyncio's own streams (:class:`_AsyncioBackend`) rather than httpcore's
anyio backend, whose cancel scope, exception map and locks around every read
were ~8 KiB of each call in flight.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import suppress
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
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
except ImportError:  # pragma: no cover - openai < 3 does not install it
    httpx2 = httpcore2 = None  # type: ignore[assignment]

    class _SyncByteStream2:  # type: ignore[no-redef]
        """Stands in for httpx2's base class where httpx2 is not installed."""

    class _AsyncByteStream2:  # type: ignore[no-redef]
        """Stands in for httpx2's base class where httpx2 is not installed."""


T = TypeVar("T")

#: Every httpx library installed: classic httpx, and httpx2 where present.
HTTPX_LIBS: tuple[ModuleType, ...] = (httpx,) if httpx2 is None else (httpx, httpx2)

#: The httpx library the installed openai SDK is built on (its default client's).
OPENAI_HTTPX: ModuleType = (
    httpx2
    if httpx2 is not None and issubclass(openai.DefaultAsyncHttpxClient, httpx2.AsyncClient)
    else httpx
)
# openai's defaults for its own clients (openai.DefaultHttpxClient).
CONNECTION_LIMITS = {"max_connections": 1000, "max_keepalive_connections": 100}
_TIMEOUT_KEYS = ("connect", "read", "write", "pool")


class Deadline:
    """A point in time a provider's part of a call must finish by (monotonic clock).

    As a context manager it is :data:`current_deadline` for its block, counted
    from the block's start: one object per call, not a deadline and a scope.
    """

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


def _verify(lib: ModuleType) -> ssl.SSLContext:
    """The TLS context of every pool on ``lib``: made once per process (and CA
    settings), not per pool, since making one loads the CA store (~50 ms)."""
    return _ssl_context(lib, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _ssl_context(lib: ModuleType, cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    context: ssl.SSLContext = lib.create_ssl_context()
    return context


def _cap_timeouts(request: httpx.Request, deadline: Deadline, lib: ModuleType) -> None:
    """Cap the request's httpx timeouts by what is left of ``deadline``.

    A hung connect or read then times out at the deadline; a body that keeps
    dripping is cut by the check after each part (the byte streams below).
    """
    remaining = deadline.remaining()
    if remaining <= 0:
        raise lib.ConnectTimeout(
            f"the deadline (request_timeout={deadline.seconds:g}s) passed before the request",
            request=request,
        )
    timeouts = dict(request.extensions.get("timeout") or {})
    for key in _TIMEOUT_KEYS:
        value = timeouts.get(key)
        timeouts[key] = remaining if value is None else min(value, remaining)
    request.extensions["timeout"] = timeouts


def _body_expired(stream: _DeadlineStream | _AsyncDeadlineStream) -> None:
    """Raise the library's ``ReadTimeout`` once the deadline of ``stream``'s body has passed."""
    deadline = stream.deadline
    if deadline.remaining() <= 0:
        raise stream.lib.ReadTimeout(
            f"no reply within the deadline (request_timeout={deadline.seconds:g}s)",
            request=stream.request,
        )


class _DeadlineStream(httpx.SyncByteStream, _SyncByteStream2):
    """A response body that must arrive by ``deadline`` (``request`` for the error)."""

    def __init__(
        self, inner: httpx.SyncByteStream, request: Any, deadline: Deadline, lib: ModuleType
    ) -> None:
        self._inner, self.request, self.deadline, self.lib = inner, request, deadline, lib

    def __iter__(self) -> Iterator[bytes]:
        for part in self._inner:
            _body_expired(self)
            yield part

    def close(self) -> None:
        self._inner.close()


class _AsyncDeadlineStream(httpx.AsyncByteStream, _AsyncByteStream2):
    def __init__(
        self, inner: httpx.AsyncByteStream, request: Any, deadline: Deadline, lib: ModuleType
    ) -> None:
        self._inner, self.request, self.deadline, self.lib = inner, request, deadline, lib

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            _body_expired(self)
            yield part

    async def aclose(self) -> None:
        await self._inner.aclose()


SocketOptions = tuple[tuple[int, int, int], ...]


class DeadlineTransport(httpx.BaseTransport):
    """A sync transport that honours :data:`current_deadline`; closing keeps it usable.

    ``lib`` is the httpx library (``httpx`` or ``httpx2``) of the client it serves.
    """

    def __init__(self, socket_options: SocketOptions = (), lib: ModuleType = httpx) -> None:
        self._socket_options = socket_options
        self._lib = lib
        self._lock = threading.Lock()
        self._pool: httpx.HTTPTransport | None = None

    def _current_pool(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._pool is None:
                self._pool = self._lib.HTTPTransport(
                    verify=_verify(self._lib),
                    limits=self._lib.Limits(**CONNECTION_LIMITS),
                    socket_options=self._socket_options or None,
                )
            return self._pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = current_deadline.get()
        if deadline is not None:
            _cap_timeouts(request, deadline, self._lib)
        response = self._current_pool().handle_request(request)
        if deadline is not None and isinstance(response.stream, self._lib.SyncByteStream):
            response.stream = _DeadlineStream(response.stream, request, deadline, self._lib)
        return response

    def close(self) -> None:
        """Close pooled connections; the next request opens new ones."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


class _AsyncioStream:
    """An httpcore network stream on asyncio's streams; ``core`` is ``httpcore`` or
    ``httpcore2``, whose errors it raises, as its own backend would."""

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
        if info == "is_readable":  # asyncio reads ahead: the server's close is in the reader
            return self._reader.at_eof() or self._reader.exception() is not None
        names = {"client_addr": "sockname", "server_addr": "peername"}
        return self._writer.get_extra_info(names.get(info, info))


class _AsyncioBackend:
    """httpcore's network backend interface on asyncio's streams (one per httpcore library)."""

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
            # Several addresses are raced as anyio races them; one (an IP) is not:
            # asyncio's race costs ~4 KiB per connection even for one address.
            happy_eyeballs_delay=None if _is_ip(host) else 0.25,
        )
        core = self._core
        reader, writer = await _io(opening, timeout, core.ConnectTimeout, core.ConnectError)
        for option in socket_options or ():
            writer.get_extra_info("socket").setsockopt(*option)
        return _AsyncioStream(core, reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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


#: The asyncio backend of each httpx library's httpcore.
_BACKENDS = {httpx: _AsyncioBackend(httpcore)} | (
    {} if httpx2 is None else {httpx2: _AsyncioBackend(httpcore2)}
)


def _on_asyncio_streams(transport: Any, lib: ModuleType) -> Any:
    """``transport`` (``lib.AsyncHTTPTransport``) with its connections on asyncio's
    streams. Private to httpx and httpcore (the transport's ``_pool``, the pool's
    ``_network_backend``): where either has moved, the stock backend stays."""
    pool: Any = getattr(transport, "_pool", None)
    if hasattr(pool, "_network_backend") and lib in _BACKENDS:
        pool._network_backend = _BACKENDS[lib]
    return transport


class LoopBoundTransport(httpx.AsyncBaseTransport):
    """An async transport with one connection pool per running event loop.

    Pools of loops that have closed are dropped when another loop first uses
    the transport; their sockets close when they are collected. ``lib`` as for
    :class:`DeadlineTransport`.
    """

    def __init__(self, socket_options: SocketOptions = (), lib: ModuleType = httpx) -> None:
        self._socket_options = socket_options
        self._lib = lib
        self._lock = threading.Lock()
        self._pools: dict[asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport] = {}

    def _current_pool(self) -> httpx.AsyncHTTPTransport:
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.get(loop)
            if pool is None:
                self._forget_closed_loops()
                pool = self._pools[loop] = _on_asyncio_streams(
                    self._lib.AsyncHTTPTransport(
                        verify=_verify(self._lib),
                        limits=self._lib.Limits(**CONNECTION_LIMITS),
                        socket_options=self._socket_options or None,
                    ),
                    self._lib,
                )
            return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = current_deadline.get()
        pool = self._current_pool()
        if deadline is None:
            return await pool.handle_async_request(request)
        _cap_timeouts(request, deadline, self._lib)
        response = await pool.handle_async_request(request)
        if isinstance(response.stream, self._lib.AsyncByteStream):
            response.stream = _AsyncDeadlineStream(response.stream, request, deadline, self._lib)
        return response

    async def aclose(self) -> None:
        """Close the pooled connections of the running loop; the transport stays usable."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.pop(loop, None)
        if pool is not None:
            await pool.aclose()

    def forget_closed_loops(self) -> None:
        """Drop the pools of loops that have closed (their sockets close on collection)."""
        with self._lock:
            self._forget_closed_loops()

    def _forget_closed_loops(self) -> None:
        for stale in [known for known in self._pools if known.is_closed()]:
            del self._pools[stale]


@dataclass
class ProviderHttp:
    """The sync and async clients of one provider model, and how to close them.

    ``lib`` is the httpx library its SDK is built on: :data:`OPENAI_HTTPX` for
    the openai SDK, classic ``httpx`` (the default) for the ollama client.
    """

    timeout: float | None
    socket_options: SocketOptions = ()
    lib: ModuleType = httpx
    sync_transport: DeadlineTransport = field(init=False)
    async_transport: LoopBoundTransport = field(init=False)

    def __post_init__(self) -> None:
        self.sync_transport = DeadlineTransport(self.socket_options, self.lib)
        self.async_transport = LoopBoundTransport(self.socket_options, self.lib)

    def sync_client(self, **kwargs: object) -> Any:
        """A ``lib.Client`` on the sync transport (``kwargs`` as for httpx)."""
        return self.lib.Client(
            transport=self.sync_transport, timeout=self.timeout, follow_redirects=True, **kwargs
        )

    def async_client(self, **kwargs: object) -> Any:
        """A ``lib.AsyncClient`` on the loop-bound transport."""
        return self.lib.AsyncClient(
            transport=self.async_transport, timeout=self.timeout, follow_redirects=True, **kwargs
        )

    def close(self) -> None:
        """Release pooled connections opened by sync calls (async pools of closed loops too)."""
        self.sync_transport.close()
        self.async_transport.forget_closed_loops()

    async def aclose(self) -> None:
        """Release every pooled connection this process can reach from here."""
        self.close()
        await self.async_transport.aclose()
