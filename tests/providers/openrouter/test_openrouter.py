"""``pygent_lc.providers.openrouter.model``: what goes on the wire and what comes back.

OpenRouter is answered by a scripted server on ``httpx.MockTransport`` (the
model's ``http_client``/``http_async_client``), in OpenRouter's documented
formats: usage with ``cost``, ``provider``, errors inside a 200 body and as
an SSE event in the middle of a stream.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from pydantic import BaseModel, SecretStr

from pygent_lc import Settings
from pygent_lc.errors import (
    AuthenticationError,
    ConfigurationError,
    ContentRefusedError,
    ContextLengthError,
    InsufficientCreditsError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
)
from pygent_lc.providers.openrouter.model import (
    OPENROUTER_BASE_URL,
    OpenRouterChatModel,
    openrouter_model,
    request_extras,
)
from tests.providers.mock_http import (
    MockServer,
    Mode,
    Reply,
    call,
    json_reply,
    proxy_page,
    sse_reply,
    streamed_parts,
)

KEY = "sk-or-v1-unit-0000000000000000000000000000000000000000000000000000000"
MODEL = "openai/gpt-4o-mini"
GEN = "gen-1795699262-0000014879e3f14c3d"
MODES: list[Mode] = ["invoke", "ainvoke", "stream", "astream"]
USAGE: dict[str, Any] = {
    "prompt_tokens": 12,
    "completion_tokens": 4,
    "total_tokens": 16,
    "cost": 1.1e-05,
    "is_byok": False,
    "prompt_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0, "audio_tokens": 0},
    "cost_details": {
        "upstream_inference_cost": None,
        "upstream_inference_prompt_cost": 3e-06,
        "upstream_inference_completions_cost": 8e-06,
    },
    "completion_tokens_details": {"reasoning_tokens": 3, "image_tokens": 0},
}


# ---------------------------------------------------------------- OpenRouter's replies
def base(model: str = MODEL) -> dict[str, Any]:
    return {"id": GEN, "provider": "DeepInfra", "model": model, "created": 1795699262}


def completion(
    content: str | None = "echo: one two three",
    *,
    finish_reason: str = "stop",
    usage: dict[str, Any] | None = None,
    model: str = MODEL,
    **message: Any,
) -> dict[str, Any]:
    return {
        **base(model),
        "object": "chat.completion",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "logprobs": None,
                "finish_reason": finish_reason,
                "native_finish_reason": finish_reason,
                "message": {"role": "assistant", "content": content, "refusal": None, **message},
            }
        ],
        "usage": USAGE if usage is None else usage,
    }


def chunk(content: str | None, finish_reason: str | None = None, **delta: Any) -> dict[str, Any]:
    return {
        **base(),
        "object": "chat.completion.chunk",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": content, **delta},
                "finish_reason": finish_reason,
                "native_finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
    }


def usage_chunk(usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**base(), "object": "chat.completion.chunk", "choices": [], "usage": usage or USAGE}


def error_event(
    code: int = 502, message: str = "Provider disconnected unexpectedly"
) -> dict[str, Any]:
    """OpenRouter's mid-stream error: an error object, and a choice finished with "error"."""
    return {
        **base(),
        "object": "chat.completion.chunk",
        "error": {"code": code, "message": message, "metadata": {"provider_name": "DeepInfra"}},
        "choices": [
            {
                "index": 0,
                "delta": {"content": ""},
                "finish_reason": "error",
                "native_finish_reason": None,
            }
        ],
    }


def streamed(*words: str, usage: bool = True) -> Reply:
    events = [chunk(word, "stop" if i == len(words) - 1 else None) for i, word in enumerate(words)]
    return sse_reply([*events, *([usage_chunk()] if usage else [])])


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply({"error": {"code": status, "message": message}}, status, headers)


ECHO = streamed("echo:", " one", " two", " three")


# ---------------------------------------------------------------- the model, on the wire
def settings(**values: Any) -> Settings:
    return Settings(openrouter_api_key=KEY, openrouter_model=MODEL, **values)


def model_on(wire: MockServer, **values: Any) -> OpenRouterChatModel:
    return openrouter_model(settings(**values), **wire.openai_clients())


