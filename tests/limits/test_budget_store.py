"""CostBudget on a state store: cost deltas, explicit costs, windows, the combined call step,
cancellation, and one limit shared by several CostBudgets over a real Redis."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from pygent_lc.errors import BudgetExceededError, ConfigurationError
from pygent_lc.limits import MemoryStore, StateStore, open_store
from pygent_lc.limits.budget import BudgetSpec, CostBudget
from pygent_lc.limits.call import CallPlan, HeldStream, Hold, budget_wait
from pygent_lc.limits.script import Step
from tests.limits.steps import budget_spent, budget_status

LIMIT = 0.01
COST = 0.004


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_overlapping_calls_are_charged_the_spend_once() -> None:
    spent = [0.0]
    budget = CostBudget(1.0, lambda: spent[0], lambda prompt, max_tokens: 0.1)
    first = Hold(budget, "first", None)
    second = Hold(budget, "second", None)
    with first:
        with second:
            spent[0] += 0.1  # the first call's cost, recorded while both are in flight
        spent[0] += 0.2
    # Each hold's own before/after difference would add up to 0.1 + 0.3.
    assert budget_spent(budget.store, "default") == pytest.approx(0.3)
    assert budget.measure() == 0.0


def test_settle_gives_the_cost_without_spent() -> None:
    budget = CostBudget(1.0)
    hold = Hold(budget, "a", None)
    with hold:
        hold.settle(0.3)
    with Hold(budget, "b", None):
        assert budget.status().reserved_usd == pytest.approx(0.3)  # the largest call so far
        assert budget.status().in_flight == 1
    assert budget_spent(budget.store, "default") == pytest.approx(0.3)


def test_spec_and_exceeded_serve_a_combined_call_step() -> None:
    store = MemoryStore()
    budget = CostBudget(LIMIT, None, lambda prompt, max_tokens: COST, store=store, key="k")
    assert budget.spec("hi", 10) == BudgetSpec("k", LIMIT, COST, None)
    starts = [store.begin_call(CallPlan(budgets=(budget.spec("hi", 10),))) for _ in range(3)]
    assert [start.allowed for start in starts] == [True, True, False]
    refusal = starts[2].budget_refusal
    assert refusal is not None and not refusal.wait
    error = budget.exceeded(refusal)
    assert isinstance(error, BudgetExceededError)
    assert str(error) == (
        "cost budget $0.0100 would be passed: spent $0.0000, in flight $0.0080, next call ~$0.0040"
    )
    assert budget.wait_seconds(0) == pytest.approx(0.02)
    assert budget.wait_seconds(1) > budget.wait_seconds(0)
    assert budget.wait_seconds(100) == pytest.approx(0.1)


def test_callers_told_to_wait_do_not_poll_in_lockstep() -> None:
    store = MemoryStore()
    budget = CostBudget(LIMIT, store=store)
    first = store.begin_call(CallPlan(budgets=(budget.spec("a", None),)))
    waiting = store.begin_call(CallPlan(budgets=(budget.spec("b", None),))).budget_refusal
    assert first.allowed and waiting is not None and waiting.wait
    # Callers that started waiting together (a batch of calls of unknown cost) would
    # otherwise all ask again at the same moments, and the next call start up to a
    # whole poll interval after the one in flight ends.
    waits = [budget_wait(budget, store, waiting, 10) for _ in range(50)]
    assert len(set(waits)) > 1
    assert all(0.5 * budget.wait_seconds(10) <= w <= budget.wait_seconds(10) for w in waits)


def test_a_window_limits_spend_per_window() -> None:
    clock = Clock()
    budget = CostBudget(LIMIT, None, lambda p, m: COST, store=MemoryStore(clock=clock), window_s=60)
    for _ in range(2):
        hold = Hold(budget, "a", None)
        with hold:
            hold.settle(COST)
    with pytest.raises(BudgetExceededError, match="per 60 s"), Hold(budget, "b", None):
        pass
    clock.now += 60
    with Hold(budget, "c", None):
        pass


@pytest.mark.parametrize("window_s", [0, -5])
def test_bad_windows_are_configuration_errors(window_s: int) -> None:
    with pytest.raises(ConfigurationError):
        CostBudget(1.0, window_s=window_s)


class SlowStore(MemoryStore):
    """A store whose async operations take a while, like a network round trip."""

    async def arun(self, op: Step[object]) -> object:  # type: ignore[override]
        await asyncio.sleep(0.02)
        return self.run(op)


async def test_a_caller_cancelled_while_reserving_gives_the_reservation_back() -> None:
    budget = CostBudget(LIMIT, store=SlowStore())
    task = asyncio.create_task(Hold(budget, "a", None).__aenter__())
    await asyncio.sleep(0.005)  # the reservation is on its way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert budget.status().in_flight == 0
    async with Hold(budget, "b", None):  # not waiting for a call nobody runs
        pass


async def test_a_dropped_stream_is_released_without_another_use_of_the_budget() -> None:
    store = MemoryStore()
    budget = CostBudget(LIMIT, store=store)

    async def pieces() -> AsyncIterator[str]:
        yield "one"
        yield "two"

    async def start() -> tuple[AsyncIterator[str], Hold]:
        hold = Hold(budget, "hi", None)
        await hold.__aenter__()
        return pieces(), hold

    stream: HeldStream[str] = HeldStream(start)
    assert await anext(stream) == "one"
    assert budget_status(store, "default").in_flight == 1
    del stream  # released from a thread: the finalizer may run inside the store's lock
    for _ in range(100):
        if budget_status(store, "default").in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert budget_status(store, "default").in_flight == 0


# -- one limit across "processes": CostBudgets sharing a key on a real Redis ----------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def redis_stores(redis_url: str, clock: Clock) -> Iterator[list[StateStore]]:
    """Two stores on one Redis, each with its own connections, as two processes have."""
    prefix = f"budget:{uuid.uuid4().hex[:12]}:"
    stores = [open_store(redis_url, prefix=prefix, clock=clock) for _ in range(2)]
    yield stores
    stores[0].clear()
    for store in stores:
        store.close()


class Process:
    """One process's calls: its own spend counter and CostBudget, over a shared store."""

    def __init__(self, store: StateStore) -> None:
        self.spent = 0.0
        self.requests = 0
        self.budget = CostBudget(LIMIT, lambda: self.spent, store=store, key="shared")

    async def call(self) -> str | BudgetExceededError:
        try:
            async with Hold(self.budget, "hi", None):
                self.requests += 1
                await asyncio.sleep(0.02)
                self.spent += COST
        except BudgetExceededError as exc:
            return exc
        return "ok"


