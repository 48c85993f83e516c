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

How the in-process limits map onto a store (the integration still to do):

* ``CircuitBreaker`` (key ``provider|model|endpoint``): ``admit`` ->
  :meth:`~StateStore.breaker_admit`; ``record_success`` and the errors that
  prove the provider answered -> ``breaker_success``; a counted error ->
  ``breaker_failure`` (summary ``"ErrorType: message"``); ``release`` ->
  ``breaker_release``; ``state`` -> ``breaker_state``. A refused admission
  carries ``failures`` and ``last_error`` for ``CircuitOpenError``'s message.
* ``CostBudget`` (done: :class:`pygent_lc.budget.CostBudget` takes ``store``,
  ``key`` and ``window_s``, and gives ``spec``/``exceeded``/``wait_seconds``
  for a ``begin_call`` plan).
* ``UsageTracker``: ``on_llm_end``/``on_llm_error`` -> ``record_usage``;
  ``summary`` -> ``usage_rows`` (the fields of ``UsageSummary``).
* A rate limiter: ``take_rate_token``, sleeping the seconds it answers.
* An Ollama host pool: ``inflight_enter``/``inflight_exit`` around a call,
  ``inflight_get`` to pick the least busy host.
* The ToT value cache: :class:`pygent_lc.state.value_cache.SharedValueStore`.
* All of one call's checks at once: ``begin_call`` / ``end_call`` (one round
  trip each instead of one per limit).
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
