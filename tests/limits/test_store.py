"""The state store's behaviour, the same on MemoryStore and on RedisStore (a real redis-server).

Times come from a fake clock wherever the rules depend on them: the store
sends the client's time with each operation, so Redis follows it too.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pygent_lc.backend import UsageTotals
from pygent_lc.errors import ConfigurationError, InvalidInputError, ProviderUnavailableError
from pygent_lc.host_pool import Count, Enter
from pygent_lc.limits import RateSpec, StateStore
from pygent_lc.limits.breaker import (
    ADMITTED,
    ERROR_SUMMARY_CHARS,
    BreakerAdmission,
    BreakerOutcome,
    BreakerSpec,
    CircuitBreaker,
)
from pygent_lc.limits.budget import BudgetRefusal, BudgetReservation, BudgetSpec
from pygent_lc.limits.call import CallEnd, CallPlan, Settlement
from pygent_lc.limits.rate import MIN_RATE_WAIT_S
from pygent_lc.limits.usage import LATENCY_SAMPLES, CallMeter
from pygent_lc.tot.value_store import SharedValueStore, StoredValue, ValueStore
from tests.limits.state_helpers import START, FakeClock, StoreFactory, most_in_window
from tests.limits.steps import (
    abreaker_admit,
    abreaker_failure,
    abreaker_release,
    abreaker_state,
    abreaker_success,
    abudget_release,
    abudget_reserve,
    abudget_settle,
    abudget_spent,
    abudget_status,
    acache_get,
    acache_set,
    admit,
    arate_take,
    arecord_usage,
    ausage_rows,
    breaker_admit,
    breaker_failure,
    breaker_release,
    breaker_state,
    breaker_success,
    budget_release,
    budget_reserve,
    budget_settle,
    budget_spent,
    budget_status,
    cache_get,
    cache_set,
    rate_take,
    record,
    record_usage,
    release,
)


def reserved(answer: BudgetReservation | BudgetRefusal) -> BudgetReservation:
    assert isinstance(answer, BudgetReservation), answer
    return answer


# -- rate limits -----------------------------------------------------------------------------


def test_rate_limit_takes_limit_then_says_when_a_slot_frees(
    store: StateStore, clock: FakeClock
) -> None:
    for _ in range(3):
        assert rate_take(store, "rl", 3, 10.0) == 0.0
        clock.advance(1.0)
    assert rate_take(store, "rl", 3, 10.0) == pytest.approx(7.0)  # the t=0 slot frees at 10
    clock.advance(7.0)  # t=10: the first call's slot is free again, exactly now
    assert rate_take(store, "rl", 3, 10.0) == 0.0
    assert rate_take(store, "rl", 3, 10.0) == pytest.approx(1.0)  # t=1 frees at 11
    assert rate_take(store, "other", 3, 10.0) == 0.0  # keys are independent


def test_rate_limit_is_exact_in_every_sliding_window(store: StateStore, clock: FakeClock) -> None:
    """Random attempts: each is let through exactly when the log allows it."""
    rng = random.Random(7)
    limit, period = 5, 2.0
    taken: list[float] = []
    for _ in range(300):
        clock.advance(rng.choice([0.0, 0.01, 0.1, 0.3, 0.7]))
        now = clock()
        in_window = sum(1 for t in taken if t > now - period)
        wait = rate_take(store, "exact", limit, period)
        if in_window < limit:
            assert wait == 0.0
            taken.append(now)
        else:
            oldest_needed = sorted(t for t in taken if t > now - period)[in_window - limit]
            expected = max(oldest_needed + period - now, MIN_RATE_WAIT_S)
            assert wait == pytest.approx(expected, abs=1e-9)
    assert most_in_window(taken, period) == limit


def test_rate_limit_times_never_go_backwards(store: StateStore, clock: FakeClock) -> None:
    """A caller whose clock reads earlier than one already seen runs at the later time: else
    the later caller's trim would have dropped entries the earlier one must count."""
    plan = CallPlan(rates=(RateSpec("skew", 3, 10.0),))
    logged = []
    for _ in range(3):
        logged.append(store.begin_call(plan).now)
        clock.advance(1.0)
    clock.advance(8.5)  # t=11.5: the slots of t=0 and t=1 are free again
    start = store.begin_call(plan)
    assert start.allowed and start.now == START + 11.5
    logged.append(start.now)
    clock.advance(-2.0)  # a caller whose clock is 2 s behind
    start = store.begin_call(plan)
    assert start.allowed and start.now == START + 11.5  # logged at the later time
    logged.append(start.now)
    assert not store.begin_call(plan).allowed
    assert most_in_window(logged, 10.0) == 3


