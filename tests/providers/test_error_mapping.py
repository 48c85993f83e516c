"""``pygent_lc.providers.error_mapping``: every raw failure the SDKs raise, and its typed error.

The raw exceptions are not built by hand: each comes from the real SDK client
(openai, ollama) or from httpx, talking to an ``httpx.MockTransport`` that
answers as the server would. So a row fails when an SDK changes what it raises.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from typing import Any, cast

import httpx
import ollama
import openai
import pytest
from pydantic import BaseModel

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
from pygent_lc.limits.breaker import BREAKER_ERRORS
from pygent_lc.providers.error_mapping import (
    error_for_status,
    error_from_body,
    map_exception,
    retry_after_seconds,
    summarize_body,
)
from pygent_lc.providers.http import HTTPX_LIBS, OPENAI_HTTPX
from tests.providers.mock_http import (
    MockServer,
    Reply,
    json_reply,
    proxy_page,
    sse_reply,
    text_reply,
)

CANARY = "sk-or-v1-canary-error-mapping-000000000000000000000000000000000000"
PROVIDER, MODEL = "openrouter", "vendor/model-1"
Raw = Callable[[], BaseException]
PU = ProviderUnavailableError
NOTHING: Any = None  # replies the SDK parsed to nothing
EMPTY: dict[str, Any] = {}
# What the ollama client raises, from None, when it cannot connect (ollama._client).
OLLAMA_CANNOT_CONNECT = (
    "Failed to connect to Ollama. Please check that Ollama is downloaded, running and "
    "accessible. https://ollama.com/download"
)


# ---------------------------------------------------------------- raw errors, as raised
def openai_client(reply: Reply | BaseException) -> openai.OpenAI:
    """openai's own client, as langchain-openai builds it, on a server answering ``reply``."""
    # openai 3 annotates its own httpx fork's client; it takes httpx's, as pygent_lc passes.
    http_client: Any = httpx.Client(transport=MockServer(reply).transport)
    return openai.OpenAI(
        api_key=CANARY, base_url="http://127.0.0.1:9/v1", http_client=http_client, max_retries=0
    )


def openai_raises(reply: Reply | BaseException, *, stream: bool = False) -> Raw:
    """What ``openai``'s chat client raises when the server answers ``reply``."""

    def raised() -> BaseException:
        client = openai_client(reply)
        messages: Any = [{"role": "user", "content": "hi"}]
        try:
            if stream:
                for _ in client.chat.completions.create(model="m", messages=messages, stream=True):
                    pass
            else:
                client.chat.completions.create(model="m", messages=messages)
        except Exception as exc:
            return exc
        raise AssertionError("the client did not raise")

    return raised


class Answer(BaseModel):
    value: int


def openai_parse_raises(finish_reason: str) -> Raw:
    """What ``chat.completions.parse`` raises for a structured reply that ended early."""

    def raised() -> BaseException:
        client = openai_client(json_reply(completion('{"value": 4', finish_reason)))
        try:
            client.chat.completions.parse(
                model="m", messages=[{"role": "user", "content": "4?"}], response_format=Answer
            )
        except Exception as exc:
            return exc
        raise AssertionError("the client did not raise")

    return raised


def ollama_raises(reply: Reply | BaseException, *, stream: bool = True) -> Raw:
    """What the ``ollama`` client raises (``ChatOllama`` always streams /api/chat)."""

    def raised() -> BaseException:
        client = ollama.Client(host="http://127.0.0.1:11434", transport=MockServer(reply).transport)
        try:
            if stream:
                for _ in client.chat(model="llama3.2", messages=[], stream=True):
                    pass
            else:
                client.chat(model="llama3.2", messages=[], stream=False)
        except Exception as exc:
            return exc
        raise AssertionError("the client did not raise")

    return raised


def httpx_status_error(reply: Reply) -> Raw:
    """``response.raise_for_status()``'s error, as ``installed_ollama_models`` meets it."""

    def raised() -> BaseException:
        with httpx.Client(transport=MockServer(reply).transport) as client:
            try:
                client.get("http://127.0.0.1:11434/api/tags").raise_for_status()
            except httpx.HTTPStatusError as exc:
                return exc
        raise AssertionError("no HTTP error")

    return raised


def caught(make: Callable[[], object]) -> Raw:
    """The exception ``make`` raises (Python's own, raised for real)."""

    def raised() -> BaseException:
        try:
            make()
        except Exception as exc:
            return exc
        raise AssertionError("nothing raised")

    return raised


