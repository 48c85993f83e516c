"""Settings from keywords, the environment and a ``.env`` file; a section per provider."""

from __future__ import annotations

import difflib
import io
import ipaddress
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from dotenv.parser import parse_stream
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator
from pydantic_core import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from pygent_lc.errors import ConfigurationError
from pygent_lc.limits.rate import RateLimit, RateLimitMode, parse_rate_limits
from pygent_lc.providers.openrouter.options import ProviderPreferences, ReasoningConfig
from pygent_lc.redaction import shown_value

ProviderName = str  # the name of a section of Settings
DEFAULT_ENV_FILE = ".env"


class MisspeltSettingWarning(UserWarning):
    """A variable meant as a setting, and ignored (``PYGENT_MAX_COST=0.01``: no budget)."""


def from_text(parse: Callable[[str], object]) -> BeforeValidator:
    """Parse a value given as text (as every variable is); pydantic checks any other."""
    return BeforeValidator(lambda value: parse(value) if isinstance(value, str) else value)


def http_urls(value: str, many: bool = True) -> str:
    """One URL, or (``many``) several comma-separated: each starting with http(s)://, none twice."""
    urls = [url.strip().rstrip("/") for url in value.split(",")] if many else [value.rstrip("/")]
    for index, url in enumerate(urls):
        where = f"URL {index + 1} of {len(urls)} " if len(urls) > 1 else ""
        if not url and where:
            raise ValueError(f"{where}is empty")
        if not url.startswith(("http://", "https://")):
            got = f"got {shown_value(url)}"
            raise ValueError(f"{where}expected a URL starting with http:// or https://, {got}")
        if url in urls[:index]:
            raise ValueError(f"{where}is listed twice ({shown_value(url)})")
    return ",".join(urls)


def from_json(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # its message has no part of the value
        raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None


def comma_list(text: str) -> list[str]:
    if not all(names := [part.strip() for part in text.split(",")]):
        raise ValueError("empty name in a comma-separated list")
    return names


def provider_name(name: object) -> str:
    if isinstance(name, str) and name.strip().lower() in SECTIONS:
        return name.strip().lower()
    raise ValueError(f"unknown provider {shown_value(name)}; choose from {', '.join(SECTIONS)}")


def unique_provider_names(names: list[str]) -> list[str]:
    if not names:
        raise ValueError("at least one provider is required")
    if twice := [name for index, name in enumerate(names) if name in names[:index]]:
        raise ValueError(f"provider {shown_value(twice[0])} is listed twice")
    return names


NonEmpty = Annotated[str, Field(min_length=1), from_text(str.strip)]
Provider = Annotated[str, BeforeValidator(provider_name)]
Json = from_text(from_json)  # an error names the setting, never a part of the value
HttpUrl = Annotated[str, AfterValidator(lambda url: http_urls(url, many=False))]
Rate = Annotated[RateLimit, from_text(RateLimit.parse)]
Providers = Annotated[list[Provider], from_text(comma_list), AfterValidator(unique_provider_names)]
Unset = from_text(lambda text: None if text.strip().lower() in ("", "none") else text)


class ProviderSettings(BaseSettings):
    """One provider's section of :class:`Settings`; on its own, it reads the environment."""

    model_config = SettingsConfigDict(extra="ignore", enable_decoding=False)  # text, not JSON
    keywords: ClassVar[Mapping[str, str]] = {}  # older keywords than the section's

    @classmethod
    def keyword(cls, field: str) -> str:
        variable = f"{cls.model_config.get('env_prefix')}{field}".lower()
        return cls.keywords.get(field, variable.removeprefix("pygent_"))


class OpenRouterSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="OPENROUTER_")
    keywords = {"app_url": "app_url", "app_title": "app_title"}

    api_key: SecretStr | None = None  # without it the OpenRouter provider is skipped
    base_url: HttpUrl = "https://openrouter.ai/api/v1"
    model: NonEmpty = "anthropic/claude-3.5-sonnet"
    models: Annotated[list[str], from_text(comma_list)] = []
    provider: Annotated[ProviderPreferences | None, Json] = None
    reasoning: Annotated[ReasoningConfig | None, Json] = None
    app_url: str | None = None  # sent as HTTP-Referer, app_title as X-(OpenRouter-)Title
    app_title: str | None = "pygent_lc"


class OllamaSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="OLLAMA_")

    base_url: Annotated[str, AfterValidator(http_urls)] = "http://localhost:11434"  # or a pool
    model: str | None = None  # without it Ollama is skipped
    num_ctx: int = Field(default=8192, gt=0)  # Ollama's own default silently truncates

    @property
    def base_urls(self) -> tuple[str, ...]:
        return tuple(self.base_url.split(","))


class LocalSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="PYGENT_LOCAL_")
    keywords = {"model": "local_model_path"}

    model: Path | None = None
    threads: int | None = Field(default=None, ge=1, le=1024)
    startup_timeout: float = Field(default=120.0, gt=0, le=3600)  # not the first call's


