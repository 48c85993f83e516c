"""Checks the factory makes on each provider an agent names, before returning the agent.

Configuration first (no network): the provider's chat model must build (a key
for OpenRouter, a model for Ollama, the extra and the model file for the local
model). Then what only the server can tell, as the provider registry says
(``ProviderSpec.check``): Ollama must answer and have the model; OpenRouter's
model must be in ``/models`` when the caller asks (``check_model``).
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from pygent_lc.errors import AgentError, ConfigurationError
from pygent_lc.providers.registry import PROVIDERS
from pygent_lc.settings import ProviderName, Settings


def configured_model(name: ProviderName, settings: Settings) -> BaseChatModel:
    """The provider's chat model, or an :class:`AgentError` saying what is missing."""
    try:
        return PROVIDERS[name].factory(settings)
    except AgentError:
        raise
    except ConfigurationError as exc:
        raise AgentError(f"{name}: {exc}", field=exc.field) from exc


def check_provider(name: ProviderName, settings: Settings, *, check_model: bool) -> None:
    """Every check for one provider the agent names explicitly (blocking: run in a thread)."""
    configured_model(name, settings)
    PROVIDERS[name].check(settings, check_model)


def usable_providers(
    names: list[ProviderName], settings: Settings
) -> tuple[list[ProviderName], dict[str, AgentError]]:
    """Split ``names`` into those configured and those skipped (with why); no network."""
    usable: list[ProviderName] = []
    skipped: dict[str, AgentError] = {}
    for name in names:
        try:
            configured_model(name, settings)
        except AgentError as exc:
            skipped[name] = exc
        else:
            usable.append(name)
    if not usable:
        reasons = "; ".join(str(why) for why in skipped.values())
        raise AgentError(f"no provider is usable ({reasons})", field="providers")
    return usable, skipped


__all__ = ["check_provider", "configured_model", "usable_providers"]
