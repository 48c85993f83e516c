"""One LangChain chat model per provider, each mapping its failures to typed errors."""

from pygent_lc.providers.local import LocalChatModel, local_model
from pygent_lc.providers.ollama import (
    OllamaChatModel,
    check_ollama_model,
    installed_ollama_models,
    ollama_model,
)
from pygent_lc.providers.openai_compatible import OpenAICompatibleChatModel
from pygent_lc.providers.openrouter import OpenRouterChatModel, openrouter_model

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
