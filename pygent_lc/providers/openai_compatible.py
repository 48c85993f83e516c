"""The Chat Completions model every OpenAI-wire provider builds on (``BaseChatOpenAI``, as
``ChatOpenAI`` renames ``max_tokens``): our HTTP clients, typed errors (in a 200 body too),
usage on streams, the serving provider in ``response_metadata``, reasoning text kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import openai
from langchain_core.language_models import LangSmithParams, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import SecretStr, model_validator

from pygent_lc.providers.boundary import ProviderBoundary
from pygent_lc.providers.cache_markers import without_cache_markers
from pygent_lc.providers.error_mapping import error_from_body
from pygent_lc.providers.fast_path import ChatCompletionsFastPath
from pygent_lc.providers.http import OPENAI_HTTPX, ProviderHttp

#: OpenRouter's ``reasoning(_details)``; ``reasoning_content``: llama.cpp, vLLM, DeepSeek.
REASONING_KEYS = ("reasoning", "reasoning_content", "reasoning_details")


class OpenAICompatibleChatModel(ProviderBoundary, ChatCompletionsFastPath):
    """Chat Completions against any OpenAI-compatible server (``model_provider`` and
    ``ls_provider`` are :attr:`provider_label`)."""

    provider_label: str = "openai-compatible"
    use_responses_api: bool | None = False  # OpenAI-compatible servers have none
    stream_usage: bool | None = True  # ``BaseChatOpenAI`` asks only api.openai.com

    @model_validator(mode="before")
    @classmethod
    def _own_http_clients(cls, values: Any) -> Any:
        """Our HTTP clients (:mod:`~.http`) unless the caller brought their own: langchain-openai
        shares one cached async client per process, which breaks on a second event loop."""
        if (
            not isinstance(values, dict)
            or values.get("http_client")
            or values.get("http_async_client")
        ):
            return values
        timeout = values.get("timeout", values.get("request_timeout"))
        pools = ProviderHttp(
            timeout=timeout if isinstance(timeout, int | float) else None,
            socket_options=tuple(values.get("http_socket_options") or ()),
            lib=OPENAI_HTTPX,
        )
        clients = {
            "http_pools": pools,
            "http_client": pools.sync_client(),
            "http_async_client": pools.async_client(),
        }
        if "http_socket_options" in cls.model_fields:  # langchain-openai >= 1.2
            clients["http_socket_options"] = ()  # ours are set on our transports, as given
        return {**values, **clients}

    @property
    def _llm_type(self) -> str:
        return "openai-compatible-chat"

    def _should_stream(self, *, async_api: bool, **kwargs: Any) -> bool:
        """Never stream a call asking ``n`` > 1 choices (``invoke`` streams whenever a
        streaming callback listens), as a stream's chunks are read as one reply."""
        if (kwargs.get("n") or 1) > 1:
            return False
        return super()._should_stream(async_api=async_api, **kwargs)

    def _secrets(self) -> Sequence[str]:
        key = self.openai_api_key
        return (key.get_secret_value(),) if isinstance(key, SecretStr) else ()

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider_label
        return params

    def _cache_markers(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        """``messages`` without prompt-cache markers (:mod:`~.cache_markers`) by default."""
        return without_cache_markers(messages)

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "json_schema",
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """As a JSON schema by default, as ``ChatOpenAI``'s (llama.cpp's grammar enforces it)."""
        return super().with_structured_output(schema, method=method, **kwargs)

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        messages = self._cache_markers(
            input_  # already messages (as LangChain hands them on): not converted again
            if isinstance(input_, list) and all(isinstance(m, BaseMessage) for m in input_)
            else self._convert_input(input_).to_messages()
        )
        return super()._get_request_payload(messages, stop=stop, **kwargs)

    def _reply_extras(
        self, body: dict[str, Any], choice: dict[str, Any], usage: dict[str, Any]
    ) -> dict[str, Any]:
        """Server-specific fields of a reply (or a stream's usage chunk: ``choice`` empty)
        for ``response_metadata``."""
        return {}

    def _create_chat_result(
        self,
        response: dict[str, Any] | openai.BaseModel,
        generation_info: dict[str, Any] | None = None,
    ) -> ChatResult:
        # Dumped as it came over the wire, as the fast path reads it (and once, for the parent).
        body = (
            response
            if isinstance(response, dict)
            else response.model_dump(
                exclude={"choices": {"__all__": {"message": {"parsed"}}}},
                exclude_unset=True,
                warnings=False,
            )
        )
        if body.get("error") or not body.get("choices"):
            raise error_from_body(
                body.get("error") or "reply has no choices",
                provider=self.provider_label,
                model=self.model_name,
            )
        # ``refusal``, and ``parsed`` (only the typed reply has it), copied as the parent does.
        result = super()._create_chat_result(body, generation_info)
        if result.generations:
            extras = result.generations[0].message.additional_kwargs
            extras["refusal"] = (body["choices"][0].get("message") or {}).get("refusal")
            typed_choices = getattr(response, "choices", None)
            if typed_choices and hasattr(typed_choices[0].message, "parsed"):
                extras["parsed"] = typed_choices[0].message.parsed
        usage = body.get("usage") or {}
        for generation, choice in zip(result.generations, body["choices"], strict=False):
            extras = self._reply_extras(body, choice, usage)
            if extras:
                generation.generation_info = {**(generation.generation_info or {}), **extras}
            message = generation.message
            message.response_metadata["model_provider"] = self.provider_label
            message.additional_kwargs.update(reasoning_of(choice.get("message")))
        return result

    def _convert_chunk_to_generation_chunk(
        self,
        chunk: dict[str, Any],
        default_chunk_class: type,
        base_generation_info: dict[str, Any] | None,
    ) -> ChatGenerationChunk | None:
        converted = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        if converted is None:
            return None
        if "model_provider" in converted.message.response_metadata:
            converted.message.response_metadata["model_provider"] = self.provider_label
        choice = (chunk.get("choices") or [{}])[0]
        converted.message.additional_kwargs.update(reasoning_of(choice.get("delta")))
        extras: dict[str, Any] = {}
        # Each extra on exactly one chunk: chunks merge strings by concatenating them.
        if choice.get("finish_reason"):
            extras.update(self._reply_extras(chunk, choice, {}))
        if chunk.get("usage"):
            extras.update(self._reply_extras({}, {}, chunk["usage"]))
        if extras:
            converted.generation_info = {**(converted.generation_info or {}), **extras}
        return converted


def reasoning_of(message: object) -> dict[str, Any]:
    """The reasoning fields of a message or delta, for ``additional_kwargs`` (where chunks
    merge them: text concatenates, details merge by ``index``)."""
    if not isinstance(message, dict):
        return {}
    return {key: message[key] for key in REASONING_KEYS if message.get(key)}
