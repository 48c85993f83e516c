"""``UsageTracker``: calls, failures, tokens, cost and latency per provider and model."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig

from pygent_lc.backend import UsageTotals
from pygent_lc.state import UsageRecord

logger = logging.getLogger(__name__)

MAX_PLAUSIBLE_COST_USD = 1_000.0
"""The most one reply may say it cost. The dearest models cost tens of dollars for a
call that fills their whole context; a reply claiming more (``1e308``) is a fault."""

_WARNED_REPLIES = 1024  # reply ids remembered so one faulty reply warns once


@dataclass(frozen=True)
class UsageSummary:
    """What one (provider, model) pair cost so far, and how long its requests took."""

    provider: str
    model: str
    usage: UsageTotals
    """Its calls, failures, tokens (cached ones too), cost and cache discount."""
    mean_latency_s: float
    p95_latency_s: float


@dataclass
class _Bucket:
    usage: UsageTotals = field(default_factory=UsageTotals)
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Run:
    provider: str
    model: str
    started: float


class UsageTracker(BaseCallbackHandler):
    """A LangChain callback handler that totals every chat-model request it sees.

    Each request counts as a call, retries and fallbacks included; a request
    that raised counts as a failure too. Cost comes from OpenRouter's
    ``usage.cost`` (``response_metadata["cost"]``) and is 0 where the provider
    reports none (Ollama, the local model). Input tokens read from a prompt
    cache (``usage_metadata["input_token_details"]["cache_read"]``, OpenRouter's
    ``prompt_tokens_details.cached_tokens``) and OpenRouter's ``cache_discount``
    are totalled too. ``model`` is the model that
    actually served when the reply says so. Thread-safe and run inline, so it
    is exact under concurrent calls.
    """

    run_inline = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[UUID, _Run] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = metadata or {}
        run = _Run(
            provider=str(metadata.get("ls_provider") or "unknown"),
            model=str(metadata.get("ls_model_name") or "unknown"),
            started=time.perf_counter(),
        )
        with self._lock:
            self._runs[run_id] = run

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        ended = self._ended(run_id)
        if ended is None:
            return
        run, latency_s = ended
        used, model = usage_of(response, run.model)
        self._add((run.provider, model), used, latency_s)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        ended = self._ended(run_id)
        if ended is None:
            return
        run, latency_s = ended
        self._add((run.provider, run.model), UsageTotals(calls=1, failures=1), latency_s)

    def _ended(self, run_id: UUID) -> tuple[_Run, float] | None:
        """The request ``run_id`` started and its latency; None when it was not seen starting."""
        ended = time.perf_counter()
        with self._lock:
            run = self._runs.pop(run_id, None)
        return None if run is None else (run, ended - run.started)

    def _add(self, key: tuple[str, str], used: UsageTotals, latency_s: float) -> None:
        """Count one request."""
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket())
            bucket.usage += used
            bucket.latencies.append(latency_s)

    def summary(self) -> dict[tuple[str, str], UsageSummary]:
        """Per (provider, model): calls, failures, tokens (cached ones too), cost,
        cache discount, mean and p95 latency."""
        with self._lock:
            return {
                key: UsageSummary(
                    provider=key[0],
                    model=key[1],
                    usage=bucket.usage,
                    mean_latency_s=sum(bucket.latencies) / len(bucket.latencies),
                    p95_latency_s=_percentile(bucket.latencies, 0.95),
                )
                for key, bucket in self._buckets.items()
            }

    def totals(self) -> UsageTotals:
        """Everything added up, for measuring a span of work by difference."""
        with self._lock:
            return UsageTotals.merge(bucket.usage for bucket in self._buckets.values())


def usage_of(response: LLMResult, model: str) -> tuple[UsageTotals, str]:
    """One request's usage from its result, and the model that served (``model`` if unsaid)."""
    used = UsageTotals(calls=1)
    for message in request_replies(response):
        used += message_usage(message)
        model = str(message.response_metadata.get("model_name") or model)
    return used, model


def request_replies(response: LLMResult) -> list[BaseMessage]:
    """The reply that carries each request's usage: its first choice.

    A request asked for ``n`` completions answers ``n`` choices, and the wire's
    ``usage`` (tokens and cost) covers them all; LangChain copies it onto every
    choice's message, so only one of them may be counted.
    """
    replies: list[BaseMessage] = []
    for generations in response.generations:
        first = next((g for g in generations if isinstance(g, ChatGeneration)), None)
        if first is not None:
            replies.append(first.message)
    return replies