def test_rate_limit_holds_under_threads(make_store: StoreFactory) -> None:
    """Six threads on three clients (three "processes" on Redis): never more than the limit
    in any window of the times the store logged."""
    stores = [make_store() for _ in range(3)]
    plan = CallPlan(rates=(RateSpec("threads", 15, 0.25),))
    taken: list[float] = []
    lock = threading.Lock()
    deadline = time.time() + 0.8

    def worker(i: int) -> None:
        while time.time() < deadline:
            start = stores[i % 3].begin_call(plan)
            if start.allowed:
                with lock:
                    taken.append(start.now)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(worker, range(6)))
    assert most_in_window(taken, 0.25) <= 15
    assert len(taken) >= 15 * 3  # the limiter did let calls through in each period


def test_rate_limit_rejects_nonsense(store: StateStore) -> None:
    with pytest.raises(ConfigurationError):
        rate_take(store, "bad", 0, 1.0)
    with pytest.raises(ConfigurationError):
        rate_take(store, "bad", 1, 0.0)


# -- circuit breakers --------------------------------------------------------------------------


def test_breaker_opens_probes_once_and_closes(store: StateStore, clock: FakeClock) -> None:
    key, threshold, cooldown = "p|m|chat", 3, 30.0
    first = breaker_admit(store, key, threshold, cooldown)
    assert first.allowed and first.probe_id is None
    assert not breaker_failure(store, key, first, threshold, cooldown, "503 one")
    assert not breaker_failure(store, key, first, threshold, cooldown, "503 two")
    assert breaker_state(store, key, cooldown).state == "closed"
    assert breaker_failure(store, key, first, threshold, cooldown, "503 three")  # opens
    status = breaker_state(store, key, cooldown)
    assert (status.state, status.failures, status.last_error) == ("open", 3, "503 three")

    clock.advance(10.0)
    refused = breaker_admit(store, key, threshold, cooldown)
    assert not refused.allowed
    assert refused.retry_in == pytest.approx(20.0)
    assert (refused.failures, refused.last_error) == (3, "503 three")

    clock.advance(20.0)
    assert breaker_state(store, key, cooldown).state == "half_open"
    probe = breaker_admit(store, key, threshold, cooldown)
    assert probe.allowed and probe.probe_id is not None
    others = breaker_admit(store, key, threshold, cooldown)
    assert not others.allowed and others.retry_in is None  # a probe is in flight

    assert breaker_failure(store, key, probe, threshold, cooldown, "timeout")  # reopens
    assert breaker_state(store, key, cooldown).failures == 4
    assert not breaker_admit(store, key, threshold, cooldown).allowed
    clock.advance(cooldown)
    probe = breaker_admit(store, key, threshold, cooldown)
    assert probe.probe_id is not None
    assert breaker_success(store, key, probe)  # it was open: closed now
    status = breaker_state(store, key, cooldown)
    assert (status.state, status.failures, status.last_error) == ("closed", 0, None)
    assert breaker_admit(store, key, threshold, cooldown).allowed


def test_breaker_ignores_failures_of_calls_admitted_before_it_opened(
    store: StateStore, clock: FakeClock
) -> None:
    key = "late"
    early = [breaker_admit(store, key, 2, 5.0) for _ in range(4)]
    assert not breaker_failure(store, key, early[0], 2, 5.0, "e0")
    assert breaker_failure(store, key, early[1], 2, 5.0, "e1")
    assert not breaker_failure(store, key, early[2], 2, 5.0, "e2")  # already open: ignored
    status = breaker_state(store, key, 5.0)
    assert (status.failures, status.last_error) == (2, "e1")


def test_a_probe_older_than_the_cooldown_no_longer_blocks(
    store: StateStore, clock: FakeClock
) -> None:
    key = "slow-probe"
    call = breaker_admit(store, key, 1, 5.0)
    assert breaker_failure(store, key, call, 1, 5.0, "down")
    clock.advance(5.0)
    stuck = breaker_admit(store, key, 1, 5.0)
    assert stuck.probe_id is not None
    clock.advance(4.9)
    assert not breaker_admit(store, key, 1, 5.0).allowed
    clock.advance(0.1)
    second = breaker_admit(store, key, 1, 5.0)
    assert second.allowed and second.probe_id not in (None, stuck.probe_id)
    # The first probe ends late: no longer the probe, and the circuit is open.
    assert not breaker_failure(store, key, stuck, 1, 5.0, "late")
    assert breaker_state(store, key, 5.0).failures == 1


