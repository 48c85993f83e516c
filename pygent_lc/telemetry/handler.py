"""LangChain callbacks to OpenTelemetry: a ``chat {model}`` span per attempt under a
``pygent.chain`` span per ``ProviderChain`` run, metrics, the search's spans. Never recorded:
invocation parameters or the serialized model (a key could hide there), error messages;
text only with content capture on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from pygent_lc.limits.breaker import live_breakers
from pygent_lc.limits.usage import plausible_usd
from pygent_lc.tot.search import SearchContext

PROVIDER = "gen_ai.provider.name"
MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
ERROR_TYPE = "error.type"
TOKENS = {"input": "gen_ai.usage.input_tokens", "output": "gen_ai.usage.output_tokens"}
COST = "pygent.cost_usd"
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
_ATTEMPT_TAG = "retry:attempt:"
_ROLES = {"human": "user", "ai": "assistant"}


@dataclass
class _Chain:
    run_id: UUID
    span: Span
    providers: list[str] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0


class OtelCallbackHandler(BaseCallbackHandler):
    run_inline = True  # in the caller's thread and context: the current span is the parent

    def __init__(self, tracer: Tracer, meter: Meter, *, capture_content: bool) -> None:
        self.tracer = tracer
        self.capture_content = capture_content
        # OpenTelemetry cannot remove an instrument: once inactive the gauge reports nothing.
        self.active = True
        # The conventions' advisory bucket boundaries: 0.01 s doubling, 1 token times 4.
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            "s",
            "GenAI operation duration.",
            explicit_bucket_boundaries_advisory=[0.01 * 2**i for i in range(14)],
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            "{token}",
            "Measures number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=[4.0**i for i in range(14)],
        )
        self.cost = meter.create_counter(
            "pygent.client.cost", "USD", "What the providers billed, in US dollars."
        )
        self.failures = meter.create_counter(
            "pygent.client.failures", "{failure}", "Failed provider attempts, by error.type."
        )
        meter.create_observable_gauge(
            "pygent.breaker.state",
            [self._breaker_states],
            "1",
            "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
        )
        self._chains: dict[UUID, _Chain] = {}
        self._attempts: dict[UUID, tuple[Span, float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        chain = self._chain(kwargs.get("parent_run_id"))
        if kwargs.get("name") == "HostPool" and chain is not None:
            with self._lock:
                self._chains[run_id] = chain  # its host attempts are the chain's
        elif kwargs.get("name") == "ProviderChain":
            span = self.tracer.start_span("pygent.chain", context=_inside(chain))
            with self._lock:
                self._chains[run_id] = _Chain(run_id, span)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.on_chain_error(None, run_id=run_id)

    def on_chain_error(self, error: BaseException | None, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            chain = self._chains.pop(run_id, None)
        if chain is None or chain.run_id != run_id:  # not ours, or a host pool's
            return
        chain.span.set_attributes(
            {
                "pygent.chain.attempts": chain.attempts,
                "pygent.chain.retries": chain.retries,
                "pygent.chain.providers": chain.providers,
                "pygent.chain.fallbacks": max(len(chain.providers) - 1, 0),
            }
        )
        if error is not None:
            _mark_failed(chain.span, error)
        chain.span.end()

    def on_chat_model_start(
        self, serialized: Any, messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        metadata = kwargs.get("metadata") or {}
        provider = str(metadata.get("ls_provider") or "unknown")
        model = metadata.get("ls_model_name")
        measured: dict[str, Any] = {"gen_ai.operation.name": "chat", PROVIDER: provider}
        if isinstance(model, str) and model:
            measured[MODEL] = model
        tags: list[str] = kwargs.get("tags") or []
        numbers = (t.removeprefix(_ATTEMPT_TAG) for t in tags if t.startswith(_ATTEMPT_TAG))
        attempt = next((int(n) for n in numbers if n.isdigit()), 1)
        attributes = {**measured, "pygent.retry.attempt": attempt}
        for key in ("max_tokens", "temperature"):
            if isinstance(metadata.get(f"ls_{key}"), int | float):
                attributes[f"gen_ai.request.{key}"] = metadata[f"ls_{key}"]
        chain = self._chain(kwargs.get("parent_run_id"))
        if chain is not None:
            with self._lock:
                if provider not in chain.providers:
                    chain.providers.append(provider)
                chain.attempts += 1
                chain.retries += attempt > 1
                attributes["pygent.fallback.index"] = chain.providers.index(provider)
        if self.capture_content:
            attributes["gen_ai.input.messages"] = _messages_json(messages[0] if messages else [])
        span = self.tracer.start_span(
            f"chat {model}" if model else "chat",
            context=_inside(chain),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        with self._lock:
            self._attempts[run_id] = (span, time.perf_counter(), measured)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        if (ended := self._ended(run_id)) is None:
            return
        span, seconds, measured = ended
        replies = (g for gs in response.generations for g in gs if isinstance(g, ChatGeneration))
        reply = next(replies, None)
        found = {} if reply is None else _reply_attributes(reply)
        if reply is not None and self.capture_content:
            found["gen_ai.output.messages"] = _messages_json([reply.message])
        span.set_attributes(found)
        span.end()
        if RESPONSE_MODEL in found:
            measured[RESPONSE_MODEL] = found[RESPONSE_MODEL]
        self.duration.record(seconds, measured)
        for token_type, key in TOKENS.items():
            if key in found:
                self.tokens.record(found[key], {**measured, "gen_ai.token.type": token_type})
        if COST in found:
            by_model = {k: v for k, v in measured.items() if k in (PROVIDER, MODEL)}
            self.cost.add(found[COST], by_model)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if (ended := self._ended(run_id)) is None:
            return
        span, seconds, measured = ended
        failed = {**measured, ERROR_TYPE: _mark_failed(span, error)}
        span.end()
        self.duration.record(seconds, failed)
        self.failures.add(1, failed)

    def _ended(self, run_id: UUID) -> tuple[Span, float, dict[str, Any]] | None:
        with self._lock:
            attempt = self._attempts.pop(run_id, None)
        if attempt is None:
            return None
        span, started, measured = attempt
        return span, time.perf_counter() - started, measured

    def _chain(self, run_id: UUID | None) -> _Chain | None:
        return None if run_id is None else self._chains.get(run_id)

    def _breaker_states(self, options: CallbackOptions) -> Iterable[Observation]:
        """Per provider and model, the worst state of its breakers (one per chain)."""
        worst: dict[tuple[str, str | None], int] = {}
        for breaker in live_breakers() if self.active else ():
            if breaker.enabled:
                key = (breaker.provider, breaker.model)
                worst[key] = max(worst.get(key, 0), BREAKER_STATES[breaker.state])
        return [
            Observation(state, {PROVIDER: provider} | ({} if model is None else {MODEL: model}))
            for (provider, model), state in worst.items()
        ]


def _inside(chain: _Chain | None) -> Context | None:
    return None if chain is None else trace.set_span_in_context(chain.span)


def _mark_failed(span: Span, error: BaseException) -> str:
    """Marks ``span`` failed by the error's type (its message could hold a secret)."""
    error_type = type(error).__qualname__
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))
    return error_type


