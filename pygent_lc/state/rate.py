"""Sliding-window rate limits: a log of the times of the calls let through, per key.

A sorted set per key (score: the call's time): trim the entries older than
the period, count, add. A call at time ``t`` holds its slot during
``[t, t + period)``. A token bucket or GCRA would allow up to twice the
limit in a window that straddles a burst; the log costs one entry per call
in the period, fine for the hundreds per minute a provider allows.

Times come from the callers' clocks, and a caller may read its clock before
another one yet reach Redis after it. Trimming with the later time first
would drop entries the earlier caller must still count, so each key keeps
the latest time it has seen (``<key>:t``) and a step never runs at an
earlier time than that: the times of a key's steps never go backwards in
the order Redis runs them. Then no window of ``period`` ever holds more than
``limit`` calls: of the calls in such a window, the one whose step ran last
saw all the others still in the log (none older than ``period`` at its
time), so it was let through only because there were fewer than ``limit``.
The times are those the store logged (see ``CallStart.now``): the caller's
clock, or a little later while callers' clocks disagree.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

RATE_LUA = """
local function rate_time(clock_key, now)
  local latest = tonumber(redis.call('GET', clock_key))
  if latest and latest > now then return latest end
  return now
end

local function rate_check(key, clock_key, now, limit, period)
  redis.call('SET', clock_key, fmt(now), 'PX', math.ceil(period * 1000) + 1000)
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
"""``rate_time`` is the time a step runs at (see above); ``rate_check`` answers whether a
slot is free at it, and if not the seconds until one frees."""


@dataclass
class RateLog:
    """The in-process twin of one key's log and latest time."""

    times: list[float] = field(default_factory=list)
    latest: float = -math.inf


RateLogs = dict[str, RateLog]


def rate_key(prefix: str, key: str) -> str:
    return f"{prefix}rl:{key}"


def clock_key(prefix: str, key: str) -> str:
    return f"{prefix}rl:{key}:t"


def time_of(logs: RateLogs, key: str, now: float) -> float:
    """``rate_time``: ``now``, or the key's latest time if that is later."""
    log = logs.get(key)
    return log.latest if log is not None and log.latest > now else now


def check(logs: RateLogs, key: str, now: float, limit: int, period: float) -> tuple[bool, float]:
    """``rate_check``: whether a slot is free, and if not the seconds until one frees."""
    log = logs.setdefault(key, RateLog())
    log.latest = now
    del log.times[: bisect.bisect_right(log.times, now - period)]
    if len(log.times) < limit:
        return True, 0.0
    return False, log.times[len(log.times) - limit] + period - now


def commit(logs: RateLogs, key: str, now: float) -> None:
    bisect.insort(logs.setdefault(key, RateLog()).times, now)


__all__ = ["RATE_LUA", "RateLog", "RateLogs", "check", "clock_key", "commit", "rate_key", "time_of"]