def test_breaker_release_frees_only_its_own_probe_slot(store: StateStore, clock: FakeClock) -> None:
    key = "release"
    assert breaker_failure(store, key, breaker_admit(store, key, 1, 5.0), 1, 5.0, "down")
    clock.advance(5.0)
    probe = breaker_admit(store, key, 1, 5.0)
    breaker_release(store, key, ADMITTED)  # not a probe: nothing to free
    assert not breaker_admit(store, key, 1, 5.0).allowed
    breaker_release(store, key, probe)
    again = breaker_admit(store, key, 1, 5.0)
    assert again.allowed and again.probe_id is not None
    breaker_release(store, key, probe)  # no longer ours: the new probe keeps its slot
    assert not breaker_admit(store, key, 1, 5.0).allowed


def test_a_success_resets_the_consecutive_count(store: StateStore) -> None:
    key = "reset"
    call = breaker_admit(store, key, 3, 5.0)
    for _ in range(2):
        breaker_failure(store, key, call, 3, 5.0, "x")
    assert not breaker_success(store, key, call)  # was closed
    for _ in range(2):
        assert not breaker_failure(store, key, call, 3, 5.0, "x")
    assert breaker_state(store, key, 5.0).state == "closed"


def test_a_disabled_breaker_admits_everything_and_records_nothing(store: StateStore) -> None:
    for threshold, cooldown in ((0, 5.0), (3, 0.0)):
        call = breaker_admit(store, "off", threshold, cooldown)
        assert call == ADMITTED
        for _ in range(5):
            assert not breaker_failure(store, "off", call, threshold, cooldown, "x")
    assert breaker_state(store, "off", 5.0).failures == 0


def test_error_summaries_are_one_short_line(store: StateStore) -> None:
    call = breaker_admit(store, "long", 1, 5.0)
    breaker_failure(store, "long", call, 1, 5.0, "first line\nsecond " + "x" * 500)
    summary = breaker_state(store, "long", 5.0).last_error
    assert summary is not None
    assert summary.startswith("first line second x")
    assert len(summary) == ERROR_SUMMARY_CHARS and "\n" not in summary


def test_exactly_one_probe_fleet_wide(make_store: StoreFactory, clock: FakeClock) -> None:
    """Many callers in many "processes" (one Redis client each) after the cooldown: one probe."""
    stores = [make_store(clock) for _ in range(4)]
    call = breaker_admit(stores[0], "fleet", 1, 5.0)
    assert breaker_failure(stores[0], "fleet", call, 1, 5.0, "down")
    clock.advance(5.0)
    barrier = threading.Barrier(16)

    def admit(i: int) -> bool:
        barrier.wait()
        return breaker_admit(stores[i % 4], "fleet", 1, 5.0).allowed

    with ThreadPoolExecutor(16) as pool:
        allowed = list(pool.map(admit, range(16)))
    assert allowed.count(True) == 1


def test_breaker_matches_the_in_process_circuit_breaker(
    store: StateStore, clock: FakeClock
) -> None:
    """A random sequence of calls on pygent_lc.limits.breaker.CircuitBreaker and on the store: the
    same answers at every step (probe ids differ, so they are matched up)."""
    rng = random.Random(11)
    threshold, cooldown = 2, 3.0
    reference = CircuitBreaker(threshold, cooldown, provider="p", clock=clock)
    error = ProviderUnavailableError("503", provider="p")
    live: list[tuple[BreakerAdmission, BreakerAdmission]] = []  # (reference's, store's)
    for step in range(400):
        action = rng.choice(["admit", "admit", "success", "failure", "failure", "release", "wait"])
        if action == "wait":
            clock.advance(rng.choice([0.5, 1.0, 3.0]))
        elif action == "admit":
            ours, theirs = admit(reference), breaker_admit(store, "twin", threshold, cooldown)
            assert (ours.allowed, ours.probe_id is not None) == (
                theirs.allowed,
                theirs.probe_id is not None,
            ), step
            assert (ours.retry_in is None) == (theirs.retry_in is None), step
            if ours.retry_in is not None:
                assert theirs.retry_in == pytest.approx(ours.retry_in), step
            if ours.allowed:
                live.append((ours, theirs))
        elif live:
            ours, theirs = live.pop(rng.randrange(len(live)))
            if action == "success":
                record(reference, ours, None)
                breaker_success(store, "twin", theirs)
            elif action == "failure":
                record(reference, ours, error)
                breaker_failure(store, "twin", theirs, threshold, cooldown, "503")
            else:
                release(reference, ours)
                breaker_release(store, "twin", theirs)
        status = breaker_state(store, "twin", cooldown)
        assert (status.state, status.failures) == (
            reference.state,
            reference.status().failures,
        ), step