def message_usage(message: BaseMessage) -> UsageTotals:
    """The tokens and cost a reply (or a stream chunk) reports; no call counted.

    The one place a reported cost enters the accounting (usage totals, every
    budget, the store's usage): a ``cost`` or ``cache_discount`` that is not a
    plausible amount (:func:`plausible_usd`) counts as a fault
    (``cost_faults``) and adds nothing.
    """
    usage = getattr(message, "usage_metadata", None) or {}
    details = usage.get("input_token_details") or {}
    metadata = message.response_metadata
    cost = plausible_usd(metadata.get("cost"))
    discount = plausible_usd(metadata.get("cache_discount"))
    faulty = cost is None or discount is None
    if faulty:
        _warn_fault(message, metadata.get("cost"), metadata.get("cache_discount"))
    return UsageTotals(
        input_tokens=int(usage.get("input_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
        cost_usd=cost or 0.0,
        cached_input_tokens=int(details.get("cache_read") or 0),
        cache_discount_usd=discount or 0.0,
        cost_faults=int(faulty),
    )


def plausible_usd(value: object) -> float | None:
    """``value`` as an amount in USD; 0.0 when absent (``None``, Ollama and the local
    model report none); None when it is no plausible amount: not a number, NaN,
    infinite, negative, or above :data:`MAX_PLAUSIBLE_COST_USD`."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = float(value)
    except (ValueError, OverflowError):
        return None
    return amount if 0.0 <= amount <= MAX_PLAUSIBLE_COST_USD else None


_warned: deque[str] = deque(maxlen=_WARNED_REPLIES)
_warned_lock = threading.Lock()


def _warn_fault(message: BaseMessage, cost: object, discount: object) -> None:
    """One WARNING per faulty reply: the usage tracker and the policy's meter both read
    it (a stream's chunks and its whole reply share the run's id)."""
    if message.id is not None:
        with _warned_lock:
            if message.id in _warned:
                return
            _warned.append(message.id)
    model = message.response_metadata.get("model_name")
    logger.warning(
        "provider fault: a reply%s reported cost %.6g and cache discount %.6g USD, not a "
        "plausible amount (0 to %g); counted as a cost fault and left out of spend",
        f" of {model!r}" if isinstance(model, str) else "",
        _shown(cost),
        _shown(discount),
        MAX_PLAUSIBLE_COST_USD,
    )


def _shown(value: object) -> float:
    """A number to log (never the reply's raw text): NaN when it is not one."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0 if value is None else math.nan


class CallMeter(BaseCallbackHandler):
    """The usage of one provider call (its attempts), for the state store.

    The policy counts the attempts and shows it each reply or chunk
    (:meth:`observe`). When the policy's Runnable returns something other
    than messages (structured output), the meter is added to that call's
    callbacks instead (:func:`with_handler`) and reads the replies there:
    every chat model run it sees is the call's.
    """

    run_inline = True

    def __init__(self, provider: str, model: str | None) -> None:
        self.provider = provider
        self.model = model or "unknown"
        self.attempts = 0
        self.usage = UsageTotals()
        self._started = time.perf_counter()

    def observe(self, output: object) -> None:
        """Count a reply's (or a chunk's) tokens and cost; other outputs carry none."""
        if isinstance(output, BaseMessage):
            self.usage += message_usage(output)
            self.model = str(output.response_metadata.get("model_name") or self.model)

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for message in request_replies(response):
            self.observe(message)

    def record(self, answered: bool) -> UsageRecord:
        """The call's usage as the store adds it to its (provider, model) totals."""
        usage = replace(self.usage, calls=self.attempts, failures=self.attempts - int(answered))
        latency_s = time.perf_counter() - self._started
        return UsageRecord(self.provider, self.model, **asdict(usage), latency_s=latency_s)


def with_handler(config: RunnableConfig | None, handler: BaseCallbackHandler) -> RunnableConfig:
    """``config`` with ``handler`` added to its callbacks (a list or a manager)."""
    config = config or {}
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.add_handler(handler, inherit=True)
        return {**config, "callbacks": manager}
    return {**config, "callbacks": [*(callbacks or []), handler]}


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (the value at or above ``fraction`` of the samples)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
