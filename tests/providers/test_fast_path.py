"""``pygent_lc.providers.fast_path``: plain Chat Completions calls without the SDK's typing.

Every case runs twice, on the fast path and on the stock one (the fast path
switched off), and both must send the same request and give the same result
or the same typed error. The request comparison is also what pins the
openai SDK's private ``make_request_options``: if it moves, these fail.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai.resources.chat.completions.completions as sdk_completions
import pytest
from langchain_core.messages import AIMessage, BaseMessage
from openai._constants import RAW_RESPONSE_HEADER
from pydantic import BaseModel, SecretStr

from pygent_lc.providers import fast_path
from pygent_lc.providers.openrouter.model import OpenRouterChatModel
from tests.providers.mock_http import MockServer, Reply, json_reply, sse_reply

URL = "http://127.0.0.1:9/api/v1"
KEY = "sk-or-v1-fastpath"


def completion(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "gen-1",
        "object": "chat.completion",
        "created": 1,
        "model": "openai/gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        **extra,
    }


USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 7,
    "total_tokens": 17,
    "cost": 0.0012,
    "prompt_tokens_details": {"cached_tokens": 4},
}

REPLIES: dict[str, Reply] = {
    "plain": json_reply(completion({"role": "assistant", "content": "hi"})),
    "openrouter fields": json_reply(
        completion(
            {
                "role": "assistant",
                "content": "4",
                "reasoning": "2+2",
                "reasoning_details": [{"type": "reasoning.text", "text": "2+2", "index": 0}],
            },
            provider="OpenAI",
            usage=USAGE,
            system_fingerprint="fp_1",
        )
    ),
    "tool call": json_reply(
        completion(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                    }
                ],
            },
            usage=USAGE,
        )
    ),
    "refusal": json_reply(completion({"role": "assistant", "content": "", "refusal": "no"})),
    "logprobs": json_reply(
        {
            **completion({"role": "assistant", "content": "hi"}),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                    "logprobs": {"content": []},
                }
            ],
        }
    ),
    "empty reply": json_reply(completion({"role": "assistant", "content": ""})),
    "error in a 200 body": json_reply({"error": {"message": "upstream failed", "code": 502}}),
    "no choices": json_reply({"id": "gen-1", "choices": []}),
    "context too long": json_reply(
        {"error": {"message": "maximum context length is 8192 tokens", "code": 400}}, status=400
    ),
    "bad key": json_reply({"error": {"message": "No auth credentials found", "code": 401}}, 401),
    "rate limited": json_reply(
        {"error": {"message": "slow down", "code": 429}}, 429, headers={"retry-after": "3"}
    ),
    "server error": json_reply({"error": {"message": "boom", "code": 500}}, 500),
    "not json": Reply(200, (b"<html>proxy error</html>",), {"content-type": "text/html"}),
}


def model(wire: MockServer, **values: Any) -> OpenRouterChatModel:
    return OpenRouterChatModel(
        model="openai/gpt-4o-mini",
        api_key=SecretStr(KEY),
        base_url=URL,
        max_retries=0,
        **values,
        **wire.openai_clients(),
    )


def outcome(call: Any) -> tuple[str, Any]:
    """What a call gave: its message (without the per-run id), or its typed error."""
    try:
        message = call()
    except Exception as exc:  # compared across the two paths, whatever it is
        status = getattr(exc, "status_code", None)
        return "error", (type(exc), str(exc), status, exc.__cause__ is None)
    assert isinstance(message, BaseMessage)
    return "message", message.model_dump(exclude={"id"})


def request_of(wire: MockServer) -> tuple[str, str, dict[str, str], object]:
    """The request as the server saw it; the body parsed (key order is not meaning)."""
    request = wire.requests[-1]
    return request.method, str(request.url), dict(request.headers), json.loads(request.content)


def both_paths(
    monkeypatch: pytest.MonkeyPatch, reply: Reply, call: Any, *, raw: bool = False, **values: Any
) -> list[tuple[Any, Any]]:
    """``call(model)`` on the fast path and on the stock path: (outcome, request) each
    (what ``call`` returns itself when ``raw``)."""
    results = []
    for fast in (True, False):
        monkeypatch.setattr(fast_path, "available", lambda fast=fast: fast)
        wire = MockServer(default=reply)
        chat = model(wire, **values)
        got = call(chat) if raw else outcome(lambda chat=chat: call(chat))
        results.append((got, request_of(wire)))
    return results


@pytest.mark.parametrize("reply", REPLIES.values(), ids=REPLIES.keys())
def test_async_calls_give_what_the_stock_path_gives(monkeypatch, reply):
    (fast, fast_request), (stock, stock_request) = both_paths(
        monkeypatch,
        reply,
        lambda chat: asyncio.run(chat.ainvoke("hello", temperature=0.5, max_tokens=20, stop=["x"])),
    )
    assert fast == stock
    assert fast_request == stock_request


@pytest.mark.parametrize("reply", REPLIES.values(), ids=REPLIES.keys())
def test_sync_calls_give_what_the_stock_path_gives(monkeypatch, reply):
    (fast, fast_request), (stock, stock_request) = both_paths(
        monkeypatch, reply, lambda chat: chat.invoke("hello", seed=3, top_p=0.9)
    )
    assert fast == stock
    assert fast_request == stock_request


def test_model_settings_and_extras_reach_the_wire_alike(monkeypatch):
    """Headers, query and body extras, the timeout and response headers: as ``create`` sends."""
    values: dict[str, Any] = {
        "default_headers": {"X-Title": "pygent"},
        "extra_body": {"provider": {"order": ["OpenAI"]}},
        "model_kwargs": {"extra_headers": {"X-Extra": "1"}, "extra_query": {"q": "1"}},
        "include_response_headers": True,
        "timeout": 7.5,
    }
    reply = json_reply(
        completion({"role": "assistant", "content": "hi"}), headers={"x-served-by": "a"}
    )
    (fast, fast_request), (stock, stock_request) = both_paths(
        monkeypatch, reply, lambda chat: asyncio.run(chat.ainvoke("hello")), **values
    )
    assert fast == stock
    assert fast_request == stock_request
    assert fast_request[2]["x-title"] == "pygent" and fast_request[2]["x-extra"] == "1"
    assert "q=1" in fast_request[1]
    assert fast_request[3]["provider"] == {"order": ["OpenAI"]}
    assert fast[1]["response_metadata"]["headers"]["x-served-by"] == "a"


def test_tools_bound_to_the_model_give_the_same_call(monkeypatch):
    class Add(BaseModel):
        """Add two integers."""

        a: int
        b: int

    (fast, fast_request), (stock, stock_request) = both_paths(
        monkeypatch,
        REPLIES["tool call"],
        lambda chat: asyncio.run(chat.bind_tools([Add], tool_choice="any").ainvoke("1+2?")),
    )
    assert fast == stock
    assert fast_request == stock_request
    assert fast[1]["tool_calls"][0]["args"] == {"a": 1, "b": 2}


def transforms_counted(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every call of the SDK's parameter transform in ``create`` (what the fast path skips)."""
    seen: list[object] = []
    original = sdk_completions.async_maybe_transform  # type: ignore[attr-defined]

    async def counted(data: object, expected_type: object) -> object:
        seen.append(expected_type)
        return await original(data, expected_type)

    monkeypatch.setattr(sdk_completions, "async_maybe_transform", counted)
    return seen


