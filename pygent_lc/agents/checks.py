"""Checks the factory makes on each provider an agent names, before returning the agent.

Configuration first (no network): a key for OpenRouter, a model for Ollama,
the extra and the model file for the local model. Then what only the server
can tell: Ollama must answer and have the model (``/api/tags``); OpenRouter's
model must be in ``/models`` when the caller asks (``check_model``).
"""

from __future__ import annotations

import difflib

from langchain_core.language_models import BaseChatModel

from pygent_lc.chain import PROVIDER_FACTORIES
from pygent_lc.errors import (
    AgentError,
    ConfigurationError,
    ModelNotFoundError,
    ProviderUnavailableError,
)
from pygent_lc.openrouter_catalog import list_openrouter_models
from pygent_lc.providers.ollama import check_ollama_model
from pygent_lc.settings import ProviderName, Settings


def configured_model(name: ProviderName, settings: Settings) -> BaseChatModel:
    """The provider's chat model, or an :class:`AgentError` saying what is missing."""
    try:
        return PROVIDER_FACTORIES[name](settings)
    except AgentError:
        raise
    except ConfigurationError as exc:
        raise AgentError(f"{name}: {exc}", field=exc.field) from exc


def check_ollama(settings: Settings) -> str:
    """The installed name of the configured model; the server must answer and have it.

    Raises :class:`ProviderUnavailableError` when Ollama does not answer and
    :class:`ModelNotFoundError` (listing the installed models) when the model
    is not installed.
    """
    try:
        return check_ollama_model(settings)
    except ProviderUnavailableError as exc:
        raise ProviderUnavailableError(
            f"Ollama at {settings.ollama_base_url} did not answer ({exc.message}); "
            "start it with `ollama serve` or set OLLAMA_BASE_URL",
            provider="ollama",
            model=settings.ollama_model,
            status_code=exc.status_code,
            retryable=exc.retryable,
        ) from exc


def check_openrouter_model(settings: Settings) -> None:
    """Raise :class:`ModelNotFoundError` unless OpenRouter lists ``settings.openrouter_model``."""
    wanted = settings.openrouter_model
    ids = [model.id for model in list_openrouter_models(settings)]
    if wanted in ids:
        return
    close = difflib.get_close_matches(wanted, ids, n=3, cutoff=0.5)
    suggestion = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"model {wanted!r} is not in OpenRouter's catalog ({len(ids)} models){suggestion} "
        "(see `pygent-lc models`)",
        provider="openrouter",
        model=wanted,
        status_code=404,
    )


def check_provider(name: ProviderName, settings: Settings, *, check_model: bool) -> None:
    """Every check for one provider the agent names explicitly (blocking: run in a thread)."""
    configured_model(name, settings)
    if name == "ollama":
        check_ollama(settings)
    elif name == "openrouter" and check_model:
        check_openrouter_model(settings)


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


__all__ = [
    "check_ollama",
    "check_openrouter_model",
    "check_provider",
    "configured_model",
    "usable_providers",
]
