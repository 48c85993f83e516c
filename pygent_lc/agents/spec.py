"""``custom_config`` of ``AgentFactory.create_agent``, read and checked before anything runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pygent_lc.errors import AgentError, ConfigurationError
from pygent_lc.providers.registry import PROVIDERS, provider_name, unique_provider_names
from pygent_lc.settings import ProviderName, Settings
from pygent_lc.tot.config import ToTConfig


def _normalized(value: object) -> object:
    """A name as the caller may write it: any case, spaces around."""
    return value.strip().lower() if isinstance(value, str) else value


def _provider_choice(value: object) -> str:
    if _normalized(value) == "auto":
        return "auto"
    try:
        return provider_name(value)
    except ValueError as exc:
        raise ValueError(f"{exc}, auto") from None


def _name_list(value: object) -> object:
    """``fallbacks`` may be one comma-separated string, or ``None`` for none."""
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()]
    return () if value is None else value


AgentType = Literal["reasoning", "chat"]
AGENT_TYPES: tuple[AgentType, ...] = get_args(AgentType)
#: A provider's name, or ``"auto"``: the configured chain.
PROVIDER_CHOICES: tuple[str, ...] = (*PROVIDERS, "auto")
TaskName = Literal["generic", "game24"]
TASK_NAMES: tuple[TaskName, ...] = get_args(TaskName)
TOT_KEYS = frozenset(ToTConfig.model_fields)
#: The ToT settings that also mean something to a chat agent.
CHAT_KEYS = frozenset({"temperature", "max_tokens"})

Text = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1)]
Key = Annotated[
    SecretStr,
    BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v),
    StringConstraints(min_length=1),
]
Provider = Annotated[ProviderName, BeforeValidator(provider_name)]


class AgentSpec(BaseModel):
    """What ``custom_config`` asked for, checked: its keys are the fields but
    ``agent_type`` (the factory's argument) and ``tot`` (where its ToT keys go)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_type: Annotated[AgentType, BeforeValidator(_normalized)]
    provider: Annotated[str, BeforeValidator(_provider_choice)] = "auto"
    model_name: Text | None = None
    openrouter_api_key: Key | None = None
    ollama_url: Text | None = None
    fallbacks: Annotated[tuple[Provider, ...], BeforeValidator(_name_list)] = ()
    task: Annotated[TaskName, BeforeValidator(_normalized)] = "generic"
    check_model: StrictBool = False
    """Also ask OpenRouter's ``/models`` whether the model exists (one extra request)."""
    system_prompt: Text | None = None
    tot: dict[str, Any] = {}
    """ToT settings (``ToTConfig`` field names); for a chat agent only temperature/max_tokens."""

    @model_validator(mode="before")
    @classmethod
    def _collect_tot(cls, data: Any) -> Any:
        """The ToT keys of a flat ``custom_config`` (plus ``agent_type``) into ``tot``."""
        if not isinstance(data, dict) or "tot" in data:
            return data
        keys = TOT_KEYS if _normalized(data.get("agent_type")) == "reasoning" else CHAT_KEYS
        rest = {key: value for key, value in data.items() if key not in keys}
        return rest | {"tot": {key: value for key, value in data.items() if key in keys}}

    @field_validator("fallbacks")
    @classmethod
    def _each_once(cls, fallbacks: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        unique_provider_names([info.data.get("provider", "auto"), *fallbacks])
        return fallbacks

    @field_validator("model_name")
    @classmethod
    def _needs_a_provider(cls, model_name: str | None, info: ValidationInfo) -> str | None:
        if model_name is not None and info.data.get("provider") == "auto":
            raise ValueError(f"needs an explicit provider ({', '.join(PROVIDERS)}), not 'auto'")
        return model_name

    @field_validator("task")
    @classmethod
    def _reasoning_only(cls, task: TaskName, info: ValidationInfo) -> TaskName:
        if task != "generic" and info.data.get("agent_type") == "chat":
            raise ValueError("applies to reasoning agents only")
        return task

    def provider_names(self, settings: Settings) -> list[ProviderName]:
        """The providers of the agent's chain, in order."""
        if self.provider == "auto":
            return list(self.fallbacks or settings.providers)
        return [self.provider, *self.fallbacks]


def parse_spec(agent_type: object, custom_config: Mapping[str, Any] | None) -> AgentSpec:
    """Check ``custom_config`` for ``agent_type``; every problem is an :class:`AgentError`."""
    config = dict(custom_config or {})
    kind = _normalized(agent_type)
    # Fields, but not keys of custom_config (a flat dict would let them through).
    if reserved := sorted(config.keys() & {"agent_type", "tot"}):
        raise AgentError(_unknown_key(reserved[0], kind), field=reserved[0])
    try:
        return AgentSpec.model_validate({**config, "agent_type": agent_type})
    except ValidationError as exc:
        errors = exc.errors()
        message = ". ".join(_message(error, kind) for error in errors)
        raise AgentError(message, field=str(errors[0]["loc"][0])) from None


_MESSAGES = {
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "bool_type": "must be true or false",
    "tuple_type": "must be a list of provider names",
}


def _message(error: Any, kind: object) -> str:
    key = str(error["loc"][0])
    if error["type"] == "extra_forbidden":
        return _unknown_key(key, kind)
    if error["type"] == "literal_error":
        choices = ", ".join(get_args(AgentSpec.model_fields[key].annotation))
        text = f"unknown {key.replace('_', ' ')} {error['input']!r}; choose from {choices}"
    else:
        cause = (error.get("ctx") or {}).get("error")
        text = _MESSAGES.get(error["type"], str(cause) if cause else error["msg"])
    return text if key == "agent_type" else f"custom_config {key}: {text}"


def _unknown_key(key: str, kind: object) -> str:
    return f"unknown custom_config key {key!r} for a {kind} agent"


def agent_settings(spec: AgentSpec, base: Settings) -> Settings:
    """``base`` with the spec's key, URL, model and provider order applied, validated."""
    changes: dict[str, Any] = {}
    if spec.openrouter_api_key is not None:
        changes["openrouter_api_key"] = spec.openrouter_api_key
    if spec.ollama_url is not None:
        changes["ollama_base_url"] = spec.ollama_url
    if spec.model_name is not None:
        changes[PROVIDERS[spec.provider].model_keyword] = spec.model_name
    changes["providers"] = spec.provider_names(base)
    try:
        return base.updated(**changes)
    except ConfigurationError as exc:
        setting = (exc.field or "").split(" ")[0]
        key = next((k for k, fields in _SETTING_OF_KEY.items() if setting in fields), None)
        if key is None:
            raise AgentError(str(exc), field=exc.field) from exc
        raise AgentError(f"custom_config {key}: {exc}", field=key) from exc


# custom_config key -> the settings it fills, to name the key the caller wrote.
_SETTING_OF_KEY = {
    "openrouter_api_key": ("openrouter_api_key",),
    "ollama_url": ("ollama_base_url",),
    "model_name": tuple(spec.model_keyword for spec in PROVIDERS.values()),
}