# ---------------------------------------------------------------- request
async def test_request_line_headers_and_body(wire: MockServer) -> None:
    wire.script(json_reply(completion()))
    model = model_on(wire, app_url="https://pygent.example", app_title="PyGent Factory")
    await call(model, "invoke", temperature=0.2, max_tokens=7, stop=["\n"], top_p=0.9, seed=3)
    [request] = wire.requests
    assert (request.method, str(request.url)) == ("POST", f"{OPENROUTER_BASE_URL}/chat/completions")
    headers = request.headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["http-referer"] == "https://pygent.example"
    assert headers["x-openrouter-title"] == headers["x-title"] == "PyGent Factory"
    assert headers["x-stainless-retry-count"] == "0"  # the SDK's own retries are off
    assert headers["content-type"] == "application/json"
    body = wire.body()
    assert body["model"] == MODEL
    assert body["messages"] == [{"role": "user", "content": "one two three"}]
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.2, 7, ["\n"])
    assert (body["top_p"], body["seed"]) == (0.9, 3)
    assert body.get("stream") in (False, None)
    # OpenRouter reads max_tokens; ChatOpenAI's rename would be ignored by some upstreams.
    assert "max_completion_tokens" not in body
    assert "stream_options" not in body
    assert not {"models", "provider", "reasoning"} & body.keys()


def test_default_title_and_no_referer_without_an_app_url(wire: MockServer) -> None:
    wire.script(json_reply(completion()))
    model_on(wire).invoke("hi")
    headers = wire.requests[0].headers
    assert headers["x-title"] == headers["x-openrouter-title"] == "pygent_lc"
    assert "http-referer" not in headers
    wire.script(json_reply(completion()))
    model_on(wire, app_title=None).invoke("hi")
    assert "x-title" not in wire.requests[1].headers


def test_key_and_base_url_from_the_environment(
    wire: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", "https://gateway.example/openrouter/v1")
    wire.script(json_reply(completion()))
    OpenRouterChatModel(model=MODEL, **wire.openai_clients()).invoke("hi")
    [request] = wire.requests
    assert str(request.url) == "https://gateway.example/openrouter/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_built_directly_it_talks_to_openrouter_not_openai(
    wire: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-not-be-used")
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    wire.script(json_reply(completion()))
    OpenRouterChatModel(model=MODEL, **wire.openai_clients()).invoke("hi")
    assert str(wire.requests[0].url) == f"{OPENROUTER_BASE_URL}/chat/completions"
    assert wire.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("mode", MODES)
async def test_without_a_key_nothing_is_sent(wire: MockServer, mode: Mode) -> None:
    model = OpenRouterChatModel(model=MODEL, **wire.openai_clients())
    with pytest.raises(ConfigurationError, match="OPENROUTER_API_KEY") as caught:
        await call(model, mode)
    assert caught.value.field == "openrouter_api_key"
    assert wire.count == 0
    with pytest.raises(ConfigurationError, match="OPENROUTER_API_KEY"):
        openrouter_model(Settings())


def test_settings_extras_models_provider_and_reasoning_in_the_body(wire: MockServer) -> None:
    wire.script(json_reply(completion(model="anthropic/claude-3.5-haiku")))
    model = model_on(
        wire,
        openrouter_models=["anthropic/claude-3.5-haiku", MODEL],
        openrouter_provider={"order": ["DeepInfra"], "allow_fallbacks": False, "sort": "price"},
        openrouter_reasoning={"effort": "low"},
    )
    reply = model.invoke("hi")
    body = wire.body()
    assert body["models"] == [MODEL, "anthropic/claude-3.5-haiku"]
    assert body["provider"] == {"order": ["DeepInfra"], "allow_fallbacks": False, "sort": "price"}
    assert body["reasoning"] == {"effort": "low"}
    assert reply.response_metadata["model_name"] == "anthropic/claude-3.5-haiku"  # the one served


def test_per_call_extra_body_reaches_the_wire(wire: MockServer) -> None:
    wire.script(json_reply(completion()))
    model_on(wire).invoke("hi", extra_body={"transforms": ["middle-out"]})
    assert wire.body()["transforms"] == ["middle-out"]


class Answer(BaseModel):
    value: int


def test_structured_output_asks_for_a_schema_and_providers_that_honour_it(
    wire: MockServer,
) -> None:
    wire.script(json_reply(completion('{"value": 42}')))
    model = model_on(wire, openrouter_provider={"order": ["DeepInfra"]})
    assert model.with_structured_output(Answer).invoke("six times seven?") == Answer(value=42)
    body = wire.body()
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["properties"] == {
        "value": {"title": "Value", "type": "integer"}
    }
    assert body["provider"] == {"order": ["DeepInfra"], "require_parameters": True}
    assert model.extra_body == {"provider": {"order": ["DeepInfra"]}}  # the model is unchanged


def test_structured_output_keeps_an_explicit_require_parameters(wire: MockServer) -> None:
    wire.script(json_reply(completion('{"value": 1}')))
    model = model_on(wire, openrouter_provider={"require_parameters": False})
    model.with_structured_output(Answer).invoke("one?")
    assert wire.body()["provider"] == {"require_parameters": False}


def test_bound_tools_on_the_wire_and_the_tool_call_back(wire: MockServer) -> None:
    call_ = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "Answer", "arguments": '{"value": 3}'},
    }
    wire.script(json_reply(completion(None, finish_reason="tool_calls", tool_calls=[call_])))
    reply = model_on(wire).bind_tools([Answer], tool_choice="Answer").invoke("1+2?")
    body = wire.body()
    assert body["tools"][0]["function"]["name"] == "Answer"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "Answer"}}
    assert [(c["name"], c["args"], c["id"]) for c in reply.tool_calls] == [
        ("Answer", {"value": 3}, "call_1")
    ]