def test_a_plain_call_skips_the_sdk_transform(monkeypatch):
    transforms = transforms_counted(monkeypatch)
    wire = MockServer(default=REPLIES["plain"])
    reply = asyncio.run(model(wire).ainvoke("hello"))
    assert isinstance(reply, AIMessage) and reply.text == "hi"
    assert transforms == []


def test_a_payload_that_is_not_plain_json_takes_the_stock_path(monkeypatch):
    """What the SDK would transform (here a tuple of stop words) is left to the SDK."""
    transforms = transforms_counted(monkeypatch)
    wire = MockServer(default=REPLIES["plain"])
    not_plain: Any = {"stop": ("x", "y")}
    reply = asyncio.run(model(wire).ainvoke("hello", **not_plain))
    assert reply.text == "hi"
    assert len(transforms) == 1
    assert wire.body()["stop"] == ["x", "y"]


def test_structured_output_gives_what_the_stock_path_gives(monkeypatch):
    class Answer(BaseModel):
        value: int

    reply = json_reply(completion({"role": "assistant", "content": '{"value": 4}'}))
    results = []
    for fast in (True, False):
        monkeypatch.setattr(fast_path, "available", lambda fast=fast: fast)
        wire = MockServer(default=reply)
        structured = model(wire).with_structured_output(Answer, method="json_schema")
        results.append((asyncio.run(structured.ainvoke("2+2?")), request_of(wire)))
    assert results[0] == results[1]
    assert results[0][0] == Answer(value=4)
    body: Any = results[0][1][3]
    assert body["response_format"]["type"] == "json_schema"


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "gen-1", "object": "chat.completion.chunk", "created": 1,
            "model": "openai/gpt-4o-mini", "choices": [choice], **extra}  # fmt: skip


TOOL_DELTA = {
    "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    ]
}  # fmt: skip
TEXT = [chunk({"role": "assistant", "content": ""}), chunk({"content": "hel"}),
        chunk({"content": "lo"})]  # fmt: skip
