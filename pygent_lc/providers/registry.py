"""The providers, one entry each. A new provider is its module, its ``Settings`` section
and one :class:`ProviderSpec` in :data:`PROVIDERS` (in the default fallback order)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from langchain_core.language_models import BaseChatModel

from pygent_lc.errors import ConfigurationError
from pygent_lc.providers import local, ollama
from pygent_lc.providers.openrouter import catalog
from pygent_lc.providers.openrouter import model as openrouter
from pygent_lc.providers.status import ModelListing, ProviderHealth
from pygent_lc.settings import SECTIONS, ProviderSettings, Settings, provider_name
from pygent_lc.settings import unique_provider_names as unique_provider_names


@dataclass(frozen=True)
class ProviderSpec:
    name: str  # in PYGENT_PROVIDERS, "provider:model", --provider; its Settings section
    factory: Callable[[Settings], BaseChatModel]  # no network; ConfigurationError if unset
    health: Callable[[Settings], ProviderHealth]  # a line of `pygent-lc doctor`
    list_models: Callable[[Settings, str | None, bool], ModelListing]  # (search, free_only)
    local: bool  # on this machine: a ToT search keeps few calls in flight
    setup_hint: str  # how to make it usable, for the doctor's last line
    # What an agent factory checks on the network first (settings, check_model).
    check: Callable[[Settings, bool], object] = lambda settings, check_model: None
    hints: Mapping[str, str] = field(default_factory=dict)  # CLI advice, by setting
    aliases: tuple[str, ...] = ()  # other names ToTConfig.for_provider knows
    # One chat model per host (by URL) when several are set: the chain makes a HostPool.
    host_models: Callable[[Settings], Mapping[str, BaseChatModel]] = lambda settings: {}

    @property
    def settings_model(self) -> type[ProviderSettings]:
        return SECTIONS[self.name]

    @property
    def model_keyword(self) -> str:
        """The :class:`Settings` keyword that ``"provider:model"`` sets."""
        return self.settings_model.keyword("model")


PROVIDERS: Mapping[str, ProviderSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ProviderSpec(
                name="openrouter",
                factory=openrouter.openrouter_model,
                health=catalog.openrouter_health,
                list_models=catalog.openrouter_listing,
                check=lambda settings, check_model: (
                    check_model and catalog.find_openrouter_model(settings)
                ),
                local=False,
                setup_hint="set OPENROUTER_API_KEY",
                hints={"openrouter_api_key": "set OPENROUTER_API_KEY, or use --provider local"},
            ),
            ProviderSpec(
                name="ollama",
                factory=ollama.ollama_model,
                host_models=ollama.ollama_host_models,
                health=ollama.ollama_health,
                list_models=ollama.ollama_listing,
                check=ollama.check_ollama,
                local=True,
                setup_hint="set OLLAMA_MODEL",
                hints={
                    "ollama_model": "set OLLAMA_MODEL to an installed model "
                    "(`pygent-lc models --provider ollama`)"
                },
            ),
            ProviderSpec(
                name="local",
                factory=local.local_model,
                health=local.local_health,
                list_models=local.local_listing,
                local=True,
                setup_hint=f"{local.INSTALL_HINT} && {local.MODEL_INSTALL_HINT}",
                hints={
                    "local_model_path": "set PYGENT_LOCAL_MODEL to a .gguf file, "
                    f"or {local.MODEL_INSTALL_HINT}"
                },
                aliases=("llamacpp", "llama.cpp"),
            ),
        )
    }
)


def validate_provider_names(names: Sequence[object] | str) -> list[str]:
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",")]
    try:
        return unique_provider_names([provider_name(name) for name in names])
    except ValueError as exc:
        raise ConfigurationError(str(exc), field="providers") from None


def find_provider(name: str) -> ProviderSpec | None:
    wanted = name.strip().lower()
    return PROVIDERS.get(wanted) or next(
        (spec for spec in PROVIDERS.values() if wanted in spec.aliases), None
    )
