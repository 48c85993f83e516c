"""Sliding-window rate limits: a log of the times of the calls let through, per key.

A sorted set per key (score: the call's time): trim the entries older than
the period, count, add. A call at time ``t`` holds its slot during
``[t, t + period)``. Whatever order concurrent callers' scripts run in, no
window of ``period`` seconds ever holds more than ``limit`` calls: of the
calls in such a window, the one whose step ran last saw all the others still
in the log (none is older than ``period`` at its time), so it was let
through only because there were fewer than ``limit`` of them. A token bucket
or GCRA would allow up to twice the limit in a window that straddles a
burst. The log costs one entry per call in the period, fine for the
hundreds per minute a provider allows.
"""

from __future__ import annotations

import bisect

RATE_LUA = """
local function rate_check(key, now, limit, period)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - period))
  local n = redis.call('ZCARD', key)
  if n < limit then return true, 0 end
  local entry = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
  return false, tonumber(entry[2]) + period - now
end

local function rate_commit(key, now, period, member)
  redis.call('ZADD', key, fmt(now), member)
  redis.call('PEXPIRE', key, math.ceil(period * 1000) + 1000)
end
"""
"""``rate_check`` answers whether a slot is free, and if not the seconds until one frees."""

RateLogs = dict[str, list[float]]
"""The in-process twin: per key, the sorted times of the calls let through."""


def rate_key(prefix: str, key: str) -> str:
    return f"{prefix}rl:{key}"


def check(logs: RateLogs, key: str, now: float, limit: int, period: float) -> tuple[bool, float]:
    """``rate_check``: whether a slot is free, and if not the seconds until one frees."""
    log = logs.setdefault(key, [])
    del log[: bisect.bisect_right(log, now - period)]
    if len(log) < limit:
        return True, 0.0
    return False, log[len(log) - limit] + period - now


def commit(logs: RateLogs, key: str, now: float) -> None:
    bisect.insort(logs.setdefault(key, []), now)


__all__ = ["RATE_LUA", "RateLogs", "check", "commit", "rate_key"]
