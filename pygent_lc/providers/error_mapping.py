"""Translate openai, httpx (and httpx2) and ollama exceptions into :mod:`pygent_lc.errors`.

This is the only place that knows the SDKs' exception classes. What each
OpenRouter failure surfaces as under ``ChatOpenAI`` (openai SDK 3.x):
HTTP errors as ``openai.APIStatusError`` subclasses (402 and 408 as the bare
class), a mid-stream error event as ``openai.APIError`` with the error object
as ``body``, transport failures as ``openai.APIConnectionError``; failures while a reply's
body is read come raw from the SDK's httpx library (``httpx2`` for openai >= 3,
:data:`~pygent_lc.providers.http.OPENAI_HTTPX`), whose classes mirror httpx's. Ollama's
client raises ``ollama.ResponseError``, ``ConnectionError`` or raw ``httpx``
errors.
"""

from __future__ import annotations

import contextlib
import email.utils
import gc
import html
import json
import re
import socket
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import ollama
import openai

from pygent_lc.errors import (
    AuthenticationError,
    ContentRefusedError,
    ContextLengthError,
    InsufficientCreditsError,
    InvalidInputError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    UnsupportedRequestError,
)
from pygent_lc.providers.http import HTTPX_LIBS

# How servers say a prompt does not fit: OpenAI/OpenRouter ("maximum context length",
# "context_length_exceeded"), llama.cpp ("exceeds the available context size",
# "exceed_context_size_error"), Anthropic upstreams ("prompt is too long"), Ollama.
_CONTEXT_OVERFLOW = re.compile(
    r"context[ _]length|context[ _]size|context window|maximum context|prompt is too long"
    r"|too many tokens|exceed_context_size",
    re.IGNORECASE,
)
# How servers say they cannot do what was asked: llama.cpp answers an image or
# audio part sent to a text-only model with a 500 "image input is not supported",
# and an unknown content part with a 400 "unsupported content[].type".
_UNSUPPORTED = re.compile(
    r"\b(image|audio|video|file|pdf) input is not supported|unsupported content|not supported by",
    re.IGNORECASE,
)
# Each installed httpx library's classes of a failure (httpx2's mirror httpx's).
_STATUS_ERRORS: tuple[type[httpx.HTTPStatusError], ...] = tuple(
    L.HTTPStatusError for L in HTTPX_LIBS
)
_TIMEOUTS: tuple[type[Exception], ...] = tuple(L.TimeoutException for L in HTTPX_LIBS)
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = tuple(L.TransportError for L in HTTPX_LIBS)
_NOT_READ: tuple[type[Exception], ...] = tuple(L.ResponseNotRead for L in HTTPX_LIBS)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)

_STATUS_CLASSES: dict[int, type[ProviderError]] = {
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: ContentRefusedError,
    404: ModelNotFoundError,
    408: ProviderUnavailableError,
    429: RateLimitError,
}


def error_for_status(
    status: int | None,
    message: str,
    *,
    provider: str,
    model: str | None,
    retry_after: float | None = None,
) -> ProviderError:
    """The typed error for an HTTP status (or an error code inside a body)."""
    message = summarize_body(message)
    if status is not None and status in _STATUS_CLASSES:
        cls = _STATUS_CLASSES[status]
    elif status == 501 or (status in (400, 422, 500) and _UNSUPPORTED.search(message)):
        cls = UnsupportedRequestError
    elif status is None or status >= 500:
        cls = ProviderUnavailableError
    else:  # 400 and other client errors: asking again will not help
        cls = ProviderError
    return cls(message, provider=provider, model=model, status_code=status, retry_after=retry_after)


