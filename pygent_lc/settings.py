"""Configuration from keyword arguments and the environment, and a ``.env`` file when asked.

One section per provider, each a pydantic-settings model read under its own
prefix (:class:`OpenRouterSettings` ``OPENROUTER_*``, :class:`OllamaSettings`
``OLLAMA_*``, :class:`LocalSettings` ``PYGENT_LOCAL_*``); the chain's own
settings (``PYGENT_*``) are on :class:`Settings`. The sections' names are the
provider names. Keywords are flat like the variables
(``Settings(openrouter_model=..., request_timeout=5)``), or a whole section
(``Settings(ollama={"model": "llama3.2"})``).

A ``.env`` file is read only through ``Settings.from_env_file()`` or
``_env_file=``; it is parsed once here, with python-dotenv's own parser, to
refuse a file pydantic-settings would read leniently (a byte that is not the
encoding, an unterminated quote) and to say on which line a bad value is.
"""

from __future__ import annotations

import difflib
import inspect
import io
import ipaddress
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from dotenv.parser import parse_stream
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from pygent_lc.errors import ConfigurationError
from pygent_lc.limits.rate import RateLimit, RateLimitMode, parse_rate_limits
from pygent_lc.providers.openrouter.options import ProviderPreferences, ReasoningConfig
from pygent_lc.redaction import MAX_SHOWN_CHARS, shown_value

ProviderName = str
"""A provider's name: the name of its section of :class:`Settings`."""

DEFAULT_ENV_FILE = ".env"


# --- value types ---------------------------------------------------------------------


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(
            f"expected a URL starting with http:// or https://, got {shown_value(value)}"
        )
    return value.rstrip("/")


def _http_urls(value: str) -> str:
    """One URL or several, comma-separated: each checked like one, none twice."""
    urls = [part.strip() for part in value.split(",")]
    if len(urls) == 1:
        return _http_url(value)
    checked: list[str] = []
    for number, url in enumerate(urls, start=1):
        where = f"URL {number} of {len(urls)}"
        if not url:
            raise ValueError(f"{where} is empty")
        try:
            checked.append(_http_url(url))
        except ValueError as exc:
            raise ValueError(f"{where} {exc}") from None
        if checked[-1] in checked[:-1]:
            raise ValueError(f"{where} is listed twice ({shown_value(checked[-1])})")
    return ",".join(checked)


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _parse_json(value: object) -> object:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:  # its message has no part of the value
        raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
        if not all(value):
            raise ValueError("empty name in a comma-separated list")
    return value


def provider_name(name: object) -> str:
    """``name`` as a provider's name (trimmed, lower case), else ``ValueError``."""
    names = list(SECTIONS)
    if isinstance(name, str) and name.strip().lower() in names:
        return name.strip().lower()
    raise ValueError(f"unknown provider {shown_value(name)}; choose from {', '.join(names)}")


def unique_provider_names(names: list[str]) -> list[str]:
    """``names`` unchanged if there is at least one and none twice, else ``ValueError``."""
    if not names:
        raise ValueError("at least one provider is required")
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ValueError(f"provider {shown_value(name)} is listed twice")
    return names


def _rate_limits(value: object) -> object:
    value = parse_rate_limits(value) if isinstance(value, str) else value
    if isinstance(value, Mapping):
        return {
            provider_name(name): RateLimit.parse(rate) if isinstance(rate, str) else rate
            for name, rate in value.items()
        }
    return value


def _no_window(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value


HttpBaseUrl = Annotated[str, AfterValidator(_http_url)]
"""An ``http://`` or ``https://`` URL, without a trailing slash."""
NonEmpty = Annotated[str, AfterValidator(_non_empty)]
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]
"""A list; comma-separated in the environment."""
ProviderList = Annotated[
    list[Annotated[str, BeforeValidator(provider_name)]],
    NoDecode,
    BeforeValidator(_comma_list),
    AfterValidator(unique_provider_names),
]
RateLimits = Annotated[dict[str, RateLimit], NoDecode, BeforeValidator(_rate_limits)]
"""``provider=rate`` pairs, comma-separated in the environment (``openrouter=120/min``)."""


# --- one section per provider ----------------------------------------------------------