def test_reasoning_details_are_sent_back_unchanged_after_a_tool_call(wire: MockServer) -> None:
    details = [{"type": "reasoning.encrypted", "data": "opaque==", "index": 0}]
    history: list[BaseMessage] = [
        HumanMessage("What is the weather in Paris?"),
        AIMessage(
            content="",
            tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call_1"}],
            additional_kwargs={"reasoning_details": details},
        ),
        ToolMessage(content="sunny", tool_call_id="call_1"),
    ]
    wire.script(json_reply(completion()))
    model_on(wire).invoke(history)
    sent = wire.body()["messages"]
    assert sent[1]["reasoning_details"] == details
    assert "reasoning_details" not in sent[0] and "reasoning_details" not in sent[2]


# ---------------------------------------------------------------- reply
@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_reply_content_usage_cost_and_routing(wire: MockServer, mode: Mode) -> None:
    wire.script(json_reply(completion()))
    reply = await call(model_on(wire), mode)
    assert reply.content == "echo: one two three"
    usage = reply.usage_metadata
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (12, 4, 16)
    assert usage.get("input_token_details", {}).get("cache_read") == 8
    assert usage.get("output_token_details", {}).get("reasoning") == 3
    assert usage["cost"] == pytest.approx(1.1e-05)  # type: ignore[typeddict-item]
    meta = reply.response_metadata
    assert meta["generation_id"] == GEN
    assert meta["provider"] == "DeepInfra"
    assert meta["model_name"] == MODEL
    assert meta["model_provider"] == "openrouter"
    assert (meta["finish_reason"], meta["native_finish_reason"]) == ("stop", "stop")
    assert meta["cost"] == pytest.approx(1.1e-05)
    assert meta["cost_details"]["upstream_inference_prompt_cost"] == pytest.approx(3e-06)
    assert meta["is_byok"] is False


def test_reasoning_is_kept_on_the_reply(wire: MockServer) -> None:
    detail = {"type": "reasoning.text", "text": "Thinking.", "format": "unknown", "index": 0}
    wire.script(json_reply(completion("blue", reasoning="Thinking.", reasoning_details=[detail])))
    reply = model_on(wire, openrouter_reasoning={"effort": "low"}).invoke("why is the sky blue")
    assert wire.body()["reasoning"] == {"effort": "low"}
    assert reply.additional_kwargs["reasoning"] == "Thinking."
    assert reply.additional_kwargs["reasoning_details"] == [detail]


