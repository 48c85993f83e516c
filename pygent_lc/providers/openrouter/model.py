"""OpenRouter: the OpenAI-compatible model plus what OpenRouter adds (its environment
defaults, cost and serving upstream, routing for structured output, reasoning details)."""

from __future__ import annotations

import os
from typing import Any

import openai
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from pydantic import SecretStr, model_validator

from pygent_lc.providers.cache_markers import needs_explicit_breakpoints
from pygent_lc.providers.openai_compatible import OpenAICompatibleChatModel
from pygent_lc.providers.openrouter.catalog import missing_key
from pygent_lc.settings import Settings

# OpenRouter's usage fields copied into ``response_metadata``.
_USAGE_EXTRAS = ("cost", "cost_details", "is_byok", "cache_discount")
OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
# Stands in for a missing key so the openai clients can be built; never sent:
# a call without a real key raises ConfigurationError first.
NO_KEY = "no-key-set"


class OpenRouterChatModel(OpenAICompatibleChatModel):
    """Chat Completions against OpenRouter; ``response_metadata`` gets ``generation_id``,
    the serving ``provider`` and ``model_name``, ``native_finish_reason`` and the cost."""

    provider_label: str = "openrouter"

    @model_validator(mode="before")
    @classmethod
    def _openrouter_environment(cls, values: Any) -> Any:
        """``OPENROUTER_API_KEY`` and OpenRouter's URL, not ``ChatOpenAI``'s defaults."""
        if not isinstance(values, dict):
            return values
        found = dict(values)
        if found.get("api_key") is None and found.get("openai_api_key") is None:
            found["api_key"] = os.environ.get("OPENROUTER_API_KEY") or NO_KEY
        if found.get("base_url") is None and found.get("openai_api_base") is None:
            found["base_url"] = os.environ.get("OPENROUTER_BASE_URL") or OPENROUTER_BASE_URL
        return found

    @property
    def _llm_type(self) -> str:
        return "openrouter-chat"

    def _check_ready(self) -> None:
        key = self.openai_api_key
        if not isinstance(key, SecretStr) or key.get_secret_value() in ("", NO_KEY):
            raise missing_key()

    def with_structured_output(
        self, schema: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """Routed only to providers that honour it (``provider.require_parameters``)."""
        extras = dict(self.extra_body or {})
        routing = dict(extras.get("provider") or {})
        routing.setdefault("require_parameters", True)
        routed = self.model_copy(update={"extra_body": {**extras, "provider": routing}})
        return OpenAICompatibleChatModel.with_structured_output(routed, schema, **kwargs)

    def _cache_markers(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        """Markers stay when this model or a ``models`` fallback caches only at explicit
        breakpoints (Anthropic, Gemini); the others cache prefixes by themselves."""
        fallbacks = (self.extra_body or {}).get("models") or []
        models = [self.model_name, *(m for m in fallbacks if isinstance(m, str))]
        if needs_explicit_breakpoints(models):
            return messages
        return super()._cache_markers(messages)

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Each earlier reply's ``reasoning_details`` sent back unchanged (``ChatOpenAI``
        drops them): reasoning models need them after a tool call to continue."""
        payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
        messages = self._convert_input(input_).to_messages()
        for sent, message in zip(payload.get("messages", []), messages, strict=False):
            details = message.additional_kwargs.get("reasoning_details")
            if isinstance(message, AIMessage) and details:
                sent["reasoning_details"] = details
        return payload

    def _reply_extras(
        self, body: dict[str, Any], choice: dict[str, Any], usage: dict[str, Any]
    ) -> dict[str, Any]:
        extras = {
            "generation_id": body.get("id"),
            "provider": body.get("provider"),
            "model_name": body.get("model"),
            "native_finish_reason": choice.get("native_finish_reason"),
            **{key: usage.get(key) for key in _USAGE_EXTRAS},
        }
        return {k: v for k, v in extras.items() if v is not None}

    def _create_chat_result(
        self,
        response: dict[str, Any] | openai.BaseModel,
        generation_info: dict[str, Any] | None = None,
    ) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        for generation in result.generations:
            message = generation.message
            cost = (generation.generation_info or {}).get("cost")
            if isinstance(message, AIMessage) and message.usage_metadata and cost is not None:
                message.usage_metadata["cost"] = cost  # type: ignore[typeddict-unknown-key]
        return result


def request_extras(settings: Settings) -> dict[str, Any]:
    """``models`` (the model first, each once; none when alone), ``provider``, ``reasoning``."""
    openrouter = settings.openrouter
    models = list(dict.fromkeys([openrouter.model, *openrouter.models]))
    extras = {
        "models": models if len(models) > 1 else None,
        "provider": openrouter.provider.to_request() if openrouter.provider else None,
        "reasoning": openrouter.reasoning.to_request() if openrouter.reasoning else None,
    }
    return {k: v for k, v in extras.items() if v is not None}


def openrouter_model(settings: Settings | None = None, **overrides: Any) -> OpenRouterChatModel:
    """Keywords override any field; the SDK's retries are off (the chain has one policy)."""
    settings = settings or Settings()
    openrouter = settings.openrouter
    if openrouter.api_key is None and "api_key" not in overrides:
        raise missing_key()
    title = openrouter.app_title  # app attribution (the old ``X-Title`` is still read)
    headers = {"HTTP-Referer": openrouter.app_url, "X-OpenRouter-Title": title, "X-Title": title}
    params: dict[str, Any] = {
        "model": openrouter.model,
        "api_key": openrouter.api_key,
        "base_url": openrouter.base_url,
        "default_headers": {name: value for name, value in headers.items() if value},
        "max_retries": 0,
        "timeout": settings.request_timeout,
        "stream_usage": True,
    }
    if extras := request_extras(settings):
        params["extra_body"] = extras
    return OpenRouterChatModel(**{**params, **overrides})
