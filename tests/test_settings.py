"""Settings: env names, defaults, and ConfigurationError naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pygent_lc import Settings
from pygent_lc.errors import ConfigurationError


def test_defaults() -> None:
    settings = Settings()
    assert settings.openrouter_api_key is None
    assert settings.openrouter_base_url == "https://openrouter.ai/api/v1"
    assert settings.openrouter_model == "anthropic/claude-3.5-sonnet"
    assert settings.ollama_base_url == "http://localhost:11434"
    assert settings.providers == ["openrouter", "ollama", "local"]
    assert (settings.request_timeout, settings.max_retries) == (60.0, 2)


def test_reads_documented_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "OPENROUTER_API_KEY": "sk-or-v1-abc",
        "OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1/",
        "OPENROUTER_MODEL": "openai/gpt-4o",
        "OPENROUTER_APP_URL": "https://example.org",
        "OPENROUTER_APP_TITLE": "My App",
        "OLLAMA_BASE_URL": "http://127.0.0.1:11434",
        "OLLAMA_MODEL": "llama3.2",
        "PYGENT_PROVIDERS": "ollama, OpenRouter",
        "PYGENT_REQUEST_TIMEOUT": "5",
        "PYGENT_MAX_RETRIES": "0",
        "PYGENT_RETRY_MAX_WAIT": "3",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.openrouter_api_key is not None
    assert settings.openrouter_api_key.get_secret_value() == "sk-or-v1-abc"
    assert settings.openrouter_base_url == "http://127.0.0.1:9/api/v1"
    assert (settings.app_url, settings.app_title) == ("https://example.org", "My App")
    assert settings.ollama_model == "llama3.2"
    assert settings.providers == ["ollama", "openrouter"]
    assert (settings.request_timeout, settings.max_retries, settings.retry_max_wait) == (5, 0, 3)


def test_reads_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OLLAMA_MODEL=qwen2.5:7b\nPYGENT_PROVIDERS=ollama\n")
    settings = Settings()
    assert (settings.ollama_model, settings.providers) == ("qwen2.5:7b", ["ollama"])


@pytest.mark.parametrize(
    ("env", "value", "field"),
    [
        ("PYGENT_PROVIDERS", "openrouter,bogus", "providers"),
        ("PYGENT_PROVIDERS", "openrouter,,ollama", "providers"),
        ("PYGENT_PROVIDERS", "ollama,ollama", "providers"),
        ("PYGENT_REQUEST_TIMEOUT", "-1", "request_timeout"),
        ("PYGENT_REQUEST_TIMEOUT", "soon", "request_timeout"),
        ("PYGENT_MAX_RETRIES", "-2", "max_retries"),
        ("OPENROUTER_BASE_URL", "openrouter.ai", "openrouter_base_url"),
        ("OLLAMA_BASE_URL", "localhost:11434", "ollama_base_url"),
        ("PYGENT_REQUEST_TIMEOUT", "0", "request_timeout"),
        ("PYGENT_REQUEST_TIMEOUT", "inf", "request_timeout"),
        ("PYGENT_MAX_RETRIES", "11", "max_retries"),
        ("PYGENT_MAX_RETRIES", "1.5", "max_retries"),
        ("PYGENT_RETRY_MAX_WAIT", "-1", "retry_max_wait"),
        ("PYGENT_RETRY_INITIAL_WAIT", "-0.5", "retry_initial_wait"),
        ("OLLAMA_NUM_CTX", "0", "ollama_num_ctx"),
        ("OPENROUTER_MODEL", "   ", "openrouter_model"),
        ("PYGENT_BREAKER_FAILURES", "-1", "breaker_failures"),
        ("PYGENT_BREAKER_FAILURES", "three", "breaker_failures"),
        ("PYGENT_BREAKER_COOLDOWN", "-5", "breaker_cooldown"),
        ("PYGENT_BREAKER_COOLDOWN", "soon", "breaker_cooldown"),
    ],
)
def test_invalid_values_name_the_field(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert caught.value.field is not None
    assert caught.value.field.split()[0] == field
    assert field in str(caught.value)


def test_key_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-supersecret")
    settings = Settings()
    assert "supersecret" not in repr(settings)
    assert "supersecret" not in str(settings.model_dump())
    monkeypatch.setenv("PYGENT_MAX_RETRIES", "many")
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert "supersecret" not in str(caught.value)
