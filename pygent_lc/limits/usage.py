"""Usage per (provider, model): :class:`UsageTracker` in one process, :class:`CallMeter` per
call for the store. In Redis: a hash of counters per pair (doubles, exact below 2**53), a list
of the last latencies (the p95), a set of the pairs."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from typing import Any, ClassVar, NamedTuple
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig

from pygent_lc.backend import UsageTotals
from pygent_lc.limits.script import LUA_PRELUDE, Arg, MemoryState, Step, json_rows, number, rows

logger = logging.getLogger(__name__)

MAX_PLAUSIBLE_COST_USD = 1_000.0  # the dearest full-context calls cost tens of dollars

LATENCY_SAMPLES = 1000  # per (provider, model), for the p95

_FIGURES = attrgetter(*(f.name for f in fields(UsageTotals)))  # (astuple deep-copies: slow)
_ZEROS = _FIGURES(UsageTotals())  # each field's type
_WARNED_REPLIES = 1024  # reply ids remembered so one faulty reply warns once


@dataclass(frozen=True)
class UsageSummary:
    """One pair's totals; latency: the mean over every call, the p95 over the last samples."""

    provider: str
    model: str
    usage: UsageTotals
    mean_latency_s: float
    p95_latency_s: float


class UsageBucket(NamedTuple):
    totals: list[float]
    latencies: deque[float]


class UsageBuckets(dict[tuple[str, str], UsageBucket]):
    def add(self, meter: CallMeter) -> None:
        pair = (meter.provider, meter.model)
        if pair not in self:
            self[pair] = UsageBucket([0.0] * (len(_ZEROS) + 1), deque(maxlen=LATENCY_SAMPLES))
        totals, latencies = self[pair]
        for i, value in enumerate(meter.values()):
            totals[i] = totals[i] + value
        latencies.append(meter.latency_s)


def row(
    provider: str, model: str, totals: Sequence[float], latencies: Sequence[float]
) -> UsageSummary:
    *counts, latency_sum = totals  # UsageTotals' fields, then the latency sum
    usage = UsageTotals(*(type(zero)(n) for zero, n in zip(_ZEROS, counts, strict=True)))
    mean = latency_sum / counts[0] if counts[0] else 0.0
    ordered = sorted(latencies)  # the p95 by nearest rank
    p95 = ordered[max(1, math.ceil(0.95 * len(ordered))) - 1] if ordered else 0.0
    return UsageSummary(provider, model, usage, mean, p95)


USAGE_LUA = """
local USAGE_FIELDS = {'calls', 'failures', 'in', 'out', 'cost', 'cached', 'discount', 'faults',
                      'lat'}

local function usage_record(h, l, index, provider, model, values, samples)
  local old = redis.call('HMGET', h, unpack(USAGE_FIELDS))
  local pairs_ = {'provider', provider, 'model', model}
  for i, name in ipairs(USAGE_FIELDS) do
    pairs_[#pairs_ + 1] = name
    pairs_[#pairs_ + 1] = fmt((tonumber(old[i]) or 0) + values[i])
  end
  redis.call('HSET', h, unpack(pairs_))
  redis.call('LPUSH', l, fmt(values[#USAGE_FIELDS]))
  redis.call('LTRIM', l, 0, samples - 1)
  redis.call('SADD', index, h)
end
"""


def usage_keys(prefix: str, provider: str, model: str) -> list[str]:
    totals = f"{prefix}us:{provider}|{model}"
    return [totals, f"{totals}:lat", f"{prefix}us:index"]


