"""Every limit this library enforces, each one module with its Redis script and its twin.

:mod:`~pygent_lc.limits.breaker` (:class:`CircuitBreaker`), :mod:`~pygent_lc.limits.rate`
(``PYGENT_RATE_LIMITS``), :mod:`~pygent_lc.limits.budget` (:class:`CostBudget`),
:mod:`~pygent_lc.limits.usage` (:class:`UsageTracker`, :class:`UsageSummary`);
:mod:`~pygent_lc.limits.call`: a provider call's two steps, one round trip each;
:mod:`~pygent_lc.limits.store`: :class:`StateStore`, in this process
(:class:`MemoryStore`) or in Redis (``redis_store``, the ``redis`` extra, imported only
for a Redis URL) behind :class:`ResilientStore`, opened by :func:`open_store` /
:func:`shared_store`.
"""

from __future__ import annotations

from pygent_lc.limits.breaker import (
    ADMITTED,
    BreakerAdmission,
    BreakerOutcome,
    BreakerSpec,
    BreakerStatus,
    CircuitBreaker,
    CircuitOpenError,
)
from pygent_lc.limits.budget import (
    BudgetAnswer,
    BudgetRefusal,
    BudgetReservation,
    BudgetSpec,
    BudgetStatus,
    CostBudget,
)
from pygent_lc.limits.call import (
    CallEnd,
    CallEnded,
    CallPlan,
    CallStart,
    HeldStream,
    Hold,
    Settlement,
)
from pygent_lc.limits.rate import LocalRateLimitError, RateLimit, RateSpec
from pygent_lc.limits.shared import open_store, shared_store
from pygent_lc.limits.store import (
    DEFAULT_PREFIX,
    MemoryStore,
    ResilientStore,
    StateStore,
    redact_url,
)
from pygent_lc.limits.usage import UsageRecord, UsageSummary, UsageTracker

__all__ = [
    "ADMITTED",
    "DEFAULT_PREFIX",
    "BreakerAdmission",
    "BreakerOutcome",
    "BreakerSpec",
    "BreakerStatus",
    "BudgetAnswer",
    "BudgetRefusal",
    "BudgetReservation",
    "BudgetSpec",
    "BudgetStatus",
    "CallEnd",
    "CallEnded",
    "CallPlan",
    "CallStart",
    "CircuitBreaker",
    "CircuitOpenError",
    "CostBudget",
    "HeldStream",
    "Hold",
    "LocalRateLimitError",
    "MemoryStore",
    "RateLimit",
    "RateSpec",
    "ResilientStore",
    "Settlement",
    "StateStore",
    "UsageRecord",
    "UsageSummary",
    "UsageTracker",
    "open_store",
    "redact_url",
    "shared_store",
]