# -- budgets -----------------------------------------------------------------------------------


def test_budget_without_bounds_runs_one_call_at_a_time(store: StateStore) -> None:
    first = reserved(budget_reserve(store, "b", 1.0))
    assert first.unknown_cost and first.amount_usd == 0.0
    waiting = budget_reserve(store, "b", 1.0)
    assert isinstance(waiting, BudgetRefusal) and waiting.wait
    budget_settle(store, first, 0.25)
    status = budget_status(store, "b")
    assert (status.spent_usd, status.reserved_usd, status.in_flight) == (0.25, 0.0, 0)
    assert status.largest_call_usd == 0.25
    # A known cost bounds no later call: each still runs alone, reserving the largest cost.
    second = reserved(budget_reserve(store, "b", 1.0))
    assert second.unknown_cost and second.amount_usd == 0.25
    waiting = budget_reserve(store, "b", 1.0)
    assert isinstance(waiting, BudgetRefusal) and waiting.wait
    # A call with a bound goes beside it while the bound fits.
    bounded = reserved(budget_reserve(store, "b", 1.0, 0.5))
    assert isinstance(budget_reserve(store, "b", 1.0, 0.0625), BudgetRefusal)
    budget_settle(store, bounded, 0.5)
    budget_settle(store, second, 0.5)  # 1.25: it passed the limit, by at most one call
    refused = budget_reserve(store, "b", 1.0)
    assert isinstance(refused, BudgetRefusal) and not refused.wait
    assert (refused.spent_usd, refused.reserved_usd, refused.limit_usd) == (1.25, 0.0, 1.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.5])
def test_a_cost_that_is_no_amount_never_reaches_the_store(store: StateStore, bad: float) -> None:
    hold = reserved(budget_reserve(store, "bad", 1.0, 0.5))
    with pytest.raises(InvalidInputError):
        budget_settle(store, hold, bad)
    with pytest.raises(InvalidInputError):
        record_usage(store, "p", "m", 1, 0, 1, 1, bad, 0.1)
    budget_settle(store, hold, 0.25)
    assert budget_status(store, "bad").spent_usd == 0.25
    assert store.usage_rows() == []


def test_usage_counts_cost_faults(store: StateStore) -> None:
    record_usage(store, "p", "m", 1, 0, 1, 1, 0.0, 0.1, cost_faults=1)
    record_usage(store, "p", "m", 1, 0, 1, 1, 0.5, 0.1)
    [row] = store.usage_rows()
    assert (row.usage.calls, row.usage.cost_usd, row.usage.cost_faults) == (2, 0.5, 1)


def test_budget_with_estimates_stays_within_the_limit(store: StateStore) -> None:
    a = reserved(budget_reserve(store, "e", 1.0, 0.5))
    b = reserved(budget_reserve(store, "e", 1.0, 0.5))  # exactly at the limit: allowed
    over = budget_reserve(store, "e", 1.0, 0.125)
    assert isinstance(over, BudgetRefusal) and not over.wait
    budget_settle(store, a, 0.25)
    budget_release(store, b)
    c = reserved(budget_reserve(store, "e", 1.0, 0.75))
    assert (c.spent_usd, c.reserved_usd) == (0.25, 0.0)
    # An estimate is not waited on, even while a call of unknown cost is in flight.
    budget_settle(store, c, 0.0)
    unknown = reserved(budget_reserve(store, "e2", 1.0))
    assert unknown.unknown_cost
    reserved(budget_reserve(store, "e2", 1.0, 0.125))


def test_a_released_call_of_unknown_cost_lets_the_next_one_go(store: StateStore) -> None:
    first = reserved(budget_reserve(store, "r", 1.0))
    budget_release(store, first)
    second = reserved(budget_reserve(store, "r", 1.0))
    assert second.unknown_cost  # still no cost known
    assert budget_status(store, "r").largest_call_usd == 0.0


