"""``pygent_lc.providers.openai_compatible``: the base both OpenAI-wire providers share.

What each subclass adds is in ``test_openrouter.py`` and ``test_local.py``;
here: what the base does for any OpenAI-compatible server, on a
``httpx.MockTransport``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage
from pydantic import BaseModel, SecretStr

from pygent_lc.errors import ProviderUnavailableError
from pygent_lc.providers.local import LocalChatModel
from pygent_lc.providers.openai_compatible import (
    REASONING_KEYS,
    OpenAICompatibleChatModel,
    reasoning_of,
)
from pygent_lc.providers.openrouter.model import OpenRouterChatModel
from tests.providers.mock_http import MockServer, json_reply, sse_reply

URL = "http://127.0.0.1:9/v1"


class Add(BaseModel):
    """Add two integers."""

    a: int
    b: int


def completion(content: str, **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
    }


def base_model(wire: MockServer, **values: Any) -> OpenAICompatibleChatModel:
    return OpenAICompatibleChatModel(
        model="m",
        api_key=SecretStr("sk-unit"),
        base_url=URL,
        max_retries=0,
        **values,
        **wire.openai_clients(),
    )


def test_both_providers_share_the_base_but_name_themselves() -> None:
    local = LocalChatModel(model="m", base_url=URL, api_key=SecretStr("k"))
    routed = OpenRouterChatModel(model="m", api_key=SecretStr("k"))
    assert isinstance(local, OpenAICompatibleChatModel)
    assert isinstance(routed, OpenAICompatibleChatModel)
    assert not isinstance(local, OpenRouterChatModel)
    assert (local._llm_type, routed._llm_type) == ("llamacpp-chat", "openrouter-chat")
    assert local._get_ls_params()["ls_provider"] == "local"
    assert routed._get_ls_params()["ls_provider"] == "openrouter"
    assert local.stream_usage and routed.stream_usage
    assert local.server is None  # a server of the caller's: the embedded one is not used


def test_only_openrouter_asks_for_providers_that_honour_the_schema(wire: MockServer) -> None:
    wire.default = json_reply(completion('{"a": 2, "b": 3}'))
    for cls in (LocalChatModel, OpenRouterChatModel):
        model = cls(model="m", api_key=SecretStr("sk-unit"), base_url=URL, **wire.openai_clients())
        assert model.with_structured_output(Add).invoke("2+3?") == Add(a=2, b=3)
    local_body, routed_body = wire.body(0), wire.body(1)
    assert local_body["response_format"]["type"] == "json_schema"
    assert "provider" not in local_body
    assert routed_body["provider"] == {"require_parameters": True}


def test_the_base_names_itself_and_asks_for_stream_usage(wire: MockServer) -> None:
    wire.script(
        sse_reply(
            [
                {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]},
                {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1,
                                          "total_tokens": 3}},
            ],
            comment=None,
        )
    )  # fmt: skip
    model = base_model(wire)
    chunks = list(model.stream("hi"))
    merged = chunks[0]
    for more in chunks[1:]:
        merged = merged + more
    assert merged.content == "hi"
    assert merged.usage_metadata is not None and merged.usage_metadata["total_tokens"] == 3
    assert merged.response_metadata["model_provider"] == "openai-compatible"
    assert wire.body()["stream_options"] == {"include_usage": True}
    assert str(wire.requests[0].url) == f"{URL}/chat/completions"  # never the Responses API
    assert model._get_ls_params()["ls_provider"] == "openai-compatible"


def test_reasoning_fields_of_any_server_are_kept(wire: MockServer) -> None:
    wire.script(json_reply(completion("4", reasoning_content="2+2", reasoning="two and two")))
    reply = base_model(wire).invoke("2+2?")
    assert isinstance(reply, AIMessage)
    assert reply.additional_kwargs["reasoning_content"] == "2+2"
    assert reply.additional_kwargs["reasoning"] == "two and two"


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        ({"content": "x", "reasoning": "r"}, {"reasoning": "r"}),
        ({"reasoning_content": "rc", "reasoning_details": [1]},
         {"reasoning_content": "rc", "reasoning_details": [1]}),
        ({"reasoning": "", "reasoning_content": None}, {}),
        (None, {}),
        ("text", {}),
    ],
)  # fmt: skip
def test_reasoning_of(message: object, kept: dict[str, Any]) -> None:
    assert reasoning_of(message) == kept
    assert set(kept) <= set(REASONING_KEYS)


def test_a_reply_without_choices_is_an_outage_on_any_server(wire: MockServer) -> None:
    wire.script(json_reply({"id": "c", "object": "chat.completion", "created": 1, "choices": []}))
    with pytest.raises(ProviderUnavailableError, match="reply has no choices") as caught:
        base_model(wire).invoke("hi")
    assert caught.value.provider == "openai-compatible"


def test_the_package_builds_its_own_clients_unless_given_some(wire: MockServer) -> None:
    own = OpenAICompatibleChatModel(model="m", api_key=SecretStr("k"), base_url=URL, timeout=12)
    assert own.http_pools is not None
    assert own.http_pools.timeout == 12
    assert own.http_client is not None and own.http_async_client is not None
    given = base_model(wire)
    assert given.http_pools is None  # the caller's clients are used as they are
    assert given.http_client is not None


def test_socket_options_go_to_the_packages_transports() -> None:
    options = ((6, 1, 1),)  # IPPROTO_TCP, TCP_NODELAY, on
    model = OpenAICompatibleChatModel(
        model="m", api_key=SecretStr("k"), base_url=URL, http_socket_options=options
    )
    assert model.http_pools is not None
    assert model.http_pools.socket_options == options
