"""LangChain's standard unit suite (``langchain-tests``) for each provider class.

The same ``ChatModelUnitTests`` every LangChain partner package runs: init,
init from the environment, tool binding, structured output, LangSmith params,
serialisation. No sockets.
"""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from pygent_lc.providers.local import LocalChatModel
from pygent_lc.providers.ollama import OllamaChatModel
from pygent_lc.providers.openrouter.model import OpenRouterChatModel


class TestOpenRouterChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[OpenRouterChatModel]:
        return OpenRouterChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "openai/gpt-4o-mini"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"OPENROUTER_API_KEY": "sk-or-v1-from-env"},
            {"model": "openai/gpt-4o-mini"},
            {"openai_api_key": "sk-or-v1-from-env"},
        )

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True


class TestOllamaChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[OllamaChatModel]:
        return OllamaChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "llama3.2"}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        params = super().standard_chat_model_params
        params.pop("api_key", None)  # Ollama has no key
        return params


class TestLocalChatModelUnit(ChatModelUnitTests):
    """Built without ``base_url``: the embedded server's file, key and model name."""

    @property
    def chat_model_class(self) -> type[LocalChatModel]:
        return LocalChatModel

    @property
    def supports_json_mode(self) -> bool:
        return True
