"""openai, httpx (and httpx2) and ollama exceptions as :mod:`pygent_lc.errors`: the only module
that knows them. A mid-stream error event is an ``openai.APIError`` (the error as ``body``);
a failure while a body is read comes raw from the SDK's httpx library."""

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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

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

# How servers say a prompt does not fit: OpenAI/OpenRouter, llama.cpp ("exceeds the
# available context size", "exceed_context_size_error"), Anthropic upstreams, Ollama.
_CONTEXT_OVERFLOW = re.compile(
    r"context[ _]length|context[ _]size|context window|maximum context|prompt is too long"
    r"|too many tokens|exceed_context_size",
    re.IGNORECASE,
)
# How servers say they cannot do what was asked: llama.cpp answers an image part sent
# to a text-only model with a 500, an unknown content part with a 400.
_UNSUPPORTED = re.compile(
    r"\b(image|audio|video|file|pdf) input is not supported|unsupported content|not supported by",
    re.IGNORECASE,
)
# How getaddrinfo says a name does not exist (glibc, musl, macOS, Windows).
_UNRESOLVED = re.compile(
    r"name or service not known|nodename nor servname|no address associated with hostname"
    r"|name does not resolve|getaddrinfo failed",
    re.IGNORECASE,
)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_STATUS_ERRORS = tuple(lib.HTTPStatusError for lib in HTTPX_LIBS)
_TIMEOUTS = tuple(lib.TimeoutException for lib in HTTPX_LIBS)
_TRANSPORT_ERRORS = tuple(lib.TransportError for lib in HTTPX_LIBS)
_NOT_READ = tuple(lib.ResponseNotRead for lib in HTTPX_LIBS)

