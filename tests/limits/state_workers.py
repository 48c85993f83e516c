"""What each spawned process runs in test_state_processes.py (a module of its own, so a
spawned child imports only this, not the test module)."""

from __future__ import annotations

import random
import time
from multiprocessing.queues import Queue

from pygent_lc.host_pool import Count, Enter
from pygent_lc.limits import RateSpec, StateStore
from pygent_lc.limits.budget import BudgetRefusal
from pygent_lc.limits.call import CallPlan
from pygent_lc.limits.redis_store import RedisStore
from tests.limits.steps import budget_reserve, budget_settle

PROCESSES = 4
BUDGET_LIMIT = 2.0
COST = 0.0625  # exact in binary: 32 calls make the limit
RATE_LIMIT, RATE_PERIOD, RATE_RUN_S = 20, 0.5, 1.5
BARRIER_TIMEOUT_S = 60.0


def barrier(store: StateStore, name: str) -> None:
    """Wait until every process got here (in-flight tickets as a fleet-wide counter)."""
    store.run(Enter(f"barrier:{name}", store.clock(), lease_s=BARRIER_TIMEOUT_S))
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while store.run(Count((f"barrier:{name}",), store.clock()))[0] < PROCESSES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {name}: not every process arrived")
        time.sleep(0.005)


def spend(store: StateStore, key: str, estimate: float | None, rng: random.Random) -> int:
    """Calls that each cost COST until the budget refuses; the number that ran."""
    calls = 0
    while True:
        answer = budget_reserve(store, key, BUDGET_LIMIT, estimate)
        if isinstance(answer, BudgetRefusal):
            if not answer.wait:
                return calls
            time.sleep(0.001)
            continue
        time.sleep(rng.uniform(0, 0.002))  # the call
        budget_settle(store, answer, COST)
        calls += 1


def take(store: StateStore, key: str) -> list[float]:
    """Rate-limited calls for RATE_RUN_S; the times the store logged them at."""
    plan = CallPlan(rates=(RateSpec(key, RATE_LIMIT, RATE_PERIOD),))
    logged = []
    stop = time.monotonic() + RATE_RUN_S
    while time.monotonic() < stop:
        start = store.begin_call(plan)
        if start.allowed:
            logged.append(start.now)
        else:
            time.sleep(min(start.rate_wait_s, 0.002))
    return logged


def worker(url: str, prefix: str, results: Queue[tuple[int, int, list[float]]]) -> None:
    store = RedisStore(url, prefix=prefix)
    rng = random.Random()
    barrier(store, "unknown")
    unknown = spend(store, "budget:unknown", None, rng)
    barrier(store, "estimated")
    estimated = spend(store, "budget:estimated", COST, rng)
    barrier(store, "rate")
    logged = take(store, "rate")
    results.put((unknown, estimated, logged))
    store.close()