def error_from_body(error: object, *, provider: str, model: str | None) -> ProviderError:
    """The typed error for OpenRouter's ``{"code", "message", "metadata"}`` object.

    Used for errors inside a 200 body and for mid-stream error events: an
    upstream failed after OpenRouter accepted the request (invalid requests and
    missing credits come with a matching HTTP status instead), so it is a
    retryable ``ProviderUnavailableError`` whatever the inner code says; the
    code is kept as ``status_code``.
    """
    code: int | None = None
    message = "provider returned an error"
    if isinstance(error, Mapping):
        code = _as_status(error.get("code"))
        message = str(error.get("message") or message)
        metadata = error.get("metadata")
        if isinstance(metadata, Mapping):
            details = {k: metadata[k] for k in ("provider_name", "raw", "reasons") if k in metadata}
            if details:
                message = f"{message} ({json.dumps(details, default=str)[:300]})"
    elif isinstance(error, str) and error:
        message = error
    return ProviderUnavailableError(message, provider=provider, model=model, status_code=code)


def map_exception(
    exc: BaseException, *, provider: str, model: str | None
) -> ProviderError | InvalidInputError | None:
    """The typed error for ``exc``, or ``None`` if it is not a provider failure.

    A prompt that does not fit the model, or text that cannot be encoded, is
    the caller's input, not the provider's failure: an :class:`InvalidInputError`.
    """
    typed = _map_provider_exception(exc, provider=provider, model=model)
    if (
        isinstance(typed, ProviderError)
        and typed.status_code in (400, 413)
        and _CONTEXT_OVERFLOW.search(typed.message)
    ):
        return ContextLengthError(
            typed.message, provider=provider, model=model, status_code=typed.status_code
        )
    return typed


def _map_provider_exception(
    exc: BaseException, *, provider: str, model: str | None
) -> ProviderError | InvalidInputError | None:
    if isinstance(exc, ProviderError | InvalidInputError):
        return exc
    # Text of the request that cannot be encoded; a reply that cannot be decoded
    # (UnicodeDecodeError) is the provider's malformed reply, handled below.
    if isinstance(exc, UnicodeError) and not isinstance(exc, UnicodeDecodeError):
        reason = getattr(exc, "reason", type(exc).__name__)
        return InvalidInputError(f"the request cannot be encoded as UTF-8 ({reason})")
    context: dict[str, Any] = {"provider": provider, "model": model}
    if isinstance(exc, openai.APIStatusError):
        return error_for_status(
            exc.status_code,
            _openai_message(exc),
            retry_after=retry_after_seconds(exc.response.headers),
            **context,
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderUnavailableError(_timeout_message(exc), **context)
    if isinstance(exc, openai.APIConnectionError):
        # langchain-openai re-raises the SDK's error as its own subclass: name the transport's.
        cause: BaseException = exc
        while isinstance(cause, openai.APIConnectionError) and cause.__cause__ is not None:
            cause = cause.__cause__
        return _connection_error(cause, **context)
    if isinstance(exc, openai.APIError):  # an error event in the middle of a stream
        return error_from_body(exc.body, **context)
    if isinstance(exc, openai.LengthFinishReasonError):  # structured output cut off
        return ProviderError(
            "the reply reached max_tokens before the structured output was complete "
            "(raise max_tokens)",
            retryable=False,
            **context,
        )
    if isinstance(exc, openai.ContentFilterFinishReasonError):
        return ContentRefusedError("the reply was stopped by a content filter", **context)
    if isinstance(exc, ollama.ResponseError):
        status = exc.status_code if exc.status_code > 0 else None
        if status is None and "not found" in exc.error:
            status = 404
        # The ollama client drops the response; its headers survive on the
        # httpx error it was raised from (``from None`` keeps ``__context__``).
        http_error = exc.__context__
        retry_after = (
            retry_after_seconds(http_error.response.headers)
            if isinstance(http_error, httpx.HTTPStatusError)
            else None
        )
        return error_for_status(status, exc.error, retry_after=retry_after, **context)
    if isinstance(exc, _STATUS_ERRORS):
        return error_for_status(
            exc.response.status_code,
            exc.response.text[:300],
            retry_after=retry_after_seconds(exc.response.headers),
            **context,
        )
    if isinstance(exc, (*_TIMEOUTS, TimeoutError)):
        return ProviderUnavailableError(_timeout_message(exc), **context)
    if isinstance(exc, (*_TRANSPORT_ERRORS, ConnectionError)):
        return _connection_error(exc, **context)
    if isinstance(exc, ValueError | KeyError | TypeError):
        # The SDKs raise these when a reply cannot be parsed: a bad upstream reply.
        return ProviderUnavailableError(f"malformed response: {exc}"[:300], **context)
    return None


def summarize_body(text: str, limit: int = 500) -> str:
    """An error body fit for a message: an HTML page becomes its title, and long text is cut."""
    stripped = text.strip()
    if stripped[:200].lower().startswith(("<!doctype html", "<html")) or "</html>" in stripped:
        title = _HTML_TITLE.search(stripped)
        heading = html.unescape(title.group(1)).strip() if title else ""
        return f"HTML error page{f': {heading}' if heading else ''}"[:limit]
    return stripped[:limit] if len(stripped) > limit else stripped


def _timeout_message(exc: BaseException) -> str:
    """ "request timed out", or the deadline's own words when it was the deadline."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _TIMEOUTS) and "deadline" in str(seen):
            return f"request timed out: {seen}"
        seen = seen.__cause__ or seen.__context__
    return "request timed out"


def _connection_error(cause: BaseException, *, provider: str, model: str | None) -> ProviderError:
    """A refused connection, or a host name that does not resolve, is not retried:
    nothing listens (or nothing is there), so fall over at once."""
    if _is_unresolved(cause):
        what = "host name not found (DNS): check the host in the base URL"
        return ProviderUnavailableError(what, provider=provider, model=model, retryable=False)
    refused = _is_refused(cause)
    what = "connection refused" if refused else f"connection failed ({type(cause).__name__})"
    return ProviderUnavailableError(what, provider=provider, model=model, retryable=not refused)


#: How getaddrinfo says a name does not exist (glibc, musl, macOS, Windows).
_UNRESOLVED = (
    "name or service not known",
    "nodename nor servname",
    "no address associated with hostname",
    "name does not resolve",
    "getaddrinfo failed",
)


def _is_unresolved(exc: BaseException) -> bool:
    """Whether a failed connect never got an address: the host name did not resolve."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror) or any(
            words in str(seen).lower() for words in _UNRESOLVED
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "ConnectError" in type(seen).__name__:
            return True
        if isinstance(seen, ConnectionError) and "Failed to connect" in str(seen):
            return True  # ollama's client replaces httpx.ConnectError with this
        seen = seen.__cause__ or seen.__context__
    return False


def _openai_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])[:500]
    if isinstance(body, str) and body.strip():
        return body  # not JSON (a proxy's page): error_for_status summarises it
    with contextlib.suppress(*_NOT_READ, UnicodeDecodeError):
        if exc.response.text.strip():
            return exc.response.text
    return exc.message[:500]