def completion(content: str, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "gen-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
    }


def openrouter_error(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Reply:
    """OpenRouter's (and OpenAI's) error body: ``{"error": {"code", "message", ...}}``."""
    return json_reply({"error": {"code": status, "message": message, **extra}}, status, headers)


def llamacpp_error(status: int, message: str, kind: str) -> Reply:
    """llama.cpp server's error body."""
    error = {"code": status, "message": message, "type": kind}
    if kind == "exceed_context_size_error":
        error |= {"n_prompt_tokens": 9000, "n_ctx": 8192}
    return json_reply({"error": error}, status)


def ollama_error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply({"error": message}, status, headers)


def raise_for(exc: BaseException) -> Callable[[], object]:
    def make() -> object:
        raise exc

    return make


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


# ---------------------------------------------------------------- the table
# (raw error, typed class (exactly), status_code, retryable, text the message must contain)
OVERFLOW_OPENAI = (
    "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens."
)
# fmt: off
ROWS = [
    # --- HTTP status codes through the openai SDK (OpenRouter, llama.cpp)
    pytest.param(
        openai_raises(openrouter_error(400, "Invalid value for 'temperature'")),
        ProviderError, 400, False, "Invalid value for 'temperature'", id="openai-400",
    ),
    pytest.param(
        openai_raises(openrouter_error(401, "No auth credentials found")),
        AuthenticationError, 401, False, "No auth credentials found", id="openai-401",
    ),
    pytest.param(
        openai_raises(openrouter_error(402, "Insufficient credits. Add more using ...")),
        InsufficientCreditsError, 402, False, "Insufficient credits", id="openai-402",
    ),
    pytest.param(
        openai_raises(
            openrouter_error(
                403,
                "Input was flagged",
                metadata={"reasons": ["violence"], "flagged_input": "..."},
            )
        ),
        ContentRefusedError, 403, False, "Input was flagged", id="openai-403-moderation",
    ),
    pytest.param(
        openai_raises(openrouter_error(404, "No endpoints found for vendor/model-1.")),
        ModelNotFoundError, 404, False, "No endpoints found", id="openai-404",
    ),
    pytest.param(
        openai_raises(openrouter_error(408, "Request timed out upstream")),
        PU, 408, True, "Request timed out upstream", id="openai-408",
    ),
    pytest.param(
        openai_raises(openrouter_error(409, "conflict")),
        ProviderError, 409, False, "conflict", id="openai-409-other-client-error",
    ),
    pytest.param(
        openai_raises(text_reply("Payload Too Large", 413)),
        ProviderError, 413, False, "Payload Too Large", id="openai-413-no-overflow-words",
    ),
    pytest.param(
        openai_raises(openrouter_error(422, "messages[0].role is invalid")),
        ProviderError, 422, False, "role is invalid", id="openai-422",
    ),
    pytest.param(
        openai_raises(openrouter_error(429, "Rate limit exceeded: free-models-per-min")),
        RateLimitError, 429, True, "Rate limit exceeded", id="openai-429",
    ),
    pytest.param(
        openai_raises(openrouter_error(429, "too many tokens per minute")),
        RateLimitError, 429, True, "too many tokens", id="openai-429-tokens-is-no-overflow",
    ),
    pytest.param(
        openai_raises(openrouter_error(500, "Internal Server Error")),
        PU, 500, True, "Internal Server Error", id="openai-500",
    ),
    pytest.param(
        openai_raises(openrouter_error(500, "context size exceeded")),
        PU, 500, True, "context size exceeded", id="openai-500-overflow-words-stay-5xx",
    ),
    pytest.param(
        openai_raises(openrouter_error(502, "Provider returned error")),
        PU, 502, True, "Provider returned error", id="openai-502",
    ),
    pytest.param(
        openai_raises(openrouter_error(503, "No available model provider")),
        PU, 503, True, "No available model provider", id="openai-503",
    ),
    pytest.param(
        openai_raises(Reply(504)),
        PU, 504, True, "504", id="openai-504-empty-body",
    ),
    pytest.param(
        openai_raises(text_reply("origin is unreachable", 523)),
        PU, 523, True, "origin is unreachable", id="openai-523-cloudflare",
    ),
    # --- what a server cannot do: not retried, not the provider's health
    pytest.param(
        openai_raises(llamacpp_error(500, "image input is not supported - hint: ...", "server")),
        UnsupportedRequestError, 500, False, "image input is not supported",
        id="llamacpp-500-image-unsupported",
    ),
    pytest.param(
        openai_raises(llamacpp_error(500, "audio input is not supported - hint: ...", "server")),
        UnsupportedRequestError, 500, False, "audio input is not supported",
        id="llamacpp-500-audio-unsupported",
    ),
    pytest.param(
        openai_raises(llamacpp_error(400, "unsupported content[].type", "invalid_request_error")),
        UnsupportedRequestError, 400, False, "unsupported content", id="llamacpp-400-content-type",
    ),
    pytest.param(
        openai_raises(openrouter_error(422, "tool use is not supported by this endpoint")),
        UnsupportedRequestError, 422, False, "not supported by", id="openai-422-not-supported-by",
    ),
    pytest.param(
        openai_raises(llamacpp_error(501, "This server does not support this feature", "server")),
        UnsupportedRequestError, 501, False, "does not support", id="openai-501",
    ),
    # --- the prompt does not fit: the caller's input
    pytest.param(
        openai_raises(openrouter_error(400, OVERFLOW_OPENAI)),
        ContextLengthError, 400, None, "maximum context length", id="overflow-openai-400",
    ),
    pytest.param(
        openai_raises(
            llamacpp_error(
                400,
                "the request exceeds the available context size, try increasing it",
                "exceed_context_size_error",
            )
        ),
        ContextLengthError, 400, None, "exceeds the available context size",
        id="overflow-llamacpp-400",
    ),
    pytest.param(
        openai_raises(openrouter_error(400, "prompt is too long: 210000 tokens > 200000")),
        ContextLengthError, 400, None, "prompt is too long", id="overflow-anthropic-400",
    ),
    pytest.param(
        openai_raises(openrouter_error(400, "Error: context_length_exceeded")),
        ContextLengthError, 400, None, "context_length_exceeded", id="overflow-code-400",
    ),
    pytest.param(
        openai_raises(openrouter_error(413, "Request too large: too many tokens")),
        ContextLengthError, 413, None, "too many tokens", id="overflow-413",
    ),
    pytest.param(
        openai_raises(openrouter_error(400, "input exceeds the context window")),
        ContextLengthError, 400, None, "context window", id="overflow-context-window-400",
    ),
    # --- bodies that are not the API's JSON
    pytest.param(
        openai_raises(proxy_page(502)),
        PU, 502, True, "HTML error page: 502 Bad Gateway", id="openai-502-html-page",
    ),
    pytest.param(
        openai_raises(json_reply({"error": "upstream exploded"}, 500)),
        PU, 500, True, "upstream exploded", id="openai-500-error-is-a-string",
    ),
    pytest.param(
        openai_raises(json_reply({"message": "bare message"}, 503)),
        PU, 503, True, "bare message", id="openai-503-message-without-error-object",
    ),
    pytest.param(
        openai_raises(json_reply({"detail": "Not Found"}, 404)),
        ModelNotFoundError, 404, False, '{"detail": "Not Found"}',
        id="openai-404-json-without-message",
    ),
    # --- errors inside a 200 stream (the SSE error event): an upstream failed
    pytest.param(
        openai_raises(
            sse_reply(
                [
                    {
                        "error": {
                            "code": 502,
                            "message": "Provider disconnected unexpectedly",
                            "metadata": {"provider_name": "Hyperbolic", "raw": "EOF"},
                        }
                    }
                ]
            ),
            stream=True,
        ),
        PU, 502, True, 'Provider disconnected unexpectedly ({"provider_name": "Hyperbolic"',
        id="sse-error-event",
    ),
    pytest.param(
        openai_raises(
            sse_reply([{"error": {"code": "server_error", "message": "boom"}}]), stream=True
        ),
        PU, None, True, "boom", id="sse-error-event-code-not-a-number",
    ),
    pytest.param(
        openai_raises(sse_reply([{"error": {"code": 429}}]), stream=True),
        PU, 429, True, "provider returned an error", id="sse-error-event-without-message",
    ),
    # --- structured output cut short
    pytest.param(
        openai_parse_raises("length"),
        ProviderError, None, False, "reached max_tokens", id="openai-length-finish",
    ),
    pytest.param(
        openai_parse_raises("content_filter"),
        ContentRefusedError, None, False, "content filter", id="openai-content-filter-finish",
    ),
    # --- transport failures through the openai SDK
    pytest.param(
        openai_raises(httpx.ConnectError("[Errno 111] Connection refused")),
        PU, None, False, "connection refused", id="openai-connect-refused",
    ),
    pytest.param(  # a host name that does not resolve is not "connection refused"
        openai_raises(httpx.ConnectError("[Errno -2] Name or service not known")),
        PU, None, False, "host name not found (DNS)", id="openai-dns-name-not-found",
    ),
    pytest.param(
        ollama_raises(httpx.ConnectError("[Errno -2] Name or service not known"), stream=False),
        PU, None, False, "host name not found (DNS)", id="ollama-dns-name-not-found",
    ),
    pytest.param(
        openai_raises(httpx.RemoteProtocolError("peer closed connection")),
        PU, None, True, "connection failed (RemoteProtocolError)", id="openai-reset",
    ),
    pytest.param(
        openai_raises(httpx.ReadError("[Errno 104] Connection reset by peer")),
        PU, None, True, "connection failed (ReadError)", id="openai-read-error",
    ),
    pytest.param(
        openai_raises(httpx.ReadTimeout("timed out")),
        PU, None, True, "request timed out", id="openai-read-timeout",
    ),
    pytest.param(
        openai_raises(httpx.ReadTimeout("no reply within the deadline (request_timeout=2s)")),
        PU, None, True, "request timed out: no reply within the deadline (request_timeout=2s)",
        id="openai-deadline-read",
    ),
    pytest.param(
        openai_raises(
            httpx.ConnectTimeout("the deadline (request_timeout=2s) passed before the request")
        ),
        PU, None, True, "request timed out: the deadline (request_timeout=2s) passed",
        id="openai-deadline-before-request",
    ),
    # --- Ollama's client
    pytest.param(
        ollama_raises(ollama_error(404, 'model "mistral" not found, try pulling it first')),
        ModelNotFoundError, 404, False, 'model "mistral" not found', id="ollama-404",
    ),
    pytest.param(
        ollama_raises(ollama_error(404, "model 'mistral' not found"), stream=False),
        ModelNotFoundError, 404, False, "not found", id="ollama-404-no-stream",
    ),
    pytest.param(
        ollama_raises(ollama_error(429, "server busy")),
        RateLimitError, 429, True, "server busy", id="ollama-429",
    ),
    pytest.param(
        ollama_raises(ollama_error(500, "llama runner process has terminated: signal: killed")),
        PU, 500, True, "llama runner process has terminated", id="ollama-500",
    ),
    pytest.param(
        ollama_raises(ollama_error(400, "input length exceeds the context length")),
        ContextLengthError, 400, None, "exceeds the context length", id="ollama-400-overflow",
    ),
    pytest.param(
        ollama_raises(ollama_error(400, 'invalid option "num_ctxx"')),
        ProviderError, 400, False, "invalid option", id="ollama-400",
    ),
    pytest.param(
        ollama_raises(proxy_page(502)),
        PU, 502, True, "HTML error page: 502 Bad Gateway", id="ollama-502-html-page",
    ),
    pytest.param(
        ollama_raises(Reply(200, (b'{"error": "an error was encountered while running"}\n',))),
        PU, None, True, "an error was encountered", id="ollama-error-line-in-200",
    ),
    pytest.param(
        ollama_raises(Reply(200, (b'{"error": "model \'nope\' not found"}\n',))),
        ModelNotFoundError, 404, False, "not found", id="ollama-not-found-line-in-200",
    ),
    pytest.param(
        ollama_raises(httpx.ConnectError("[Errno 111] Connection refused"), stream=False),
        PU, None, False, "connection refused", id="ollama-failed-to-connect",
    ),
    pytest.param(
        ollama_raises(httpx.ConnectError("[Errno 111] Connection refused")),
        PU, None, False, "connection refused", id="ollama-stream-connect-error",
    ),
    pytest.param(
        ollama_raises(httpx.ReadTimeout("timed out")),
        PU, None, True, "request timed out", id="ollama-read-timeout",
    ),
    pytest.param(
        ollama_raises(Reply(200, (b"{not json\n",))),
        PU, None, True, "malformed response", id="ollama-malformed-line",
    ),
    # --- raw httpx and Python errors
    pytest.param(
        httpx_status_error(text_reply("upstream down", 503)),
        PU, 503, True, "upstream down", id="httpx-status-503",
    ),
    pytest.param(
        httpx_status_error(text_reply("404 page not found", 404)),
        ModelNotFoundError, 404, False, "404 page not found", id="httpx-status-404",
    ),
    pytest.param(
        caught(raise_for(ConnectionRefusedError(111, "Connection refused"))),
        PU, None, False, "connection refused", id="connection-refused-error",
    ),
    pytest.param(
        caught(raise_for(ConnectionError(OLLAMA_CANNOT_CONNECT))),
        PU, None, False, "connection refused", id="ollama-failed-to-connect-message-alone",
    ),
    pytest.param(
        caught(raise_for(ConnectionResetError(104, "Connection reset by peer"))),
        PU, None, True, "connection failed (ConnectionResetError)", id="connection-reset-error",
    ),
    pytest.param(
        caught(raise_for(TimeoutError())),
        PU, None, True, "request timed out", id="timeout-error",
    ),
    pytest.param(
        caught(lambda: json.loads("{not json")),
        PU, None, True, "malformed response: Expecting property name", id="json-decode-error",
    ),
    pytest.param(
        caught(lambda: EMPTY["choices"]),
        PU, None, True, "malformed response: 'choices'", id="key-error",
    ),
    pytest.param(
        caught(lambda: NOTHING["choices"]),
        PU, None, True, "malformed response: 'NoneType' object is not subscriptable",
        id="type-error",
    ),
    pytest.param(
        caught(lambda: b"\xff".decode("utf-8")),
        PU, None, True, "malformed response: 'utf-8' codec can't decode",
        id="undecodable-reply-is-the-provider-s",
    ),
]
# fmt: on


@pytest.mark.parametrize(("raw", "cls", "status", "retryable", "text"), ROWS)
def test_each_raw_failure_maps_to_its_typed_error(
    raw: Raw,
    cls: type[Exception],
    status: int | None,
    retryable: bool | None,
    text: str,
) -> None:
    exc = raw()
    typed = map_exception(exc, provider=PROVIDER, model=MODEL)
    assert type(typed) is cls, f"{type(exc).__name__} -> {type(typed).__name__}: {typed}"
    assert isinstance(typed, ProviderError | ContextLengthError)
    assert text in typed.message
    assert (typed.provider, typed.model, typed.status_code) == (PROVIDER, MODEL, status)
    if isinstance(typed, ProviderError):
        assert typed.retryable is retryable
    else:  # the caller's input: never retried, not a provider failure
        assert retryable is None and isinstance(typed, InvalidInputError)
        assert not isinstance(typed, ProviderError)
    shown = f"{typed} {typed!r} {typed.message}"
    assert CANARY not in shown
    assert "Bearer" not in shown


# The same failures from each installed httpx library: openai >= 3 runs on httpx2, so
# its transports' errors (the deadline's included) and a body's mid-read errors are httpx2's.
LIB_FAILURES = [
    ("ReadTimeout", "no reply within the deadline (request_timeout=2s)",
     "request timed out: no reply within the deadline (request_timeout=2s)", True),
    ("ConnectTimeout", "timed out", "request timed out", True),
    ("RemoteProtocolError", "peer closed connection",
     "connection failed (RemoteProtocolError)", True),
    ("ConnectError", "[Errno 111] Connection refused", "connection refused", False),
    ("ConnectError", "[Errno -2] Name or service not known",
     "host name not found (DNS): check the host in the base URL", False),
]  # fmt: skip


@pytest.mark.parametrize("via", ["raw", "openai"])
@pytest.mark.parametrize(("name", "words", "text", "retryable"), LIB_FAILURES)
@pytest.mark.parametrize("lib", HTTPX_LIBS, ids=lambda lib: lib.__name__)
def test_each_httpx_library_s_failures_map_alike(
    lib: Any, name: str, words: str, text: str, retryable: bool, via: str
) -> None:
    """Raised as they are (a body's read), or by the openai SDK over a client of ``lib``."""
    error = getattr(lib, name)(words)
    if via == "openai" and lib not in (OPENAI_HTTPX, httpx):  # every SDK takes httpx's
        pytest.skip(f"this openai SDK does not take {lib.__name__} clients")
    if via == "openai":

        def fail(request: Any) -> Any:
            raise error

        http_client: Any = lib.Client(transport=lib.MockTransport(fail))
        client = openai.OpenAI(
            api_key=CANARY, base_url="http://127.0.0.1:9/v1", http_client=http_client, max_retries=0
        )
        with pytest.raises(openai.APIConnectionError) as raised:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        error = raised.value
    typed = map_exception(error, provider=PROVIDER, model=MODEL)
    assert isinstance(typed, ProviderUnavailableError)
    assert (typed.message, typed.retryable) == (text, retryable)


@pytest.mark.parametrize("lib", HTTPX_LIBS, ids=lambda lib: lib.__name__)
def test_each_httpx_library_s_status_error_maps_alike(lib: Any) -> None:
    reply = lib.Response(503, text="upstream down", headers={"Retry-After": "5"})
    reply.request = lib.Request("GET", "http://127.0.0.1:9/v1/models")
    with pytest.raises(lib.HTTPStatusError) as raised:
        reply.raise_for_status()
    typed = map_exception(raised.value, provider=PROVIDER, model=MODEL)
    assert isinstance(typed, ProviderUnavailableError)
    assert (typed.message, typed.status_code, typed.retry_after) == ("upstream down", 503, 5.0)


def test_the_table_covers_every_status_class() -> None:
    """Each class of the status table, and each fall-through, has a row above."""
    classes = {param.values[1] for param in ROWS}
    assert classes >= {
        ProviderError,
        AuthenticationError,
        InsufficientCreditsError,
        ContentRefusedError,
        ModelNotFoundError,
        RateLimitError,
        PU,
        UnsupportedRequestError,
        ContextLengthError,
    }


# ---------------------------------------------------------------- Retry-After
RETRY_AFTER = [
    pytest.param({}, None, id="absent"),
    pytest.param({"Retry-After": "7"}, 7.0, id="seconds"),
    pytest.param({"retry-after": "0.25"}, 0.25, id="fraction"),
    pytest.param({"Retry-After": "0"}, 0.0, id="zero"),
    pytest.param({"Retry-After": "-3"}, 0.0, id="negative-is-now"),
    pytest.param({"Retry-After": http_date(-3600)}, 0.0, id="http-date-past-is-now"),
    pytest.param({"Retry-After": "soon"}, None, id="garbage"),
    pytest.param({"Retry-After": ""}, None, id="empty"),
]


@pytest.mark.parametrize(("headers", "seconds"), RETRY_AFTER)
def test_retry_after_header(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(httpx.Headers(headers)) == seconds


def test_retry_after_as_an_http_date() -> None:
    waited = retry_after_seconds(httpx.Headers({"Retry-After": http_date(120)}))
    assert waited is not None
    assert 118 <= waited <= 120.5  # the date has whole seconds


# fmt: off
RETRY_AFTER_ON_ERRORS = [
    pytest.param(
        openai_raises(openrouter_error(429, "slow down", {"Retry-After": "3"})),
        RateLimitError, 3.0, id="openai-429-seconds",
    ),
    pytest.param(
        lambda: openai_raises(openrouter_error(429, "slow", {"Retry-After": http_date(60)}))(),
        RateLimitError, 60.0, id="openai-429-http-date",
    ),
    pytest.param(
        openai_raises(openrouter_error(503, "overloaded", {"Retry-After": "2"})),
        PU, 2.0, id="openai-503-seconds",
    ),
    pytest.param(
        openai_raises(openrouter_error(429, "slow")), RateLimitError, None, id="openai-429-none"
    ),
    pytest.param(
        ollama_raises(ollama_error(429, "busy", {"Retry-After": "2"})),
        RateLimitError, 2.0, id="ollama-stream-429-seconds",
    ),
    pytest.param(
        ollama_raises(ollama_error(429, "busy", {"Retry-After": "2"}), stream=False),
        RateLimitError, 2.0, id="ollama-429-seconds",
    ),
    pytest.param(
        lambda: ollama_raises(ollama_error(503, "loading", {"Retry-After": http_date(30)}))(),
        PU, 30.0, id="ollama-503-http-date",
    ),
    pytest.param(ollama_raises(ollama_error(429, "busy")), RateLimitError, None, id="ollama-none"),
    pytest.param(
        httpx_status_error(json_reply({"error": "busy"}, 503, {"Retry-After": "5"})),
        PU, 5.0, id="httpx-503-seconds",
    ),
]
# fmt: on


@pytest.mark.parametrize(("raw", "cls", "seconds"), RETRY_AFTER_ON_ERRORS)
def test_retry_after_is_read_from_the_reply_that_failed(
    raw: Raw, cls: type[ProviderError], seconds: float | None
) -> None:
    typed = map_exception(raw(), provider="ollama", model="llama3.2")
    assert type(typed) is cls
    assert isinstance(typed, ProviderError)
    if seconds is None:
        assert typed.retry_after is None
    else:
        assert typed.retry_after == pytest.approx(seconds, abs=1.5)


def test_ollama_retry_after_comes_from_the_http_error_it_was_raised_from() -> None:
    """The ollama client raises ``ResponseError(...) from None``: the response is gone,
    but the httpx error stays as ``__context__``, and its headers with it."""
    exc = ollama_raises(ollama_error(429, "busy", {"Retry-After": "4"}))()
    assert isinstance(exc, ollama.ResponseError)
    assert exc.__cause__ is None and isinstance(exc.__context__, httpx.HTTPStatusError)
    bare = ollama.ResponseError("busy", 429)  # no HTTP error behind it
    assert bare.__context__ is None
    typed = map_exception(bare, provider="ollama", model="llama3.2")
    assert isinstance(typed, RateLimitError) and typed.retry_after is None


# ---------------------------------------------------------------- error objects in a body
BODY_ERRORS = [
    pytest.param(
        {
            "code": 429,
            "message": "Provider returned error",
            "metadata": {"raw": "Too Many Requests", "provider_name": "Hyperbolic"},
        },
        429,
        'Provider returned error ({"provider_name": "Hyperbolic", "raw": "Too Many Requests"})',
        id="openrouter-upstream-error",
    ),
    pytest.param(
        {"code": 403, "message": "flagged", "metadata": {"reasons": ["hate"], "other": "x"}},
        403,
        'flagged ({"reasons": ["hate"]})',
        id="only-known-metadata-kept",
    ),
    pytest.param(
        {"code": 502, "message": "gone", "metadata": {"unrelated": 1}},
        502,
        "gone",
        id="no-known-metadata",
    ),
    pytest.param({"code": "502", "message": "m"}, 502, "m", id="code-as-text"),
    pytest.param({"code": "server_error", "message": "m"}, None, "m", id="code-not-a-number"),
    pytest.param({"message": "no code"}, None, "no code", id="no-code"),
    pytest.param({"code": 500}, 500, "provider returned an error", id="no-message"),
    pytest.param("upstream said no", None, "upstream said no", id="a-string"),
    pytest.param("", None, "provider returned an error", id="empty-string"),
    pytest.param(None, None, "provider returned an error", id="none"),
    pytest.param(["odd"], None, "provider returned an error", id="a-list"),
]


@pytest.mark.parametrize(("error", "status", "message"), BODY_ERRORS)
def test_error_objects_inside_a_body_are_retryable_outages(
    error: object, status: int | None, message: str
) -> None:
    """An error inside a 200 body (or a stream): OpenRouter accepted the request,
    an upstream failed after, so asking again can help whatever the inner code."""
    typed = error_from_body(error, provider=PROVIDER, model=MODEL)
    assert type(typed) is PU
    assert (typed.status_code, typed.message, typed.retryable) == (status, message, True)
    assert (typed.provider, typed.model) == (PROVIDER, MODEL)


def test_metadata_in_an_error_message_is_cut_short() -> None:
    typed = error_from_body(
        {"code": 502, "message": "m", "metadata": {"raw": "x" * 5000}}, provider="p", model=None
    )
    assert len(typed.message) <= len("m ()") + 300


# ---------------------------------------------------------------- statuses, directly
@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        pytest.param(None, PU, True, id="no-status"),
        pytest.param(400, ProviderError, False, id="400"),
        pytest.param(401, AuthenticationError, False, id="401"),
        pytest.param(402, InsufficientCreditsError, False, id="402"),
        pytest.param(403, ContentRefusedError, False, id="403"),
        pytest.param(404, ModelNotFoundError, False, id="404"),
        pytest.param(408, PU, True, id="408"),
        pytest.param(413, ProviderError, False, id="413"),
        pytest.param(418, ProviderError, False, id="418"),
        pytest.param(429, RateLimitError, True, id="429"),
        pytest.param(500, PU, True, id="500"),
        pytest.param(501, UnsupportedRequestError, False, id="501"),
        pytest.param(599, PU, True, id="599"),
    ],
)
def test_error_for_status(status: int | None, cls: type[ProviderError], retryable: bool) -> None:
    typed = error_for_status(status, "  why  ", provider="p", model="m", retry_after=1.5)
    assert type(typed) is cls
    assert (typed.status_code, typed.retryable, typed.retry_after) == (status, retryable, 1.5)
    assert typed.message == "why"


