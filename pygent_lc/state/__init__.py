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

Who uses it, and how (each provider call asks the store at most twice):

* :class:`~pygent_lc.policy.ProviderPolicy`: ``begin_call`` before a provider
  call (its budget, breaker and rate limit, all or nothing) and ``end_call``
  after it (the breaker's outcome, the budget settled with the call's cost,
  usage when a state URL is set); ``take_rate_token`` for each retry.
* :class:`~pygent_lc.breaker.CircuitBreaker` (key ``provider|model|endpoint``)
  and :class:`~pygent_lc.budget.CostBudget` (key ``budget_key``, optionally
  per window) build their parts of those steps; alone, they use the single
  operations (``breaker_admit``, ``budget_reserve``...).
* :class:`~pygent_lc.host_pool.HostPool`: ``inflight_enter``/``inflight_exit``
  around a call, ``inflight_get`` to pick the least busy host.
* The ToT value cache: :class:`pygent_lc.tot.value_store.SharedValueStore`.
* ``pygent-lc usage``: ``usage_rows``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pygent_lc.state import types
from pygent_lc.state.factory import open_store, shared_store
from pygent_lc.state.memory import MemoryStore
from pygent_lc.state.resilient import ResilientStore
from pygent_lc.state.store import DEFAULT_PREFIX, StateStore
from pygent_lc.state.types import *  # noqa: F403 - the package's types are its own
from pygent_lc.state.urls import redact_url

if TYPE_CHECKING:
    from pygent_lc.state.redis_store import RedisStore


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from pygent_lc.state.redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_PREFIX",
    "MemoryStore",
    "RedisStore",
    "ResilientStore",
    "StateStore",
    "open_store",
    "redact_url",
    "shared_store",
]
__all__ += types.__all__
