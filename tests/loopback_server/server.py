"""Loopback HTTP server speaking Ollama's native API and OpenRouter's chat API.

Standard library only. One thread per connection (``ThreadingHTTPServer``),
HTTP/1.1 keep-alive, Content-Length for plain bodies and chunked transfer
encoding for streams.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Literal, NoReturn
from urllib.parse import parse_qs

from .answers import (
    Answer,
    Responder,
    build_answer,
    echo_responder,
    marked_prefixes,
    split_surrogates,
)
from .catalogs import (
    default_openrouter_catalog,
    normalize_openrouter_entry,
    ollama_details,
    ollama_full_name,
    ollama_tag_entry,
)
from .faults import Fault

Protocol = Literal["openrouter", "ollama"]
PROTOCOLS: tuple[Protocol, ...] = ("openrouter", "ollama")

OPENROUTER_PREFIX = "/api/v1"
OLLAMA_VERSION = "0.6.0"
KEEPALIVE_COMMENT = b": OPENROUTER PROCESSING\n\n"

_OPENROUTER_MESSAGES: dict[int, str] = {
    400: "Bad Request",
    401: "No auth credentials found",
    402: "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
    403: "Your input was flagged by moderation",
    404: "Not Found",
    408: "Request timed out",
    429: "Rate limit exceeded",
    500: "Internal Server Error",
    502: "Provider returned error",
    503: "No endpoints found that can handle the requested parameters",
}
_OK = Fault.ok()


@dataclass(frozen=True)
class RecordedRequest:
    """One chat request as the server received it."""

    protocol: Protocol
    method: str
    path: str
    headers: dict[str, str]  # lower-case keys
    body: bytes
    json: Any  # parsed body, or None when it was not JSON
    client: tuple[str, int]  # (host, port): same port == same (kept-alive) connection
    fault: str | None  # fault kind applied; None for non-chat requests and 400/401 rejections
    received_at: float  # time.time()


@dataclass(frozen=True)
class _Generation:
    id: str
    model: str
    provider_name: str
    total_cost: float
    native_tokens_prompt: int
    native_tokens_completion: int
    latency_ms: int
    streamed: bool
    finish_reason: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "total_cost": self.total_cost,
            "created_at": self.created_at,
            "model": self.model,
            "origin": "",
            "usage": self.total_cost,
            "is_byok": False,
            "upstream_id": f"loopback-{self.id}",
            "cache_discount": None,
            "app_id": None,
            "streamed": self.streamed,
            "cancelled": False,
            "provider_name": self.provider_name,
            "latency": self.latency_ms,
            "moderation_latency": None,
            "generation_time": self.latency_ms,
            "finish_reason": self.finish_reason,
            "native_finish_reason": self.finish_reason,
            "tokens_prompt": self.native_tokens_prompt,
            "tokens_completion": self.native_tokens_completion,
            "native_tokens_prompt": self.native_tokens_prompt,
            "native_tokens_completion": self.native_tokens_completion,
            "native_tokens_reasoning": 0,
            "native_tokens_cached": 0,
            "num_media_prompt": None,
            "num_media_completion": None,
            "num_search_results": None,
        }


class _Abort(Exception):
    """Raised inside a handler to drop the connection with an RST."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() joins handler threads itself, with a deadline
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, owner: LoopbackServer, address: tuple[str, int]) -> None:
        self.owner = owner
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._abortive: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup; skip it.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.add(conn)
            self._handler_threads.add(threading.current_thread())

    def untrack(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.discard(conn)
            self._handler_threads.discard(threading.current_thread())

    def mark_abortive(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._abortive.add(conn)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            abortive = request in self._abortive
            self._abortive.discard(request)
        if abortive:
            # No shutdown(SHUT_WR) (that would send a FIN): close with SO_LINGER 0 -> RST.
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        self.owner._note_error(f"{type(exc).__name__}: {exc}")

    def abort_connections(self) -> list[threading.Thread]:
        """Unblock every handler (reads get EOF, writes fail) and return their threads."""
        with self._conn_lock:
            conns = list(self._connections)
            threads = list(self._handler_threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return threads


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackServer/1.0"
    server: _HTTPServer

    # ----------------------------------------------------------------- plumbing
    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            with contextlib.suppress(OSError, ValueError):
                super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except _Abort:
            self.close_connection = True
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def version_string(self) -> str:
        return self.server_version

    @property
    def owner(self) -> LoopbackServer:
        return self.server.owner

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers up to the blank line
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _headers_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in self.headers.items():
            k = key.lower()
            out[k] = f"{out[k]}, {value}" if k in out else value
        return out

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
        content_length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header(
            "Content-Length", str(len(body) if content_length is None else content_length)
        )
        for key, value in headers:
            self.send_header(key, value)
        # end_headers() + write(body) in one send: one segment for small answers.
        buffer: list[bytes] = self._headers_buffer  # type: ignore[attr-defined]
        buffer.append(b"\r\n")
        if self.command != "HEAD" and body:
            buffer.append(body)
        self.flush_headers()

    def _send_json(self, status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        self._send(status, _dumps(obj), "application/json; charset=utf-8", headers)

    def _start_chunked(self, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _send_proxy_page(self, code: int) -> None:
        """An error page as a reverse proxy in front of the server sends it: HTML, not JSON."""
        page = (
            f"<html>\r\n<head><title>{code} Bad Gateway</title></head>\r\n<body>\r\n"
            f"<center><h1>{code} Bad Gateway</h1></center>\r\n"
            "<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
        )
        self._send(code, page.encode(), "text/html")

    def _drip(self, body: bytes, interval: float, headers: Iterable[tuple[str, str]] = ()) -> None:
        """A JSON reply whose body is written one byte every ``interval`` seconds."""
        self._send(200, b"", "application/json", headers, content_length=len(body))
        for index in range(len(body)):
            self.wfile.write(body[index : index + 1])
            self.wfile.flush()
            if not self._pause(interval):
                break
        self.close_connection = True

    def _drip_chunked(
        self,
        content_type: str,
        body: bytes,
        interval: float,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """A streamed reply whose bytes arrive one every ``interval`` seconds."""
        self._start_chunked(content_type, headers)
        for index in range(len(body)):
            self._chunk(body[index : index + 1])
            self.wfile.flush()
            if not self._pause(interval):
                self.close_connection = True
                return
        self._end_chunked()

    def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (capped by max_hang); False when the server is stopping."""
        if seconds <= 0:
            return not self.owner._stopping.is_set()
        return not self.owner._stopping.wait(min(seconds, self.owner.max_hang))

    # ----------------------------------------------------------------- routing
    def _dispatch(self) -> None:
        body = self._read_body()
        path, _, query = self.path.partition("?")
        is_openrouter = path == OPENROUTER_PREFIX or path.startswith(OPENROUTER_PREFIX + "/")
        chat_path = "/api/v1/chat/completions" if is_openrouter else "/api/chat"
        if not (self.command == "POST" and path == chat_path):
            # Chat requests are recorded by their handlers, with the fault applied.
            self.owner._record(
                "openrouter" if is_openrouter else "ollama", self, body, _loads(body), None, False
            )
        if is_openrouter:
            self._openrouter(path[len(OPENROUTER_PREFIX) :], query, body)
        else:
            self._ollama(path, body)

    # ----------------------------------------------------------------- OpenRouter
    def _openrouter(self, sub: str, query: str, raw: bytes) -> None:
        method = self.command
        gen_id = self.owner._new_generation_id()
        hdrs = [("X-Generation-Id", gen_id)]
        if sub == "/chat/completions":
            if method != "POST":
                self._or_error(405, "Method Not Allowed", hdrs)
            else:
                self._openrouter_chat(raw, gen_id, hdrs)
        elif sub == "/models" and method in ("GET", "HEAD"):
            self._send_json(200, {"data": self.owner.openrouter_catalog()}, hdrs)
        elif sub in ("/key", "/auth/key") and method in ("GET", "HEAD"):
            if self._authorized(hdrs):
                self._send_json(200, {"data": self.owner.key_info()}, hdrs)
        elif sub == "/generation" and method in ("GET", "HEAD"):
            if self._authorized(hdrs):
                ids = parse_qs(query).get("id", [])
                generation = self.owner._generation(ids[0]) if ids else None
                if generation is None:
                    self._or_error(404, f"Generation {ids[0] if ids else ''} not found", hdrs)
                else:
                    self._send_json(200, {"data": generation.as_dict()}, hdrs)
        else:
            self._or_error(404, "Not Found", hdrs)

    def _auth_problem(self) -> str | None:
        """The 401 message for this request's credentials, or None when accepted."""
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "No auth credentials found"
        if self.owner.api_key is not None and token != self.owner.api_key:
            return "User not found."
        return None

    def _authorized(self, hdrs: list[tuple[str, str]]) -> bool:
        problem = self._auth_problem()
        if problem is not None:
            self._or_error(401, problem, hdrs)
        return problem is None

    def _or_error(
        self,
        status: int,
        message: str,
        hdrs: list[tuple[str, str]],
        metadata: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        headers = list(hdrs)
        if retry_after is not None:
            headers.append(("Retry-After", _retry_after(retry_after)))
        self._send_json(status, _or_error_body(status, message, metadata), headers)

    def _openrouter_chat(self, raw: bytes, gen_id: str, hdrs: list[tuple[str, str]]) -> None:
        owner = self.owner
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            owner._record("openrouter", self, raw, None, None)
            self._or_error(400, "Invalid JSON body", hdrs)
            return
        if self._auth_problem() is not None:
            owner._record("openrouter", self, raw, body, None)
            self._authorized(hdrs)
            return
        fault = owner._next_fault("openrouter")
        owner._record("openrouter", self, raw, body, fault.kind)
        stream = body.get("stream") is True
        model = _served_model(body)
        created = int(time.time())
        base = {"id": gen_id, "provider": owner.provider, "model": model, "created": created}

        kind = fault.kind
        if kind == "hang":
            self._pause(fault.seconds)
            self.close_connection = True
            return
        if kind == "reset":
            self._abort()
        if kind == "status":
            if not self._pause(fault.seconds):
                self.close_connection = True
                return
            self._or_error(
                fault.code,
                fault.message or _OPENROUTER_MESSAGES.get(fault.code, f"HTTP {fault.code}"),
                hdrs,
                fault.metadata,
                fault.retry_after,
            )
            return
        if kind == "html_error":
            self._send_proxy_page(fault.code)
            return
        if kind == "malformed_json":
            if stream:
                self._start_chunked("text/event-stream", hdrs)
                self._chunk(KEEPALIVE_COMMENT)
                self._chunk(b"data: {not json\n\n")
                self._chunk(b"data: [DONE]\n\n")
                self._end_chunked()
            else:
                self._send(
                    200,
                    b'{"id": "' + gen_id.encode() + b'", "choices": [{not json',
                    "application/json",
                    hdrs,
                )
            return
        if kind in ("error_in_200", "mid_stream_error") and not stream:
            err = _or_error_body(
                fault.code, fault.message or "Provider returned error", fault.metadata
            )
            self._send_json(200, err, hdrs)
            return
        if kind == "error_in_200":
            self._start_chunked("text/event-stream", hdrs)
            self._chunk(KEEPALIVE_COMMENT)
            self._chunk(_sse(_or_stream_error(base, fault)))
            self._end_chunked()
            return

        started = time.monotonic()
        delay = owner.latency + (fault.seconds if kind == "latency" else 0.0)
        if not self._pause(delay):
            self.close_connection = True
            return
        answer = build_answer(owner.responder("openrouter", body), "openrouter", body)
        if kind == "split_surrogates":
            answer = split_surrogates(answer)

        if kind == "mid_stream_error":
            self._start_chunked("text/event-stream", hdrs)
            self._chunk(KEEPALIVE_COMMENT)
            for token in _n_tokens(answer, fault.after_chunks):
                self._chunk(_sse(_or_chunk(base, token, None)))
                self._pause(owner.chunk_delay)
            self._chunk(_sse(_or_stream_error(base, fault)))
            self._end_chunked()
            return
        if kind == "truncated_stream":
            if stream:
                self._start_chunked("text/event-stream", hdrs)
                self._chunk(KEEPALIVE_COMMENT)
                for token in _n_tokens(answer, fault.after_chunks):
                    self._chunk(_sse(_or_chunk(base, token, None)))
            else:
                full = _dumps(self._or_completion(base, answer))
                self._send(200, full[: len(full) // 2], "application/json", hdrs, len(full))
            self.close_connection = True
            return

        if kind == "drip":
            if stream:
                tokens = answer.tokens or ("",)
                events = [_sse(_or_chunk(base, token, None)) for token in tokens[:-1]]
                events.append(_sse(_or_chunk(base, tokens[-1], answer.finish_reason)))
                events.append(b"data: [DONE]\n\n")
                self._drip_chunked("text/event-stream", b"".join(events), fault.seconds, hdrs)
            else:
                self._drip(_dumps(self._or_completion(base, answer)), fault.seconds, hdrs)
            return

        # normal answer ("ok" / "latency")
        thoughts = _reasoning_tokens(body)
        cached = owner._cached_tokens(body)
        usage = owner._usage(answer, len(thoughts), cached)
        if stream:
            self._start_chunked("text/event-stream", hdrs)
            self._chunk(KEEPALIVE_COMMENT)
            for thought in thoughts:
                self._chunk(_sse(_or_reasoning_chunk(base, thought)))
            tokens = answer.tokens or ("",)
            for index, token in enumerate(tokens):
                last = index == len(tokens) - 1
                self._chunk(_sse(_or_chunk(base, token, answer.finish_reason if last else None)))
                if not last:
                    self._pause(owner.chunk_delay)
            self._chunk(
                _sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            )
            self._chunk(b"data: [DONE]\n\n")
            self._end_chunked()
        else:
            extra = [
                build_answer(owner.responder("openrouter", body), "openrouter", body)
                for _ in range(owner.choices_for(model, body) - 1)
            ]
            reply = self._or_completion(base, answer, thoughts, cached, extra)
            usage = reply["usage"]
            self._send_json(200, reply, hdrs)
        owner._store_generation(gen_id, model, answer, usage["cost"], started, stream)

    def _or_completion(
        self,
        base: Mapping[str, Any],
        answer: Answer,
        thoughts: Sequence[str] = (),
        cached_tokens: int = 0,
        more: Sequence[Answer] = (),
    ) -> dict[str, Any]:
        """A whole reply: ``answer`` and ``more`` as its choices, one usage for them all
        (completion tokens and cost summed over the choices, the prompt once)."""
        reasoning = "".join(thoughts) or None
        answers = (answer, *more)
        usage = self.owner._usage(
            replace(answer, tokens=tuple(t for a in answers for t in a.tokens)),
            len(thoughts),
            cached_tokens,
        )
        return {
            **base,
            "object": "chat.completion",
            "system_fingerprint": None,
            "choices": [
                {
                    "index": index,
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                    "native_finish_reason": answer.finish_reason,
                    "message": {
                        "role": "assistant",
                        "content": answer.content,
                        "refusal": None,
                        "reasoning": reasoning,
                        **(
                            {"reasoning_details": [_reasoning_detail(reasoning)]}
                            if reasoning
                            else {}
                        ),
                    },
                }
                for index, answer in enumerate(answers)
            ],
            "usage": usage,
        }

    def _abort(self) -> NoReturn:
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.server.mark_abortive(self.connection)
        raise _Abort

    # ----------------------------------------------------------------- Ollama
    def _ollama(self, path: str, raw: bytes) -> None:
        method = self.command
        if path == "/" and method in ("GET", "HEAD"):
            self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif path == "/api/version" and method in ("GET", "HEAD"):
            self._send_json(200, {"version": OLLAMA_VERSION})
        elif path == "/api/tags" and method in ("GET", "HEAD"):
            self._send_json(
                200, {"models": [ollama_tag_entry(n) for n in self.owner.ollama_models]}
            )
        elif path == "/api/show" and method == "POST":
            self._ollama_show(raw)
        elif path == "/api/chat" and method == "POST":
            self._ollama_chat(raw)
        else:
            self._send(404, b"404 page not found", "text/plain")

    def _ollama_show(self, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._send_json(400, {"error": "invalid JSON body"})
            return
        name = body.get("model") or body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            self._send_json(400, {"error": "model is required"})
            return
        if not self.owner._ollama_installed(name):
            self._send_json(404, {"error": f"model '{name}' not found"})
            return
        details = ollama_details(name)
        self._send_json(
            200,
            {
                "license": "",
                "modelfile": f"FROM {ollama_full_name(name)}\n",
                "parameters": 'stop "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": details,
                "model_info": {
                    "general.architecture": details["family"],
                    "general.parameter_count": 1_000_000_000,
                    f"{details['family']}.context_length": 131072,
                },
                "capabilities": ["completion"],
                "modified_at": "2025-01-01T00:00:00.000000000Z",
            },
        )

    def _ollama_chat(self, raw: bytes) -> None:
        owner = self.owner
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            owner._record("ollama", self, raw, None, None)
            self._send_json(400, {"error": "invalid JSON body"})
            return
        fault = owner._next_fault("ollama")
        owner._record("ollama", self, raw, body, fault.kind)
        stream = body.get("stream", True) is not False
        model = str(body.get("model", ""))
        kind = fault.kind
        ndjson = "application/x-ndjson"

        if kind == "hang":
            self._pause(fault.seconds)
            self.close_connection = True
            return
        if kind == "reset":
            self._abort()
        if kind == "status":
            if not self._pause(fault.seconds):
                self.close_connection = True
                return
            if fault.code == 404 and fault.message is None:
                message = _ollama_not_found(model)
            else:
                message = fault.message or f"loopback fault: HTTP {fault.code}"
            headers = []
            if fault.retry_after is not None:
                headers.append(("Retry-After", _retry_after(fault.retry_after)))
            self._send_json(fault.code, {"error": message}, headers)
            return
        if kind == "html_error":
            self._send_proxy_page(fault.code)
            return
        if kind == "malformed_json":
            if stream:
                self._start_chunked(ndjson)
                self._chunk(b"{not json\n")
                self._end_chunked()
            else:
                self._send(
                    200,
                    b'{"model": "' + model.encode() + b'", "message": {not json',
                    "application/json",
                )
            return
        if kind in ("error_in_200", "mid_stream_error") and not stream:
            self._send_json(200, {"error": fault.message or "an error was encountered"})
            return
        if kind == "error_in_200":
            self._start_chunked(ndjson)
            self._chunk(_ndjson({"error": fault.message or "an error was encountered"}))
            self._end_chunked()
            return
        if kind in ("ok", "latency", "split_surrogates") and not owner._ollama_installed(model):
            self._send_json(404, {"error": _ollama_not_found(model)})
            return

        started = time.monotonic_ns()
        delay = owner.latency + (fault.seconds if kind == "latency" else 0.0)
        if not self._pause(delay):
            self.close_connection = True
            return
        answer = build_answer(owner.responder("ollama", body), "ollama", body)
        if kind == "split_surrogates":
            answer = split_surrogates(answer)

        if kind == "mid_stream_error":
            self._start_chunked(ndjson)
            for token in _n_tokens(answer, fault.after_chunks):
                self._chunk(_ndjson(_ollama_chunk(model, token)))
                self._pause(owner.chunk_delay)
            self._chunk(_ndjson({"error": fault.message or "an error was encountered"}))
            self._end_chunked()
            return
        if kind == "truncated_stream":
            if stream:
                self._start_chunked(ndjson)
                for token in _n_tokens(answer, fault.after_chunks):
                    self._chunk(_ndjson(_ollama_chunk(model, token)))
            else:
                full = _dumps(_ollama_final(model, answer, answer.content, started))
                self._send(200, full[: len(full) // 2], "application/json", (), len(full))
            self.close_connection = True
            return

        if kind == "drip":
            if stream:
                lines = [_ndjson(_ollama_chunk(model, token)) for token in answer.tokens]
                lines.append(_ndjson(_ollama_final(model, answer, "", started)))
                self._drip_chunked(ndjson, b"".join(lines), fault.seconds)
            else:
                final = _ollama_final(model, answer, answer.content, started)
                self._drip(_dumps(final), fault.seconds)
            return

        if stream:
            self._start_chunked(ndjson)
            for token in answer.tokens:
                self._chunk(_ndjson(_ollama_chunk(model, token)))
                self._pause(owner.chunk_delay)
            self._chunk(_ndjson(_ollama_final(model, answer, "", started)))
            self._end_chunked()
        else:
            self._send_json(200, _ollama_final(model, answer, answer.content, started))


# --------------------------------------------------------------------- helpers
def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _ndjson(obj: Any) -> bytes:
    return _dumps(obj) + b"\n"


def _retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _or_error_body(code: int, message: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata is not None:
        error["metadata"] = dict(metadata)
    return {"error": error}


def _or_stream_error(base: Mapping[str, Any], fault: Fault) -> dict[str, Any]:
    error = _or_error_body(fault.code, fault.message or "Provider returned error", fault.metadata)
    return {
        **base,
        "object": "chat.completion.chunk",
        **error,
        "choices": [
            {
                "index": 0,
                "delta": {"content": ""},
                "finish_reason": "error",
                "native_finish_reason": None,
            }
        ],
    }


def _or_chunk(base: Mapping[str, Any], token: str, finish_reason: str | None) -> dict[str, Any]:
    return {
        **base,
        "object": "chat.completion.chunk",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": token},
                "finish_reason": finish_reason,
                "native_finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
    }


def _reasoning_tokens(body: Mapping[str, Any]) -> list[str]:
    """Reasoning "tokens" for a request that asks for visible reasoning, else none."""
    config = body.get("reasoning")
    if not isinstance(config, dict) or config.get("exclude") or config.get("enabled") is False:
        return []
    messages = body.get("messages") or [{}]
    last = str(messages[-1].get("content") or "")
    return [f"Thinking about {word}. " for word in last.split()[:3]] or ["Thinking. "]


def _reasoning_detail(text: str) -> dict[str, Any]:
    return {"type": "reasoning.text", "text": text, "format": "unknown", "index": 0}


def _or_reasoning_chunk(base: Mapping[str, Any], text: str) -> dict[str, Any]:
    delta = {"role": "assistant", "content": "", "reasoning": text}
    delta["reasoning_details"] = [_reasoning_detail(text)]  # type: ignore[assignment]
    return {
        **base,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}],
    }


def _served_model(body: Mapping[str, Any]) -> str:
    models = body.get("models")
    if isinstance(models, list) and models and isinstance(models[0], str):
        return models[0]
    return str(body.get("model", ""))


def _n_tokens(answer: Answer, n: int) -> list[str]:
    """Exactly ``n`` content tokens: the answer's, padded when it is shorter."""
    tokens = list(answer.tokens[:n])
    tokens.extend(f" pad{i}" for i in range(len(tokens), n))
    return tokens


def _ollama_not_found(model: str) -> str:
    return f'model "{model}" not found, try pulling it first'


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ollama_chunk(model: str, token: str) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": _now_iso(),
        "message": {"role": "assistant", "content": token},
        "done": False,
    }


def _ollama_final(model: str, answer: Answer, content: str, started_ns: int) -> dict[str, Any]:
    total = max(time.monotonic_ns() - started_ns, 1000)
    prompt_eval = total // 4
    return {
        "model": model,
        "created_at": _now_iso(),
        "message": {"role": "assistant", "content": content},
        "done_reason": answer.finish_reason,
        "done": True,
        "total_duration": total,
        "load_duration": total // 10,
        "prompt_eval_count": answer.prompt_tokens,
        "prompt_eval_duration": prompt_eval,
        "eval_count": answer.completion_tokens,
        "eval_duration": total - prompt_eval - total // 10,
    }


# --------------------------------------------------------------------- public API
class LoopbackServer:
    """A scriptable fake of OpenRouter (``/api/v1/...``) and Ollama (``/api/...``).

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        ollama_models: Sequence[str] = ("llama3.2:latest",),
        latency: float = 0.0,
        *,
        responder: Responder | None = None,
        provider: str = "LoopbackAI",
        price_in: float = 1e-6,
        price_out: float = 2e-6,
        models_catalog: Sequence[Mapping[str, Any]] | None = None,
        api_key: str | None = None,
        key_limit: float | None = None,
        chunk_delay: float = 0.0,
        max_hang: float = 30.0,
        port: int = 0,
        n_models: Iterable[str] = (),
    ) -> None:
        """``n_models``: the OpenRouter models whose route honours ``n`` (answers that
        many choices in a whole reply, as OpenAI does); every other model answers one
        choice whatever ``n`` says, as OpenRouter does for most routes. Ollama's API
        has no ``n``: it always answers one."""
        self.ollama_models: list[str] = [ollama_full_name(n) for n in ollama_models]
        self.latency = latency
        self.responder: Responder = responder or echo_responder
        self.provider = provider
        self.price_in = price_in
        self.price_out = price_out
        self.api_key = api_key
        self.key_limit = key_limit
        self.chunk_delay = chunk_delay
        self.max_hang = max_hang
        self.n_models = frozenset(n_models)
        self._catalog_source = models_catalog
        self._host = "127.0.0.1"  # loopback only, never another interface
        self._port = port

        self._lock = threading.Lock()
        self._scripts: dict[Protocol, deque[Fault]] = {p: deque() for p in PROTOCOLS}
        self._recorded: dict[Protocol, list[RecordedRequest]] = {p: [] for p in PROTOCOLS}
        self._all_recorded: list[RecordedRequest] = []
        self._generations: dict[str, _Generation] = {}
        self._cache_prefixes: set[str] = set()
        self._errors: list[str] = []
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> LoopbackServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer(self, (self._host, self._port))
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-server-{httpd.server_port}",
            daemon=True,
        )
        self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Release hanging handlers, stop serving, close every socket."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        deadline = time.monotonic() + timeout
        httpd.shutdown()
        httpd.server_close()
        handler_threads = httpd.abort_connections()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        for handler_thread in handler_threads:
            if handler_thread is not threading.current_thread():
                handler_thread.join(max(0.0, deadline - time.monotonic()))
        # Connections accepted while we were aborting the others.
        httpd.abort_connections()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("LoopbackServer is not running; call start() first")
        return self._httpd.server_port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def openrouter_base_url(self) -> str:
        return self.base_url + OPENROUTER_PREFIX

    @property
    def ollama_base_url(self) -> str:
        return self.base_url

    # ----------------------------------------------------------------- scripting
    def script(self, protocol: Protocol, faults: Iterable[Fault]) -> None:
        """Append faults to the protocol's queue; each chat request consumes one."""
        queue = self._scripts[_check_protocol(protocol)]
        with self._lock:
            queue.extend(faults)

    def pending(self, protocol: Protocol) -> int:
        """Faults still queued for ``protocol``."""
        with self._lock:
            return len(self._scripts[_check_protocol(protocol)])

    def requests(self, protocol: Protocol) -> list[RecordedRequest]:
        """Recorded chat requests of ``protocol``, oldest first."""
        with self._lock:
            return list(self._recorded[_check_protocol(protocol)])

    def all_requests(self) -> list[RecordedRequest]:
        """Every request of both protocols (chat and others: /models, /api/tags, ...)."""
        with self._lock:
            return list(self._all_recorded)

    def request_count(self, protocol: Protocol) -> int:
        with self._lock:
            return len(self._recorded[_check_protocol(protocol)])

    def reset(self) -> None:
        """Clear scripts, recorded requests, served generations and noted errors."""
        with self._lock:
            for protocol in PROTOCOLS:
                self._scripts[protocol].clear()
                self._recorded[protocol].clear()
            self._all_recorded.clear()
            self._generations.clear()
            self._cache_prefixes.clear()
            self._errors.clear()

    @property
    def errors(self) -> list[str]:
        """Unexpected exceptions raised inside handlers (should stay empty)."""
        with self._lock:
            return list(self._errors)

    # ----------------------------------------------------------------- catalogs
    def openrouter_catalog(self) -> list[dict[str, Any]]:
        source = self._catalog_source
        if source is None:
            source = default_openrouter_catalog(self.price_in, self.price_out)
        return [normalize_openrouter_entry(entry) for entry in source]

    def key_info(self) -> dict[str, Any]:
        with self._lock:
            usage = sum(g.total_cost for g in self._generations.values())
        limit = self.key_limit
        return {
            "label": "sk-or-v1-loo...back",
            "limit": limit,
            "limit_remaining": None if limit is None else max(limit - usage, 0.0),
            "limit_reset": None,
            "usage": usage,
            "usage_daily": usage,
            "usage_weekly": usage,
            "usage_monthly": usage,
            "is_free_tier": False,
            "is_provisioning_key": False,
            "include_byok_in_limit": False,
            "rate_limit": {"requests": -1, "interval": "10s"},
        }

    # ----------------------------------------------------------------- internals
    def _next_fault(self, protocol: Protocol) -> Fault:
        with self._lock:
            queue = self._scripts[protocol]
            return queue.popleft() if queue else _OK

    def _record(
        self,
        protocol: Protocol,
        handler: _Handler,
        raw: bytes,
        body: Any,
        fault: str | None,
        chat: bool = True,
    ) -> None:
        client = handler.client_address
        record = RecordedRequest(
            protocol=protocol,
            method=handler.command,
            path=handler.path,
            headers=handler._headers_dict(),
            body=raw,
            json=body,
            client=(str(client[0]), int(client[1])),
            fault=fault,
            received_at=time.time(),
        )
        with self._lock:
            self._all_recorded.append(record)
            if chat:
                self._recorded[protocol].append(record)

    def _new_generation_id(self) -> str:
        return f"gen-{int(time.time())}-{next(self._ids):06d}{uuid.uuid4().hex[:12]}"

    def choices_for(self, model: str, body: Mapping[str, Any]) -> int:
        """How many choices a whole OpenRouter reply to ``body`` carries (see ``n_models``)."""
        n = body.get("n")
        if model not in self.n_models or not isinstance(n, int) or isinstance(n, bool):
            return 1
        return max(1, min(n, 128))  # OpenAI's own limit on n

    def _cached_tokens(self, body: Mapping[str, Any]) -> int:
        """Prompt words served "from cache": those of each ``cache_control``-marked
        prefix this server has seen before (it is remembered on first sight)."""
        cached = 0
        with self._lock:
            for prefix in marked_prefixes(body):
                if prefix in self._cache_prefixes:
                    cached += len(prefix.split())
                else:
                    self._cache_prefixes.add(prefix)
        return cached

    def _usage(
        self, answer: Answer, reasoning_tokens: int = 0, cached_tokens: int = 0
    ) -> dict[str, Any]:
        """Usage as OpenRouter reports it; reasoning tokens bill as completion tokens.

        Cached prompt words bill at a tenth of the price; the difference is the
        ``cache_discount`` (only reported when something was cached).
        """
        completion_tokens = answer.completion_tokens + reasoning_tokens
        discount = cached_tokens * self.price_in * 0.9
        prompt_cost = answer.prompt_tokens * self.price_in - discount
        completion_cost = completion_tokens * self.price_out
        extra = {"cache_discount": discount} if cached_tokens else {}
        return {
            **extra,
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": answer.prompt_tokens + completion_tokens,
            "cost": prompt_cost + completion_cost,
            "is_byok": False,
            "prompt_tokens_details": {
                "cached_tokens": cached_tokens,
                "cache_write_tokens": 0,
                "audio_tokens": 0,
            },
            "cost_details": {
                "upstream_inference_cost": None,
                "upstream_inference_prompt_cost": prompt_cost,
                "upstream_inference_completions_cost": completion_cost,
            },
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "image_tokens": 0,
            },
        }

    def _store_generation(
        self, gen_id: str, model: str, answer: Answer, cost: float, started: float, stream: bool
    ) -> None:
        generation = _Generation(
            id=gen_id,
            model=model,
            provider_name=self.provider,
            total_cost=cost,
            native_tokens_prompt=answer.prompt_tokens,
            native_tokens_completion=answer.completion_tokens,
            latency_ms=int((time.monotonic() - started) * 1000),
            streamed=stream,
            finish_reason=answer.finish_reason,
            created_at=_now_iso(),
        )
        with self._lock:
            self._generations[gen_id] = generation

    def _generation(self, gen_id: str) -> _Generation | None:
        with self._lock:
            return self._generations.get(gen_id)

    def _ollama_installed(self, name: str) -> bool:
        return ollama_full_name(name) in self.ollama_models

    def _note_error(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)


def _check_protocol(protocol: str) -> Protocol:
    if protocol == "openrouter":
        return "openrouter"
    if protocol == "ollama":
        return "ollama"
    raise ValueError(f"protocol must be 'openrouter' or 'ollama', got {protocol!r}")