# ---------------------------------------------------------------- bodies in messages
PAGE = "<!DOCTYPE html><html><head><title>{}</title></head><body>{}</body></html>"
SUMMARIES = [
    pytest.param(
        PAGE.format("502 Bad Gateway", "x" * 3000),
        "HTML error page: 502 Bad Gateway",
        id="doctype-page",
    ),
    pytest.param("<html><body><h1>Oops</h1></body></html>", "HTML error page", id="no-title"),
    pytest.param(
        PAGE.format("Tom &amp; Jerry&#39;s", ""),
        "HTML error page: Tom & Jerry's",
        id="entities-unescaped",
    ),
    pytest.param(
        "\n  <HTML><TITLE>\n Gateway Timeout \n</TITLE></HTML>",
        "HTML error page: Gateway Timeout",
        id="upper-case-multiline-title",
    ),
    pytest.param("error: <b>bad</b></html>", "HTML error page", id="closing-tag-anywhere"),
    pytest.param("  plain text  ", "plain text", id="stripped"),
    pytest.param("y" * 800, "y" * 500, id="long-text-cut"),
    pytest.param("", "", id="empty"),
]


@pytest.mark.parametrize(("body", "summary"), SUMMARIES)
def test_summarize_body(body: str, summary: str) -> None:
    assert summarize_body(body) == summary