def _as_status(code: object) -> int | None:
    try:
        return int(code)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


# What the walk of :func:`holds_secret` does not enter: code and namespaces (a
# function's globals reach every module) and frames (tracebacks are rendered, not walked).
_NOT_DATA = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
    types.TracebackType,
)
_MAX_WALK = 50_000


def holds_secret(root: object, secrets: Sequence[str]) -> bool:
    """Whether any object ``root`` holds, directly or not, contains one of ``secrets``.

    Walks the objects ``root`` refers to (``gc.get_referents``: attributes,
    ``args``, ``__cause__``/``__context__``, an SDK error's request and
    response, their headers), whatever the SDKs call them. A graph too large to
    walk counts as holding one: the caller then drops it.
    """
    texts = [secret for secret in secrets if secret]
    if not texts:
        return False
    encoded = [text.encode() for text in texts]
    seen: set[int] = set()
    pending: list[object] = [root]
    while pending:
        item = pending.pop()
        if id(item) in seen or isinstance(item, _NOT_DATA):
            continue
        seen.add(id(item))
        if len(seen) > _MAX_WALK:
            return True
        if isinstance(item, str):
            if any(text in item for text in texts):
                return True
        elif isinstance(item, bytes | bytearray | memoryview):
            if any(text in bytes(item) for text in encoded):
                return True
        else:
            pending.extend(gc.get_referents(item))
    return False


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