class ProviderSettings(BaseSettings):
    """One provider's settings; each field is also the flat :class:`Settings` keyword
    ``keyword_prefix`` + its name, unless ``keywords`` names it otherwise."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    keyword_prefix: ClassVar[str] = ""
    keywords: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def keyword(cls, field: str) -> str:
        """The flat :class:`Settings` keyword of ``field``."""
        return cls.keywords.get(field, cls.keyword_prefix + field)


class OpenRouterSettings(ProviderSettings):
    """OpenRouter: ``OPENROUTER_*``."""

    model_config = SettingsConfigDict(env_prefix="OPENROUTER_")
    keyword_prefix = "openrouter_"
    keywords = {"app_url": "app_url", "app_title": "app_title"}  # older than the section

    api_key: SecretStr | None = None
    """OpenRouter API key (``sk-or-...``); without it the OpenRouter provider is skipped."""
    base_url: HttpBaseUrl = "https://openrouter.ai/api/v1"
    """With a key set, plain ``http://`` is refused unless the host is loopback or
    ``allow_insecure_http`` is set."""
    model: NonEmpty = "anthropic/claude-3.5-sonnet"
    models: CommaList = Field(default_factory=list)
    """OpenRouter's own model fallbacks after ``model``, sent as ``models``."""
    provider: Annotated[ProviderPreferences | None, NoDecode, BeforeValidator(_parse_json)] = None
    """Provider routing, sent as ``provider`` (JSON in the environment)."""
    reasoning: Annotated[ReasoningConfig | None, NoDecode, BeforeValidator(_parse_json)] = None
    """Reasoning budget, sent as ``reasoning`` (JSON in the environment)."""
    app_url: str | None = None
    """Sent as ``HTTP-Referer`` for OpenRouter's attribution."""
    app_title: str | None = "pygent_lc"
    """Sent as ``X-OpenRouter-Title`` and ``X-Title``."""


class OllamaSettings(ProviderSettings):
    """Ollama: ``OLLAMA_*``."""

    model_config = SettingsConfigDict(env_prefix="OLLAMA_")
    keyword_prefix = "ollama_"

    base_url: Annotated[str, AfterValidator(_http_urls)] = "http://localhost:11434"
    """One server, or several comma-separated: a host pool (:mod:`pygent_lc.host_pool`)."""
    model: str | None = None
    """Installed Ollama model, e.g. ``llama3.2``; without it Ollama is skipped."""
    num_ctx: int = Field(default=8192, gt=0)
    """Sent as ``num_ctx`` (Ollama's own default silently truncates)."""

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Each configured server's base URL, in order."""
        return tuple(self.base_url.split(","))


class LocalSettings(ProviderSettings):
    """The embedded llama.cpp model: ``PYGENT_LOCAL_*``."""

    model_config = SettingsConfigDict(env_prefix="PYGENT_LOCAL_")
    keyword_prefix = "local_"
    keywords = {"model": "local_model_path"}  # older than the section

    model: Path | None = None
    """GGUF file; default: the SmolLM2-135M file."""
    threads: int | None = Field(default=None, ge=1, le=1024)
    """Decoding threads; default: half the CPUs this process may use."""
    startup_timeout: float = Field(default=120.0, gt=0, le=3600)
    """Seconds the server may take to start; not charged to the first call."""


# --- everything ----------------------------------------------------------------------