def test_summarize_body_limit() -> None:
    assert summarize_body("abcdef", limit=3) == "abc"
    assert summarize_body(PAGE.format("t" * 50, ""), limit=20) == "HTML error page: ttt"


# ---------------------------------------------------------------- the rest of map_exception
def test_typed_errors_pass_through_unchanged() -> None:
    already = RateLimitError("slow", provider="ollama", model="x", retry_after=3.0)
    assert map_exception(already, provider=PROVIDER, model=MODEL) is already
    bad_input = InvalidInputError("bad")
    assert map_exception(bad_input, provider=PROVIDER, model=MODEL) is bad_input


def test_a_typed_400_that_says_overflow_becomes_a_context_length_error() -> None:
    raised = ProviderError(OVERFLOW_OPENAI, provider="local", model="m", status_code=400)
    typed = map_exception(raised, provider=PROVIDER, model=MODEL)
    assert type(typed) is ContextLengthError
    assert (typed.provider, typed.model, typed.status_code) == (PROVIDER, MODEL, 400)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(lambda: "hi \ud800".encode(), "surrogates not allowed", id="encode"),
        pytest.param(lambda: (_ for _ in ()).throw(UnicodeError()), "UnicodeError", id="bare"),
    ],
)
def test_text_that_cannot_be_encoded_is_the_callers_input(
    make: Callable[[], object], reason: str
) -> None:
    typed = map_exception(caught(make)(), provider=PROVIDER, model=MODEL)
    assert type(typed) is InvalidInputError
    assert str(typed) == f"the request cannot be encoded as UTF-8 ({reason})"


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("a bug"), AssertionError("a bug"), ZeroDivisionError(), KeyboardInterrupt()],
    ids=["runtime-error", "assertion", "zero-division", "keyboard-interrupt"],
)
def test_what_is_no_provider_failure_is_left_alone(exc: BaseException) -> None:
    assert map_exception(exc, provider=PROVIDER, model=MODEL) is None


