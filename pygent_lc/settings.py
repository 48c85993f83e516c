"""Configuration from keywords, the environment and a ``.env`` file when asked.

One section per provider, named like it and read under its own prefix (``OPENROUTER_*``,
``OLLAMA_*``, ``PYGENT_LOCAL_*``); the chain's own settings (``PYGENT_*``) are on
:class:`Settings`. A keyword is its variable in lower case without ``PYGENT_``
(``ollama_model``); a whole section works too (``Settings(ollama={...})``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from pygent_lc import settings_checks as checks
from pygent_lc.errors import ConfigurationError
from pygent_lc.limits.rate import RateLimit, RateLimitMode, parse_rate_limits
from pygent_lc.providers.openrouter.options import ProviderPreferences, ReasoningConfig
from pygent_lc.redaction import shown_value
from pygent_lc.settings_checks import MisspeltSettingWarning as MisspeltSettingWarning
from pygent_lc.settings_checks import Setting
from pygent_lc.settings_checks import unique_provider_names as unique_provider_names

ProviderName = str
"""A provider's name: the name of its section of :class:`Settings`."""
DEFAULT_ENV_FILE = ".env"


def provider_name(name: object) -> str:
    """``name`` as a provider's name (trimmed, lower case), else ``ValueError``."""
    if isinstance(name, str) and name.strip().lower() in SECTIONS:
        return name.strip().lower()
    raise ValueError(f"unknown provider {shown_value(name)}; choose from {', '.join(SECTIONS)}")


def _rate_limits(value: object) -> object:
    value = parse_rate_limits(value) if isinstance(value, str) else value
    if isinstance(value, Mapping):
        return {
            provider_name(name): RateLimit.parse(rate) if isinstance(rate, str) else rate
            for name, rate in value.items()
        }
    return value


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
FromJson = BeforeValidator(checks.from_json)  # with NoDecode: an error naming the setting


class ProviderSettings(BaseSettings):
    """One provider's section of :class:`Settings`; on its own, it reads the environment."""

    # revalidate: a section given whole is copied, never shared by two Settings
    model_config = SettingsConfigDict(
        extra="ignore", validate_default=True, revalidate_instances="always"
    )
    keywords: ClassVar[Mapping[str, str]] = {}  # older keywords than the section's

    @classmethod
    def variable(cls, field: str) -> str:
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    @classmethod
    def keyword(cls, field: str) -> str:
        """The :class:`Settings` keyword of ``field``."""
        return cls.keywords.get(field, cls.variable(field).lower().removeprefix("pygent_"))


class OpenRouterSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="OPENROUTER_")
    keywords = {"app_url": "app_url", "app_title": "app_title"}

    api_key: SecretStr | None = None  # without it the OpenRouter provider is skipped
    base_url: Annotated[str, AfterValidator(checks.http_url)] = "https://openrouter.ai/api/v1"
    model: NonEmpty = "anthropic/claude-3.5-sonnet"
    models: Annotated[list[str], NoDecode, BeforeValidator(checks.comma_list)] = []
    provider: Annotated[ProviderPreferences | None, NoDecode, FromJson] = None
    reasoning: Annotated[ReasoningConfig | None, NoDecode, FromJson] = None
    app_url: str | None = None  # sent as HTTP-Referer, app_title as X-(OpenRouter-)Title
    app_title: str | None = "pygent_lc"


class OllamaSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="OLLAMA_")

    # One server, or several comma-separated: a host pool (pygent_lc.host_pool).
    base_url: Annotated[str, AfterValidator(checks.http_urls)] = "http://localhost:11434"
    model: str | None = None  # without it Ollama is skipped
    num_ctx: int = Field(default=8192, gt=0)  # Ollama's own default silently truncates

    @property
    def base_urls(self) -> tuple[str, ...]:
        return tuple(self.base_url.split(","))


class LocalSettings(ProviderSettings):
    """The embedded llama.cpp model (docs/configuration.md has every default)."""

    model_config = SettingsConfigDict(env_prefix="PYGENT_LOCAL_")
    keywords = {"model": "local_model_path"}

    model: Path | None = None
    threads: int | None = Field(default=None, ge=1, le=1024)
    startup_timeout: float = Field(default=120.0, gt=0, le=3600)  # not the first call's


