"""The LangChain callback handler that turns runs into GenAI spans and metrics.

One ``chat {model}`` span per chat model run: every retry attempt is a run of
its own (tagged ``retry:attempt:N`` by :class:`~pygent_lc.policy.ProviderPolicy`)
and so is every fallback provider's. A :class:`~pygent_lc.chain.ProviderChain`
run gets a ``pygent.chain`` span that parents them and sums up the retries and
fallbacks; when every provider failed it carries ``AllProvidersFailedError``.
A :class:`~pygent_lc.host_pool.HostPool` inside a chain adds no span: its
host attempts count as the chain's, under the chain's span.
Runs of other kinds are ignored.

Only the attributes listed in :mod:`pygent_lc.telemetry.names` are recorded:
never the invocation parameters or serialized model (where a key could hide),
and the prompt and completion text only when content capture is on. An error
is recorded by its type, not its message, for the same reason.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from pygent_lc.telemetry import names
from pygent_lc.telemetry.metrics import Instruments

_CHAIN_NAME = "ProviderChain"
_POOL_NAME = "HostPool"
_ATTEMPT_TAG = "retry:attempt:"


@dataclass
class _Chain:
    span: Span
    providers: list[str] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0


@dataclass
class _Attempt:
    span: Span
    started: float
    metric_attributes: dict[str, Any]


class OtelCallbackHandler(BaseCallbackHandler):
    """Spans and metrics for provider attempts and fallback chains."""

    run_inline = True  # in the caller's thread and context: the current span is the parent
    raise_error = False
    ignore_retriever = True
    ignore_agent = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(self, tracer: Tracer, instruments: Instruments, *, capture_content: bool) -> None:
        self.tracer = tracer
        self.instruments = instruments
        self.capture_content = capture_content
        self._chains: dict[UUID, _Chain] = {}
        self._pools: dict[UUID, UUID] = {}  # a host pool's run -> its chain's run
        self._attempts: dict[UUID, _Attempt] = {}
        self._lock = threading.Lock()

    # fallback chains -------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("name") == _POOL_NAME and parent_run_id in self._chains:
            with self._lock:
                self._pools[run_id] = parent_run_id
            return
        if kwargs.get("name") != _CHAIN_NAME:
            return
        span = self.tracer.start_span(
            names.CHAIN_SPAN, context=self._parent(parent_run_id), kind=SpanKind.INTERNAL
        )
        with self._lock:
            self._chains[run_id] = _Chain(span)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_chain(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_chain(run_id, error)

    def _end_chain(self, run_id: UUID, error: BaseException | None) -> None:
        with self._lock:
            chain = self._chains.pop(run_id, None)
            self._pools.pop(run_id, None)
        if chain is None:
            return
        span = chain.span
        span.set_attribute(names.CHAIN_ATTEMPTS, chain.attempts)
        span.set_attribute(names.CHAIN_RETRIES, chain.retries)
        span.set_attribute(names.CHAIN_PROVIDERS, chain.providers)
        span.set_attribute(names.CHAIN_FALLBACKS, max(len(chain.providers) - 1, 0))
        if error is not None:
            _mark_failed(span, error)
        span.end()

    # provider attempts -----------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = metadata or {}
        provider = str(metadata.get("ls_provider") or "unknown")
        model = metadata.get("ls_model_name")
        attempt = _attempt_number(tags)
        attributes: dict[str, Any] = {
            names.OPERATION_NAME: names.CHAT,
            names.PROVIDER_NAME: provider,
        }
        if isinstance(model, str) and model:
            attributes[names.REQUEST_MODEL] = model
        metric_attributes = dict(attributes)
        for key, attribute in (
            ("ls_max_tokens", names.REQUEST_MAX_TOKENS),
            ("ls_temperature", names.REQUEST_TEMPERATURE),
        ):
            if isinstance(metadata.get(key), int | float):
                attributes[attribute] = metadata[key]
        attributes[names.RETRY_ATTEMPT] = attempt
        chain = self._chain(parent_run_id)
        if chain is not None:
            with self._lock:
                if provider not in chain.providers:
                    chain.providers.append(provider)
                chain.attempts += 1
                chain.retries += attempt > 1
                attributes[names.FALLBACK_INDEX] = chain.providers.index(provider)
        if self.capture_content:
            attributes[names.INPUT_MESSAGES] = _messages_json(messages[0] if messages else [])
        span = self.tracer.start_span(
            f"chat {model}" if model else "chat",
            context=self._parent(parent_run_id),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        with self._lock:
            self._attempts[run_id] = _Attempt(span, time.perf_counter(), metric_attributes)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        ended = self._ended(run_id)
        if ended is None:
            return
        attempt, seconds = ended
        span = attempt.span
        reply = _reply(response)
        found = _reply_attributes(reply)
        if reply is not None and self.capture_content:
            found[names.OUTPUT_MESSAGES] = _messages_json([reply.message])
        span.set_attributes(found)
        metric_attributes = attempt.metric_attributes
        if names.RESPONSE_MODEL in found:
            metric_attributes[names.RESPONSE_MODEL] = found[names.RESPONSE_MODEL]
        span.end()
        self.instruments.record_answer(metric_attributes, seconds, found)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        ended = self._ended(run_id)
        if ended is None:
            return
        attempt, seconds = ended
        _mark_failed(attempt.span, error)
        attempt.span.end()
        self.instruments.record_failure(attempt.metric_attributes, seconds, _error_type(error))

    def _ended(self, run_id: UUID) -> tuple[_Attempt, float] | None:
        """The attempt ``run_id`` started and its duration; None when it is not one of ours."""
        with self._lock:
            attempt = self._attempts.pop(run_id, None)
        return None if attempt is None else (attempt, time.perf_counter() - attempt.started)

    def _parent(self, parent_run_id: UUID | None) -> Context | None:
        """Our chain span when the run is inside one; else the current context's span."""
        chain = self._chain(parent_run_id)
        return None if chain is None else trace.set_span_in_context(chain.span)

    def _chain(self, run_id: UUID | None) -> _Chain | None:
        """The chain run ``run_id`` is, or the chain of the host pool it is."""
        if run_id is None:
            return None
        return self._chains.get(self._pools.get(run_id, run_id))