@pytest.mark.live_local
async def test_two_processes_share_one_limit_on_redis(redis_stores: list[StateStore]) -> None:
    processes = [Process(store) for store in redis_stores]
    results = await asyncio.gather(*(processes[i % 2].call() for i in range(20)))
    requests = sum(process.requests for process in processes)
    assert requests == 3  # as in one process: calls of unknown cost one at a time
    assert results.count("ok") == 3
    spent = budget_spent(redis_stores[0], "shared")
    assert spent == pytest.approx(requests * COST)
    assert spent <= LIMIT + COST
    assert processes[1].budget.status().reserved_usd == 0.0


@pytest.mark.live_local
def test_a_process_waits_for_the_unknown_cost_call_of_another(
    redis_stores: list[StateStore],
) -> None:
    first, second = (Process(store) for store in redis_stores)
    entered = threading.Event()
    with Hold(first.budget, "first", None):

        def other() -> None:
            with Hold(second.budget, "second", None):
                entered.set()

        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.1)  # waiting (polling Redis), not refused
        first.spent = COST
    thread.join(timeout=2.0)
    assert entered.is_set()


@pytest.mark.live_local
def test_a_window_is_shared_on_redis(redis_stores: list[StateStore], clock: Clock) -> None:
    budgets = [
        CostBudget(LIMIT, None, lambda p, m: COST, store=store, key="w", window_s=3600)
        for store in redis_stores
    ]
    for budget in budgets:
        hold = Hold(budget, "a", None)
        with hold:
            hold.settle(COST)
    for budget in budgets:  # 0.008 spent: a third $0.004 call would pass $0.01
        with pytest.raises(BudgetExceededError), Hold(budget, "b", None):
            pass
    clock.now += 3600
    with Hold(budgets[1], "c", None):
        pass
    assert budget_spent(redis_stores[0], "w", 3600) == 0.0
    assert budgets[0].status().in_flight == 0
