"""The OpenAI-compatible base and its two subclasses: what each sends and reports.

Replayed through ``httpx.MockTransport``: no sockets.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from pydantic import BaseModel

from pygent_lc.breaker import BREAKER_ERRORS
from pygent_lc.errors import InvalidInputError, ProviderError, UnsupportedRequestError
from pygent_lc.providers.error_mapping import map_exception
from pygent_lc.providers.local import LocalChatModel
from pygent_lc.providers.openai_compatible import OpenAICompatibleChatModel
from pygent_lc.providers.openrouter import OpenRouterChatModel


class Add(BaseModel):
    """Add two integers."""

    a: int
    b: int


class Weather(BaseModel):
    """Look up the weather in a city."""

    city: str


def completion(content: str, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
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
        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
    }


def replaying(
    cls: type[OpenAICompatibleChatModel], reply: dict[str, Any], sent: list[dict[str, Any]]
) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=reply)

    return cls(
        model="m",
        api_key="sk-unit",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )


def test_both_providers_share_the_base_but_name_themselves() -> None:
    local = LocalChatModel(model="m", base_url="http://127.0.0.1:9/v1", api_key="k")
    routed = OpenRouterChatModel(model="m", api_key="k")
    assert isinstance(local, OpenAICompatibleChatModel)
    assert isinstance(routed, OpenAICompatibleChatModel)
    assert not isinstance(local, OpenRouterChatModel)
    assert (local._llm_type, routed._llm_type) == ("llamacpp-chat", "openrouter-chat")
    assert local._get_ls_params()["ls_provider"] == "local"
    assert routed._get_ls_params()["ls_provider"] == "openrouter"
    assert local.stream_usage and routed.stream_usage
    assert local.server is None  # a server of the caller's: the embedded one is not used


def test_only_openrouter_asks_for_providers_that_honour_the_schema() -> None:
    sent: list[dict[str, Any]] = []
    reply = completion('{"a": 2, "b": 3}')
    for cls in (LocalChatModel, OpenRouterChatModel):
        replaying(cls, reply, sent).with_structured_output(Add).invoke("2+3?")
    local_body, routed_body = sent
    assert local_body["response_format"]["type"] == "json_schema"
    assert "provider" not in local_body
    assert routed_body["provider"] == {"require_parameters": True}


def test_a_forced_tool_becomes_a_schema_and_the_reply_a_tool_call() -> None:
    sent: list[dict[str, Any]] = []
    model = replaying(LocalChatModel, completion('{"a": 2, "b": 3}'), sent)
    reply = model.bind_tools([Add, Weather], tool_choice="Add").invoke("2+3?")
    [body] = sent
    assert "tools" not in body and "tool_choice" not in body
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["a", "b"]
    assert body["messages"][0]["role"] == "system" and "Add(a: integer" in str(
        body["messages"][0]["content"]
    )
    assert isinstance(reply, AIMessage) and reply.content == ""
    [call] = reply.tool_calls
    assert (call["name"], call["args"]) == ("Add", {"a": 2, "b": 3})
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 7


def test_any_tool_lets_the_schema_choose_among_the_tools() -> None:
    sent: list[dict[str, Any]] = []
    reply_text = '{"name": "Weather", "arguments": {"city": "Paris"}}'
    model = replaying(LocalChatModel, completion(reply_text), sent)
    reply = model.bind_tools([Add, Weather], tool_choice="any").invoke("Weather in Paris?")
    schema = sent[0]["response_format"]["json_schema"]["schema"]
    names = [choice["properties"]["name"]["const"] for choice in schema["anyOf"]]
    assert names == ["Add", "Weather"]
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("Weather", {"city": "Paris"})]


def test_a_streamed_forced_tool_call_arrives_as_one_final_chunk() -> None:
    model = replaying(LocalChatModel, completion('{"a": 1, "b": 1}'), [])
    chunks = list(model.bind_tools([Add], tool_choice="required").stream("1+1?"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert isinstance(merged, AIMessageChunk)
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [("Add", {"a": 1, "b": 1})]
    assert merged.usage_metadata is not None


def test_a_reply_that_is_no_call_of_a_bound_tool_is_an_invalid_tool_call() -> None:
    model = replaying(LocalChatModel, completion('{"name": "Nope", "arguments": {}}'), [])
    reply = model.bind_tools([Add, Weather], tool_choice="any").invoke("?")
    assert reply.tool_calls == []
    [invalid] = reply.invalid_tool_calls
    assert "not a call of a bound tool" in str(invalid["error"])


def test_a_tool_choice_naming_no_bound_tool_is_the_callers_error() -> None:
    model = replaying(LocalChatModel, completion("{}"), [])
    bound = model.bind_tools([Add], tool_choice={"type": "function", "function": {"name": "Sub"}})
    with pytest.raises(InvalidInputError, match="names no bound tool"):
        bound.invoke("?")


def status_error(status: int, message: str) -> openai.APIStatusError:
    body = {"error": {"code": status, "message": message, "type": "server_error"}}
    response = httpx.Response(
        status, json=body, request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    )
    return openai.InternalServerError(message, response=response, body=body)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "image input is not supported - hint: you may need to provide the mmproj"),
        (500, "audio input is not supported - hint: you may need to provide the mmproj"),
        (400, "unsupported content[].type"),
        (501, "This server does not support this feature"),
    ],
)
def test_what_a_server_cannot_do_is_not_retried_nor_held_against_it(
    status: int, message: str
) -> None:
    typed = map_exception(status_error(status, message), provider="local", model="m")
    assert isinstance(typed, UnsupportedRequestError)
    assert not typed.retryable
    assert not isinstance(typed, BREAKER_ERRORS)
    assert message.split(" - ")[0] in typed.message


def test_an_ordinary_500_stays_a_retryable_outage() -> None:
    typed = map_exception(status_error(500, "slot crashed"), provider="local", model="m")
    assert isinstance(typed, ProviderError) and typed.retryable


def test_structured_output_cut_off_at_max_tokens_is_a_typed_non_retryable_error() -> None:
    model = replaying(LocalChatModel, completion('{"a": 2, "b', finish_reason="length"), [])
    with pytest.raises(ProviderError, match="max_tokens") as caught:
        model.with_structured_output(Add).invoke("2+3?")
    assert not caught.value.retryable
