"""State shared across processes: rate limits, breakers, budgets, usage, in-flight counts, cache.

Every limit this library enforces keeps its state in a :class:`StateStore`:
a :class:`MemoryStore` (this process only, the default) or a
:class:`RedisStore` (every process using the same Redis), which
:func:`open_store` wraps in a :class:`ResilientStore` so that a Redis outage
degrades to per-process limits instead of failing calls::

    store = open_store(os.environ.get("PYGENT_STATE_URL"))  # None: in memory
    start = store.begin_call(CallPlan(breaker=..., rates=(...), budgets=(...)))
    ...
    store.end_call(CallEnd(breaker=..., settlements=(...), usage=...))

``RedisStore`` needs the ``redis`` extra (``pip install "pygent-lc[redis]"``);
it is imported only when used, so this package imports without redis-py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pygent_lc.state.factory import open_store
from pygent_lc.state.memory import MemoryStore
from pygent_lc.state.resilient import ResilientStore
from pygent_lc.state.store import DEFAULT_PREFIX, StateStore
from pygent_lc.state.types import (
    ADMITTED,
    BreakerAdmission,
    BreakerOutcome,
    BreakerSpec,
    BreakerStatus,
    BudgetAnswer,
    BudgetRefusal,
    BudgetReservation,
    BudgetSpec,
    BudgetStatus,
    CallEnd,
    CallEnded,
    CallPlan,
    CallStart,
    CircuitState,
    InflightTicket,
    RateSpec,
    Settlement,
    UsageRecord,
    UsageRow,
)
from pygent_lc.state.urls import redact_url

if TYPE_CHECKING:
    from pygent_lc.state.redis_store import RedisStore


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from pygent_lc.state.redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "CircuitState",
    "InflightTicket",
    "MemoryStore",
    "RateSpec",
    "RedisStore",
    "ResilientStore",
    "Settlement",
    "StateStore",
    "UsageRecord",
    "UsageRow",
    "open_store",
    "redact_url",
]