class Settings(BaseSettings):
    """Everything pygent_lc needs to reach its providers (docs/configuration.md).

    Invalid values, unknown keywords and unreadable ``.env`` files raise
    :class:`~pygent_lc.errors.ConfigurationError` naming the setting and where its
    value came from, before anything touches the network."""

    model_config = SettingsConfigDict(
        env_prefix="PYGENT_", extra="ignore", validate_default=True, env_file_encoding="utf-8"
    )

    # Each reads its own prefix (NoDecode: a stray PYGENT_OLLAMA is not parsed here).
    openrouter: Annotated[OpenRouterSettings, NoDecode] = Field(default_factory=OpenRouterSettings)
    ollama: Annotated[OllamaSettings, NoDecode] = Field(default_factory=OllamaSettings)
    local: Annotated[LocalSettings, NoDecode] = Field(default_factory=LocalSettings)

    allow_insecure_http: bool = False  # the OpenRouter key over http; not from a .env
    providers: Annotated[
        list[Annotated[str, BeforeValidator(provider_name)]],
        NoDecode,
        BeforeValidator(checks.comma_list),
        AfterValidator(unique_provider_names),
    ] = Field(default_factory=lambda: list(SECTIONS))
    request_timeout: float = Field(default=60.0, gt=0, le=3600)  # retries and waits included
    max_retries: int = Field(default=2, ge=0, le=10)
    retry_max_wait: float = Field(default=20.0, ge=0, le=600)
    retry_initial_wait: float = Field(default=0.5, ge=0, le=60)
    breaker_failures: int = Field(default=3, ge=0, le=1000)
    breaker_cooldown: float = Field(default=30.0, ge=0, le=86400)
    state_url: SecretStr | None = None
    rate_limits: Annotated[dict[str, RateLimit], NoDecode, BeforeValidator(_rate_limits)] = {}
    rate_limit_mode: RateLimitMode = "wait"
    max_cost_usd: float | None = Field(default=None, ge=0)  # of every chain built from these
    budget_key: NonEmpty = "default"  # chains (and processes) with one key share a budget
    budget_window: Annotated[
        Literal["1h", "1d"] | None,
        BeforeValidator(lambda v: None if str(v).strip().lower() in ("", "none") else v),
    ] = None

    @property
    def budget_window_s(self) -> int | None:
        return None if self.budget_window is None else {"1h": 3600, "1d": 86400}[self.budget_window]

    def __init__(self, **values: Any) -> None:
        shared = {key: values[key] for key in _SHARED if key in values}
        shared.setdefault("_env_file", type(self).model_config.get("env_file"))
        shared["_env_file_encoding"] = shared.get("_env_file_encoding") or "utf-8"
        places = checks.dotenv_places(shared["_env_file"], shared["_env_file_encoding"])
        checks.warn_misspelt({**places, **dict.fromkeys(os.environ, "the environment")}, VARIABLES)
        try:
            super().__init__(**_nested(values, shared))
        except ValidationError as exc:
            raise checks.settings_error(exc, SETTINGS, values, places) from None
        except SettingsError as exc:  # a source pydantic-settings itself could not read
            raise ConfigurationError(f"cannot read the settings: {exc}") from None

    @classmethod
    def from_env_file(
        cls, path: str | os.PathLike[str] = DEFAULT_ENV_FILE, **values: Any
    ) -> Settings:
        """Keywords, then the environment, then the ``.env`` file ``path`` (if it exists)."""
        return cls(_env_file=path, **values)

    def updated(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` (keywords as for ``Settings(...)``) applied."""
        return type(self)(**{**dict(self), **changes})

    @model_validator(mode="after")
    def _key_only_over_https(self) -> Self:
        url, key = self.openrouter.base_url, self.openrouter.api_key
        insecure = url.startswith("http://") and not self.allow_insecure_http
        if key and insecure and not checks.is_loopback_url(url):
            raise ConfigurationError(
                f"would send the OpenRouter key over plain http to {urlsplit(url).hostname}; "
                "use https://, or set PYGENT_ALLOW_INSECURE_HTTP=1 (allow_insecure_http) "
                "to accept that anyone on the way can read it",
                field="openrouter_base_url",
            )
        return self


SECTIONS: dict[str, type[ProviderSettings]] = {
    name: info.annotation
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, ProviderSettings)
}
"""The sections of :class:`Settings` by name: the provider names, in the default order."""
#: Every setting: its keyword, environment variable and place.
SETTINGS = [
    *(Setting(name, f"PYGENT_{name}".upper(), (name,)) for name in Settings.model_fields),
    *(
        Setting(model.keyword(field), model.variable(field), (name, field))
        for name, model in SECTIONS.items()
        for field in model.model_fields
    ),
]
SETTINGS = [setting for setting in SETTINGS if setting.keyword not in SECTIONS]
VARIABLES = frozenset(setting.variable for setting in SETTINGS)
_SHARED = [  # BaseSettings' options that a section takes from Settings
    "_env_file",
    "_env_file_encoding",
    "_case_sensitive",
    "_env_ignore_empty",
    "_env_parse_none_str",
    "_env_parse_enums",
    "_secrets_dir",
]
_ACCEPTED = [  # and BaseSettings' own: ``_env_file``, ``_secrets_dir``...
    *(setting.keyword for setting in SETTINGS),
    *SECTIONS,
    *(name for name in inspect.signature(BaseSettings).parameters if name.startswith("_")),
]


def _nested(values: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each section's flat keywords in the section, which reads the
    ``.env`` files too (``shared``); unknown keywords refused."""
    checks.check_known(values, _ACCEPTED)
    nested = dict(values)
    for name, model in SECTIONS.items():
        section = values.get(name, {})
        flat = {
            setting.loc[1]: nested.pop(setting.keyword)
            for setting in SETTINGS
            if setting.loc[0] == name and setting.keyword in values
        }
        if isinstance(section, Mapping):
            fields = [f"{name}.{field}" for field in model.model_fields]
            checks.check_known([f"{name}.{key}" for key in section], fields)
            nested[name] = {**shared, **section, **flat}
        elif isinstance(section, ProviderSettings) and flat:
            nested[name] = {**dict(section), **flat}
    return nested
