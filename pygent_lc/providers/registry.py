"""The providers, one entry each: everything the chain, the agents, the CLI and ToT
need to know about a provider.

Adding a provider: a module with its chat model factory, health check and
model listing, a :class:`~pygent_lc.settings.ProviderSettings` section (a
field of :class:`~pygent_lc.settings.Settings` named like the provider), and
one :class:`ProviderSpec` in :data:`PROVIDERS`. The order of ``PROVIDERS`` is
the default fallback order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from langchain_core.language_models import BaseChatModel

from pygent_lc.errors import ConfigurationError
from pygent_lc.providers.local import (
    INSTALL_HINT,
    MODEL_INSTALL_HINT,
    local_health,
    local_listing,
    local_model,
)
from pygent_lc.providers.ollama import (
    check_ollama,
    ollama_health,
    ollama_host_models,
    ollama_listing,
    ollama_model,
)
from pygent_lc.providers.openrouter.catalog import (
    check_openrouter_model,
    openrouter_health,
    openrouter_listing,
)
from pygent_lc.providers.openrouter.model import openrouter_model
from pygent_lc.providers.status import ModelListing, ProviderHealth
from pygent_lc.settings import (
    LocalSettings,
    OllamaSettings,
    OpenRouterSettings,
    ProviderSettings,
    Settings,
    provider_name,
    unique_provider_names,
)


@dataclass(frozen=True)
class ProviderSpec:
    """What varies by provider."""

    name: str
    """Its name in ``PYGENT_PROVIDERS``, ``"provider:model"`` and ``--provider``;
    also the name of its section of :class:`Settings` (``settings.<name>``)."""

    settings_model: type[ProviderSettings]
    """Its section of :class:`Settings`: fields, defaults, environment names."""

    factory: Callable[[Settings], BaseChatModel]
    """Its chat model; a :class:`ConfigurationError` names what is missing. No network."""

    health: Callable[[Settings], ProviderHealth]
    """What ``pygent-lc doctor`` reports: configured, reachable, keyed, with its model."""

    list_models: Callable[[Settings, str | None, bool], ModelListing]
    """What ``pygent-lc models`` prints: ``(settings, search, free_only)``."""

    local: bool
    """Runs on this machine: a Tree-of-Thought search then keeps few calls in flight
    (:data:`~pygent_lc.tot.config.LOCAL_MAX_CONCURRENCY`)."""

    setup_hint: str
    """How to make it usable, for the doctor's last line."""

    check: Callable[[Settings, bool], object] = lambda settings, check_model: None
    """The checks an agent factory makes on the network before returning an agent
    naming this provider: ``(settings, check_model)``; raises a ``ProviderError``."""

    hints: Mapping[str, str] = field(default_factory=dict)
    """What the CLI suggests for a configuration error, by the setting it names."""

    aliases: tuple[str, ...] = ()
    """Other names ``ToTConfig.for_provider`` knows it by."""

    model_field: str = "model"
    """The field of its section that ``"provider:model"`` sets."""

    host_models: Callable[[Settings], Mapping[str, BaseChatModel]] = lambda settings: {}
    """One chat model per host (by base URL) when several are configured, else empty:
    the chain then makes the provider a :class:`~pygent_lc.host_pool.HostPool`."""

    @property
    def model_keyword(self) -> str:
        """The :class:`Settings` keyword that ``"provider:model"`` sets."""
        return self.settings_model.keyword(self.model_field)


PROVIDERS: Mapping[str, ProviderSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ProviderSpec(
                name="openrouter",
                settings_model=OpenRouterSettings,
                factory=openrouter_model,
                health=openrouter_health,
                list_models=openrouter_listing,
                check=check_openrouter_model,
                local=False,
                setup_hint="set OPENROUTER_API_KEY",
                hints={"openrouter_api_key": "set OPENROUTER_API_KEY, or use --provider local"},
            ),
            ProviderSpec(
                name="ollama",
                settings_model=OllamaSettings,
                factory=ollama_model,
                host_models=ollama_host_models,
                health=ollama_health,
                list_models=ollama_listing,
                check=check_ollama,
                local=True,
                setup_hint="set OLLAMA_MODEL",
                hints={
                    "ollama_model": "set OLLAMA_MODEL to an installed model "
                    "(`pygent-lc models --provider ollama`)"
                },
            ),
            ProviderSpec(
                name="local",
                settings_model=LocalSettings,
                factory=local_model,
                health=local_health,
                list_models=local_listing,
                local=True,
                setup_hint=f"{INSTALL_HINT} && {MODEL_INSTALL_HINT}",
                hints={
                    "local_model_path": "set PYGENT_LOCAL_MODEL to a .gguf file, "
                    f"or {MODEL_INSTALL_HINT}"
                },
                aliases=("llamacpp", "llama.cpp"),
            ),
        )
    }
)


def validate_provider_names(names: Sequence[object] | str) -> list[str]:
    """Provider names checked against the known ones (a comma-separated string works too)."""
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",")]
    try:
        if not names:
            return unique_provider_names([])
        return unique_provider_names([provider_name(name) for name in names])
    except ValueError as exc:
        raise ConfigurationError(str(exc), field="providers") from None


def find_provider(name: str) -> ProviderSpec | None:
    """The provider called ``name`` or one of its aliases (any case), if any."""
    wanted = name.strip().lower()
    return PROVIDERS.get(wanted) or next(
        (spec for spec in PROVIDERS.values() if wanted in spec.aliases), None
    )


__all__ = [
    "PROVIDERS",
    "ProviderSpec",
    "find_provider",
    "provider_name",
    "unique_provider_names",
    "validate_provider_names",
]