def _attempt_number(tags: Sequence[str] | None) -> int:
    numbers = (tag.removeprefix(_ATTEMPT_TAG) for tag in tags or () if tag.startswith(_ATTEMPT_TAG))
    return next((int(number) for number in numbers if number.isdigit()), 1)


def _error_type(error: BaseException) -> str:
    return type(error).__qualname__


def _mark_failed(span: Span, error: BaseException) -> None:
    error_type = _error_type(error)
    span.set_attribute(names.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


def _reply(response: LLMResult) -> ChatGeneration | None:
    replies = (g for gs in response.generations for g in gs if isinstance(g, ChatGeneration))
    return next(replies, None)


def _reply_attributes(reply: ChatGeneration | None) -> dict[str, Any]:
    """What the reply says about itself: model, id, finish reason, usage, cost, routing."""
    if reply is None:
        return {}
    message = reply.message
    meta: Mapping[str, Any] = message.response_metadata or {}
    info: Mapping[str, Any] = reply.generation_info or {}
    usage: Mapping[str, Any] = getattr(message, "usage_metadata", None) or {}
    found: dict[str, Any] = {}
    model = meta.get("model_name") or meta.get("model")
    if isinstance(model, str) and model:
        found[names.RESPONSE_MODEL] = model
    response_id = meta.get("generation_id") or meta.get("id") or message.id
    if isinstance(response_id, str) and response_id and not response_id.startswith("lc_run-"):
        found[names.RESPONSE_ID] = response_id
    finish = meta.get("finish_reason") or meta.get("done_reason") or info.get("finish_reason")
    if isinstance(finish, str) and finish:
        found[names.RESPONSE_FINISH_REASONS] = [finish]
    for key, attribute in (
        ("input_tokens", names.USAGE_INPUT_TOKENS),
        ("output_tokens", names.USAGE_OUTPUT_TOKENS),
    ):
        if isinstance(usage.get(key), int):
            found[attribute] = usage[key]
    cost = meta.get("cost", usage.get("cost"))
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        found[names.COST_USD] = float(cost)
    if isinstance(meta.get("provider"), str):
        found[names.UPSTREAM_PROVIDER] = meta["provider"]
    if isinstance(meta.get("generation_id"), str):
        found[names.GENERATION_ID] = meta["generation_id"]
    return found


def _messages_json(messages: Sequence[BaseMessage]) -> str:
    """Messages in the conventions' shape: role and text parts."""
    return json.dumps(
        [
            {"role": _ROLES.get(m.type, m.type), "parts": [{"type": "text", "content": m.text}]}
            for m in messages
        ],
        ensure_ascii=False,
    )


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
