"""``build_chat_model("provider:model", fallbacks=[...])``, like LangChain's ``init_chat_model``."""

from __future__ import annotations

import pytest

from pygent_lc import Settings, build_chat_model
from pygent_lc.errors import ConfigurationError
from pygent_lc.resources import chat_models_in


def served(chain: object) -> list[tuple[str, str]]:
    return [
        (model.provider_label, str(model._model_label())) for model in chat_models_in(chain)
    ]


def test_a_provider_and_model_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-spec")
    chain = build_chat_model("openrouter:anthropic/claude-3.5-sonnet")
    assert served(chain) == [("openrouter", "anthropic/claude-3.5-sonnet")]


def test_fallbacks_in_the_same_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-spec")
    chain = build_chat_model("ollama:llama3.1", fallbacks=["openrouter:openai/gpt-4o-mini"])
    assert served(chain) == [("ollama", "llama3.1"), ("openrouter", "openai/gpt-4o-mini")]


def test_fallbacks_with_a_settings_object_keep_its_values() -> None:
    settings = Settings(openrouter_api_key="sk-or-v1-x", ollama_model="qwen2.5", request_timeout=7)
    chain = build_chat_model(settings, fallbacks=["ollama"])
    assert served(chain) == [("openrouter", "anthropic/claude-3.5-sonnet"), ("ollama", "qwen2.5")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("anthropic:claude", "unknown provider 'anthropic'"),
        ("", "invalid model spec ''"),
        ("ollama", "Ollama needs a model name"),
    ],
)
def test_bad_specs_are_configuration_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build_chat_model(spec)


def test_a_provider_twice_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="listed twice"):
        build_chat_model("ollama:a", fallbacks=["ollama:b"])


def test_openrouter_model_built_directly_reads_openrouter_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pygent_lc.providers.openrouter import OpenRouterChatModel

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-wrong")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-direct")
    model = OpenRouterChatModel(model="openai/gpt-4o-mini")
    assert model.openai_api_key is not None
    assert model.openai_api_key.get_secret_value() == "sk-or-v1-direct"
    assert model.openai_api_base == "https://openrouter.ai/api/v1"


async def test_openrouter_model_without_a_key_is_built_but_never_sends() -> None:
    from pygent_lc.providers.openrouter import OpenRouterChatModel

    model = OpenRouterChatModel(model="openai/gpt-4o-mini")
    with pytest.raises(ConfigurationError, match="OPENROUTER_API_KEY"):
        await model.ainvoke("hi")  # sockets are off: a request would fail differently