# ---------------------------------------------------------------- streams
@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_stream_merges_text_usage_and_cost_once(wire: MockServer, mode: Mode) -> None:
    wire.script(ECHO)
    merged = await call(model_on(wire), mode)
    assert merged.content == "echo: one two three"
    assert merged.usage_metadata is not None
    assert (merged.usage_metadata["input_tokens"], merged.usage_metadata["output_tokens"]) == (
        12,
        4,
    )
    meta = merged.response_metadata
    # String fields are on exactly one chunk: merged chunks would concatenate them.
    assert meta["provider"] == "DeepInfra"
    assert meta["generation_id"] == GEN
    assert meta["native_finish_reason"] == "stop"
    assert meta["cost"] == pytest.approx(1.1e-05)
    assert meta["model_provider"] == "openrouter"
    body = wire.body()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_a_stream_ends_at_done(wire: MockServer) -> None:
    events = [chunk("echo:"), chunk(" hi", "stop"), usage_chunk()]
    reply = sse_reply(events)
    late = b'data: {"choices": [{"index": 0, "delta": {"content": " late"}}]}\n\n'
    wire.script(Reply(reply.status, (*reply.parts, late), reply.headers))
    assert "".join(str(c.content) for c in model_on(wire).stream("hi")) == "echo: hi"


def test_reasoning_fragments_merge_when_streaming(wire: MockServer) -> None:
    def thought(text: str) -> dict[str, Any]:
        detail = {"type": "reasoning.text", "text": text, "format": "unknown", "index": 0}
        return chunk("", reasoning=text, reasoning_details=[detail])

    wire.script(
        sse_reply(
            [
                thought("Thinking about why. "),
                thought("Thinking about blue. "),
                chunk("echo:"),
                chunk(" blue", "stop"),
                usage_chunk(),
            ]
        )
    )
    merged = None
    for part in model_on(wire).stream("why blue"):
        merged = part if merged is None else merged + part
    assert isinstance(merged, AIMessageChunk)
    assert merged.additional_kwargs["reasoning"] == "Thinking about why. Thinking about blue. "
    [detail] = merged.additional_kwargs["reasoning_details"]  # merged by index
    assert detail["text"] == "Thinking about why. Thinking about blue. "
    assert merged.content == "echo: blue"


def test_without_stream_usage_no_usage_is_asked_for(wire: MockServer) -> None:
    wire.script(streamed("hi", usage=False))
    model = openrouter_model(settings(), stream_usage=False, **wire.openai_clients())
    assert "".join(str(c.content) for c in model.stream("hi")) == "hi"
    assert "stream_options" not in wire.body()


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_an_error_inside_a_200_body_is_a_retryable_outage(
    wire: MockServer, mode: Mode
) -> None:
    wire.script(
        json_reply(
            {
                "error": {
                    "code": 429,
                    "message": "Provider returned error",
                    "metadata": {"raw": "Too Many Requests", "provider_name": "Hyperbolic"},
                },
                "user_id": "user_1",
            }
        )
    )
    with pytest.raises(ProviderUnavailableError, match="Provider returned error") as caught:
        await call(model_on(wire), mode)
    error = caught.value
    assert type(error) is ProviderUnavailableError
    assert (error.status_code, error.retryable) == (429, True)
    assert (error.provider, error.model) == ("openrouter", MODEL)
    assert '"provider_name": "Hyperbolic"' in error.message


def test_a_200_body_without_choices_is_a_retryable_outage(wire: MockServer) -> None:
    wire.script(json_reply({**base(), "object": "chat.completion", "choices": []}))
    with pytest.raises(ProviderUnavailableError, match="reply has no choices") as caught:
        model_on(wire).invoke("hi")
    assert caught.value.retryable


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_an_error_event_before_any_text_is_an_outage_not_an_interruption(
    wire: MockServer, mode: Mode
) -> None:
    wire.script(sse_reply([error_event(429, "Provider returned error")]))
    seen: list[str] = []
    with pytest.raises(ProviderUnavailableError, match="Provider returned error") as caught:
        await streamed_parts(model_on(wire), mode, seen)
    assert type(caught.value) is ProviderUnavailableError  # the chain may still fall back
    assert caught.value.status_code == 429
    assert seen == []


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_mid_stream_error_keeps_the_partial_text(wire: MockServer, mode: Mode) -> None:
    wire.script(sse_reply([chunk("echo:"), chunk(" one"), error_event()], done=False))
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        await streamed_parts(model_on(wire), mode, seen)
    error = caught.value
    assert error.partial_text == "".join(seen) == "echo: one"
    assert error.message == (
        "stream interrupted after 9 characters: Provider disconnected unexpectedly "
        '({"provider_name": "DeepInfra"})'
    )
    assert (error.status_code, error.retryable, error.provider) == (502, False, "openrouter")


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_connection_lost_mid_stream_keeps_the_partial_text(
    wire: MockServer, mode: Mode
) -> None:
    wire.script(sse_reply([chunk("echo:"), chunk(" one"), chunk(" two", "stop")], broken_after=2))
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError, match="RemoteProtocolError") as caught:
        await streamed_parts(model_on(wire), mode, seen)
    assert caught.value.partial_text == "".join(seen) == "echo: one"


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_stream_cut_before_its_finish_reason(wire: MockServer, mode: Mode) -> None:
    wire.script(sse_reply([chunk("echo:"), chunk(" one")], done=False))
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError, match="before the provider marked it finished") as c:
        await streamed_parts(model_on(wire), mode, seen)
    assert c.value.partial_text == "echo: one"
    wire.script(sse_reply([chunk("")], done=False))
    with pytest.raises(ProviderUnavailableError, match="marked it finished") as before:
        await streamed_parts(model_on(wire), mode, [])
    assert type(before.value) is ProviderUnavailableError