class Settings(BaseSettings):
    """Everything pygent_lc needs to reach its providers.

    Invalid values, unknown keywords and unreadable ``.env`` files raise
    :class:`~pygent_lc.errors.ConfigurationError` naming the setting and where
    its value came from, before anything touches the network.
    """

    model_config = SettingsConfigDict(env_prefix="PYGENT_", extra="ignore", validate_default=True)

    # Read by each section itself (NoDecode: a stray PYGENT_OLLAMA is not parsed here).
    openrouter: Annotated[OpenRouterSettings, NoDecode] = Field(default_factory=OpenRouterSettings)
    ollama: Annotated[OllamaSettings, NoDecode] = Field(default_factory=OllamaSettings)
    local: Annotated[LocalSettings, NoDecode] = Field(default_factory=LocalSettings)

    allow_insecure_http: bool = False
    """Allow the OpenRouter key over plain ``http://`` to any host; not from a ``.env``."""
    providers: ProviderList = Field(default_factory=lambda: list(SECTIONS))
    """Provider order of the fallback chain."""
    request_timeout: float = Field(default=60.0, gt=0, le=3600)
    """Seconds for one provider's whole part of a call, retries and waits included."""
    max_retries: int = Field(default=2, ge=0, le=10)
    retry_max_wait: float = Field(default=20.0, ge=0, le=600)
    retry_initial_wait: float = Field(default=0.5, ge=0, le=60)
    breaker_failures: int = Field(default=3, ge=0, le=1000)
    """Consecutive failed calls that open a provider's circuit (:mod:`pygent_lc.limits.breaker`
    says which count); 0 disables."""
    breaker_cooldown: float = Field(default=30.0, ge=0, le=86400)
    state_url: SecretStr | None = None
    """Where limits, breakers, budget and usage are shared (``redis://...``)."""
    rate_limits: RateLimits = Field(default_factory=dict)
    rate_limit_mode: RateLimitMode = "wait"
    max_cost_usd: float | None = Field(default=None, ge=0)
    """Spending limit of every chain built from these settings."""
    budget_key: NonEmpty = "default"
    """Chains (and processes) with the same key share one budget."""
    budget_window: Annotated[Literal["1h", "1d"] | None, BeforeValidator(_no_window)] = None
    """The budget starts again each hour or day; unset: one total."""

    @property
    def budget_window_s(self) -> int | None:
        return None if self.budget_window is None else {"1h": 3600, "1d": 86400}[self.budget_window]

    def __init__(self, **values: Any) -> None:
        options = {key: value for key, value in values.items() if key in _INIT_OPTIONS}
        given = {key: value for key, value in values.items() if key not in _INIT_OPTIONS}
        own, sections = _route(given)
        config = type(self).model_config
        options.setdefault("_env_file", config.get("env_file"))
        options["_env_file_encoding"] = options.get("_env_file_encoding") or "utf-8"
        from_files = _env_file_lines(options["_env_file"], options["_env_file_encoding"])
        _warn_misspelt({**from_files, **dict.fromkeys(os.environ, "the environment")})
        section_options = {key: options[key] for key in options.keys() & _SECTION_OPTIONS}
        problems: list[tuple[str | None, ValidationError]] = []
        try:
            for name, model in SECTIONS.items():
                try:
                    own[name] = model(**section_options, **sections[name])
                except ValidationError as exc:
                    problems.append((name, exc))
                    own[name] = model.model_construct()  # the defaults, to check the rest
            try:
                super().__init__(**options, **own)
            except ValidationError as exc:
                problems.append((None, exc))
        except SettingsError as exc:  # a source pydantic-settings itself could not read
            raise ConfigurationError(f"cannot read the settings: {exc}") from None
        if problems:
            raise _configuration_error(problems, given, from_files)

    @classmethod
    def from_env_file(
        cls, path: str | os.PathLike[str] = DEFAULT_ENV_FILE, **values: Any
    ) -> Settings:
        """Settings from keywords, then the environment, then the ``.env`` file ``path``
        (skipped when missing; its other variables are ignored)."""
        return cls(_env_file=path, **values)

    def updated(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` (keywords as for ``Settings(...)``) applied."""
        return type(self)(**{**dict(self), **changes})

    @model_validator(mode="after")
    def _key_only_over_https(self) -> Self:
        url, key = self.openrouter.base_url, self.openrouter.api_key
        insecure = url.startswith("http://") and not self.allow_insecure_http
        if key and insecure and not is_loopback_url(url):
            raise CrossFieldError(
                "openrouter_base_url",
                f"would send the OpenRouter key over plain http to {urlsplit(url).hostname}; "
                "use https://, or set PYGENT_ALLOW_INSECURE_HTTP=1 (allow_insecure_http) "
                "to accept that anyone on the way can read it",
            )
        return self


SECTIONS: dict[str, type[ProviderSettings]] = {
    name: info.annotation
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, ProviderSettings)
}
"""The provider sections of :class:`Settings` by name: the known provider names, in
the default fallback order."""

# Every setting by its flat keyword: (section or None, field, environment variable).
_KEYWORDS: dict[str, tuple[str | None, str, str]] = {
    **{name: (None, name, f"PYGENT_{name}".upper()) for name in Settings.model_fields},
    **{
        model.keyword(field): (section, field, f"{model.model_config['env_prefix']}{field}".upper())
        for section, model in SECTIONS.items()
        for field in model.model_fields
    },
}
for _name in SECTIONS:
    del _KEYWORDS[_name]
VARIABLES = frozenset(env for _, _, env in _KEYWORDS.values())
"""Every environment variable :class:`Settings` reads."""

_INIT_OPTIONS = frozenset(  # BaseSettings' own: ``_env_file``, ``_secrets_dir``...
    name
    for name in inspect.signature(BaseSettings.__init__).parameters
    if name.startswith("_") and not name.startswith("__")
)
_SECTION_OPTIONS = {
    "_case_sensitive",
    "_env_file",
    "_env_file_encoding",
    "_env_ignore_empty",
    "_env_parse_none_str",
    "_env_parse_enums",
    "_secrets_dir",
}


def _route(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Keywords as :class:`Settings`' own fields and each section's; flat keywords win
    over a whole section given as a mapping or a model."""
    own: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in values.items():
        if key in SECTIONS:
            value = dict(value) if isinstance(value, SECTIONS[key]) else value
            if not isinstance(value, Mapping):
                raise ConfigurationError(
                    f"invalid setting {key}: expected a mapping or {SECTIONS[key].__name__}",
                    field=key,
                )
            fields = [f"{key}.{field}" for field in SECTIONS[key].model_fields]
            for field in value:
                if f"{key}.{field}" not in fields:
                    raise _unknown(f"{key}.{field}", fields)
            sections[key] = {**value, **sections[key]}
        elif key in _KEYWORDS:
            section, field, _ = _KEYWORDS[key]
            (own if section is None else sections[section])[field] = value
        else:
            raise _unknown(key, [*_KEYWORDS, *SECTIONS, *_INIT_OPTIONS])
    return own, sections


def _unknown(keyword: str, accepted: Iterable[str]) -> ConfigurationError:
    """An unknown keyword, with the closest accepted one (``OLLAMA_MODEL``: ``ollama_model``)."""
    known = {name.lower(): name for name in accepted}
    close = difflib.get_close_matches(keyword.lower(), list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {known[close[0]]!r}?" if close else ""
    return ConfigurationError(f"unknown setting {keyword!r}{hint}", field=keyword)


# --- what the environment and .env files say ----------------------------------------------


class MisspeltSettingWarning(UserWarning):
    """A ``PYGENT_``/``OPENROUTER_``/``OLLAMA_`` variable that is no setting, but close to one:
    its value is ignored (``PYGENT_MAX_COST=0.01`` sets no budget)."""


# Read by this package outside Settings, by its tests, or by Ollama's own server and CLI.
_OLLAMA_OWN = """HOST MODELS KEEP_ALIVE ORIGINS DEBUG FLASH_ATTENTION KV_CACHE_TYPE LLM_LIBRARY
MAX_LOADED_MODELS MAX_QUEUE NUM_PARALLEL NOPRUNE SCHED_SPREAD TMPDIR GPU_OVERHEAD LOAD_TIMEOUT
MULTIUSER_CACHE CONTEXT_LENGTH NEW_ENGINE INTEL_GPU RUNNERS_DIR NOHISTORY API_KEY"""
KNOWN_OTHER_VARIABLES = frozenset(
    ["PYGENT_DEBUG", "PYGENT_OTEL", "PYGENT_OTEL_CAPTURE_CONTENT", "PYGENT_SOAK"]
    + [f"OLLAMA_{name}" for name in _OLLAMA_OWN.split()]
)


def misspelt_variables(names: Iterable[str]) -> dict[str, str]:
    """Each of ``names`` that looks meant for a setting but is none, with the closest.

    Any other ``PYGENT_`` name counts (``PYGENT_TEST_*`` aside); an ``OPENROUTER_``
    or ``OLLAMA_`` name only when close to a setting, as other tools read those too.
    """
    found: dict[str, str] = {}
    for name in names:
        upper = name.upper()
        if (
            upper.startswith(("PYGENT_", "OPENROUTER_", "OLLAMA_"))
            and upper not in VARIABLES | KNOWN_OTHER_VARIABLES
            and not upper.startswith("PYGENT_TEST_")
        ):
            close = difflib.get_close_matches(upper, sorted(VARIABLES), n=1, cutoff=0.8)
            if close or upper.startswith("PYGENT_"):
                found[name] = close[0] if close else ""
    return found


def _warn_misspelt(sources: Mapping[str, str]) -> None:
    for name, closest in misspelt_variables(sources).items():
        warnings.warn(
            f"{name} (in {sources[name].split(' line ')[0]}) is not a pygent_lc setting "
            f"and is ignored{f'; did you mean {closest}?' if closest else ''}",
            MisspeltSettingWarning,
            stacklevel=4,
        )


def _env_file_lines(env_file: object, encoding: str) -> dict[str, str]:
    """Each variable of the existing ``.env`` files (later files win) and where it is
    set (``path line N``); a file that sets ``PYGENT_ALLOW_INSECURE_HTTP`` is refused:
    it comes with a checkout or a download, and could send the key in clear."""
    files = [env_file] if isinstance(env_file, str | os.PathLike) else env_file or []
    found: dict[str, str] = {}
    for path in (Path(os.fspath(item)).expanduser() for item in files):  # type: ignore[attr-defined]
        if not path.is_file():
            continue
        for name, line in read_env_file(path, encoding).items():
            if name.upper() == "PYGENT_ALLOW_INSECURE_HTTP":
                raise ConfigurationError(
                    f"{path} line {line}: PYGENT_ALLOW_INSECURE_HTTP may not be set in a "
                    ".env file (it allows sending the key over plain http); set it in the "
                    "process environment or pass Settings(allow_insecure_http=True)",
                    field="allow_insecure_http",
                )
            found[name.upper()] = f"{path} line {line}"
    return found


def read_env_file(path: Path, encoding: str = "utf-8") -> dict[str, int]:
    """The variables of the ``.env`` file ``path`` and the line each is set on (last wins).

    A byte that is not ``encoding``, a line python-dotenv cannot parse or an
    unreadable file is a :class:`ConfigurationError` naming the file and the
    line, never the line's text (it may hold a key).
    """
    try:
        raw = path.read_bytes()
        text = raw.decode(encoding)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigurationError(
            f"{path} line {line}: not valid {encoding} text (byte {exc.start})"
        ) from None
    except LookupError:
        raise ConfigurationError(f"{path}: unknown encoding {encoding!r}") from None
    lines: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        statement = binding.original.string  # starts with the blank lines before it
        line = binding.original.line + statement[: len(statement) - len(statement.lstrip())].count(
            "\n"
        )
        if binding.error:
            raise ConfigurationError(
                f"{path} line {line}: cannot parse this line "
                "(an unterminated quote? expected NAME=value)"
            )
        if binding.key is not None:
            lines[binding.key] = line
    return lines


# --- errors --------------------------------------------------------------------------


class CrossFieldError(ValueError):
    """A check across fields failed; ``field`` (a flat keyword) is the one to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _configuration_error(
    problems: Iterable[tuple[str | None, ValidationError]],
    given: Mapping[str, Any],
    from_files: Mapping[str, str],
) -> ConfigurationError:
    """One error naming each setting (``keyword (VARIABLE)``) and, unless the caller
    passed it, where its value came from; values quoted only as :func:`shown_value` does."""
    by_place = {(section, field): key for key, (section, field, _) in _KEYWORDS.items()}
    environ = {name.upper() for name in os.environ}
    found: list[str] = []
    messages: list[str] = []
    for section, exc in problems:
        for err in exc.errors(include_url=False):
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, CrossFieldError):
                keyword, message, path = cause.field, str(cause), ""
            else:
                name = str(err["loc"][0]) if err["loc"] else "settings"
                keyword = by_place.get((section, name), name)
                message = _without_input(err["msg"], err.get("input"))
                path = "".join(f".{_shown_key(part)}" for part in err["loc"][1:])
            label, source = keyword, ""
            if keyword in _KEYWORDS:
                place, _, variable = _KEYWORDS[keyword]
                label = f"{keyword} ({variable})"
                if keyword not in given and place not in given:
                    if variable in environ:
                        source = f" from the environment variable {variable}"
                    elif variable in from_files:
                        source = f" from {from_files[variable]}"
            found.append(label)
            messages.append(f"{label}{path}{source}: {message}")
    return ConfigurationError(f"invalid setting {'; '.join(messages)}", field=found[0])


def _without_input(message: str, value: object) -> str:
    """``message`` quoting the value it rejects only as :func:`shown_value` does."""
    if isinstance(value, str) and shown_value(value) != repr(value):  # masked or cut
        for quoted in (repr(value), value):
            message = message.replace(quoted, shown_value(value))
    return message


def _shown_key(part: object) -> str:
    """A key of a JSON setting in an error's path: a pasted key masked, a long one cut."""
    text = str(part)
    shown = shown_value(text)[1:-1]
    return text if shown == text and len(text) <= MAX_SHOWN_CHARS else shown


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


__all__ = [
    "DEFAULT_ENV_FILE",
    "SECTIONS",
    "VARIABLES",
    "LocalSettings",
    "MisspeltSettingWarning",
    "OllamaSettings",
    "OpenRouterSettings",
    "ProviderName",
    "ProviderSettings",
    "Settings",
    "is_loopback_url",
    "misspelt_variables",
    "provider_name",
    "read_env_file",
    "unique_provider_names",
]
