"""OpenRouter's request options: typos fail before the network, only what is set is
sent, and routing and model fallbacks reach the wire through a built chain.

What the OpenRouter class itself sends and reads back (reasoning included) is in
``tests/providers/openrouter/test_openrouter.py``.
"""

from __future__ import annotations

import pytest

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.errors import ConfigurationError
from pygent_lc.providers.openrouter.options import ProviderPreferences, ReasoningConfig
from tests.loopback_server import LoopbackServer


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
    # a mapping, as settings pass it: pydantic validates it into MaxPrice
    preferences = ProviderPreferences(zdr=True, max_price={"prompt": 1.0})  # type: ignore[arg-type]
    assert preferences.to_request() == {
        "zdr": True,
        "max_price": {"prompt": 1.0},
    }
    assert ReasoningConfig(exclude=True, enabled=True).to_request() == {
        "exclude": True,
        "enabled": True,
    }