def test_budget_windows_are_separate_buckets(store: StateStore, clock: FakeClock) -> None:
    hour = 3600
    assert START % 86400 == 0
    early = reserved(budget_reserve(store, "w", 1.0, 0.5, window_s=hour))
    budget_settle(store, reserved(budget_reserve(store, "w", 1.0, 0.5, window_s=hour)), 0.5)
    assert budget_spent(store, "w", hour) == 0.5
    clock.advance(hour)  # the next hour: a fresh bucket
    assert budget_spent(store, "w", hour) == 0.0
    budget_settle(store, early, 0.5)  # ends now, counts in the hour it started in
    assert budget_spent(store, "w", hour) == 0.0
    late = reserved(budget_reserve(store, "w", 1.0, 1.0, window_s=hour))
    assert late.bucket == early.bucket + 1
    # The daily and total budgets of the same key are buckets of their own.
    assert budget_spent(store, "w", 86400) == 0.0
    assert budget_spent(store, "w") == 0.0
    clock.advance(-hour)
    assert budget_spent(store, "w", hour) == 1.0


def test_a_crashed_callers_reservation_ends_with_its_lease(
    store: StateStore, clock: FakeClock
) -> None:
    orphan = reserved(budget_reserve(store, "lease", 1.0, lease_s=60.0))  # its process dies
    assert isinstance(budget_reserve(store, "lease", 1.0), BudgetRefusal)
    clock.advance(60.0)
    status = budget_status(store, "lease")
    assert (status.in_flight, status.reserved_usd) == (0, 0.0)
    nxt = reserved(budget_reserve(store, "lease", 1.0))
    assert nxt.unknown_cost
    budget_settle(store, orphan, 0.25)  # a late settle still counts its cost, once
    budget_settle(store, nxt, 0.125)
    status = budget_status(store, "lease")
    assert (status.spent_usd, status.reserved_usd, status.in_flight) == (0.375, 0.0, 0)


LIMIT = 1.0
COST = 0.0625  # exact in binary, so sums are exact


def _spend_until_refused(store: StateStore, key: str, estimate: float | None) -> int:
    calls = 0
    while True:
        answer = budget_reserve(store, key, LIMIT, estimate)
        if isinstance(answer, BudgetRefusal):
            if not answer.wait:
                return calls
            continue
        calls += 1
        budget_settle(store, answer, COST)


async def _aspend_until_refused(store: StateStore, key: str, estimate: float | None) -> int:
    calls = 0
    while True:
        answer = await abudget_reserve(store, key, LIMIT, estimate)
        if isinstance(answer, BudgetRefusal):
            if not answer.wait:
                return calls
            await asyncio.sleep(0.001)
            continue
        calls += 1
        await asyncio.sleep(0)  # let the other tasks reserve while this call "runs"
        await abudget_settle(store, answer, COST)


@pytest.mark.parametrize("estimate", [None, COST])
def test_budget_overshoots_by_at_most_one_call_under_threads(
    make_store: StoreFactory, estimate: float | None
) -> None:
    stores = [make_store() for _ in range(4)]
    with ThreadPoolExecutor(8) as pool:
        calls = sum(
            pool.map(lambda i: _spend_until_refused(stores[i % 4], "threads", estimate), range(8))
        )
    spent = budget_spent(stores[0], "threads")
    assert spent == calls * COST
    assert LIMIT <= spent <= LIMIT + COST if estimate is None else spent == LIMIT


@pytest.mark.parametrize("estimate", [None, COST])
def test_budget_overshoots_by_at_most_one_call_across_event_loops(
    make_store: StoreFactory, estimate: float | None
) -> None:
    """Tasks on four event loops in four threads, several asyncio.run each, one store."""
    store = make_store()

    def loop_worker() -> int:
        total = 0
        for _ in range(2):

            async def main() -> int:
                tasks = [_aspend_until_refused(store, "loops", estimate) for _ in range(4)]
                counts = await asyncio.gather(*tasks)
                await store.aclose()
                return sum(counts)

            total += asyncio.run(main())
        return total

    with ThreadPoolExecutor(4) as pool:
        calls = sum(f.result() for f in [pool.submit(loop_worker) for _ in range(4)])
    spent = budget_spent(store, "loops")
    assert spent == calls * COST
    assert LIMIT <= spent <= LIMIT + COST if estimate is None else spent == LIMIT


