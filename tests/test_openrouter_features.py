"""OpenRouter's options through a built chain: routing, native model fallbacks, structured
output and tools on the fallback chain, and the options' validation.

What the OpenRouter class itself sends and reads back (reasoning included) is in
``tests/providers/test_openrouter.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from langchain_core.tools import tool
from loopback_server import Fault, LoopbackServer
from pydantic import BaseModel

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.errors import ConfigurationError
from pygent_lc.openrouter_options import ProviderPreferences, ReasoningConfig


def settings_for(server: LoopbackServer, **values: object) -> Settings:
    return Settings(
        openrouter_api_key="sk-or-v1-feature-test",
        openrouter_base_url=server.openrouter_base_url,
        openrouter_model="deepseek/deepseek-r1",
        **values,
    )


@pytest.mark.live_local
async def test_provider_routing_and_model_fallbacks_on_the_wire(loopback: LoopbackServer) -> None:
    settings = settings_for(
        loopback,
        openrouter_models=["anthropic/claude-3.5-haiku", "openai/gpt-4o-mini"],
        openrouter_provider={"order": ["DeepInfra"], "allow_fallbacks": False, "sort": "price"},
    )
    backend = LangChainBackend(build_chat_model(settings, ["openrouter"]))
    await backend.generate("hi there")
    body = loopback.requests("openrouter")[0].json
    assert body["models"] == [
        "deepseek/deepseek-r1",
        "anthropic/claude-3.5-haiku",
        "openai/gpt-4o-mini",
    ]
    assert body["provider"] == {"order": ["DeepInfra"], "allow_fallbacks": False, "sort": "price"}
    # the served model (the loopback serves models[0]) is what usage is reported under
    [(provider, served)] = backend.usage.summary()
    assert (provider, served) == ("openrouter", "deepseek/deepseek-r1")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("openrouter_provider", {"sortt": "price"}),
        ("openrouter_provider", {"sort": "cheapest"}),
        ("openrouter_provider", {"data_collection": "maybe"}),
        ("openrouter_provider", {"quantizations": ["int3"]}),
        ("openrouter_provider", {"max_price": {"prompt": -1}}),
        ("openrouter_reasoning", {"effort": "extreme"}),
        ("openrouter_reasoning", {"effort": "low", "max_tokens": 100}),
        ("openrouter_reasoning", {"max_tokens": 0}),
    ],
)
def test_typos_in_openrouter_options_fail_before_the_network(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=field):
        Settings(**{field: value})


def test_options_serialise_only_what_is_set() -> None:
    assert ProviderPreferences(zdr=True, max_price={"prompt": 1.0}).to_request() == {
        "zdr": True,
        "max_price": {"prompt": 1.0},
    }
    assert ReasoningConfig(exclude=True, enabled=True).to_request() == {
        "exclude": True,
        "enabled": True,
    }


class Answer(BaseModel):
    value: int


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def json_when_asked(protocol: str, body: Mapping[str, Any]) -> str:
    return '{"value": 42}' if body.get("response_format") or body.get("format") else "plain"


@pytest.mark.live_local
async def test_structured_output_on_the_fallback_chain() -> None:
    with LoopbackServer(ollama_models=["llama3.2:latest"], responder=json_when_asked) as server:
        settings = settings_for(
            server, ollama_base_url=server.ollama_base_url, ollama_model="llama3.2"
        )
        chain = build_chat_model(settings, ["openrouter", "ollama"])
        structured = chain.with_structured_output(Answer)
        assert await structured.ainvoke("what is six times seven?") == Answer(value=42)
        body = server.requests("openrouter")[0].json
        assert body["response_format"]["type"] == "json_schema"
        assert body["provider"] == {"require_parameters": True}
        server.script("openrouter", [Fault.status(503)] * 3)  # then Ollama answers
        assert await structured.ainvoke("again?") == Answer(value=42)
        assert server.requests("ollama")[0].json["format"]["properties"] == {
            "value": {"title": "Value", "type": "integer"}
        }


@pytest.mark.live_local
async def test_bind_tools_on_the_fallback_chain(loopback: LoopbackServer) -> None:
    settings = settings_for(
        loopback, ollama_base_url=loopback.ollama_base_url, ollama_model="llama3.2"
    )
    with_tools = build_chat_model(settings, ["openrouter", "ollama"]).bind_tools([add])
    loopback.script("openrouter", [Fault.status(401)])
    await with_tools.ainvoke("add 1 and 2")
    assert loopback.requests("openrouter")[0].json["tools"][0]["function"]["name"] == "add"
    assert loopback.requests("ollama")[0].json["tools"][0]["function"]["name"] == "add"


@pytest.mark.live_local
async def test_structured_output_and_tools_with_a_single_provider() -> None:
    with LoopbackServer(responder=json_when_asked) as server:
        chain = build_chat_model(settings_for(server), ["openrouter"])
        assert await chain.with_structured_output(Answer).ainvoke("q") == Answer(value=42)
        await chain.bind_tools([add]).ainvoke("add 1 and 2")
        assert server.requests("openrouter")[1].json["tools"][0]["function"]["name"] == "add"
