"""Usage: calls, failures, tokens, cost and latency per provider and model.

:class:`UsageTracker` totals one process's requests (a LangChain callback, or fed
by the policies); :class:`CallMeter` measures one provider call, which the step
after it adds to the state store's totals (:class:`UsageRecord`). Both read back
as a :class:`UsageSummary` per (provider, model); the tracker keeps its totals as
the store's in-process twin does.

In the store a hash per pair holds the counters and the sum of latencies (so
the mean is over every call); a list holds the most recent
:data:`LATENCY_SAMPLES` latencies (``LPUSH`` + ``LTRIM``) for the p95, and a
set indexes the pairs. Counters are added in Lua's doubles (exact for
integers below 2**53), so one script reads the hash once and writes it once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig

from pygent_lc.backend import UsageTotals
from pygent_lc.limits.script import LUA_PRELUDE, Arg, MemoryState, Step, json_rows, number, rows

logger = logging.getLogger(__name__)

MAX_PLAUSIBLE_COST_USD = 1_000.0
"""The most one reply may say it cost. The dearest models cost tens of dollars for a
call that fills their whole context; a reply claiming more (``1e308``) is a fault."""

LATENCY_SAMPLES = 1000
"""Latency samples kept per (provider, model) for the p95."""

FIELDS = ("calls", "failures", "in", "out", "cost", "lat", "cached", "discount", "faults")
"""The hash's counters, in the order scripts pass and return them."""

_WARNED_REPLIES = 1024  # reply ids remembered so one faulty reply warns once


@dataclass(frozen=True)
class UsageSummary:
    """What one (provider, model) pair cost so far, and how long its requests took.

    ``mean_latency_s`` is over every call, ``p95_latency_s`` over the most recent
    :data:`LATENCY_SAMPLES`.
    """

    provider: str
    model: str
    usage: UsageTotals
    mean_latency_s: float
    p95_latency_s: float


@dataclass(frozen=True, slots=True)
class _ProviderModel:
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class UsageRecord(UsageTotals, _ProviderModel):
    """One request's (or provider call's) usage, who served it and how long it took."""

    calls: int = 1
    latency_s: float = 0.0


def values(record: UsageRecord) -> tuple[float, ...]:
    """A record's numbers in :data:`FIELDS` order."""
    return (
        float(record.calls),
        float(record.failures),
        float(record.input_tokens),
        float(record.output_tokens),
        record.cost_usd,
        record.latency_s,
        float(record.cached_input_tokens),
        record.cache_discount_usd,
        float(record.cost_faults),
    )


@dataclass
class UsageBucket:
    """The in-process twin of one pair's hash and latency list."""

    totals: list[float] = field(default_factory=lambda: [0.0] * len(FIELDS))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


class UsageBuckets(dict[tuple[str, str], UsageBucket]):
    pass


def record(buckets: UsageBuckets, usage: UsageRecord) -> None:
    bucket = buckets.setdefault((usage.provider, usage.model), UsageBucket())
    for i, value in enumerate(values(usage)):
        bucket.totals[i] = bucket.totals[i] + value
    bucket.latencies.append(usage.latency_s)


