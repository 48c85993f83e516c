"""Every limit, each one module with its Redis script and its in-process twin: ``breaker``,
``rate``, ``budget``, ``usage``; ``call``: a provider call's two steps, one round trip
each; ``store``: the :class:`StateStore`, in memory or in Redis, opened by ``shared``."""

from __future__ import annotations

from pygent_lc.limits.breaker import CircuitBreaker, CircuitOpenError
from pygent_lc.limits.budget import CostBudget
from pygent_lc.limits.call import Hold
from pygent_lc.limits.rate import LocalRateLimitError, RateLimit, RateSpec
from pygent_lc.limits.shared import open_store, shared_store
from pygent_lc.limits.store import MemoryStore, ResilientStore, StateStore, redact_url
from pygent_lc.limits.usage import UsageSummary, UsageTracker

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "CostBudget",
    "Hold",
    "LocalRateLimitError",
    "MemoryStore",
    "RateLimit",
    "RateSpec",
    "ResilientStore",
    "StateStore",
    "UsageSummary",
    "UsageTracker",
    "open_store",
    "redact_url",
    "shared_store",
]