STREAMS: dict[str, Reply] = {
    "text and usage": sse_reply(
        [*TEXT, chunk({}, "stop"), {**chunk({}), "choices": [], "usage": USAGE}]
    ),
    "openrouter fields": sse_reply(
        [
            chunk(
                {
                    "role": "assistant",
                    "reasoning": "2+2",
                    "reasoning_details": [{"type": "reasoning.text", "text": "2+2", "index": 0}],
                }
            ),
            chunk({"content": "4"}),
            chunk({}, "stop", provider="OpenAI"),
            {**chunk({}), "choices": [], "usage": USAGE, "provider": "OpenAI"},
        ]
    ),
    "tool call": sse_reply([chunk({"role": "assistant", **TOOL_DELTA}), chunk({}, "tool_calls")]),
    "error event mid-stream": sse_reply(
        [*TEXT, {"error": {"code": 502, "message": "upstream died"}}], done=False
    ),
    "connection reset mid-stream": sse_reply(TEXT, broken_after=2),
    "no done marker": sse_reply(TEXT, done=False),
    "bad key": REPLIES["bad key"],
    "rate limited": REPLIES["rate limited"],
    "context too long": REPLIES["context too long"],
    "not json": REPLIES["not json"],
}


def streamed(chat: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], Any]:
    """The chunks an ``astream`` gave (without per-run ids), and its typed error if any."""
    chunks: list[dict[str, Any]] = []

    async def run() -> None:
        async for part in chat.astream("hello", **kwargs):
            chunks.append(part.model_dump(exclude={"id"}))

    try:
        asyncio.run(run())
    except Exception as exc:  # compared across the two paths, whatever it is
        status = getattr(exc, "status_code", None)
        return chunks, (type(exc), str(exc), status, exc.__cause__ is None)
    return chunks, None


@pytest.mark.parametrize("reply", STREAMS.values(), ids=STREAMS.keys())
def test_async_streams_give_what_the_stock_path_gives(monkeypatch, reply):
    """Chunks, usage, OpenRouter's fields and errors (a mid-stream error event too)."""
    (fast, fast_request), (stock, stock_request) = both_paths(
        monkeypatch, reply, lambda chat: streamed(chat, max_tokens=20, stop=["x"]), raw=True
    )
    assert fast == stock
    assert fast_request == stock_request


def test_a_plain_stream_skips_the_sdk_transform(monkeypatch):
    transforms = transforms_counted(monkeypatch)
    chunks, error = streamed(model(MockServer(default=STREAMS["text and usage"])))
    assert error is None and "".join(c["content"] for c in chunks) == "hello"
    assert [c["usage_metadata"]["total_tokens"] for c in chunks if c["usage_metadata"]] == [17]
    assert transforms == []


def test_a_stream_asking_for_response_headers_takes_the_stock_path(monkeypatch):
    transforms = transforms_counted(monkeypatch)
    wire = MockServer(default=STREAMS["text and usage"])
    chunks, error = streamed(model(wire, include_response_headers=True))
    assert error is None and chunks[0]["response_metadata"]["headers"]
    assert len(transforms) == 1


def test_the_installed_langchain_openai_has_the_stream_s_chunk_timeout():
    """Fails loudly when langchain-openai moves its per-chunk timeout (private) while
    its models still have one: async streams would then all take the stock path."""
    assert fast_path.streams_available()


def test_without_the_sdk_helpers_every_call_is_the_stock_one(monkeypatch):
    """An SDK that moved what the fast path uses: calls still work, the stock way."""
    monkeypatch.setattr(fast_path, "make_request_options", None)
    transforms = transforms_counted(monkeypatch)
    wire = MockServer(default=REPLIES["plain"])
    assert asyncio.run(model(wire).ainvoke("hello")).text == "hi"
    assert len(transforms) == 1


def test_the_installed_sdk_has_what_the_fast_path_uses():
    """Fails loudly when an openai release moves ``make_request_options`` or the raw
    response header: the fast path would then be off for everyone."""
    assert fast_path.available()


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({"a": [1, 2.5, "x", None, True, {"b": []}]}, True),
        ({"a": (1, 2)}, False),
        ({"a": {1: "x"}}, False),
        ({"a": httpx.Timeout(3)}, False),
        ([b"bytes"], False),
    ],
)
def test_plain_json_is_what_json_writes_unchanged(value, plain):
    assert fast_path.is_plain_json(value) is plain


def test_a_call_s_payload_is_its_body_and_the_raw_header_is_shared_read_only():
    """No copy of the body, no header dict per call: ``_split`` takes the option keys
    out of the payload built for the call; the raw-response header is one mapping."""
    payload = {"model": "m", "timeout": 3.0, "extra_headers": {"X-A": "1"}, "extra_body": {"b": 1}}
    body, options = fast_path._split(payload)
    assert body is payload and body == {"model": "m"}
    assert options["headers"] == {"X-A": "1", RAW_RESPONSE_HEADER: "true"}
    assert (options["timeout"], options["extra_json"]) == (3.0, {"b": 1})
    _, first = fast_path._split({"model": "m"})
    _, second = fast_path._split({"model": "m"})
    assert first["headers"] is second["headers"]
    with pytest.raises(TypeError):  # nothing the SDK does with it can change the next call's
        first["headers"]["x-leak"] = "1"