@dataclass(frozen=True, slots=True)
class UsageRows(Step[list[UsageSummary]]):
    lua: ClassVar[str] = (
        LUA_PRELUDE
        + USAGE_LUA
        + """
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
    )
    reads_only: ClassVar[bool] = True

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return usage_keys(prefix, "", "")[2:], []

    def decode(self, reply: Any) -> list[UsageSummary]:
        found = json_rows(reply)
        result = []
        for values, samples in zip(found[0::2], found[1::2], strict=True):
            provider, model, *totals = rows(values)
            figures = [number(t) if t not in (None, False) else 0.0 for t in totals]
            result.append(row(provider, model, figures, [number(s) for s in rows(samples)]))
        return sorted(result, key=lambda r: (r.provider, r.model))

    def local(self, state: MemoryState) -> list[UsageSummary]:
        return [row(*pair, *b) for pair, b in sorted(state.part(UsageBuckets).items())]


class UsageTracker(BaseCallbackHandler):
    """A LangChain callback totalling every chat-model request it sees (retries, fallbacks
    and failures too), by the model that served; thread-safe and run inline."""

    run_inline = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[UUID, tuple[str, str, float]] = {}
        self._buckets = UsageBuckets()

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        metadata = kwargs.get("metadata") or {}
        provider = str(metadata.get("ls_provider") or "unknown")
        model = str(metadata.get("ls_model_name") or "unknown")
        with self._lock:
            self._runs[kwargs["run_id"]] = (provider, model, time.perf_counter())

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._ended(run_id, request_replies(response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._ended(run_id, None)

    def _ended(self, run_id: UUID, replies: list[BaseMessage] | None) -> None:
        ended = time.perf_counter()
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is not None:  # seen starting
            provider, model, started = run
            self.count(provider, model, ended - started, *(replies or ()), failed=replies is None)

    def count(
        self, provider: str, model: str, latency_s: float, *replies: object, failed: bool = False
    ) -> None:
        """One request that answered ``replies`` (a stream's chunks added up) or ``failed``: a
        policy's attempt when its calls carry this tracker (:func:`feeding`)."""
        meter = CallMeter(provider, model, UsageTotals(calls=1, failures=int(failed)), latency_s)
        for reply in replies:
            meter.observe(reply)
        with self._lock:
            self._buckets.add(meter)

    def summary(self) -> dict[tuple[str, str], UsageSummary]:
        with self._lock:
            return {pair: row(*pair, *bucket) for pair, bucket in self._buckets.items()}

    def totals(self) -> UsageTotals:
        return UsageTotals.merge(entry.usage for entry in self.summary().values())


def request_replies(response: LLMResult) -> list[BaseMessage]:
    """Each request's first choice: ``n`` completions share one ``usage``, copied onto each."""
    return [
        first.message
        for generations in response.generations
        if (first := next((g for g in generations if isinstance(g, ChatGeneration)), None))
    ]


def message_usage(message: BaseMessage) -> UsageTotals:
    """What a reply or chunk reports (no call counted): the one place a reported cost enters;
    an implausible ``cost`` or ``cache_discount`` counts as a fault and adds nothing."""
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


def finite(value: object) -> float | None:
    """A number, or a string of one, as a finite float; else None (``True`` is no number)."""
    if not isinstance(value, bool) and isinstance(value, int | float | str):
        with contextlib.suppress(ValueError, OverflowError):  # 10**400: too large for a float
            if math.isfinite(number := float(value)):
                return number
    return None


def plausible_usd(value: object) -> float | None:
    """USD; 0.0 when absent (Ollama reports none); None unless 0 to MAX_PLAUSIBLE_COST_USD."""
    amount = 0.0 if value is None else finite(value)
    return amount if amount is not None and 0.0 <= amount <= MAX_PLAUSIBLE_COST_USD else None


_warned: deque[str] = deque(maxlen=_WARNED_REPLIES)
_warned_lock = threading.Lock()


def _warn_fault(message: BaseMessage, cost: object, discount: object) -> None:
    """One WARNING per faulty reply id: the tracker and the policy's meter both read it."""
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
    """Never the reply's raw text: NaN when it is no number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0 if value is None else math.nan


class CallMeter(BaseCallbackHandler):
    """One provider call's usage (its attempts) for the step after it, fed each reply or
    chunk by the policy, or as a callback over structured output."""

    run_inline = True

    def __init__(
        self,
        provider: str,
        model: str | None,
        usage: UsageTotals | None = None,
        latency_s: float = 0.0,
    ) -> None:
        self.provider = provider
        self.model = model or "unknown"
        self.attempts = 0
        self.usage = UsageTotals() if usage is None else usage
        self.latency_s = latency_s
        self._started = time.perf_counter()

    def observe(self, output: object) -> None:
        if isinstance(output, BaseMessage):
            self.usage += message_usage(output)
            self.model = str(output.response_metadata.get("model_name") or self.model)

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for message in request_replies(response):
            self.observe(message)

    def record(self, answered: bool) -> CallMeter:
        """End the call: its attempts are its calls (failures but the last, if ``answered``)."""
        attempts = self.attempts
        self.usage = replace(self.usage, calls=attempts, failures=attempts - int(answered))
        self.latency_s = time.perf_counter() - self._started
        return self

    def values(self) -> tuple[float, ...]:
        """The usage's fields, then the latency (the script's ``USAGE_FIELDS``)."""
        return (*map(float, _FIGURES(self.usage)), self.latency_s)


def with_handler(config: RunnableConfig | None, handler: BaseCallbackHandler) -> RunnableConfig:
    """``config`` with ``handler`` added to its callbacks (a list or a manager); unlike
    ``merge_configs``, nothing of the ambient run's config is copied in, no tag reordered."""
    config = config or {}
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.add_handler(handler, inherit=True)
        return {**config, "callbacks": manager}
    return {**config, "callbacks": [*(callbacks or []), handler]}


TRACKER_KEY = "__pygent_usage_tracker"  # "__": LangChain keeps it out of tracers' metadata


def feeding(config: RunnableConfig, tracker: UsageTracker) -> RunnableConfig:
    """``config`` whose policies count each request in ``tracker`` (not as a callback)."""
    return {**config, "configurable": {**config.get("configurable", {}), TRACKER_KEY: tracker}}


def fed_tracker(config: RunnableConfig | None) -> UsageTracker | None:
    configurable = config.get("configurable") if config else None
    tracker = configurable.get(TRACKER_KEY) if configurable else None
    return tracker if isinstance(tracker, UsageTracker) else None
