"""Configuration read from the environment, and from a ``.env`` file when asked.

``Settings()`` reads keyword arguments and the environment only;
``Settings.from_env_file()`` (or ``Settings(_env_file=...)``) also reads a
``.env`` file, whose other variables are ignored. The ``pygent-lc`` command
reads ``./.env``.
"""

from __future__ import annotations

import difflib
import inspect
import io
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from dotenv.parser import parse_stream
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    SettingsConfigDict,
    SettingsError,
)

from pygent_lc.errors import ConfigurationError
from pygent_lc.openrouter_options import ProviderPreferences, ReasoningConfig

ProviderName = Literal["openrouter", "ollama", "local"]
PROVIDER_NAMES: tuple[ProviderName, ...] = ("openrouter", "ollama", "local")
DEFAULT_ENV_FILE = ".env"


class Settings(BaseSettings):
    """Everything pygent_lc needs to reach its providers.

    Reads keyword arguments (field names or environment names) and the
    environment; a ``.env`` file only through :meth:`from_env_file` or
    ``_env_file=``. Invalid values, unknown keyword arguments and unreadable
    ``.env`` files raise :class:`~pygent_lc.errors.ConfigurationError` naming
    the field or the file, before anything touches the network.
    """

    model_config = SettingsConfigDict(
        env_file=None,
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
    """Base URL of OpenRouter's OpenAI-compatible API; with a key set, plain ``http://``
    is refused unless the host is loopback or ``allow_insecure_http`` is set."""

    allow_insecure_http: bool = Field(
        default=False,
        validation_alias=AliasChoices("PYGENT_ALLOW_INSECURE_HTTP", "allow_insecure_http"),
    )
    """Allow sending the OpenRouter key over plain ``http://`` to a non-loopback host
    (anyone on the path can read it); off by default."""

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

    openrouter_provider: Annotated[ProviderPreferences | None, NoDecode] = Field(
        default=None, validation_alias=AliasChoices("OPENROUTER_PROVIDER", "openrouter_provider")
    )
    """Provider routing, sent as ``provider`` (JSON in the environment), e.g.
    ``{"sort": "throughput", "data_collection": "deny"}``."""

    openrouter_reasoning: Annotated[ReasoningConfig | None, NoDecode] = Field(
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
        _reject_unknown_keywords(values)
        env_file = values.get("_env_file", type(self).model_config.get("env_file"))
        encoding = str(
            values.get("_env_file_encoding")
            or type(self).model_config.get("env_file_encoding")
            or "utf-8"
        )
        for path in _env_file_paths(env_file):  # before pydantic-settings reads it leniently
            read_env_file(path, encoding)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise configuration_error_from(exc, _SourceFinder(values, env_file, encoding)) from None
        except SettingsError as exc:  # a source pydantic-settings itself could not read
            raise ConfigurationError(f"cannot read the settings: {exc}") from None

    @classmethod
    def from_env_file(
        cls, path: str | os.PathLike[str] = DEFAULT_ENV_FILE, **values: Any
    ) -> Settings:
        """Settings from keyword arguments, the environment and the ``.env`` file ``path``.

        Precedence: keyword arguments, then the environment, then the file; a
        missing file is skipped, and the file's other variables are ignored.
        """
        return cls(_env_file=path, **values)

    @field_validator("openrouter_provider", "openrouter_reasoning", mode="before")
    @classmethod
    def _parse_json(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:  # its message has no part of the value
                raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
        return value

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

    @model_validator(mode="after")
    def _key_only_over_https(self) -> Settings:
        url = self.openrouter_base_url
        if (
            self.openrouter_api_key is not None
            and url.startswith("http://")
            and not self.allow_insecure_http
            and not is_loopback_url(url)
        ):
            host = urlsplit(url).hostname or "?"
            raise CrossFieldError(
                "openrouter_base_url",
                f"would send the OpenRouter key over plain http to {host}; use https://, "
                "or set PYGENT_ALLOW_INSECURE_HTTP=1 (allow_insecure_http) to accept that "
                "anyone on the way can read it",
            )
        return self


class CrossFieldError(ValueError):
    """A check across fields failed; ``field`` is the one to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def read_env_file(path: Path, encoding: str = "utf-8") -> dict[str, int]:
    """The variables of the ``.env`` file ``path`` and the line each is set on (last wins).

    Parsed by python-dotenv's own parser; a byte that is not ``encoding``, a
    line it cannot parse (an unterminated quote, say) or an unreadable file
    raises :class:`ConfigurationError` naming the file and the line, never
    the line's text (it may hold a key).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigurationError(
            f"{path} line {line}: not valid {encoding} text (byte {exc.start})"
        ) from None
    except LookupError:
        raise ConfigurationError(f"{path}: unknown encoding {encoding!r}") from None
    lines: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        # A statement's text starts with the blank lines before it.
        statement = binding.original.string
        blank_lines = statement[: len(statement) - len(statement.lstrip())].count("\n")
        line = binding.original.line + blank_lines
        if binding.error:
            raise ConfigurationError(
                f"{path} line {line}: cannot parse this line "
                "(an unterminated quote? expected NAME=value)"
            )
        if binding.key is not None:
            lines[binding.key] = line
    return lines


def _env_file_paths(env_file: object) -> list[Path]:
    """The existing files among pydantic-settings' ``env_file`` value (a path or several)."""
    if env_file is None:
        return []
    candidates: Iterable[object] = (
        [env_file] if isinstance(env_file, str | os.PathLike) else env_file  # type: ignore[assignment]
    )
    paths = [Path(os.fspath(item)).expanduser() for item in candidates]  # type: ignore[call-overload]
    return [path for path in paths if path.is_file()]


# BaseSettings' own keyword options: ``_env_file``, ``_env_prefix``, ``_secrets_dir``...
_INIT_OPTIONS = frozenset(
    name
    for name in inspect.signature(BaseSettings.__init__).parameters
    if name.startswith("_") and not name.startswith("__")
)


def _accepted_keywords() -> dict[str, str]:
    """Every keyword ``Settings`` takes, each mapped to its field name."""
    accepted: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        accepted[name] = name
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            accepted.update({str(choice): name for choice in alias.choices})
    return accepted


def _reject_unknown_keywords(values: Mapping[str, Any]) -> None:
    accepted = _accepted_keywords()
    for keyword in values:
        if keyword in accepted or keyword in _INIT_OPTIONS:
            continue
        # Lower case, so ``openrouter_key`` finds ``openrouter_api_key`` and not the
        # same letters as ``OPENROUTER_API_KEY``: names in the keyword's case go last, to win.
        names = sorted([*accepted, *_INIT_OPTIONS], key=lambda n: n.isupper() == keyword.isupper())
        known = {name.lower(): name for name in names}
        close = difflib.get_close_matches(keyword.lower(), list(known), n=1, cutoff=0.6)
        hint = ""
        if close:
            match = known[close[0]]
            field = accepted.get(match, match)
            hint = f"; did you mean {match!r}" + (f" (field {field!r})?" if field != match else "?")
        raise ConfigurationError(f"unknown setting {keyword!r}{hint}", field=keyword)


class _SourceFinder:
    """Where a setting's value came from: a keyword, the environment or a ``.env`` line."""

    def __init__(self, values: Mapping[str, Any], env_file: object, encoding: str) -> None:
        self.values = values
        self.env_file = env_file
        self.encoding = encoding

    def __call__(self, location: str) -> str | None:
        names = _names_of(location)
        if any(name in self.values for name in names):
            return None  # the caller's own argument: no need to say where
        environ = {name.lower() for name in os.environ}
        for name in names:
            if name.lower() in environ:
                return f"from the environment variable {name}"
        for path in reversed(_env_file_paths(self.env_file)):  # later files win
            try:
                lines = {
                    key.lower(): line for key, line in read_env_file(path, self.encoding).items()
                }
            except ConfigurationError:
                continue
            for name in names:
                if name.lower() in lines:
                    return f"from {path} line {lines[name.lower()]}"
        return None


def _names_of(location: str) -> list[str]:
    """The field name and environment names that ``location`` may have been given as."""
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else []
        if location == name or location in choices:
            return [*choices, name]
    return [location]


def configuration_error_from(
    exc: ValidationError, source_of: _SourceFinder | None = None
) -> ConfigurationError:
    """Turn a pydantic error into one naming the field (and where its value came
    from, given ``source_of``), without echoing values."""
    errors = exc.errors(include_input=False)
    problems: list[str] = []
    fields: list[str] = []
    for err in errors:
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, CrossFieldError):  # a check across fields names its field
            location, message, path = cause.field, str(cause), ""
        else:
            location = str(err["loc"][0]) if err["loc"] else "settings"
            message, path = err["msg"], "".join(f".{part}" for part in err["loc"][1:])
        field = _field_name(location)
        source = source_of(location) if source_of is not None else None
        fields.append(field)
        problems.append(f"{field}{path}{f' {source}' if source else ''}: {message}")
    return ConfigurationError(f"invalid setting {'; '.join(problems)}", field=fields[0])


def _field_name(location: str) -> str:
    """The field's name for an error located at an environment name or a field name."""
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and location in alias.choices:
            env_name = alias.choices[0]
            return f"{name} ({env_name})"
    return location
