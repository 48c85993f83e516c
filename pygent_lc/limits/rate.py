"""Rate limits per provider (``PYGENT_RATE_LIMITS="openrouter=120/min"``): a sliding log per
key (a token bucket or GCRA allows twice the limit across a burst). Each key keeps the
latest time seen (``<key>:t``), and no step runs earlier: a caller whose clock read came
first but reached Redis later would otherwise trim entries an earlier caller must count."""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field
from typing import Literal

from pygent_lc.errors import ConfigurationError, RateLimitError
from pygent_lc.redaction import shown_value

RateLimitMode = Literal["wait", "raise"]
"""``wait``: a request over the limit waits for a slot within ``request_timeout``;
``raise``: it fails at once with :class:`LocalRateLimitError`."""

_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PERIODS |= {"h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` requests in any window of ``period_s`` seconds."""

    limit: int
    period_s: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"120/min"``, ``"10/s"``, ``"1000/h"``, ``"5/10s"`` (five per ten seconds)."""
        match = _LIMIT.match(text.lower())
        unit = _PERIODS.get(match.group(3)) if match else None
        if match is None or unit is None:
            raise ValueError(f"expected a rate like 120/min or 10/s, got {shown_value(text)}")
        count = float(match.group(2)) if match.group(2) else 1.0
        limit, period_s = int(match.group(1)), count * unit
        if limit < 1 or period_s <= 0:
            raise ValueError(
                f"a rate needs at least 1 request per positive period, got {shown_value(text)}"
            )
        return cls(limit, period_s)

    def __str__(self) -> str:
        return f"{self.limit}/{self.period_s:g}s"


FREE_MODEL_LIMIT = RateLimit(20, 60.0)  # OpenRouter's ``:free`` models, per key


def parse_rate_limits(text: str) -> dict[str, RateLimit]:
    """``"openrouter=120/min,ollama=10/s"`` as ``{provider: RateLimit}``."""
    limits: dict[str, RateLimit] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        provider, sep, rate = part.partition("=")
        if not sep or not provider.strip():
            raise ValueError(
                f"expected provider=rate, like openrouter=120/min, got {shown_value(part)}"
            )
        limits[provider.strip().lower()] = RateLimit.parse(rate)
    return limits


class LocalRateLimitError(RateLimitError):
    """Raised before a request over a configured rate limit (no breaker counts it, the next
    provider runs); ``retry_after``: when a slot frees."""


@dataclass(frozen=True, slots=True)
class RateSpec:
    key: str
    limit: int
    period_s: float


MIN_RATE_WAIT_S = 1e-6  # a refusal never says "retry in 0 s" (rounding)

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


@dataclass
class RateLog:
    times: list[float] = field(default_factory=list)
    latest: float = -math.inf


class RateLogs(dict[str, RateLog]):
    # The twin: its methods are the Lua functions of the same names.

    def time(self, key: str, now: float) -> float:
        log = self.get(key)
        return log.latest if log is not None and log.latest > now else now

    def check(self, key: str, now: float, limit: int, period: float) -> tuple[bool, float]:
        log = self.setdefault(key, RateLog())
        log.latest = now
        del log.times[: bisect.bisect_right(log.times, now - period)]
        if len(log.times) < limit:
            return True, 0.0
        return False, log.times[len(log.times) - limit] + period - now

    def commit(self, key: str, now: float) -> None:
        bisect.insort(self.setdefault(key, RateLog()).times, now)


def rate_keys(prefix: str, key: str) -> list[str]:
    return [f"{prefix}rl:{key}", f"{prefix}rl:{key}:t"]


def check_spec(spec: RateSpec) -> None:
    if spec.limit < 1 or not spec.period_s > 0:
        raise ConfigurationError(
            f"rate limit of {spec.key!r} needs limit >= 1 and period_s > 0, "
            f"got {spec.limit} per {spec.period_s}s",
            field="rate_limit",
        )
