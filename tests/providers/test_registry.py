"""The provider registry: one entry per provider, and everything else reads it."""

from __future__ import annotations

import pytest

from pygent_lc import Settings
from pygent_lc.agents.spec import PROVIDER_CHOICES
from pygent_lc.errors import ConfigurationError
from pygent_lc.providers.registry import PROVIDERS, find_provider, validate_provider_names
from pygent_lc.settings import SECTIONS, ProviderSettings
from pygent_lc.tot import CLOUD_MAX_CONCURRENCY, LOCAL_MAX_CONCURRENCY, ToTConfig


def test_each_provider_is_a_section_of_settings() -> None:
    settings = Settings()
    assert list(PROVIDERS) == ["openrouter", "ollama", "local"]
    assert settings.providers == list(PROVIDERS)  # the default chain: the registry's order
    assert list(SECTIONS) == list(PROVIDERS)  # the settings know the names without the registry
    for name, spec in PROVIDERS.items():
        assert spec.name == name
        assert Settings.model_fields[name].annotation is spec.settings_model
        assert issubclass(spec.settings_model, ProviderSettings)
        assert isinstance(getattr(settings, name), spec.settings_model)
        assert "model" in spec.settings_model.model_fields


def test_model_keywords_and_hints_are_settings_keywords() -> None:
    keywords = {spec.model_keyword: "x.gguf" for spec in PROVIDERS.values()}
    assert set(keywords) == {"openrouter_model", "ollama_model", "local_model_path"}
    Settings(**keywords)  # each accepted
    for spec in PROVIDERS.values():
        section = spec.settings_model
        assert set(spec.hints) <= {section.keyword(field) for field in section.model_fields}


def test_one_validation_of_provider_names() -> None:
    assert validate_provider_names(" Ollama, local") == ["ollama", "local"]
    with pytest.raises(ConfigurationError, match="unknown provider 'x'; choose from openrouter"):
        validate_provider_names(["x"])
    assert (*PROVIDERS, "auto") == PROVIDER_CHOICES


@pytest.mark.parametrize(
    ("name", "concurrency"),
    [
        ("openrouter", CLOUD_MAX_CONCURRENCY),
        ("ollama", LOCAL_MAX_CONCURRENCY),
        ("local", LOCAL_MAX_CONCURRENCY),
        ("llama.cpp", LOCAL_MAX_CONCURRENCY),
        ("someone-else", CLOUD_MAX_CONCURRENCY),
    ],
)
def test_tot_concurrency_follows_the_registry(name: str, concurrency: int) -> None:
    spec = find_provider(name)
    assert (spec is not None and spec.local) == (concurrency == LOCAL_MAX_CONCURRENCY)
    assert ToTConfig.for_provider(name).max_concurrency == concurrency