# (reply, typed error, status, retry_after)
STATUSES = [
    pytest.param(error_reply(400, "Invalid model"), ProviderError, 400, None, id="400"),
    pytest.param(
        error_reply(400, "This endpoint's maximum context length is 128000 tokens."),
        ContextLengthError,
        400,
        None,
        id="400-context-length",
    ),
    pytest.param(
        error_reply(401, "No auth credentials found"), AuthenticationError, 401, None, id="401"
    ),
    pytest.param(
        error_reply(402, "Insufficient credits"), InsufficientCreditsError, 402, None, id="402"
    ),
    pytest.param(error_reply(403, "Input was flagged"), ContentRefusedError, 403, None, id="403"),
    pytest.param(error_reply(404, "No endpoints found"), ModelNotFoundError, 404, None, id="404"),
    pytest.param(error_reply(408, "Timed out"), ProviderUnavailableError, 408, None, id="408"),
    pytest.param(
        error_reply(429, "Rate limit exceeded", {"Retry-After": "7"}),
        RateLimitError,
        429,
        7.0,
        id="429-retry-after",
    ),
    pytest.param(error_reply(500, "Internal"), ProviderUnavailableError, 500, None, id="500"),
    pytest.param(
        error_reply(503, "No available provider", {"Retry-After": "2"}),
        ProviderUnavailableError,
        503,
        2.0,
        id="503-retry-after",
    ),
    pytest.param(proxy_page(502), ProviderUnavailableError, 502, None, id="502-html-page"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("reply", "error", "status", "retry_after"), STATUSES)
async def test_http_errors_are_typed(
    wire: MockServer,
    mode: Mode,
    reply: Reply,
    error: type[Exception],
    status: int,
    retry_after: float | None,
) -> None:
    wire.script(reply)
    with pytest.raises(error) as caught:
        await call(model_on(wire), mode)
    typed = caught.value
    assert type(typed) is error
    assert isinstance(typed, ProviderError | ContextLengthError)
    assert (typed.provider, typed.model, typed.status_code) == ("openrouter", MODEL, status)
    if isinstance(typed, ProviderError):
        assert typed.retry_after == retry_after
    if status == 502:
        assert typed.message == "HTML error page: 502 Bad Gateway"
    assert wire.count == 1  # the SDK's own retries are off: the chain has the retry policy


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("finish_reason", ["stop", "length"])
async def test_an_empty_completion_is_a_typed_failure(
    wire: MockServer, mode: Mode, finish_reason: str
) -> None:
    if mode in ("invoke", "ainvoke"):
        wire.script(json_reply(completion("", finish_reason=finish_reason)))
    else:
        wire.script(sse_reply([chunk(""), chunk("", finish_reason), usage_chunk()]))
    delivered: list[object] = []

    async def run() -> None:
        if mode == "stream":
            delivered.extend(model_on(wire).stream("hi"))
        elif mode == "astream":
            delivered.extend([c async for c in model_on(wire).astream("hi")])
        else:
            await call(model_on(wire), mode)

    with pytest.raises(ProviderUnavailableError, match="empty reply") as caught:
        await run()
    assert f"finish_reason={finish_reason!r}" in caught.value.message
    assert caught.value.retryable is False
    assert delivered == []  # nothing was streamed: a chain can still fall back


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            Reply(
                200,
                (b'{"id": "gen-1", "choices": [{not json',),
                {"content-type": "application/json"},
            ),
            id="invalid-json",
        ),
        pytest.param(
            Reply(200, (b'{"id": "\xff", "choices": []}',), {"content-type": "application/json"}),
            id="invalid-utf-8",
        ),
    ],
)
def test_a_malformed_reply_is_a_retryable_outage(wire: MockServer, reply: Reply) -> None:
    wire.script(reply)
    with pytest.raises(ProviderUnavailableError, match="malformed response") as caught:
        model_on(wire).invoke("hi")
    assert caught.value.retryable