_STATUS_CLASSES: dict[int | None, type[ProviderError]] = {
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
    message = summarize_body(message)
    cls = _STATUS_CLASSES.get(status)
    unsupported = status in (400, 422, 500) and _UNSUPPORTED.search(message)
    if cls is None and (status == 501 or unsupported):
        cls = UnsupportedRequestError
    elif cls is None:  # a 400 or other client error is not retried; no status, or 5xx, is
        cls = ProviderUnavailableError if status is None or status >= 500 else ProviderError
    return cls(message, provider=provider, model=model, status_code=status, retry_after=retry_after)


def error_from_body(error: object, *, provider: str, model: str | None) -> ProviderError:
    """The typed error for OpenRouter's ``{"code", "message", "metadata"}`` object in a 200
    body or a mid-stream event: an upstream failed after OpenRouter accepted the request
    (bad requests come with their own HTTP status), so it is retryable whatever the code."""
    code: int | None = None
    message = error if isinstance(error, str) and error else "provider returned an error"
    if isinstance(error, Mapping):
        with contextlib.suppress(TypeError, ValueError):
            code = int(error.get("code"))  # type: ignore[arg-type]
        message = str(error.get("message") or message)
        metadata = error.get("metadata")
        if isinstance(metadata, Mapping):
            details = {k: metadata[k] for k in ("provider_name", "raw", "reasons") if k in metadata}
            if details:
                message = f"{message} ({json.dumps(details, default=str)[:300]})"
    return ProviderUnavailableError(message, provider=provider, model=model, status_code=code)


def map_exception(
    exc: BaseException, *, provider: str, model: str | None
) -> ProviderError | InvalidInputError | None:
    """The typed error for ``exc``, or ``None`` if it is not a provider failure. A prompt
    that does not fit, or text that cannot be encoded, is the caller's input error."""
    typed = _typed(exc, provider, model)
    if (
        isinstance(typed, ProviderError)
        and typed.status_code in (400, 413)
        and _CONTEXT_OVERFLOW.search(typed.message)
    ):
        return ContextLengthError(
            typed.message, provider=provider, model=model, status_code=typed.status_code
        )
    return typed


def _typed(
    exc: BaseException, provider: str, model: str | None
) -> ProviderError | InvalidInputError | None:
    if isinstance(exc, ProviderError | InvalidInputError):
        return exc
    # Request text that cannot be encoded (a reply that cannot be decoded: malformed, below).
    if isinstance(exc, UnicodeError) and not isinstance(exc, UnicodeDecodeError):
        reason = getattr(exc, "reason", type(exc).__name__)
        return InvalidInputError(f"the request cannot be encoded as UTF-8 ({reason})")
    where: dict[str, Any] = {"provider": provider, "model": model}
    if isinstance(exc, (openai.APIStatusError, ollama.ResponseError, *_STATUS_ERRORS)):
        return _status_error(exc, where)
    if isinstance(exc, (openai.APITimeoutError, TimeoutError, *_TIMEOUTS)):
        # With the deadline's own words when it was the deadline
        words = [f": {e}" for e in _chain(exc) if isinstance(e, _TIMEOUTS) and "deadline" in str(e)]
        return ProviderUnavailableError("request timed out" + "".join(words[:1]), **where)
    if isinstance(exc, (openai.APIConnectionError, ConnectionError, *_TRANSPORT_ERRORS)):
        return _connection_error(exc, where)
    if isinstance(exc, openai.APIError):  # an error event in the middle of a stream
        return error_from_body(exc.body, **where)
    if isinstance(exc, openai.LengthFinishReasonError):  # structured output cut off
        why = "the reply reached max_tokens before the structured output was complete"
        return ProviderError(f"{why} (raise max_tokens)", retryable=False, **where)
    if isinstance(exc, openai.ContentFilterFinishReasonError):
        return ContentRefusedError("the reply was stopped by a content filter", **where)
    if isinstance(exc, ValueError | KeyError | TypeError):
        # The SDKs raise these when a reply cannot be parsed: a bad upstream reply.
        return ProviderUnavailableError(f"malformed response: {exc}"[:300], **where)
    return None


def _status_error(exc: BaseException, where: dict[str, Any]) -> ProviderError:
    if isinstance(exc, ollama.ResponseError):
        status = exc.status_code if exc.status_code > 0 else None
        if status is None and "not found" in exc.error:
            status = 404
        # The client drops the response; its headers survive on the httpx error in ``__context__``.
        http_error = exc.__context__
        response = http_error.response if isinstance(http_error, _STATUS_ERRORS) else None
        message = exc.error
    elif isinstance(exc, openai.APIStatusError):
        response, status, message = exc.response, exc.status_code, _openai_message(exc)
    else:
        assert isinstance(exc, _STATUS_ERRORS)
        response, status, message = exc.response, exc.response.status_code, exc.response.text[:300]
    wait = None if response is None else retry_after_seconds(response.headers)
    return error_for_status(status, message, retry_after=wait, **where)


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


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes (or, where none, contexts)."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _connection_error(exc: BaseException, where: dict[str, Any]) -> ProviderError:
    """Not retried when refused or not resolved: nothing listens there, fall over at once."""
    chain = list(_chain(exc))
    if any(isinstance(e, socket.gaierror) or _UNRESOLVED.search(str(e)) for e in chain):
        what = "host name not found (DNS): check the host in the base URL"
        return ProviderUnavailableError(what, retryable=False, **where)
    refused = any(
        isinstance(e, ConnectionRefusedError)
        or "ConnectError" in type(e).__name__
        # ollama's client replaces httpx.ConnectError with this
        or (isinstance(e, ConnectionError) and "Failed to connect" in str(e))
        for e in chain
    )
    cause = exc  # langchain-openai re-raises the SDK's error as its own subclass
    while isinstance(cause, openai.APIConnectionError) and cause.__cause__ is not None:
        cause = cause.__cause__
    what = "connection refused" if refused else f"connection failed ({type(cause).__name__})"
    return ProviderUnavailableError(what, retryable=not refused, **where)


def summarize_body(text: str, limit: int = 500) -> str:
    """An error body fit for a message: an HTML page becomes its title, and long text is cut."""
    stripped = text.strip()
    if stripped[:200].lower().startswith(("<!doctype html", "<html")) or "</html>" in stripped:
        title = _HTML_TITLE.search(stripped)
        heading = html.unescape(title.group(1)).strip() if title else ""
        return f"HTML error page{f': {heading}' if heading else ''}"[:limit]
    return stripped[:limit]


# What the walk of :func:`holds_secret` does not enter: code and namespaces (a
# function's globals reach every module), frames (tracebacks are rendered, not walked).
_CODE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.CodeType)
_NOT_DATA = (type, types.ModuleType, types.FrameType, types.TracebackType, *_CODE)
_MAX_WALK = 50_000


def holds_secret(root: object, secrets: Sequence[str]) -> bool:
    """Whether anything ``root`` refers to (``gc.get_referents``: attributes, causes, an
    SDK error's request and headers) contains one of ``secrets``; a graph too large to
    walk counts as holding one."""
    texts = [secret for secret in secrets if secret]
    encoded = [text.encode() for text in texts]
    seen: set[int] = set()
    pending: list[object] = [root] if texts else []
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
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        with contextlib.suppress(TypeError, ValueError):
            return max(0.0, email.utils.parsedate_to_datetime(str(value)).timestamp() - time.time())
    return None
