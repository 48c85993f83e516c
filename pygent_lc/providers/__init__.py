"""One LangChain chat model per provider, each mapping its failures to typed errors.

The names are imported on first use (PEP 562): importing one provider module, or the
settings (which import ``providers.openrouter.options``), loads no provider's SDK."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # ``as``: exported (mypy), as ``__all__`` is built
    from pygent_lc.providers.local import LocalChatModel as LocalChatModel
    from pygent_lc.providers.local import local_model as local_model
    from pygent_lc.providers.ollama import OllamaChatModel as OllamaChatModel
    from pygent_lc.providers.ollama import check_ollama_model as check_ollama_model
    from pygent_lc.providers.ollama import installed_ollama_models as installed_ollama_models
    from pygent_lc.providers.ollama import ollama_model as ollama_model
    from pygent_lc.providers.openai_compatible import (
        OpenAICompatibleChatModel as OpenAICompatibleChatModel,
    )
    from pygent_lc.providers.openrouter.model import OpenRouterChatModel as OpenRouterChatModel
    from pygent_lc.providers.openrouter.model import openrouter_model as openrouter_model

_MODULES = {
    "local": ("LocalChatModel", "local_model"),
    "ollama": ("OllamaChatModel", "check_ollama_model", "installed_ollama_models", "ollama_model"),
    "openai_compatible": ("OpenAICompatibleChatModel",),
    "openrouter.model": ("OpenRouterChatModel", "openrouter_model"),
}
_HOMES = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