# -- usage ---------------------------------------------------------------------------------------


def test_usage_rows_total_every_call(store: StateStore) -> None:
    latencies = [i / 100 for i in range(1, 101)]
    random.Random(3).shuffle(latencies)
    for i, latency in enumerate(latencies):
        record_usage(store,
            "openrouter", "m/a", 1, int(i % 10 == 0), 10, 5, 0.001, latency,
            cached_input_tokens=2, cache_discount_usd=0.0005,
        )  # fmt: skip
    record_usage(store, "ollama", "llama3.2", 1, 0, 7, 3, 0.0, 0.25)
    rows = store.usage_rows()
    assert [(r.provider, r.model) for r in rows] == [("ollama", "llama3.2"), ("openrouter", "m/a")]
    ollama, openrouter = rows
    assert (ollama.usage.calls, ollama.usage.input_tokens, ollama.usage.output_tokens) == (1, 7, 3)
    assert (ollama.mean_latency_s, ollama.p95_latency_s) == (0.25, 0.25)
    assert (openrouter.usage.calls, openrouter.usage.failures) == (100, 10)
    assert (openrouter.usage.input_tokens, openrouter.usage.output_tokens) == (1000, 500)
    assert openrouter.usage.cached_input_tokens == 200
    assert openrouter.usage.cost_usd == pytest.approx(0.1)
    assert openrouter.usage.cache_discount_usd == pytest.approx(0.05)
    assert openrouter.mean_latency_s == pytest.approx(sum(latencies) / 100)
    assert openrouter.p95_latency_s == 0.95  # nearest rank: the 95th of 100


def test_usage_p95_is_over_the_latest_samples(store: StateStore) -> None:
    # The first 500 calls were slow, the latest LATENCY_SAMPLES fast.
    for latency in [9.0] * 500 + [0.5] * LATENCY_SAMPLES:
        record_usage(store, "p", "m", 1, 0, 0, 0, 0.0, latency)
    (row,) = store.usage_rows()
    assert row.usage.calls == 500 + LATENCY_SAMPLES
    assert row.p95_latency_s == 0.5
    mean = (9.0 * 500 + 0.5 * LATENCY_SAMPLES) / row.usage.calls
    assert row.mean_latency_s == pytest.approx(mean)


# -- in-flight counts and cache --------------------------------------------------------------------


def test_inflight_counts_per_key(store: StateStore) -> None:
    def count(*keys: str) -> list[int]:
        return store.run(Count(keys, store.clock()))

    a1, a2, b1 = (Enter(key, store.clock()) for key in ("host-a", "host-a", "host-b"))
    assert (store.run(a1), store.run(a2), store.run(b1)) == (1, 2, 1)
    assert count("host-a", "host-b", "host-c") == [2, 1, 0]
    assert store.run(a1.exit(store.clock())) == 1
    assert store.run(a1.exit(store.clock())) == 1  # twice is harmless
    store.run(b1.exit(store.clock()))
    assert count("host-a", "host-b") == [1, 0]
    store.run(a2.exit(store.clock()))
    assert count() == []


def test_inflight_tickets_of_a_crashed_process_expire(store: StateStore, clock: FakeClock) -> None:
    store.run(Enter("host", store.clock(), lease_s=30.0))  # never exited
    clock.advance(10.0)
    ticket = Enter("host", store.clock(), lease_s=30.0)
    assert store.run(ticket) == 2
    clock.advance(20.0)
    assert store.run(Count(("host",), store.clock())) == [1]
    store.run(ticket.exit(store.clock()))
    assert store.run(Count(("host",), store.clock())) == [0]


def test_cache_and_the_tot_value_store_on_it(store: StateStore) -> None:
    assert cache_get(store, "ns", "k") is None
    cache_set(store, "ns", "k", "v1")
    cache_set(store, "ns", "k", "v2")
    cache_set(store, "other", "k", "w")
    assert (cache_get(store, "ns", "k"), cache_get(store, "other", "k")) == ("v2", "w")
    values = SharedValueStore(store)
    assert isinstance(values, ValueStore)
    assert values.get("state") is None
    values.put("state", StoredValue(scores=(0.5, 1.0), settled=True))
    assert values.get("state") == StoredValue(scores=(0.5, 1.0), settled=True)


