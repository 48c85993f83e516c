"""Configuration read from the environment, and from a ``.env`` file when asked.

One section per provider, each read under its own environment prefix
(:class:`OpenRouterSettings` ``OPENROUTER_*``, :class:`OllamaSettings`
``OLLAMA_*``, :class:`LocalSettings` ``PYGENT_LOCAL_*``), and the chain's own
settings (``PYGENT_*``) on :class:`Settings` itself. Values are read in their
section: ``settings.openrouter.model``, ``settings.request_timeout``.

Keywords stay flat, like the environment: ``Settings(openrouter_model=...,
OLLAMA_MODEL=..., request_timeout=5)``; a section also takes a mapping or a
model (``Settings(ollama={"model": "llama3.2"})``).

``Settings()`` reads keyword arguments and the environment only;
``Settings.from_env_file()`` (or ``Settings(_env_file=...)``) also reads a
``.env`` file, whose other variables are ignored. The ``pygent-lc`` command
reads ``./.env``.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import io
import ipaddress
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self
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
from pygent_lc.openrouter_options import ProviderPreferences, ReasoningConfig
from pygent_lc.redaction import MAX_SHOWN_CHARS, shown_value

ProviderName = str
"""A provider's name: a key of :data:`pygent_lc.providers.registry.PROVIDERS`."""

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
        if not url:
            raise ValueError(f"URL {number} of {len(urls)} is empty")
        try:
            checked.append(_http_url(url))
        except ValueError as exc:
            raise ValueError(f"URL {number} of {len(urls)} {exc}") from None
        if checked[-1] in checked[:-1]:
            raise ValueError(
                f"URL {number} of {len(urls)} is listed twice ({shown_value(checked[-1])})"
            )
    return ",".join(checked)


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _parse_json(value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:  # its message has no part of the value
            raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    return value


def _split_comma_list(value: object) -> object:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
        if not all(value):
            raise ValueError("empty name in a comma-separated list")
    return value


def _known_provider(value: object) -> str:
    from pygent_lc.providers.registry import provider_name  # the registry imports settings

    return provider_name(value)


def _unique_providers(value: list[str]) -> list[str]:
    from pygent_lc.providers.registry import unique_provider_names

    return unique_provider_names(value)


def _all_providers() -> list[str]:
    from pygent_lc.providers.registry import PROVIDERS

    return list(PROVIDERS)


def _rate_limits(value: object) -> object:
    if isinstance(value, str):
        value = parse_rate_limits(value)
    if isinstance(value, Mapping):
        return {
            _known_provider(name): RateLimit.parse(rate) if isinstance(rate, str) else rate
            for name, rate in value.items()
        }
    return value


def _no_window(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value


_WINDOWS = {"1h": 3600, "1d": 86400}

HttpBaseUrl = Annotated[str, AfterValidator(_http_url)]
"""An ``http://`` or ``https://`` URL, without a trailing slash."""
HttpBaseUrls = Annotated[str, AfterValidator(_http_urls)]
"""One :data:`HttpBaseUrl` or several, comma-separated (kept as one string)."""
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_comma_list)]
"""A list; comma-separated in the environment."""
ProviderList = Annotated[
    list[Annotated[str, BeforeValidator(_known_provider)]],
    NoDecode,
    BeforeValidator(_split_comma_list),
    AfterValidator(_unique_providers),
]
"""Known provider names, each once, lower case; comma-separated in the environment."""
RateLimits = Annotated[dict[str, RateLimit], NoDecode, BeforeValidator(_rate_limits)]
"""``provider=rate`` pairs, comma-separated in the environment (``openrouter=120/min``)."""
BudgetWindow = Annotated[Literal["1h", "1d"] | None, BeforeValidator(_no_window)]


# --- one section per provider ----------------------------------------------------------


