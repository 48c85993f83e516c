"""Scriptable faults for :class:`LoopbackServer`.

A fault applies to the next chat request of one protocol (``"openrouter"`` or
``"ollama"``), streaming or not. Build them with the ``Fault.<name>(...)``
constructors; the dataclass fields are an implementation detail but stable
enough to assert on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal[
    "ok",
    "status",
    "error_in_200",
    "mid_stream_error",
    "malformed_json",
    "truncated_stream",
    "hang",
    "reset",
    "latency",
    "drip",
    "html_error",
    "split_surrogates",
]

DEFAULT_PROVIDER_ERROR_METADATA: dict[str, Any] = {
    "raw": "Too Many Requests",
    "provider_name": "Hyperbolic",
}


@dataclass(frozen=True)
class Fault:
    """One scripted behaviour for the next chat request of a protocol."""

    kind: FaultKind
    code: int = 200
    retry_after: float | None = None
    message: str | None = None
    metadata: dict[str, Any] | None = field(default=None)
    after_chunks: int = 0
    seconds: float = 0.0

    @classmethod
    def ok(cls) -> Fault:
        """A normal answer (a placeholder in a script)."""
        return cls(kind="ok")

    @classmethod
    def status(
        cls,
        code: int,
        retry_after: float | None = None,
        message: str | None = None,
        metadata: dict[str, Any] | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """An HTTP error with the protocol's error body (and ``Retry-After`` if given),
        sent after ``delay`` seconds."""
        if not 400 <= code <= 599:
            raise ValueError(f"status code must be 4xx or 5xx, got {code}")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        return cls(
            kind="status",
            code=code,
            retry_after=retry_after,
            message=message,
            metadata=metadata,
            seconds=delay,
        )

    @classmethod
    def error_in_200(
        cls,
        code: int = 429,
        message: str = "Provider returned error",
        metadata: dict[str, Any] | None = None,
    ) -> Fault:
        """HTTP 200 whose body (or first SSE event) is only an error object."""
        meta = dict(DEFAULT_PROVIDER_ERROR_METADATA) if metadata is None else metadata
        return cls(kind="error_in_200", code=code, message=message, metadata=meta)

    @classmethod
    def mid_stream_error(
        cls,
        after_chunks: int = 2,
        code: int = 502,
        message: str = "Provider disconnected unexpectedly",
        metadata: dict[str, Any] | None = None,
    ) -> Fault:
        """Stream N content chunks, then an error event, then end the stream."""
        if after_chunks < 0:
            raise ValueError("after_chunks must be >= 0")
        return cls(
            kind="mid_stream_error",
            code=code,
            message=message,
            metadata=metadata,
            after_chunks=after_chunks,
        )

    @classmethod
    def malformed_json(cls) -> Fault:
        """HTTP 200, JSON content type, invalid JSON (``data: {not json`` when streaming)."""
        return cls(kind="malformed_json")

    @classmethod
    def truncated_stream(cls, after_chunks: int = 2) -> Fault:
        """Send N chunks then close without the stream terminator.

        For a non-stream request: declare a Content-Length larger than what is sent.
        """
        if after_chunks < 0:
            raise ValueError("after_chunks must be >= 0")
        return cls(kind="truncated_stream", after_chunks=after_chunks)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Accept the request, send nothing for ``seconds`` (or until stop()), then close."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return cls(kind="hang", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        """Close the socket abruptly (RST) without any response."""
        return cls(kind="reset")

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """A normal answer after an extra delay of ``seconds``."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return cls(kind="latency", seconds=seconds)

    @classmethod
    def html_error(cls, code: int = 502) -> Fault:
        """An HTTP error whose body is a proxy's HTML page, not the protocol's JSON."""
        return cls(kind="html_error", code=code)

    @classmethod
    def split_surrogates(cls) -> Fault:
        """A normal answer whose characters outside the BMP (emoji) are sent as their
        two UTF-16 halves, each in its own chunk: JSON ``"\\ud83d"`` in one SSE event
        or NDJSON line, ``"\\ude00"`` in the next. (A reply is one piece when not
        streamed, where JSON joins the halves; a lone surrogate is the responder's
        to send: JSON spells it ``"\\ud800"``.)"""
        return cls(kind="split_surrogates")

    @classmethod
    def drip(cls, interval: float = 0.1) -> Fault:
        """A normal answer written one byte every ``interval`` seconds (each read succeeds)."""
        if interval <= 0:
            raise ValueError("interval must be > 0")
        return cls(kind="drip", seconds=interval)
