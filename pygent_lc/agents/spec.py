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
)

from pygent_lc.errors import AgentError, ConfigurationError
from pygent_lc.providers.registry import PROVIDERS, unique_provider_names
from pygent_lc.redaction import shown_value
from pygent_lc.settings import ProviderName, Settings
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.tasks.base import Task
from pygent_lc.tot.tasks.game24 import Game24Task
from pygent_lc.tot.tasks.generic import GenericTask

AgentType = Literal["reasoning", "chat"]
AGENT_TYPES: tuple[AgentType, ...] = get_args(AgentType)
#: A provider's name, or ``"auto"``: the configured chain.
PROVIDER_CHOICES: tuple[str, ...] = (*PROVIDERS, "auto")
TASKS: dict[str, type[Task]] = {"generic": GenericTask, "game24": Game24Task}
TASK_NAMES = tuple(TASKS)
TOT_KEYS = frozenset(ToTConfig.model_fields)
#: The ToT settings that also mean something to a chat agent.
CHAT_KEYS = frozenset({"temperature", "max_tokens"})


def _normalized(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _choice(what: str, choices: tuple[str, ...]) -> BeforeValidator:
    def check(value: object) -> object:
        if (name := _normalized(value)) in choices:
            return name
        raise ValueError(f"unknown {what} {shown_value(name)}; choose from {', '.join(choices)}")

    return BeforeValidator(check)


def _name_list(value: object) -> object:
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()]
    return () if value is None else value


Text = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1)]
Key = Annotated[
    SecretStr,
    BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v),
    StringConstraints(min_length=1),
]
Provider = Annotated[ProviderName, _choice("provider", tuple(PROVIDERS))]


class AgentSpec(BaseModel):
    """What ``custom_config`` asked for, checked: its keys are the fields but
    ``agent_type`` (the factory's argument) and ``tot`` (where its ToT keys go)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_type: Annotated[AgentType, _choice("agent type", AGENT_TYPES)]
    provider: Annotated[str, _choice("provider", PROVIDER_CHOICES)] = "auto"
    model_name: Text | None = None
    openrouter_api_key: Key | None = None
    ollama_url: Text | None = None
    fallbacks: Annotated[tuple[Provider, ...], BeforeValidator(_name_list)] = ()
    task: Annotated[str, _choice("task", TASK_NAMES)] = "generic"
    check_model: StrictBool = False
    """Also ask OpenRouter's ``/models`` whether the model exists (one extra request)."""
    system_prompt: Text | None = None
    tot: dict[str, Any] = {}
    """ToT settings (``ToTConfig`` field names); for a chat agent only temperature/max_tokens."""

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
    def _reasoning_only(cls, task: str, info: ValidationInfo) -> str:
        if task != "generic" and info.data.get("agent_type") == "chat":
            raise ValueError("applies to reasoning agents only")
        return task

    def settings(self, base: Settings) -> Settings:
        """``base`` with the spec's key, URL, model and provider order applied, validated."""
        # The setting each custom_config key fills: an error names the key the caller wrote.
        fills = {"openrouter_api_key": "openrouter_api_key", "ollama_url": "ollama_base_url"}
        if self.model_name is not None:
            fills["model_name"] = PROVIDERS[self.provider].model_keyword
        changes = {fills[key]: value for key in fills if (value := getattr(self, key)) is not None}
        changes["providers"] = [self.provider, *self.fallbacks]
        if self.provider == "auto":  # the configured chain, or the fallbacks alone
            changes["providers"] = list(self.fallbacks or base.providers)
        try:
            return base.updated(**changes)
        except ConfigurationError as exc:
            setting = (exc.field or "").split(" ")[0]
            key = next((key for key in fills if fills[key] == setting), None)
            prefix = "" if key is None else f"custom_config {key}: "
            raise AgentError(f"{prefix}{exc}", field=key or exc.field) from exc


def parse_spec(agent_type: object, custom_config: Mapping[str, Any] | None) -> AgentSpec:
    """Check ``custom_config`` for ``agent_type``; every problem is an :class:`AgentError`."""
    config = dict(custom_config or {})
    kind = _normalized(agent_type)
    # Fields, but not keys of custom_config.
    if reserved := sorted(config.keys() & {"agent_type", "tot"}):
        raise AgentError(_unknown_key(reserved[0], kind), field=reserved[0])
    tot_keys = TOT_KEYS if kind == "reasoning" else CHAT_KEYS
    tot = {key: config.pop(key) for key in list(config) if key in tot_keys}
    try:
        return AgentSpec.model_validate({**config, "agent_type": agent_type, "tot": tot})
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
    cause = (error.get("ctx") or {}).get("error")
    text = _MESSAGES.get(error["type"], str(cause) if cause else error["msg"])
    return text if key == "agent_type" else f"custom_config {key}: {text}"


def _unknown_key(key: str, kind: object) -> str:
    return f"unknown custom_config key {key!r} for a {kind} agent"
