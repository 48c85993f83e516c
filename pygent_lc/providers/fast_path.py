"""Plain Chat Completions calls (and async streams) sent through the openai client's public
``post`` with the request options ``create`` would make, without the SDK's parameter
transform, typed parse and executor hop (~40% of a bare ``ChatOpenAI`` call); any other
call takes the stock path. Tests compare both paths' requests on the wire and results."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai.chat_models.base import BaseChatOpenAI

from pygent_lc.providers.boundary import AsyncRun, Messages, Stop, SyncRun

try:  # private to the openai SDK: the same helper ``create`` builds its options with
    from openai._base_client import make_request_options
    from openai._constants import RAW_RESPONSE_HEADER
except ImportError:  # pragma: no cover - an SDK that moved them: the stock path
    make_request_options = None  # type: ignore[assignment]
    RAW_RESPONSE_HEADER = ""

try:  # private to langchain-openai: the stock stream's per-chunk timeout
    from langchain_openai.chat_models._client_utils import _astream_with_chunk_timeout
except ImportError:  # pragma: no cover - moved: async streams take the stock path
    _astream_with_chunk_timeout = None  # type: ignore[assignment]

try:  # langchain-openai >= 1.8: LangSmith gateway metadata from the reply's headers
    from langchain_openai.chat_models.base import (  # type: ignore[attr-defined, unused-ignore]
        _add_gateway_metadata,
    )
except ImportError:  # pragma: no cover - older langchain-openai has none
    _add_gateway_metadata = None  # type: ignore[assignment]


#: Chat Completions ``create`` asks for bearer auth only (openai >= 3 has more kinds).
_SECURITY: dict[str, Any] = (
    {"security": {"bearer_auth": True}}
    if make_request_options is not None
    and "security" in inspect.signature(make_request_options).parameters
    else {}
)


def available() -> bool:
    """Whether this openai SDK has what the fast path relies on (two private names)."""
    return make_request_options is not None and bool(RAW_RESPONSE_HEADER)


def streams_available() -> bool:
    """Whether async streams can take the fast path too: langchain-openai's per-chunk
    timeout found, or none to find (its stock stream has none either)."""
    return available() and (
        _astream_with_chunk_timeout is not None
        or "stream_chunk_timeout" not in BaseChatOpenAI.model_fields
    )


def is_plain_json(value: object) -> bool:
    """Whether ``value`` is JSON ``json.dumps`` writes unchanged (the SDK's transform too)."""
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_plain_json(item) for item in value)
    return False


#: The raw-response header ``with_raw_response`` adds; read-only, as it is shared.
_RAW_HEADERS: Mapping[str, str] = MappingProxyType({RAW_RESPONSE_HEADER: "true"})


def _split(payload: dict[str, Any], *, raw: bool = True) -> tuple[dict[str, Any], Any]:
    """The body (``payload`` itself, its option keys taken out) and the request options,
    as ``create`` (``with_raw_response`` when ``raw``) would make them."""
    extra_headers = payload.pop("extra_headers", None)
    if raw:
        extra_headers = {**extra_headers, **_RAW_HEADERS} if extra_headers else _RAW_HEADERS
    options = make_request_options(
        extra_headers=extra_headers,
        extra_query=payload.pop("extra_query", None),
        extra_body=payload.pop("extra_body", None),
        timeout=payload.pop("timeout", openai.NOT_GIVEN),
        **_SECURITY,
    )
    return payload, options


class ChatCompletionsFastPath(BaseChatOpenAI):
    def _fast_payload(self, payload: dict[str, Any], *, stream: bool = False) -> bool:
        """Whether ``payload`` is what ``create`` sends unchanged."""
        return (
            available()
            and bool(payload.get("stream")) is stream
            and "response_format" not in payload
            and not self._use_responses_api(payload)
            and all(is_plain_json(v) for k, v in payload.items() if k != "timeout")
        )

    def _fast_request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        """``post``'s arguments when the call goes the fast path, else None (a
        ``response_format`` is known to take the stock path before its payload is built)."""
        if "response_format" in kwargs or not available():
            return None
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if not self._fast_payload(payload):
            return None
        body, options = _split(payload)
        return {"cast_to": object, "body": body, "options": options}

    def _result_of(self, raw: Any) -> ChatResult:
        generation_info: dict[str, Any] = {}
        if self.include_response_headers:
            generation_info["headers"] = dict(raw.headers)
        if _add_gateway_metadata is not None:
            _add_gateway_metadata(generation_info, raw)
        content_type = raw.http_response.headers.get("content-type", "")
        # Not JSON: the SDK's own reading (text, or its error), as on the stock path.
        reply = raw.http_response.json() if "json" in content_type else raw.parse()
        return self._create_chat_result(reply, generation_info)

    def _generate(
        self, messages: Messages, stop: Stop = None, run_manager: SyncRun = None, **kwargs: Any
    ) -> ChatResult:
        request = self._fast_request(messages, stop, kwargs)
        if request is None or self.root_client is None:
            return super()._generate(messages, stop, run_manager, **kwargs)
        return self._result_of(self.root_client.post("/chat/completions", **request))

    async def _agenerate(
        self, messages: Messages, stop: Stop = None, run_manager: AsyncRun = None, **kwargs: Any
    ) -> ChatResult:
        request = self._fast_request(messages, stop, kwargs)
        if request is None or self.root_async_client is None:
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        return self._result_of(await self.root_async_client.post("/chat/completions", **request))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        *,
        stream_usage: bool | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        payload = None
        if (
            streams_available()
            and "response_format" not in kwargs
            and not self.include_response_headers
            and not getattr(self, "_uses_gateway", False)
            and self.root_async_client is not None
        ):  # what the stock stream does before its request, then the same checks
            kwargs["stream"] = True
            if self._should_stream_usage(stream_usage, **kwargs):
                kwargs["stream_options"] = {"include_usage": True}
            payload = self._get_request_payload(messages, stop=stop, **kwargs)
            payload = payload if self._fast_payload(payload, stream=True) else None
        if payload is None or self.root_async_client is None:
            async for chunk in super()._astream(
                messages, stop, run_manager, stream_usage=stream_usage, **kwargs
            ):
                yield chunk
            return
        body, options = _split(payload, raw=False)
        events = await self.root_async_client.post(
            "/chat/completions",
            cast_to=object,
            body=body,
            options=options,
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )
        chunk_class: type[BaseMessageChunk] = AIMessageChunk
        async with events:
            timed = (
                events
                if _astream_with_chunk_timeout is None
                else _astream_with_chunk_timeout(
                    events, self.stream_chunk_timeout, model_name=self.model_name
                )
            )
            async for event in timed:
                piece = self._convert_chunk_to_generation_chunk(event, chunk_class, {})
                if piece is None:
                    continue
                chunk_class = piece.message.__class__
                if run_manager:
                    logprobs = (piece.generation_info or {}).get("logprobs")
                    await run_manager.on_llm_new_token(piece.text, chunk=piece, logprobs=logprobs)
                yield piece