class ProviderSettings(BaseSettings):
    """One provider's settings, read from the environment under its ``env_prefix``.

    Each field is also a flat keyword of :class:`Settings`: ``keyword_prefix``
    plus its name, unless ``keywords`` names it otherwise.
    """

    model_config = SettingsConfigDict(
        env_file=None, env_file_encoding="utf-8", extra="ignore", validate_default=True
    )

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
    """Base URL of OpenRouter's OpenAI-compatible API; with a key set, plain ``http://``
    is refused unless the host is loopback or ``allow_insecure_http`` is set."""

    model: Annotated[str, AfterValidator(_non_empty)] = "anthropic/claude-3.5-sonnet"
    """OpenRouter model slug, e.g. ``openai/gpt-4o`` or ``deepseek/deepseek-r1:free``."""

    models: CommaList = Field(default_factory=list)
    """OpenRouter's own model fallbacks, in priority order, sent as ``models``;
    ``model`` is tried first."""

    provider: Annotated[ProviderPreferences | None, NoDecode, BeforeValidator(_parse_json)] = None
    """Provider routing, sent as ``provider`` (JSON in the environment), e.g.
    ``{"sort": "throughput", "data_collection": "deny"}``."""

    reasoning: Annotated[ReasoningConfig | None, NoDecode, BeforeValidator(_parse_json)] = None
    """Reasoning budget, sent as ``reasoning`` (JSON in the environment), e.g.
    ``{"effort": "low"}``."""

    app_url: str | None = None
    """Your app's URL, sent as ``HTTP-Referer`` for OpenRouter's attribution."""

    app_title: str | None = "pygent_lc"
    """Your app's name, sent as ``X-OpenRouter-Title`` and ``X-Title``."""


class OllamaSettings(ProviderSettings):
    """Ollama: ``OLLAMA_*``."""

    model_config = SettingsConfigDict(env_prefix="OLLAMA_")
    keyword_prefix = "ollama_"

    base_url: HttpBaseUrls = "http://localhost:11434"
    """Base URL of the Ollama server, or of several, comma-separated
    (``http://gpu1:11434,http://gpu2:11434``): a host pool, see
    :mod:`pygent_lc.host_pool`. Code that talks to one server reads
    :attr:`base_urls` (``[0]`` is the first host)."""

    model: str | None = None
    """Installed Ollama model to use, e.g. ``llama3.2``; without it Ollama is skipped."""

    num_ctx: int = Field(default=8192, gt=0)
    """Context window sent to Ollama as ``num_ctx`` (its own default silently truncates)."""

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Each configured server's base URL, in order (one unless a pool is configured)."""
        return tuple(self.base_url.split(","))


class LocalSettings(ProviderSettings):
    """The embedded llama.cpp model: ``PYGENT_LOCAL_*``."""

    model_config = SettingsConfigDict(env_prefix="PYGENT_LOCAL_")
    keyword_prefix = "local_"
    keywords = {"model": "local_model_path"}  # older than the section

    model: Path | None = None
    """GGUF file for the embedded llama.cpp provider; default: the SmolLM2-135M file."""

    threads: int | None = Field(default=None, ge=1, le=1024)
    """Decoding threads of the embedded server; default: half the CPUs this process may
    use (its affinity and cgroup quota), so a busy machine stays usable."""

    startup_timeout: float = Field(default=120.0, gt=0, le=3600)
    """Seconds the embedded server may take to start and load its model; not charged
    to the first call's ``request_timeout``."""


# --- everything ----------------------------------------------------------------------