def test_a_malformed_stream_event_is_an_outage(wire: MockServer) -> None:
    parts = (b": OPENROUTER PROCESSING\n\n", b"data: {not json\n\n", b"data: [DONE]\n\n")
    wire.script(Reply(200, parts, {"content-type": "text/event-stream"}))
    with pytest.raises(ProviderUnavailableError, match="malformed response"):
        list(model_on(wire).stream("hi"))


# ---------------------------------------------------------------- secrets
def echoing(status: int) -> Reply:
    return error_reply(status, f"invalid key {KEY}")


@pytest.mark.parametrize(
    ("reply", "mode"),
    [
        pytest.param(echoing(401), "invoke", id="401-invoke"),
        pytest.param(echoing(500), "astream", id="500-astream"),
        pytest.param(
            json_reply({"error": {"code": 502, "message": f"saw {KEY}"}}),
            "ainvoke",
            id="error-in-200",
        ),
        pytest.param(
            sse_reply([chunk("echo:"), error_event(502, f"broken for {KEY}")], done=False),
            "stream",
            id="mid-stream",
        ),
    ],
)
async def test_a_key_echoed_by_the_server_is_masked_and_its_chain_dropped(
    wire: MockServer, reply: Reply, mode: Mode
) -> None:
    wire.script(reply)
    with pytest.raises(ProviderError) as caught:
        await call(model_on(wire), mode)
    error = caught.value
    assert KEY not in f"{error} {error!r} {vars(error)}"
    assert "***" in error.message
    assert error.__cause__ is None  # the raw error shows the key
    assert error.__context__ is None


def test_a_raw_error_holding_the_sent_key_is_not_chained(wire: MockServer) -> None:
    """The raw error keeps its request, whose Authorization header holds the key."""
    wire.script(error_reply(401, "No auth credentials found"))
    with pytest.raises(AuthenticationError) as caught:
        model_on(wire).invoke("hi")
    assert caught.value.message == "No auth credentials found"
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None  # raised outside the except block


# ---------------------------------------------------------------- request_extras
def test_models_list_each_model_once_primary_first() -> None:
    values = Settings(openrouter_model="m", openrouter_models=["m", "other", "third", "other", "m"])
    assert request_extras(values)["models"] == ["m", "other", "third"]


def test_models_left_out_when_only_the_primary_remains() -> None:
    assert "models" not in request_extras(Settings(openrouter_model="m", openrouter_models=["m"]))
    assert "models" not in request_extras(Settings(openrouter_model="m"))


def test_no_extras_without_settings_for_them() -> None:
    assert request_extras(Settings(openrouter_model="m")) == {}


# --- built directly -----------------------------------------------------------


def test_openrouter_model_built_directly_reads_openrouter_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pygent_lc.providers.openrouter.model import OpenRouterChatModel

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-wrong")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-direct")
    model = OpenRouterChatModel(model="openai/gpt-4o-mini")
    assert isinstance(model.openai_api_key, SecretStr)
    assert model.openai_api_key.get_secret_value() == "sk-or-v1-direct"
    assert model.openai_api_base == "https://openrouter.ai/api/v1"


async def test_openrouter_model_without_a_key_is_built_but_never_sends() -> None:
    from pygent_lc.providers.openrouter.model import OpenRouterChatModel

    model = OpenRouterChatModel(model="openai/gpt-4o-mini")
    with pytest.raises(ConfigurationError, match="OPENROUTER_API_KEY"):
        await model.ainvoke("hi")  # sockets are off: a request would fail differently
