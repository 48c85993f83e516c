"""Usage totals per (provider, model), in Lua and in Python.

A hash per pair holds the counters and the sum of latencies (so the mean is
over every call); a list holds the most recent :data:`LATENCY_SAMPLES`
latencies (``LPUSH`` + ``LTRIM``) for the p95, and a set indexes the pairs.
Counters are added in Lua's doubles (exact for integers below 2**53), so one
script reads the hash once and writes it once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pygent_lc.state.types import UsageRecord, UsageRow

LATENCY_SAMPLES = 1000
"""Latency samples kept per (provider, model) for the p95."""

FIELDS = ("calls", "failures", "in", "out", "cost", "lat", "cached", "discount", "faults")
"""The hash's counters, in the order scripts pass and return them."""

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


UsageBuckets = dict[tuple[str, str], UsageBucket]


def record(buckets: UsageBuckets, usage: UsageRecord) -> None:
    bucket = buckets.setdefault((usage.provider, usage.model), UsageBucket())
    for i, value in enumerate(values(usage)):
        bucket.totals[i] = bucket.totals[i] + value
    bucket.latencies.append(usage.latency_s)


def row(provider: str, model: str, totals: Sequence[float], latencies: Sequence[float]) -> UsageRow:
    """A :class:`UsageRow` from a pair's counters (:data:`FIELDS` order) and samples."""
    calls, failures, inputs, outputs, cost, latency_sum, cached, discount, faults = totals
    return UsageRow(
        provider=provider,
        model=model,
        calls=int(calls),
        failures=int(failures),
        input_tokens=int(inputs),
        output_tokens=int(outputs),
        cost_usd=cost,
        mean_latency_s=latency_sum / calls if calls else 0.0,
        p95_latency_s=percentile(latencies, 0.95),
        cached_input_tokens=int(cached),
        cache_discount_usd=discount,
        cost_faults=int(faults),
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile, as :mod:`pygent_lc.usage` computes it (0 with no samples)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


__all__ = [
    "FIELDS",
    "LATENCY_SAMPLES",
    "USAGE_LUA",
    "USAGE_ROWS_LUA",
    "UsageBucket",
    "UsageBuckets",
    "UsageKeys",
    "percentile",
    "record",
    "row",
    "usage_index",
    "usage_keys",
    "values",
]
