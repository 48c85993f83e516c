"""``build_chat_model``: providers by name or as ``"provider:model"`` specs with fallbacks
(like LangChain's ``init_chat_model``), the names it refuses, and unconfigured providers
skipped.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from pygent_lc import LangChainBackend, ProviderSkippedWarning, Settings, build_chat_model
from pygent_lc.closing import chat_models_in
from pygent_lc.errors import ConfigurationError


def served(chain: object) -> list[tuple[str, str]]:
    return [(model.provider_label, str(model._model_label())) for model in chat_models_in(chain)]


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


# --- provider names -----------------------------------------------------------


CONFIGURED = {"openrouter_api_key": "sk-or-v1-x", "ollama_model": "llama3.2"}


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        (["bogus"], "unknown provider 'bogus'; choose from openrouter, ollama, local"),
        (["openrouter", "anthropic"], "unknown provider 'anthropic'"),
        ("openrouter, gpt-4", "unknown provider 'gpt-4'"),
        ([""], "unknown provider ''"),
        ([None], "unknown provider 'None'"),
        ([42], "unknown provider '42'"),
        ([], "at least one provider"),
        (["ollama", "OLLAMA"], "listed twice"),
    ],
)
def test_build_chat_model_rejects_bad_provider_names(providers: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        build_chat_model(Settings(**CONFIGURED), providers)
    assert caught.value.field == "providers"


def test_provider_names_are_normalised() -> None:
    chain = build_chat_model(Settings(**CONFIGURED), [" OpenRouter ", "Ollama"])
    assert chain is not None


def test_no_usable_provider_names_each_reason() -> None:
    with pytest.raises(ConfigurationError) as caught:
        build_chat_model(Settings(), ["openrouter", "ollama"])
    assert "OPENROUTER_API_KEY" in str(caught.value)
    assert "OLLAMA_MODEL" in str(caught.value)
    with pytest.raises(ConfigurationError, match="OPENROUTER_API_KEY"):
        build_chat_model(Settings(), ["openrouter"])


# --- on the embedded model ----------------------------------------------------


@pytest.mark.live_local
def test_fresh_machine_chain_skips_unconfigured_providers_and_answers_locally() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chain = build_chat_model()  # no key, no Ollama model: only the local model remains
    skipped = sorted(
        str(w.message).split("'")[1] for w in caught if w.category is ProviderSkippedWarning
    )
    assert skipped == ["ollama", "openrouter"]
    backend = LangChainBackend(chain)
    text = backend.generate_sync("What is the capital of France?", max_tokens=16, temperature=0)
    assert text.strip()
    [entry] = backend.usage.summary().values()
    assert entry.provider == "local"
    assert 0 < entry.usage.output_tokens <= 16
