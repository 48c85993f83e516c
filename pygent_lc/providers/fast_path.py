"""A Chat Completions call without the openai SDK's per-call typing, same request and reply.

``BaseChatOpenAI`` sends a call through ``client.chat.completions.create``,
which walks its ~40 typed parameters (``maybe_transform``) although
LangChain's payload is already plain JSON, parses the reply into typed models
(``construct_type``), and builds the ``ChatResult`` on a worker thread
(``run_in_executor``). Together that is about 40% of a bare ``ChatOpenAI`` call.

:class:`ChatCompletionsFastPath` sends the same payload through the client's
public ``post`` (the SDK's headers, auth, timeouts, retries and error classes
stay), reads the reply's JSON once, and builds the result inline. It applies
only to what ``create`` would send unchanged: a plain-JSON payload, no
``response_format`` (structured output's ``parse``), no Responses API and no
stream; anything else, or an SDK without what this relies on, takes the stock
path. The request options are made by the SDK's own ``make_request_options``
(private), as ``create`` makes them: tests compare both paths' requests on the
wire, so a change there fails loudly.
"""

from __future__ import annotations

import inspect
from typing import Any

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai.chat_models.base import BaseChatOpenAI

try:  # private to the openai SDK: the same helper ``create`` builds its options with
    from openai._base_client import make_request_options
    from openai._constants import RAW_RESPONSE_HEADER
except ImportError:  # pragma: no cover - an SDK that moved them: the stock path
    make_request_options = None  # type: ignore[assignment]
    RAW_RESPONSE_HEADER = ""

try:  # langchain-openai >= 1.8: LangSmith gateway metadata from the reply's headers
    from langchain_openai.chat_models.base import (  # type: ignore[attr-defined, unused-ignore]
        _add_gateway_metadata,
    )
except ImportError:  # pragma: no cover - older langchain-openai has none

    def _add_gateway_metadata(generation_info: dict[str, Any], raw_response: Any) -> None:
        return None


#: What ``create`` takes as request options rather than as body fields.
_OPTION_KEYS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})

#: Chat Completions ``create`` asks for bearer auth only (openai >= 3 has more kinds).
_SECURITY: dict[str, Any] = (
    {"security": {"bearer_auth": True}}
    if make_request_options is not None
    and "security" in inspect.signature(make_request_options).parameters
    else {}
)


def available() -> bool:
    """Whether this openai SDK has what the fast path relies on."""
    return make_request_options is not None and bool(RAW_RESPONSE_HEADER)


def is_plain_json(value: object) -> bool:
    """Whether ``value`` is JSON as ``json.dumps`` writes it unchanged: what the SDK's
    transform would pass through as it is."""
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_plain_json(item) for item in value)
    return False


def _split(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body and the request options, as ``create`` would make them from ``payload``."""
    body = {k: v for k, v in payload.items() if k not in _OPTION_KEYS}
    extra_headers = {**(payload.get("extra_headers") or {}), RAW_RESPONSE_HEADER: "true"}
    options = make_request_options(
        extra_headers=extra_headers,
        extra_query=payload.get("extra_query"),
        extra_body=payload.get("extra_body"),
        timeout=payload.get("timeout", openai.NOT_GIVEN),
        **_SECURITY,
    )
    return body, dict(options)


class ChatCompletionsFastPath(BaseChatOpenAI):
    """``BaseChatOpenAI`` whose plain calls skip the SDK's transform, typed parse and
    executor hop (see the module's docstring); every other call is the stock one."""

    def _fast_payload(self, payload: dict[str, Any]) -> bool:
        """Whether ``payload`` goes the fast path: what ``create`` sends unchanged."""
        return (
            available()
            and not payload.get("stream")
            and "response_format" not in payload
            and not self._use_responses_api(payload)
            and is_plain_json({k: v for k, v in payload.items() if k != "timeout"})
        )

    def _payload_if_fast(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The call's payload when it goes the fast path, else None. A call given a
        ``response_format`` (structured output, forced tools) is known to take the
        stock path before its payload is built, so it is built once, by the stock path."""
        if "response_format" in kwargs or not available():
            return None
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        return payload if self._fast_payload(payload) else None

    def _result_of(self, raw: Any) -> ChatResult:
        """The ``ChatResult`` of a raw reply, built as the stock path builds it."""
        generation_info: dict[str, Any] = {}
        if self.include_response_headers:
            generation_info["headers"] = dict(raw.headers)
        _add_gateway_metadata(generation_info, raw)
        content_type = raw.http_response.headers.get("content-type", "")
        # Not JSON: the SDK's own reading (text, or its error), as on the stock path.
        reply = raw.http_response.json() if "json" in content_type else raw.parse()
        return self._create_chat_result(reply, generation_info)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        payload = self._payload_if_fast(messages, stop, kwargs)
        if payload is None or self.root_client is None:
            return super()._generate(messages, stop, run_manager, **kwargs)
        body, options = _split(payload)
        raw = self.root_client.post("/chat/completions", cast_to=object, body=body, options=options)
        return self._result_of(raw)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        payload = self._payload_if_fast(messages, stop, kwargs)
        if payload is None or self.root_async_client is None:
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        body, options = _split(payload)
        raw = await self.root_async_client.post(
            "/chat/completions", cast_to=object, body=body, options=options
        )
        return self._result_of(raw)


__all__ = ["ChatCompletionsFastPath", "available", "is_plain_json"]
