"""One LangChain chat model per provider, each mapping its failures to typed errors.

The names are imported on first use (PEP 562): importing one provider module,
or the settings that import ``providers.openrouter.options``, does not load
every provider's SDK.
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

_HOMES = {
    "LocalChatModel": "pygent_lc.providers.local",
    "local_model": "pygent_lc.providers.local",
    "OllamaChatModel": "pygent_lc.providers.ollama",
    "check_ollama_model": "pygent_lc.providers.ollama",
    "installed_ollama_models": "pygent_lc.providers.ollama",
    "ollama_model": "pygent_lc.providers.ollama",
    "OpenAICompatibleChatModel": "pygent_lc.providers.openai_compatible",
    "OpenRouterChatModel": "pygent_lc.providers.openrouter.model",
    "openrouter_model": "pygent_lc.providers.openrouter.model",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'pygent_lc.providers' has no attribute {name!r}")
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
