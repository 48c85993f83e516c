"""Four spawned processes share budgets and a rate limit through a real Redis."""

from __future__ import annotations

import multiprocessing
import uuid

import pytest

import tests.limits.state_workers as state_workers
from pygent_lc.limits.redis_store import RedisStore
from tests.limits.state_helpers import most_in_window
from tests.limits.steps import budget_spent

pytestmark = pytest.mark.live_local


def test_limits_hold_across_processes(redis_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    prefix = f"procs:{uuid.uuid4().hex[:8]}:"
    processes = [
        context.Process(target=state_workers.worker, args=(redis_url, prefix, results))
        for _ in range(state_workers.PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=100) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    assert all(process.exitcode == 0 for process in processes)

    store = RedisStore(redis_url, prefix=prefix)
    limit, cost = state_workers.BUDGET_LIMIT, state_workers.COST
    # Without bounds: one call at a time across the processes, at most one call over.
    unknown_calls = sum(calls for calls, _, _ in outcomes)
    spent = budget_spent(store, "budget:unknown")
    assert spent == unknown_calls * cost
    assert limit <= spent <= limit + cost
    # With estimates that match the costs: exactly the limit, never over.
    estimated_calls = sum(calls for _, calls, _ in outcomes)
    assert budget_spent(store, "budget:estimated") == estimated_calls * cost == limit
    # Every process took rate slots, and no window held more than the limit.
    logged = [t for _, _, times in outcomes for t in times]
    assert all(times for _, _, times in outcomes)
    assert most_in_window(logged, state_workers.RATE_PERIOD) <= state_workers.RATE_LIMIT
    assert len(logged) >= 2 * state_workers.RATE_LIMIT
    store.clear()
    store.close()
