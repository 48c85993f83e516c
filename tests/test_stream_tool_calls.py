"""Streamed tool calls whose name the server repeats in every chunk (llama.cpp does).

Chunks merge by concatenating strings, so without care the name becomes
``"addaddadd"``. Replayed through ``httpx.MockTransport``: no sockets.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from langchain_core.messages import AIMessageChunk
from pydantic import BaseModel

from pygent_lc.providers.openrouter import OpenRouterChatModel


class Add(BaseModel):
    """Add two integers."""

    a: int
    b: int


def sse_body(arguments: list[str], name: str = "Add") -> bytes:
    base = {"id": "gen-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}
    ]
    for position, fragment in enumerate(arguments):
        call: dict[str, Any] = {
            "index": 0,
            "type": "function",
            "function": {"name": name, "arguments": fragment},
        }
        if position == 0:
            call["id"] = "call-1"
        events.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def model_replaying(body: bytes) -> OpenRouterChatModel:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return OpenRouterChatModel(
        model="m",
        api_key="sk-or-v1-unit",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(reply)),
        max_retries=0,
    )


def test_a_repeated_tool_name_is_kept_once_when_chunks_merge() -> None:
    model = model_replaying(sse_body(['{"a": ', "2, ", '"b": 3}']))
    merged: AIMessageChunk | None = None
    for chunk in model.bind_tools([Add], tool_choice="Add").stream("2+3?"):
        assert isinstance(chunk, AIMessageChunk)
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    assert merged.tool_calls == [
        {"name": "Add", "args": {"a": 2, "b": 3}, "id": "call-1", "type": "tool_call"}
    ]


def test_structured_output_by_function_calling_streams_a_valid_object() -> None:
    model = model_replaying(sse_body(['{"a": 2,', ' "b": 40}']))
    structured = model.with_structured_output(Add, method="function_calling")
    parsed = list(structured.stream("2+40?"))
    assert parsed[-1] == Add(a=2, b=40)


def test_replies_name_the_provider_that_served() -> None:
    model = model_replaying(sse_body(['{"a": 1, "b": 1}']))
    chunks = list(model.stream("1+1?"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.response_metadata["model_provider"] == "openrouter"
