"""Configuration read from the environment and ``.env``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pygent_lc.errors import ConfigurationError
from pygent_lc.openrouter_options import ProviderPreferences, ReasoningConfig

ProviderName = Literal["openrouter", "ollama", "local"]
PROVIDER_NAMES: tuple[ProviderName, ...] = ("openrouter", "ollama", "local")


class Settings(BaseSettings):
    """Everything pygent_lc needs to reach its providers.

    Invalid values raise :class:`~pygent_lc.errors.ConfigurationError` naming
    the field, before anything touches the network.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    openrouter_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENROUTER_API_KEY", "openrouter_api_key")
    )
    """OpenRouter API key (``sk-or-...``); without it the OpenRouter provider is skipped."""

    openrouter_base_url: str = Field(
        default="https://openrouter.ai/api/v1",
        validation_alias=AliasChoices("OPENROUTER_BASE_URL", "openrouter_base_url"),
    )
    """Base URL of OpenRouter's OpenAI-compatible API."""

    openrouter_model: str = Field(
        default="anthropic/claude-3.5-sonnet",
        validation_alias=AliasChoices("OPENROUTER_MODEL", "openrouter_model"),
    )
    """OpenRouter model slug, e.g. ``openai/gpt-4o`` or ``deepseek/deepseek-r1:free``."""

    app_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENROUTER_APP_URL", "app_url")
    )
    """Your app's URL, sent as ``HTTP-Referer`` for OpenRouter's attribution."""

    app_title: str | None = Field(
        default="pygent_lc", validation_alias=AliasChoices("OPENROUTER_APP_TITLE", "app_title")
    )
    """Your app's name, sent as ``X-OpenRouter-Title`` and ``X-Title``."""

    openrouter_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("OPENROUTER_MODELS", "openrouter_models"),
    )
    """OpenRouter's own model fallbacks, in priority order, sent as ``models``
    (comma-separated in the environment); ``openrouter_model`` is tried first."""

    openrouter_provider: ProviderPreferences | None = Field(
        default=None, validation_alias=AliasChoices("OPENROUTER_PROVIDER", "openrouter_provider")
    )
    """Provider routing, sent as ``provider`` (JSON in the environment), e.g.
    ``{"sort": "throughput", "data_collection": "deny"}``."""

    openrouter_reasoning: ReasoningConfig | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENROUTER_REASONING", "openrouter_reasoning"),
    )
    """Reasoning budget, sent as ``reasoning`` (JSON in the environment), e.g.
    ``{"effort": "low"}``."""

    ollama_base_url: str = Field(
        default="http://localhost:11434",
        validation_alias=AliasChoices("OLLAMA_BASE_URL", "ollama_base_url"),
    )
    """Base URL of the Ollama server."""

    ollama_model: str | None = Field(
        default=None, validation_alias=AliasChoices("OLLAMA_MODEL", "ollama_model")
    )
    """Installed Ollama model to use, e.g. ``llama3.2``; without it Ollama is skipped."""

    ollama_num_ctx: int = Field(
        default=8192, gt=0, validation_alias=AliasChoices("OLLAMA_NUM_CTX", "ollama_num_ctx")
    )
    """Context window sent to Ollama as ``num_ctx`` (its own default silently truncates)."""

    local_model_path: Path | None = Field(
        default=None, validation_alias=AliasChoices("PYGENT_LOCAL_MODEL", "local_model_path")
    )
    """GGUF file for the embedded llama.cpp provider; default: the SmolLM2-135M file."""

    providers: Annotated[list[ProviderName], NoDecode] = Field(
        default_factory=lambda: list(PROVIDER_NAMES),
        validation_alias=AliasChoices("PYGENT_PROVIDERS", "providers"),
    )
    """Provider order of the fallback chain, comma-separated in the environment."""

    request_timeout: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        validation_alias=AliasChoices("PYGENT_REQUEST_TIMEOUT", "request_timeout"),
    )
    """Seconds one request may take before it counts as failed; also the budget for
    all of a provider's attempts in one call (retries and waits included)."""

    max_retries: int = Field(
        default=2, ge=0, le=10, validation_alias=AliasChoices("PYGENT_MAX_RETRIES", "max_retries")
    )
    """Retries per provider for retryable errors, after the first attempt."""

    retry_max_wait: float = Field(
        default=20.0,
        ge=0,
        le=600,
        validation_alias=AliasChoices("PYGENT_RETRY_MAX_WAIT", "retry_max_wait"),
    )
    """Cap in seconds for one backoff wait, ``Retry-After`` included."""

    retry_initial_wait: float = Field(
        default=0.5,
        ge=0,
        le=60,
        validation_alias=AliasChoices("PYGENT_RETRY_INITIAL_WAIT", "retry_initial_wait"),
    )
    """First backoff wait in seconds; it doubles per retry, plus jitter of up to as much."""

    breaker_failures: int = Field(
        default=3,
        ge=0,
        le=1000,
        validation_alias=AliasChoices("PYGENT_BREAKER_FAILURES", "breaker_failures"),
    )
    """Consecutive failed calls (retries used up) that open a provider's circuit; 0 disables.

    Counted: unavailable/5xx/408/timeouts/connection failures, 429, 401, 402, 404
    (see :mod:`pygent_lc.breaker`).
    """

    breaker_cooldown: float = Field(
        default=30.0,
        ge=0,
        le=86400,
        validation_alias=AliasChoices("PYGENT_BREAKER_COOLDOWN", "breaker_cooldown"),
    )
    """Seconds an open circuit skips its provider before one probe call; 0 disables."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise configuration_error_from(exc) from None

    @field_validator("providers", "openrouter_models", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
            if not all(value):
                raise ValueError("empty name in a comma-separated list")
        if info.field_name == "providers" and isinstance(value, list):
            return [name.lower() if isinstance(name, str) else name for name in value]
        return value

    @field_validator("providers")
    @classmethod
    def _providers_unique_and_present(cls, value: list[ProviderName]) -> list[ProviderName]:
        if not value:
            raise ValueError("at least one provider is required")
        if len(set(value)) != len(value):
            raise ValueError(f"a provider is listed twice: {value}")
        return value

    @field_validator("openrouter_base_url", "ollama_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("openrouter_model")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


def configuration_error_from(exc: ValidationError) -> ConfigurationError:
    """Turn a pydantic error into one naming the field, without echoing values."""
    errors = exc.errors(include_input=False)
    fields = [_field_name(str(err["loc"][0]) if err["loc"] else "settings") for err in errors]
    problems = "; ".join(
        f"{field}{''.join(f'.{part}' for part in err['loc'][1:])}: {err['msg']}"
        for field, err in zip(fields, errors, strict=True)
    )
    return ConfigurationError(f"invalid setting {problems}", field=fields[0])


def _field_name(location: str) -> str:
    """The field's name for an error located at an environment name or a field name."""
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and location in alias.choices:
            env_name = alias.choices[0]
            return f"{name} ({env_name})"
    return location
