"""Request rate limits per provider: ``PYGENT_RATE_LIMITS="openrouter=120/min,ollama=10/s"``.

A limit allows at most ``limit`` requests in any sliding window of
``period_s`` seconds. It is kept in the state store (:mod:`pygent_lc.state`),
so with ``PYGENT_STATE_URL`` set it holds for every process together. Each
request counts, retries included. OpenRouter's ``:free`` models allow 20
requests a minute per key: that limit is built in (:data:`FREE_MODEL_LIMIT`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pygent_lc.errors import RateLimitError
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


FREE_MODEL_LIMIT = RateLimit(20, 60.0)
"""OpenRouter's limit for ``:free`` models: 20 requests a minute per key."""


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
    """A request would pass a configured rate limit (:mod:`pygent_lc.rate_limits`).

    Raised before any request, so it says nothing about the provider's health:
    a breaker does not count it, and the chain's next provider runs instead.
    ``retry_after`` is when the limit frees a slot.
    """


__all__ = [
    "FREE_MODEL_LIMIT",
    "LocalRateLimitError",
    "RateLimit",
    "RateLimitMode",
    "parse_rate_limits",
]