# -- a call's two steps ----------------------------------------------------------------------------


def test_begin_call_takes_everything_or_nothing(store: StateStore, clock: FakeClock) -> None:
    breaker = BreakerSpec("p|m", 1, 5.0)
    assert breaker_failure(store, "p|m", breaker_admit(store, "p|m", 1, 5.0), 1, 5.0, "down")
    assert rate_take(store, "rpm", 1, 60.0) == 0.0
    clock.advance(5.0)
    plan = CallPlan(
        breaker=breaker,
        rates=(RateSpec("rpm", 1, 60.0),),
        budgets=(BudgetSpec("usd", 1.0, 0.25),),
    )
    start = store.begin_call(plan)
    assert (start.allowed, start.refused_by, start.rate_key) == (False, "rate", "rpm")
    assert start.rate_wait_s == pytest.approx(55.0)
    # Nothing was taken: the probe slot is free, nothing is reserved.
    assert budget_status(store, "usd").in_flight == 0
    clock.advance(55.0)
    start = store.begin_call(plan)
    assert start.allowed and start.breaker is not None and start.breaker.probe_id is not None
    (reservation,) = start.reservations
    assert reservation.amount_usd == 0.25
    assert not breaker_admit(store, "p|m", 1, 5.0).allowed  # the probe is ours
    ended = store.end_call(
        CallEnd(
            breaker=BreakerOutcome("p|m", start.breaker, "success"),
            settlements=(Settlement(reservation, 0.125),),
            usage=CallMeter("p", "m", UsageTotals(calls=1, input_tokens=3, cost_usd=0.125), 0.5),
        )
    )
    assert ended is True  # closed
    assert budget_spent(store, "usd") == 0.125
    assert store.usage_rows()[0].usage.cost_usd == 0.125
    assert breaker_state(store, "p|m", 5.0).state == "closed"


def test_begin_call_reports_budget_before_breaker(store: StateStore) -> None:
    assert breaker_failure(store, "down", breaker_admit(store, "down", 1, 5.0), 1, 5.0, "x")
    plan = CallPlan(breaker=BreakerSpec("down", 1, 5.0), budgets=(BudgetSpec("none", 0.0),))
    start = store.begin_call(plan)
    assert start.refused_by == "budget" and start.budget_refusal is not None
    start = store.begin_call(CallPlan(breaker=BreakerSpec("down", 1, 5.0)))
    assert start.refused_by == "breaker" and start.breaker is not None
    assert start.breaker.retry_in == pytest.approx(5.0)


async def test_async_methods_match_the_sync_ones(store: StateStore, clock: FakeClock) -> None:
    assert await arate_take(store, "a", 1, 1.0) == 0.0
    assert await arate_take(store, "a", 1, 1.0) == pytest.approx(1.0)
    call = await abreaker_admit(store, "ab", 1, 5.0)
    assert await abreaker_failure(store, "ab", call, 1, 5.0, "x")
    assert (await abreaker_state(store, "ab", 5.0)).state == "open"
    clock.advance(5.0)
    probe = await abreaker_admit(store, "ab", 1, 5.0)
    await abreaker_release(store, "ab", probe)
    assert await abreaker_success(store, "ab", await abreaker_admit(store, "ab", 1, 5.0))
    hold = reserved(await abudget_reserve(store, "ub", 1.0, 0.5))
    await abudget_settle(store, hold, 0.5)
    await abudget_release(store, reserved(await abudget_reserve(store, "ub", 1.0, 0.5)))
    assert await abudget_spent(store, "ub") == 0.5
    assert (await abudget_status(store, "ub")).largest_call_usd == 0.5
    await arecord_usage(store, "p", "m", 1, 0, 1, 1, 0.5, 0.1)
    assert (
        await ausage_rows(
            store,
        )
    )[0].usage.cost_usd == 0.5
    ticket = Enter("h", store.clock())
    await store.arun(ticket)
    assert await store.arun(Count(("h",), store.clock())) == [1]
    assert await store.arun(ticket.exit(store.clock())) == 0
    await acache_set(store, "n", "k", "v")
    assert await acache_get(store, "n", "k") == "v"
    start = await store.abegin_call(CallPlan(rates=(RateSpec("a2", 1, 1.0),)))
    assert start.allowed
    await store.aend_call(CallEnd())
    await store.aclear()
    assert (
        await ausage_rows(
            store,
        )
        == []
    )
    await store.aclose()