class Settings(BaseSettings):
    """A bad value, keyword or ``.env`` file is a ConfigurationError naming setting and source."""

    model_config = SettingsConfigDict(env_prefix="PYGENT_", extra="ignore", enable_decoding=False)

    openrouter: OpenRouterSettings = Field(default_factory=OpenRouterSettings)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)

    allow_insecure_http: bool = False  # the OpenRouter key over http; not from a .env
    providers: Providers = Field(default_factory=lambda: list(SECTIONS))
    request_timeout: float = Field(default=60.0, gt=0, le=3600)  # retries and waits included
    max_retries: int = Field(default=2, ge=0, le=10)
    retry_max_wait: float = Field(default=20.0, ge=0, le=600)
    retry_initial_wait: float = Field(default=0.5, ge=0, le=60)
    breaker_failures: int = Field(default=3, ge=0, le=1000)
    breaker_cooldown: float = Field(default=30.0, ge=0, le=86400)
    state_url: SecretStr | None = None
    rate_limits: Annotated[dict[Provider, Rate], from_text(parse_rate_limits)] = {}
    rate_limit_mode: RateLimitMode = "wait"
    max_cost_usd: float | None = Field(default=None, ge=0)  # of every chain built from these
    budget_key: NonEmpty = "default"  # chains (and processes) with one key share a budget
    budget_window: Annotated[Literal["1h", "1d"] | None, Unset] = None

    @property
    def budget_window_s(self) -> int | None:
        return None if self.budget_window is None else {"1h": 3600, "1d": 86400}[self.budget_window]

    def __init__(self, **values: Any) -> None:
        shared: dict[str, Any] = {"_env_file": type(self).model_config.get("env_file")}
        shared |= {key: values[key] for key in _SHARED if key in values}
        shared["_env_file_encoding"] = encoding = shared.get("_env_file_encoding") or "utf-8"
        places = _dotenv_places(shared["_env_file"], encoding)
        _warn_misspelt({**places, **dict.fromkeys(os.environ, "the environment")})
        # Each keyword to its place; a whole section is copied as "section.field" ones (flat win).
        whole = {key for key in SECTIONS if isinstance(values.get(key), Mapping | ProviderSettings)}
        flat = {f"{key}.{name}": item for key in whole for name, item in dict(values[key]).items()}
        nested: dict[str, Any] = {name: dict(shared) for name in SECTIONS}
        for key, value in (flat | {k: v for k, v in values.items() if k not in whole}).items():
            if key not in _ACCEPTED:
                close = difflib.get_close_matches(key.lower(), _ACCEPTED, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigurationError(f"unknown setting {key!r}{hint}", field=key)
            *section, field = KEYWORDS.get(key, (key,))
            (nested[section[0]] if section else nested)[field] = value
        try:
            super().__init__(**nested | shared)
        except ValidationError as exc:
            raise _settings_error(exc, values, places) from None
        except SettingsError as exc:  # a source pydantic-settings itself could not read
            raise ConfigurationError(f"cannot read the settings: {exc}") from None

    @classmethod
    def from_env_file(cls, path: str | Path = DEFAULT_ENV_FILE, **values: Any) -> Settings:
        """Keywords, then the environment, then the ``.env`` file ``path`` (if it exists)."""
        return cls(_env_file=path, **values)

    def updated(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` (keywords as for ``Settings(...)``) applied."""
        return type(self)(**{**dict(self), **changes})

    @model_validator(mode="after")
    def _key_only_over_https(self) -> Self:
        url, key = self.openrouter.base_url, self.openrouter.api_key
        host = (urlsplit(url).hostname or "").rstrip(".")
        try:
            loopback = ipaddress.ip_address(host.removeprefix("::ffff:")).is_loopback  # as IPv6 too
        except ValueError:
            loopback = host == "localhost"
        if key and url.startswith("http://") and not (self.allow_insecure_http or loopback):
            raise ConfigurationError(
                f"would send the OpenRouter key over plain http to {host}, where anyone on the "
                "way can read it; use https://, or set PYGENT_ALLOW_INSECURE_HTTP=1 to accept that",
                field="openrouter_base_url",
            )
        return self


#: Sections by name (the provider names, in order); each setting's place: keyword, variable.
SECTIONS: dict[str, type[ProviderSettings]] = {}
SETTINGS: dict[tuple[str, ...], tuple[str, str]] = {}
for _name, _info in Settings.model_fields.items():
    if isinstance(_section := _info.annotation, type) and issubclass(_section, ProviderSettings):
        SECTIONS[_name] = _section
        for _field in _section.model_fields:
            _variable = f"{_section.model_config.get('env_prefix')}{_field}".upper()
            SETTINGS[_name, _field] = (_section.keyword(_field), _variable)
    else:
        SETTINGS[(_name,)] = (_name, f"PYGENT_{_name}".upper())
KEYWORDS = {keyword: loc for loc, (keyword, _) in SETTINGS.items()}
KEYWORDS |= {".".join(loc): loc for loc in SETTINGS if len(loc) > 1}
VARIABLES = frozenset(variable for _, variable in SETTINGS.values())
# BaseSettings' options that Settings takes, and passes on to each section
_SHARED = """_env_file _env_file_encoding _case_sensitive _env_ignore_empty _env_parse_none_str
_env_parse_enums _secrets_dir""".split()  # noqa: SIM905
_ACCEPTED = [*KEYWORDS, *SECTIONS, *_SHARED]  # all in lower case
# Read outside Settings, or Ollama's own (its others are not close to a setting); and the tests'.
_OTHERS = {"PYGENT_DEBUG", "PYGENT_OTEL", "PYGENT_OTEL_CAPTURE_CONTENT", "OLLAMA_MODELS"}


def _warn_misspelt(places: Mapping[str, str]) -> None:
    """Warn of any other ``PYGENT_`` name; of an ``OPENROUTER_``/``OLLAMA_`` one if close."""
    for name, place in places.items():
        upper = name.upper()
        if upper in VARIABLES | _OTHERS or upper.startswith(("PYGENT_TEST_", "PYGENT_SOAK")):
            continue
        close = difflib.get_close_matches(upper, VARIABLES, n=1, cutoff=0.8)
        if upper.startswith("PYGENT_") or (close and upper.startswith(("OPENROUTER_", "OLLAMA_"))):
            hint = f"; did you mean {close[0]}?" if close else ""
            ignored = f"{name} (in {place.split(' line ')[0]}) is not a pygent_lc setting"
            warnings.warn(f"{ignored} and is ignored{hint}", MisspeltSettingWarning, stacklevel=3)


def _dotenv_places(env_file: Any, encoding: str) -> dict[str, str]:
    """Each ``.env`` variable's ``path line N`` (pydantic-settings cannot say); no text shown."""
    found: dict[str, str] = {}
    for file in [env_file] if isinstance(env_file, str | os.PathLike) else env_file or []:
        if not (path := Path(file).expanduser()).is_file():
            continue
        try:
            text = path.read_bytes().decode(encoding)
        except UnicodeDecodeError as exc:
            line = exc.object[: exc.start].count(b"\n") + 1
            raise ConfigurationError(f"{path} line {line}: not valid {encoding} text") from None
        except (OSError, LookupError, TypeError) as exc:  # TypeError: an encoding not a str
            why = exc.strerror if isinstance(exc, OSError) else f"unknown encoding {encoding!r}"
            raise ConfigurationError(f"cannot read {path}: {why or exc}") from None
        for binding in parse_stream(io.StringIO(text)):
            lines = binding.original.string  # starts with the blank lines before it
            line = binding.original.line + lines.count("\n", 0, len(lines) - len(lines.lstrip()))
            where = f"{path} line {line}"
            if binding.error:
                error = "cannot parse this line (an unterminated quote? expected NAME=value)"
                raise ConfigurationError(f"{where}: {error}")
            if (binding.key or "").upper() == "PYGENT_ALLOW_INSECURE_HTTP":
                raise ConfigurationError(
                    f"{where}: PYGENT_ALLOW_INSECURE_HTTP may not be set in a .env file (it "
                    "allows sending the key over plain http); set it in the process "
                    "environment or pass Settings(allow_insecure_http=True)",
                    field="allow_insecure_http",
                )
            if binding.key is not None:
                found[binding.key.upper()] = where
    return found


def _settings_error(exc: ValidationError, given: Any, places: dict[str, str]) -> ConfigurationError:
    """One error naming each setting (``keyword (VARIABLE)``) and where its value came from."""
    env = {name.upper(): f"the environment variable {name.upper()}" for name in os.environ}
    fields, messages = list[str](), list[str]()
    for err in exc.errors(include_url=False):
        loc = tuple(str(part) for part in err["loc"] if part != "[key]")
        message, cause = err["msg"], (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigurationError) and cause.field in KEYWORDS:  # across fields
            loc, message = KEYWORDS[cause.field], str(cause)
        at = loc[:2] if loc[:2] in SETTINGS else loc[:1]
        keyword, variable = SETTINGS.get(at, (loc[0], ""))
        field = f"{keyword} ({variable})" if variable else keyword
        place = env.get(variable) or places.get(variable)
        source = f" from {place}" if place and {keyword, at[0]}.isdisjoint(given) else ""
        path = "".join(f".{shown_value(part)[1:-1]}" for part in loc[len(at) :])  # a JSON key
        fields.append(field)
        messages.append(f"{field}{path}{source}: {message}")
    return ConfigurationError(f"invalid setting {'; '.join(messages)}", field=fields[0])