class Settings(BaseSettings):
    """Everything pygent_lc needs to reach its providers.

    Reads keyword arguments (flat names, environment names, or a whole
    section) and the environment; a ``.env`` file only through
    :meth:`from_env_file` or ``_env_file=``. Invalid values, unknown keyword
    arguments and unreadable ``.env`` files raise
    :class:`~pygent_lc.errors.ConfigurationError` naming the setting and
    where its value came from, before anything touches the network.
    """

    model_config = SettingsConfigDict(
        env_prefix="PYGENT_",
        env_file=None,
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # Read by each section itself (NoDecode: a stray PYGENT_OLLAMA is not parsed here).
    openrouter: Annotated[OpenRouterSettings, NoDecode] = Field(default_factory=OpenRouterSettings)
    ollama: Annotated[OllamaSettings, NoDecode] = Field(default_factory=OllamaSettings)
    local: Annotated[LocalSettings, NoDecode] = Field(default_factory=LocalSettings)

    allow_insecure_http: bool = False
    """Allow sending the OpenRouter key over plain ``http://`` to a non-loopback host
    (anyone on the path can read it); off by default. Only from the process
    environment or code: a ``.env`` file that sets it is a ``ConfigurationError``."""

    providers: ProviderList = Field(default_factory=_all_providers)
    """Provider order of the fallback chain, comma-separated in the environment."""

    request_timeout: float = Field(default=60.0, gt=0, le=3600)
    """Seconds one request may take before it counts as failed; also the budget for
    all of a provider's attempts in one call (retries and waits included)."""

    max_retries: int = Field(default=2, ge=0, le=10)
    """Retries per provider for retryable errors, after the first attempt."""

    retry_max_wait: float = Field(default=20.0, ge=0, le=600)
    """Cap in seconds for one backoff wait, ``Retry-After`` included."""

    retry_initial_wait: float = Field(default=0.5, ge=0, le=60)
    """First backoff wait in seconds; it doubles per retry, plus jitter of up to as much."""

    breaker_failures: int = Field(default=3, ge=0, le=1000)
    """Consecutive failed calls (retries used up) that open a provider's circuit; 0 disables.

    Counted: unavailable/5xx/408/timeouts/connection failures, 429, 401, 402, 404
    (see :mod:`pygent_lc.limits.breaker`).
    """

    breaker_cooldown: float = Field(default=30.0, ge=0, le=86400)
    """Seconds an open circuit skips its provider before one probe call; 0 disables."""

    state_url: SecretStr | None = None
    """Where limits, breakers, budget and usage are shared by every process, e.g.
    ``redis://localhost:6379/0`` (the ``redis`` extra); unset: in this process only."""

    rate_limits: RateLimits = Field(default_factory=dict)
    """Requests per provider, e.g. ``openrouter=120/min,ollama=10/s``; OpenRouter's
    ``:free`` models' 20/min per key is built in."""

    rate_limit_mode: RateLimitMode = "wait"
    """``wait`` for a slot within ``request_timeout``, or ``raise`` at once."""

    max_cost_usd: float | None = Field(default=None, ge=0)
    """Spending limit of every chain built from these settings; unset: none."""

    budget_key: Annotated[str, AfterValidator(_non_empty)] = "default"
    """Chains (and processes) with the same key share one budget."""

    budget_window: BudgetWindow = None
    """``1h`` or ``1d``: the budget starts again each hour or day; unset: one total."""

    @property
    def budget_window_s(self) -> int | None:
        return None if self.budget_window is None else _WINDOWS[self.budget_window]

    def __init__(self, **values: Any) -> None:
        options = {key: value for key, value in values.items() if key in _INIT_OPTIONS}
        given = {key: value for key, value in values.items() if key not in _INIT_OPTIONS}
        own, sections = _route(given)
        env_file = options.get("_env_file", type(self).model_config.get("env_file"))
        encoding = str(
            options.get("_env_file_encoding")
            or type(self).model_config.get("env_file_encoding")
            or "utf-8"
        )
        from_files: dict[str, str] = {}
        for path in _env_file_paths(env_file):  # before pydantic-settings reads it leniently
            variables = read_env_file(path, encoding)
            _no_insecure_http_from(path, variables)
            from_files.update(dict.fromkeys(variables, str(path)))
        _warn_misspelt({**from_files, **dict.fromkeys(os.environ, "the environment")})
        shared = {key: value for key, value in options.items() if key in _SECTION_OPTIONS}
        shared.update(_env_file=env_file, _env_file_encoding=encoding)  # a subclass's too
        problems: list[tuple[str | None, ValidationError]] = []
        try:
            for name, model in _sections().items():
                try:
                    own[name] = model(**shared, **sections[name])
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
            raise configuration_error_from(problems, _SourceFinder(given, env_file, encoding))

    @classmethod
    def from_env_file(
        cls, path: str | os.PathLike[str] = DEFAULT_ENV_FILE, **values: Any
    ) -> Settings:
        """Settings from keyword arguments, the environment and the ``.env`` file ``path``.

        Precedence: keyword arguments, then the environment, then the file; a
        missing file is skipped, and the file's other variables are ignored.
        """
        return cls(_env_file=path, **values)

    def updated(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` (keywords as for ``Settings(...)``) applied."""
        return type(self)(**{**dict(self), **changes})

    @model_validator(mode="after")
    def _key_only_over_https(self) -> Self:
        openrouter = self.openrouter
        url = openrouter.base_url
        if (
            openrouter.api_key is not None
            and url.startswith("http://")
            and not self.allow_insecure_http
            and not is_loopback_url(url)
        ):
            host = urlsplit(url).hostname or "?"
            raise CrossFieldError(
                OpenRouterSettings.keyword("base_url"),
                f"would send the OpenRouter key over plain http to {host}; use https://, "
                "or set PYGENT_ALLOW_INSECURE_HTTP=1 (allow_insecure_http) to accept that "
                "anyone on the way can read it",
            )
        return self

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            # The flat names of section fields (``settings.openrouter_model``), for
            # code written before the sections; typed code reads the section.
            setting = _settings_table().get(name)
            if setting is not None and setting.section is not None and name == setting.keyword:
                return getattr(getattr(self, setting.section), setting.field)
            return super().__getattr__(name)


class CrossFieldError(ValueError):
    """A check across fields failed; ``field`` (a flat keyword) is the one to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --- keywords, environment names and error messages --------------------------------------


@dataclass(frozen=True)
class _Setting:
    """One setting: where it lives, its flat keyword and its environment name."""

    section: str | None
    field: str
    keyword: str
    env: str

    @property
    def label(self) -> str:
        return f"{self.keyword} ({self.env})"


def _env_name(model: type[BaseSettings], field: str) -> str:
    return f"{model.model_config.get('env_prefix') or ''}{field}".upper()


@functools.cache
def _sections() -> dict[str, type[ProviderSettings]]:
    """The section fields of :class:`Settings` and their models."""
    return {
        name: info.annotation
        for name, info in Settings.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, ProviderSettings)
    }


@functools.cache
def _settings_table() -> dict[str, _Setting]:
    """Every setting by its flat keyword and by its environment name."""
    table: dict[str, _Setting] = {}
    sections = _sections()
    for name in Settings.model_fields:
        section = sections.get(name)
        if section is None:
            settings = [_Setting(None, name, name, _env_name(Settings, name))]
        else:
            settings = [
                _Setting(name, field, section.keyword(field), _env_name(section, field))
                for field in section.model_fields
            ]
        for setting in settings:
            table[setting.keyword] = table[setting.env] = setting
    return table


def _setting_at(section: str | None, field: str) -> _Setting | None:
    for setting in _settings_table().values():
        if (setting.section, setting.field) == (section, field):
            return setting
    return None


# BaseSettings' own keyword options: ``_env_file``, ``_env_prefix``, ``_secrets_dir``...
_INIT_OPTIONS = frozenset(
    name
    for name in inspect.signature(BaseSettings.__init__).parameters
    if name.startswith("_") and not name.startswith("__")
)
# The options that say how to read the environment, not where: each section gets them.
_SECTION_OPTIONS = _INIT_OPTIONS & {
    "_case_sensitive",
    "_env_file",
    "_env_file_encoding",
    "_env_ignore_empty",
    "_env_parse_none_str",
    "_env_parse_enums",
    "_secrets_dir",
}


def _route(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Keyword arguments as :class:`Settings`' own fields and each section's fields.

    A whole section (a mapping or a model) comes first; flat keywords override it.
    """
    table = _settings_table()
    sections: dict[str, dict[str, Any]] = {name: {} for name in _sections()}
    own: dict[str, Any] = {}
    flat: list[tuple[_Setting, Any]] = []
    for key, value in values.items():
        if key in sections:
            sections[key].update(_section_values(key, value))
        elif key in table:
            flat.append((table[key], value))
        else:
            raise _unknown(key, [*table, *sections, *_INIT_OPTIONS])
    for setting, value in flat:
        target = own if setting.section is None else sections[setting.section]
        target[setting.field] = value
    return own, sections


def _section_values(name: str, value: object) -> dict[str, Any]:
    model = _sections()[name]
    if isinstance(value, model):
        return dict(value)
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"invalid setting {name}: expected a mapping or {model.__name__}", field=name
        )
    for key in value:
        if key not in model.model_fields:
            raise _unknown(f"{name}.{key}", [f"{name}.{field}" for field in model.model_fields])
    return dict(value)


def _unknown(keyword: str, accepted: Iterable[str]) -> ConfigurationError:
    """An unknown keyword, with the closest accepted one (and its field, for an env name)."""
    table = _settings_table()
    # Lower case, so ``openrouter_key`` finds ``openrouter_api_key`` and not the
    # same letters as ``OPENROUTER_API_KEY``: names in the keyword's case go last, to win.
    names = sorted(accepted, key=lambda n: n.isupper() == keyword.isupper())
    known = {name.lower(): name for name in names}
    close = difflib.get_close_matches(keyword.lower(), list(known), n=1, cutoff=0.6)
    hint = ""
    if close:
        match = known[close[0]]
        field = table[match].keyword if match in table else match
        hint = f"; did you mean {match!r}" + (f" (field {field!r})?" if field != match else "?")
    return ConfigurationError(f"unknown setting {keyword!r}{hint}", field=keyword)


class MisspeltSettingWarning(UserWarning):
    """A ``PYGENT_``/``OPENROUTER_``/``OLLAMA_`` variable that is no setting, but close to one:
    its value is ignored (``PYGENT_MAX_COST=0.01`` sets no budget)."""


# Read by this package outside Settings, by its tests, or by Ollama's own server and CLI.
KNOWN_OTHER_VARIABLES = frozenset(
    {
        "PYGENT_DEBUG",
        "PYGENT_OTEL",
        "PYGENT_OTEL_CAPTURE_CONTENT",
        "PYGENT_SOAK",
        *(
            f"OLLAMA_{name}"
            for name in [
                "HOST",
                "MODELS",
                "KEEP_ALIVE",
                "ORIGINS",
                "DEBUG",
                "FLASH_ATTENTION",
                "KV_CACHE_TYPE",
                "LLM_LIBRARY",
                "MAX_LOADED_MODELS",
                "MAX_QUEUE",
                "NUM_PARALLEL",
                "NOPRUNE",
                "SCHED_SPREAD",
                "TMPDIR",
                "GPU_OVERHEAD",
                "LOAD_TIMEOUT",
                "MULTIUSER_CACHE",
                "CONTEXT_LENGTH",
                "NEW_ENGINE",
                "INTEL_GPU",
                "RUNNERS_DIR",
                "NOHISTORY",
                "API_KEY",
            ]
        ),
    }
)
_OUR_PREFIXES = ("PYGENT_", "OPENROUTER_", "OLLAMA_")


def misspelt_variables(names: Iterable[str]) -> dict[str, str]:
    """Each of ``names`` that looks meant for a setting but is none, with the closest.

    Any other ``PYGENT_`` name counts (``PYGENT_TEST_*`` aside); an ``OPENROUTER_``
    or ``OLLAMA_`` name only when it is close to a setting, as other tools read
    those prefixes too.
    """
    settings = sorted({setting.env for setting in _settings_table().values()})
    found: dict[str, str] = {}
    for name in names:
        upper = name.upper()
        if (
            not upper.startswith(_OUR_PREFIXES)
            or upper in settings
            or upper in KNOWN_OTHER_VARIABLES
            or upper.startswith("PYGENT_TEST_")
        ):
            continue
        close = difflib.get_close_matches(upper, settings, n=1, cutoff=0.8)
        if close or upper.startswith("PYGENT_"):
            found[name] = close[0] if close else ""
    return found


def _warn_misspelt(sources: Mapping[str, str]) -> None:
    for name, closest in misspelt_variables(sources).items():
        hint = f"; did you mean {closest}?" if closest else ""
        warnings.warn(
            f"{name} (in {sources[name]}) is not a pygent_lc setting and is ignored{hint}",
            MisspeltSettingWarning,
            stacklevel=4,
        )


_INSECURE_HTTP_ENV = "PYGENT_ALLOW_INSECURE_HTTP"


def _no_insecure_http_from(path: Path, variables: Mapping[str, int]) -> None:
    """Refuse a ``.env`` that allows the key over plain http.

    A ``.env`` comes with a checkout or a download; one that sets a remote
    ``http://`` base URL and this switch would send the environment's key in
    clear. The switch is taken from the process environment or code only.
    """
    for name, line in variables.items():
        if name.upper() == _INSECURE_HTTP_ENV:
            raise ConfigurationError(
                f"{path} line {line}: {_INSECURE_HTTP_ENV} may not be set in a .env file "
                "(it allows sending the key over plain http); set it in the process "
                "environment or pass Settings(allow_insecure_http=True)",
                field="allow_insecure_http",
            )


def _env_file_paths(env_file: object) -> list[Path]:
    """The existing files among pydantic-settings' ``env_file`` value (a path or several)."""
    if env_file is None:
        return []
    candidates: Iterable[object] = (
        [env_file] if isinstance(env_file, str | os.PathLike) else env_file  # type: ignore[assignment]
    )
    paths = [Path(os.fspath(item)).expanduser() for item in candidates]  # type: ignore[call-overload]
    return [path for path in paths if path.is_file()]


class _SourceFinder:
    """Where a setting's value came from: a keyword, the environment or a ``.env`` line."""

    def __init__(self, values: Mapping[str, Any], env_file: object, encoding: str) -> None:
        self.values = values
        self.env_file = env_file
        self.encoding = encoding

    def __call__(self, setting: _Setting) -> str | None:
        section = self.values.get(setting.section) if setting.section is not None else None
        if (
            setting.keyword in self.values
            or setting.env in self.values
            or isinstance(section, ProviderSettings)
            or (isinstance(section, Mapping) and setting.field in section)
        ):
            return None  # the caller's own argument: no need to say where
        name = setting.env.lower()
        if name in {variable.lower() for variable in os.environ}:
            return f"from the environment variable {setting.env}"
        for path in reversed(_env_file_paths(self.env_file)):  # later files win
            try:
                lines = {
                    key.lower(): line for key, line in read_env_file(path, self.encoding).items()
                }
            except ConfigurationError:
                continue
            if name in lines:
                return f"from {path} line {lines[name]}"
        return None


def configuration_error_from(
    problems: Iterable[tuple[str | None, ValidationError]],
    source_of: _SourceFinder | None = None,
) -> ConfigurationError:
    """Turn pydantic errors (of a section, or of :class:`Settings` itself: ``None``) into
    one naming each setting (and where its value came from, given ``source_of``),
    without echoing values."""
    found: list[str] = []
    messages: list[str] = []
    for section, exc in problems:
        for err in exc.errors(include_url=False):
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, CrossFieldError):  # a check across fields names its field
                setting = _settings_table().get(cause.field)
                name, message, path = cause.field, str(cause), ""
            else:
                name = str(err["loc"][0]) if err["loc"] else "settings"
                setting = _setting_at(section, name)
                message = _without_input(err["msg"], err.get("input"))
                path = "".join(f".{_shown_key(part)}" for part in err["loc"][1:])
            label = setting.label if setting is not None else name
            source = source_of(setting) if source_of is not None and setting is not None else None
            found.append(label)
            messages.append(f"{label}{path}{f' {source}' if source else ''}: {message}")
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


__all__ = [
    "DEFAULT_ENV_FILE",
    "LocalSettings",
    "MisspeltSettingWarning",
    "OllamaSettings",
    "OpenRouterSettings",
    "ProviderName",
    "ProviderSettings",
    "Settings",
    "is_loopback_url",
    "misspelt_variables",
    "read_env_file",
]
