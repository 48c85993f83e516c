"""``custom_config`` of ``AgentFactory.create_agent``, read and checked before anything runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from pydantic import SecretStr

from pygent_lc.errors import AgentError, ConfigurationError
from pygent_lc.providers.registry import PROVIDERS, provider_name
from pygent_lc.settings import ProviderName, Settings
from pygent_lc.tot.config import ToTConfig

AgentType = Literal["reasoning", "chat"]
AGENT_TYPES: tuple[AgentType, ...] = get_args(AgentType)
ProviderChoice = str
"""A provider's name, or ``"auto"``: the configured chain."""
PROVIDER_CHOICES: tuple[ProviderChoice, ...] = (*PROVIDERS, "auto")
TaskName = Literal["generic", "game24"]
TASK_NAMES: tuple[TaskName, ...] = get_args(TaskName)

#: Keys of ``custom_config`` other than ToT settings (``ToTConfig`` field names).
AGENT_KEYS = frozenset(
    {
        "provider",
        "model_name",
        "openrouter_api_key",
        "ollama_url",
        "fallbacks",
        "task",
        "check_model",
        "system_prompt",
    }
)
TOT_KEYS = frozenset(ToTConfig.model_fields)
#: The ToT settings that also mean something to a chat agent.
CHAT_KEYS = frozenset({"temperature", "max_tokens"})


@dataclass(frozen=True)
class AgentSpec:
    """What ``custom_config`` asked for, checked."""

    agent_type: AgentType
    provider: ProviderChoice = "auto"
    model_name: str | None = None
    openrouter_api_key: SecretStr | None = None
    ollama_url: str | None = None
    fallbacks: tuple[ProviderName, ...] = ()
    task: TaskName = "generic"
    check_model: bool = False
    """Also ask OpenRouter's ``/models`` whether the model exists (one extra request)."""
    system_prompt: str | None = None
    tot: dict[str, Any] = field(default_factory=dict)
    """ToT settings (``ToTConfig`` field names); for a chat agent only temperature/max_tokens."""

    def provider_names(self, settings: Settings) -> list[ProviderName]:
        """The providers of the agent's chain, in order."""
        if self.provider == "auto":
            return list(self.fallbacks or settings.providers)
        return [self.provider, *self.fallbacks]


def parse_agent_type(agent_type: object) -> AgentType:
    if not isinstance(agent_type, str) or agent_type.strip().lower() not in AGENT_TYPES:
        raise AgentError(
            f"unknown agent type {agent_type!r}; choose from {', '.join(AGENT_TYPES)}",
            field="agent_type",
        )
    return cast(AgentType, agent_type.strip().lower())


def parse_spec(agent_type: object, custom_config: Mapping[str, Any] | None) -> AgentSpec:
    """Check ``custom_config`` for ``agent_type``; every problem is an :class:`AgentError`."""
    kind = parse_agent_type(agent_type)
    config = dict(custom_config or {})
    allowed = AGENT_KEYS | (TOT_KEYS if kind == "reasoning" else CHAT_KEYS)
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise AgentError(
            f"unknown custom_config key(s) for a {kind} agent: {', '.join(map(str, unknown))}",
            field=str(unknown[0]),
        )
    provider = _choice(config.get("provider", "auto"), PROVIDER_CHOICES, "provider")
    fallbacks = _fallbacks(config.get("fallbacks"), provider)
    model_name = _optional_text(config.get("model_name"), "model_name")
    if model_name is not None and provider == "auto":
        raise AgentError(
            f"model_name needs an explicit provider ({', '.join(PROVIDERS)}), not 'auto'",
            field="model_name",
        )
    key = config.get("openrouter_api_key")
    if key is not None and not isinstance(key, SecretStr):
        key = SecretStr(_optional_text(key, "openrouter_api_key") or "")
    check_model = config.get("check_model", False)
    if not isinstance(check_model, bool):
        raise AgentError("check_model must be true or false", field="check_model")
    spec = AgentSpec(
        agent_type=kind,
        provider=provider,
        model_name=model_name,
        openrouter_api_key=key,
        ollama_url=_optional_text(config.get("ollama_url"), "ollama_url"),
        fallbacks=fallbacks,
        task=_choice(config.get("task", "generic"), TASK_NAMES, "task"),
        check_model=check_model,
        system_prompt=_optional_text(config.get("system_prompt"), "system_prompt"),
        tot={k: v for k, v in config.items() if k in TOT_KEYS},
    )
    if spec.task != "generic" and kind == "chat":
        raise AgentError("task applies to reasoning agents only", field="task")
    return spec


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


def _choice(value: object, choices: tuple[str, ...], name: str) -> Any:
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise AgentError(f"unknown {name} {value!r}; choose from {', '.join(choices)}", field=name)
    return value.strip().lower()


def _fallbacks(value: object, provider: str) -> tuple[ProviderName, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise AgentError("fallbacks must be a list of provider names", field="fallbacks")
    names: list[ProviderName] = []
    for item in value:
        try:
            name = provider_name(item)
        except ValueError as exc:
            raise AgentError(str(exc), field="fallbacks") from None
        if name == provider or name in names:
            raise AgentError(f"provider {name!r} is listed twice", field="fallbacks")
        names.append(name)
    return tuple(names)


def _optional_text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise AgentError(f"{name} must be a non-empty string", field=name)
    return value.strip()


__all__ = [
    "AGENT_TYPES",
    "PROVIDER_CHOICES",
    "TASK_NAMES",
    "AgentSpec",
    "AgentType",
    "ProviderChoice",
    "TaskName",
    "agent_settings",
    "parse_agent_type",
    "parse_spec",
]