def test_a_long_malformed_reply_message_is_cut() -> None:
    typed = map_exception(ValueError("z" * 1000), provider=PROVIDER, model=MODEL)
    assert isinstance(typed, PU) and len(typed.message) == 300


def test_an_auth_error_does_not_echo_the_key_it_was_sent_with() -> None:
    """The request carried the key in its Authorization header; the typed error
    is built from the reply alone."""
    server = MockServer(openrouter_error(401, "User not found."))
    client = openai.OpenAI(
        api_key=CANARY,
        base_url="http://127.0.0.1:9/v1",
        http_client=cast(Any, httpx.Client(transport=server.transport)),
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    exc = raised.value
    # The key went out on the wire (seen by the server, not read from the SDK's objects).
    assert server.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    typed = map_exception(exc, provider=PROVIDER, model=MODEL)
    assert isinstance(typed, AuthenticationError)
    assert CANARY not in f"{typed} {typed!r} {vars(typed)}"


def test_what_a_server_cannot_do_is_not_held_against_its_health() -> None:
    """Unsupported requests are not retried, and a breaker does not count them."""
    unsupported = [param for param in ROWS if param.values[1] is UnsupportedRequestError]
    assert len(unsupported) >= 4
    for param in unsupported:
        raw = param.values[0]
        assert callable(raw)
        typed = map_exception(raw(), provider="local", model="m")
        assert isinstance(typed, UnsupportedRequestError) and not typed.retryable
        assert not isinstance(typed, BREAKER_ERRORS)