def row(
    provider: str, model: str, totals: Sequence[float], latencies: Sequence[float]
) -> UsageSummary:
    """A pair's summary from its counters (:data:`FIELDS` order) and latency samples."""
    calls, failures, inputs, outputs, cost, latency_sum, cached, discount, faults = totals
    usage = UsageTotals(
        calls=int(calls),
        failures=int(failures),
        input_tokens=int(inputs),
        output_tokens=int(outputs),
        cost_usd=cost,
        cached_input_tokens=int(cached),
        cache_discount_usd=discount,
        cost_faults=int(faults),
    )
    mean = latency_sum / calls if calls else 0.0
    return UsageSummary(provider, model, usage, mean, percentile(latencies, 0.95))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (the value at or above ``fraction`` of the samples; 0 with none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


USAGE_LUA = """
local USAGE_FIELDS = {'calls', 'failures', 'in', 'out', 'cost', 'lat', 'cached', 'discount',
                      'faults'}

local function usage_record(h, l, index, provider, model, values, samples)
  local old = redis.call('HMGET', h, unpack(USAGE_FIELDS))
  local pairs_ = {'provider', provider, 'model', model}
  for i, name in ipairs(USAGE_FIELDS) do
    pairs_[#pairs_ + 1] = name
    pairs_[#pairs_ + 1] = fmt((tonumber(old[i]) or 0) + values[i])
  end
  redis.call('HSET', h, unpack(pairs_))
  redis.call('LPUSH', l, fmt(values[6]))
  redis.call('LTRIM', l, 0, samples - 1)
  redis.call('SADD', index, h)
end
"""
"""``usage_record(values)``: ``values`` in :data:`FIELDS` order; ``lat`` is this call's latency."""

USAGE_ROWS_LUA = """
local out = {}
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HMGET', h, 'provider', 'model', unpack(USAGE_FIELDS))
  if v[1] then
    out[#out + 1] = v
    out[#out + 1] = redis.call('LRANGE', h .. ':lat', 0, -1)
  end
end
return reply(out)
"""
"""Every pair's counters and samples; reads keys it finds in the index (fine outside Cluster)."""


@dataclass(frozen=True, slots=True)
class UsageKeys:
    totals: str
    latencies: str
    index: str


def usage_keys(prefix: str, provider: str, model: str) -> UsageKeys:
    totals = f"{prefix}us:{provider}|{model}"
    return UsageKeys(totals=totals, latencies=f"{totals}:lat", index=usage_index(prefix))


def usage_index(prefix: str) -> str:
    return f"{prefix}us:index"


@dataclass(frozen=True, slots=True)
class UsageRows(Step[list[UsageSummary]]):
    """Every (provider, model) row, sorted."""

    lua: ClassVar[str] = LUA_PRELUDE + USAGE_LUA + USAGE_ROWS_LUA
    reads_only: ClassVar[bool] = True

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [usage_index(prefix)], []

    def decode(self, reply: Any) -> list[UsageSummary]:
        found = json_rows(reply)
        result = []
        for values, samples in zip(found[0::2], found[1::2], strict=True):
            provider, model, *totals = rows(values)
            result.append(
                row(
                    str(provider),
                    str(model),
                    [number(t) if t not in (None, False) else 0.0 for t in totals],
                    [number(s) for s in rows(samples)],
                )
            )
        return sorted(result, key=lambda r: (r.provider, r.model))

    def local(self, state: MemoryState) -> list[UsageSummary]:
        return [
            row(provider, model, bucket.totals, list(bucket.latencies))
            for (provider, model), bucket in sorted(state.part(UsageBuckets).items())
        ]


class UsageTracker(BaseCallbackHandler):
    """A LangChain callback handler that totals every chat-model request it sees.

    Each request counts as a call, retries and fallbacks included; a request
    that raised counts as a failure too. Cost comes from OpenRouter's
    ``usage.cost`` (``response_metadata["cost"]``) and is 0 where the provider
    reports none (Ollama, the local model); prompt-cache reads and OpenRouter's
    ``cache_discount`` are totalled too. ``model`` is the model that actually
    served when the reply says so. Thread-safe and run inline, so it is exact
    under concurrent calls.
    """

    run_inline = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[UUID, tuple[str, str, float]] = {}
        self._buckets = UsageBuckets()

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
        provider = str(metadata.get("ls_provider") or "unknown")
        model = str(metadata.get("ls_model_name") or "unknown")
        with self._lock:
            self._runs[run_id] = (provider, model, time.perf_counter())

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._ended(run_id, request_replies(response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._ended(run_id, None)

    def count(
        self,
        provider: str,
        model: str,
        latency_s: float,
        reply: BaseMessage | None = None,
        *,
        failed: bool = False,
    ) -> None:
        """Count one request to ``provider``'s ``model``: it answered ``reply`` (its first
        choice, or a stream's chunks added up), or ``failed``.

        What the callbacks count for a chat model run, counted by a provider policy
        for each attempt when its calls carry this tracker (:func:`feeding`).
        """
        self._add(provider, model, latency_s, None if failed else [] if reply is None else [reply])

    def _ended(self, run_id: UUID, replies: list[BaseMessage] | None) -> None:
        """The request ``run_id`` ended (``replies`` None: it failed), if it was seen starting."""
        ended = time.perf_counter()
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is not None:
            provider, model, started = run
            self._add(provider, model, ended - started, replies)

    def _add(
        self, provider: str, model: str, latency_s: float, replies: list[BaseMessage] | None
    ) -> None:
        used = UsageTotals(calls=1, failures=1)
        if replies is not None:
            used, model = replies_usage(replies, model)
        usage = UsageRecord(provider, model, **asdict(used), latency_s=latency_s)
        with self._lock:
            record(self._buckets, usage)

    def summary(self) -> dict[tuple[str, str], UsageSummary]:
        """Per (provider, model): its totals, mean and p95 latency."""
        with self._lock:
            return {
                (p, m): row(p, m, bucket.totals, bucket.latencies)
                for (p, m), bucket in self._buckets.items()
            }

    def totals(self) -> UsageTotals:
        """Everything added up, for measuring a span of work by difference."""
        return UsageTotals.merge(entry.usage for entry in self.summary().values())


def replies_usage(replies: Sequence[BaseMessage], model: str) -> tuple[UsageTotals, str]:
    """One request's usage from the replies that carry it (:func:`request_replies`), and
    the model that served (``model`` if unsaid)."""
    used = UsageTotals(calls=1)
    for message in replies:
        used += message_usage(message)
        model = str(message.response_metadata.get("model_name") or model)
    return used, model


def request_replies(response: LLMResult) -> list[BaseMessage]:
    """The reply that carries each request's usage: its first choice (a request for ``n``
    completions has one ``usage`` for all, which LangChain copies onto every choice)."""
    replies: list[BaseMessage] = []
    for generations in response.generations:
        first = next((g for g in generations if isinstance(g, ChatGeneration)), None)
        if first is not None:
            replies.append(first.message)
    return replies


def message_usage(message: BaseMessage) -> UsageTotals:
    """The tokens and cost a reply (or a stream chunk) reports; no call counted.

    The one place a reported cost enters the accounting (usage totals, every budget, the
    store's usage): an implausible ``cost`` or ``cache_discount`` (:func:`plausible_usd`)
    counts as a fault (``cost_faults``) and adds nothing.
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

    The policy counts the attempts and shows it each reply or chunk (:meth:`observe`);
    when its Runnable returns something other than messages (structured output), the
    meter is one of the call's callbacks instead (:func:`with_handler`).
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


TRACKER_KEY = "__pygent_usage_tracker"
"""The ``configurable`` key of the tracker a call's provider policies feed (``__``-prefixed
keys stay out of the metadata LangChain copies from ``configurable`` for tracers)."""


def feeding(config: RunnableConfig, tracker: UsageTracker) -> RunnableConfig:
    """``config`` whose provider policies count each request they make in ``tracker``
    (:meth:`UsageTracker.count`) instead of it listening as a callback."""
    return {**config, "configurable": {**config.get("configurable", {}), TRACKER_KEY: tracker}}


def fed_tracker(config: RunnableConfig | None) -> UsageTracker | None:
    """The tracker ``config`` asks its provider policies to feed (:func:`feeding`), if any."""
    configurable = config.get("configurable") if config else None
    tracker = configurable.get(TRACKER_KEY) if configurable else None
    return tracker if isinstance(tracker, UsageTracker) else None