def _reply_attributes(reply: ChatGeneration) -> dict[str, Any]:
    message = reply.message
    meta: Mapping[str, Any] = message.response_metadata or {}
    usage: Mapping[str, Any] = getattr(message, "usage_metadata", None) or {}
    response_id = meta.get("generation_id") or meta.get("id") or message.id
    info = reply.generation_info or {}
    finish = meta.get("finish_reason") or meta.get("done_reason") or info.get("finish_reason")
    texts = {
        RESPONSE_MODEL: meta.get("model_name") or meta.get("model"),
        "gen_ai.response.id": None if str(response_id).startswith("lc_run-") else response_id,
        "gen_ai.response.finish_reasons": finish,
        "pygent.openrouter.provider": meta.get("provider"),
        "pygent.openrouter.generation_id": meta.get("generation_id"),
    }
    found: dict[str, Any] = {k: v for k, v in texts.items() if isinstance(v, str) and v}
    if "gen_ai.response.finish_reasons" in found:
        found["gen_ai.response.finish_reasons"] = [finish]
    for token_type, attribute in TOKENS.items():
        if isinstance(usage.get(f"{token_type}_tokens"), int):
            found[attribute] = usage[f"{token_type}_tokens"]
    cost = meta.get("cost", usage.get("cost"))
    if cost is not None and (amount := plausible_usd(cost)) is not None:  # as accounted
        found[COST] = amount
    return found


def _messages_json(messages: Sequence[BaseMessage]) -> str:
    return json.dumps(
        [
            {"role": _ROLES.get(m.type, m.type), "parts": [{"type": "text", "content": m.text}]}
            for m in messages
        ],
        ensure_ascii=False,
    )


class TracingSearchObserver:
    def __init__(self, tracer: Tracer, *, capture_content: bool) -> None:
        self.tracer = tracer
        self.capture_content = capture_content

    @contextmanager
    def solving(self, ctx: SearchContext) -> Iterator[object]:
        attributes = {"tot.task": ctx.task.name, "tot.search_method": ctx.config.search_method}
        if self.capture_content:
            attributes["tot.problem"] = ctx.problem
        with self.tracer.start_as_current_span("tot.solve", attributes=attributes) as span:
            try:
                yield span
            finally:
                nodes = ctx.tree.nodes
                span.set_attributes(
                    {
                        "tot.llm_calls": ctx.caller.counters.llm_calls,
                        "tot.cache_hits": ctx.caller.counters.cache_hits,
                        "tot.nodes": len(nodes),
                        "tot.depth_reached": max(node.depth for node in nodes),
                        "tot.solved": any(n.final and n.correct is not False for n in nodes),
                    }
                )

    @contextmanager
    def level(self, ctx: SearchContext, depth: int) -> Iterator[object]:
        counters = ctx.caller.counters
        first_new = len(ctx.tree.nodes)
        calls, hits = counters.llm_calls, counters.cache_hits
        with self.tracer.start_as_current_span(
            "tot.level", attributes={"tot.depth": depth}
        ) as span:
            try:
                yield span
            finally:
                new = ctx.tree.nodes[first_new:]
                span.set_attributes(
                    {
                        "tot.states.expanded": len({n.parent for n in new}),
                        "tot.states.generated": len(new),
                        "tot.states.valued": sum(n.value is not None for n in new),
                        # Kept: in the beam (BFS), or above the threshold (DFS).
                        "tot.states.kept": sum(
                            not n.pruned and (n.selected or n.value is not None) for n in new
                        ),
                        "tot.cache_hits": counters.cache_hits - hits,
                        "tot.llm_calls": counters.llm_calls - calls,
                    }
                )
