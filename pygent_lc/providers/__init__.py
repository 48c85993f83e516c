"""One LangChain chat model per provider, each mapping its failures to typed errors.

The names are imported on first use (PEP 562): importing one provider module, or
the settings that import ``providers.openrouter.options``, loads no provider's SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pygent_lc.providers.local import LocalChatModel, local_model
    from pygent_lc.providers.ollama import (
        OllamaChatModel,
        check_ollama_model,
        installed_ollama_models,
        ollama_model,
    )
    from pygent_lc.providers.openai_compatible import OpenAICompatibleChatModel
    from pygent_lc.providers.openrouter.model import OpenRouterChatModel, openrouter_model

_MODULES = {
    "local": ("LocalChatModel", "local_model"),
    "ollama": ("OllamaChatModel", "check_ollama_model", "installed_ollama_models", "ollama_model"),
    "openai_compatible": ("OpenAICompatibleChatModel",),
    "openrouter.model": ("OpenRouterChatModel", "openrouter_model"),
}
_HOMES = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "LocalChatModel",
    "OllamaChatModel",
    "OpenAICompatibleChatModel",
    "OpenRouterChatModel",
    "check_ollama_model",
    "installed_ollama_models",
    "local_model",
    "ollama_model",
    "openrouter_model",
]
