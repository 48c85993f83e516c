"""Spending limits checked before each call, held on a state store's budget ledger."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from pygent_lc.errors import BudgetExceededError, ConfigurationError, InvalidInputError
from pygent_lc.state import (
    BudgetAnswer,
    BudgetRefusal,
    BudgetReservation,
    BudgetSpec,
    MemoryStore,
    StateStore,
)

CostEstimator = Callable[[str, int | None], float | None]
"""``(prompt, max_tokens) ->`` the most the call can cost in USD, or None when unknown."""

PROMPT_OVERHEAD_TOKENS = 16
"""Tokens a chat template adds around a prompt (role markers), on top of its text."""
FIRST_WAIT_S = 0.02  # polls of a waiting caller: short at first, as the first call may be quick,
MAX_WAIT_S = 0.1  # then no more often than this, as each poll is a store round trip

T = TypeVar("T")


class PricedModel(Protocol):
    """A model's list prices (e.g. :class:`~pygent_lc.providers.openrouter.catalog.ModelInfo`).

    It may also say ``max_completion_tokens`` (the most it writes per reply)
    and ``context_length`` (prompt plus reply), which bound a call without
    ``max_tokens``.
    """

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float: ...


def estimator_from_prices(
    model: PricedModel, default_output_tokens: int | None = None
) -> CostEstimator:
    """The most a call can cost at ``model``'s list prices: a bound, not a guess.

    The prompt counts one token per UTF-8 byte (no tokenizer makes a token of
    less than a byte) plus :data:`PROMPT_OVERHEAD_TOKENS`, at most the model's
    ``context_length``. The reply counts the call's ``max_tokens``, else
    ``default_output_tokens`` (the ``max_tokens`` your model is built with),
    else the model's ``max_completion_tokens``, else its ``context_length``.
    With none of these the estimator returns None: the call's cost has no
    bound, and :class:`CostBudget` runs such calls one at a time.
    """
    context = _positive_int(getattr(model, "context_length", None))
    model_output = _positive_int(getattr(model, "max_completion_tokens", None))

    def estimate(prompt: str, max_tokens: int | None) -> float | None:
        output_tokens = max_tokens or default_output_tokens or model_output or context
        if output_tokens is None:
            return None
        input_tokens = len(prompt.encode("utf-8")) + PROMPT_OVERHEAD_TOKENS
        if context is not None:
            input_tokens = min(input_tokens, context)
        return model.estimate_cost(input_tokens, output_tokens)

    return estimate


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class CostBudget:
    """Refuses a call once spend plus the calls in flight would pass ``max_cost_usd``.

    The rules and the state are the budget ledger's (see
    :mod:`pygent_lc.state.ledger`), on ``store`` under ``key``: each call in
    flight reserves what it may cost until it ends, so concurrent calls
    cannot all pass the check against the same spend. ``estimator`` gives a
    call's bound, the most it can cost (:func:`estimator_from_prices`: list
    prices, the prompt's size and ``max_tokens``); a call with a bound
    reserves it and goes only if it fits under the limit. A call without one
    (no estimator, or it returns None) cannot be bounded by what earlier
    calls cost, as the next may cost far more: it reserves the largest cost
    of one call seen so far and runs only while no other call without a bound
    is in flight (the others wait rather than fail).

    So spend stays within ``max_cost_usd`` when every call has a bound, and
    passes it by at most the cost of one call without a bound otherwise;
    a call that costs more than its bound (wrong prices) passes it by that
    excess. ``store`` None is a private :class:`MemoryStore` (this
    object's calls only); CostBudgets on one shared store with the same
    ``key`` share one limit, across processes with a Redis store.
    ``window_s`` (e.g. 3600 or 86400) limits spend per window instead of in
    total.

    A call's cost, settled on the ledger when its hold ends, is what
    :meth:`Hold.settle` was given, else what ``spent`` (e.g. a usage
    tracker's total) grew by since the last hold ended (:meth:`measure`):
    overlapping calls' own before/after differences would count each other's
    cost, whereas these deltas add up to the real spend. Under overlap one
    hold may so be charged another's cost too, which only raises the largest
    call cost the ledger reserves, never lowers it. Costs are amounts: a
    reply's implausible cost never gets here (it is a cost fault, see
    :func:`pygent_lc.usage.message_usage`), ``settle`` refuses one with
    ``InvalidInputError``, and a ``spent`` that is not finite is not measured.

    :meth:`reserve` gives a :class:`Hold` for ``with`` or ``async with``.
    A caller told to wait polls the store (every 20 ms, growing to 100 ms)
    and is woken at once when a hold of this object ends; a sync caller
    whose thread runs the call without a bound it would wait for is refused
    instead (it would wait for itself; only this object's calls are known).

    A caller that checks the budget inside its own
    :meth:`~pygent_lc.state.StateStore.begin_call` step instead puts
    :meth:`spec` in its :class:`~pygent_lc.state.CallPlan`, retries a
    ``budget_wait`` refusal after :meth:`wait_seconds`, raises
    :meth:`exceeded` for a ``budget`` refusal, and settles with the cost it
    knows or :meth:`measure`.
    """

    def __init__(
        self,
        max_cost_usd: float,
        spent: Callable[[], float] | None = None,
        estimator: CostEstimator | None = None,
        *,
        store: StateStore | None = None,
        key: str = "default",
        window_s: int | None = None,
    ) -> None:
        if not math.isfinite(max_cost_usd) or max_cost_usd < 0:
            raise ConfigurationError(
                f"max_cost_usd must be >= 0, got {max_cost_usd}", field="max_cost_usd"
            )
        if window_s is not None and window_s < 1:
            raise ConfigurationError(
                f"budget window must be >= 1 s, got {window_s}", field="budget_window"
            )
        self.max_cost_usd = max_cost_usd
        self.store: StateStore = store if store is not None else MemoryStore()
        self.store_given = store is not None
        """Whether the caller chose :attr:`store` (a policy may otherwise lend its own)."""
        self.key = key
        self.window_s = window_s
        self._spent = spent
        self._estimator = estimator
        # Guards the spend pointer, the threads below and the wake-ups; never held
        # across a store call.
        self._lock = threading.Lock()
        self._last_spent = 0.0
        # Threads running a call of unknown cost admitted here: a sync caller on one
        # of them must not wait for that call (it would wait for itself).
        self._unknown_cost_threads: list[int] = []
        # Holds of this object ending wake its waiters before their next poll.
        self._released = threading.Condition(self._lock)
        self._releases = 0
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._orphans: deque[Hold] = deque()
        self._orphans_lock = threading.Lock()

    @property
    def reserved_usd(self) -> float:
        """What the calls in flight on the budget (in its current window) have reserved."""
        self._settle_orphans()
        return self.store.budget_status(self.key, self.window_s).reserved_usd

    @property
    def in_flight(self) -> int:
        """Calls admitted on the budget (in its current window) and not yet finished."""
        self._settle_orphans()
        return self.store.budget_status(self.key, self.window_s).in_flight

    def reserve(self, prompt: str, max_tokens: int | None, samples: int = 1) -> Hold:
        """A hold on the budget for one call, taken with ``with`` or ``async with``.

        Entering it waits while another call without a bound is in flight and raises
        ``BudgetExceededError`` when the call would pass the limit; leaving it
        settles the call's cost. ``samples`` is the call's ``n`` (see :meth:`spec`).
        """
        return Hold(self, prompt, max_tokens, samples)

    def spec(self, prompt: str, max_tokens: int | None, samples: int = 1) -> BudgetSpec:
        """This budget's part of a :class:`~pygent_lc.state.CallPlan` for one call.

        A call asking ``samples`` completions (``n``) in one request is still one
        call, with one reservation: ``samples`` times the estimator's bound for one
        completion. That counts the prompt ``samples`` times where the provider
        bills it once, but it is a bound for any estimator (one that caps the
        reply at a model's limit would under-bound ``samples * max_tokens``).
        """
        bound = None if self._estimator is None else self._estimator(prompt, max_tokens)
        if bound is not None:
            bound *= max(1, samples)
        return BudgetSpec(self.key, self.max_cost_usd, bound, self.window_s)

    def exceeded(self, refusal: BudgetRefusal) -> BudgetExceededError:
        """The error for a refusal without ``wait``: the budget is spent."""
        per = "" if self.window_s is None else f" per {self.window_s} s"
        return BudgetExceededError(
            f"cost budget ${refusal.limit_usd:.4f}{per} would be passed: spent "
            f"${refusal.spent_usd:.4f}, in flight ${refusal.reserved_usd:.4f}, "
            f"next call ~${refusal.amount_usd:.4f}"
        )

    @staticmethod
    def wait_seconds(attempt: int) -> float:
        """How long to wait before asking again after ``attempt`` (0, 1, ...) ``wait`` refusals."""
        return min(MAX_WAIT_S, FIRST_WAIT_S * 1.5**attempt)

    def measure(self) -> float:
        """What ``spent`` grew by since the last measurement (0 without ``spent``)."""
        if self._spent is None:
            return 0.0
        with self._lock:
            now = self._spent()
            if not math.isfinite(now):
                return 0.0  # not an amount: nothing is measured, the pointer stays
            cost, self._last_spent = max(0.0, now - self._last_spent), now
            return cost

    # -- taking a hold ----------------------------------------------------------------------

    def _take(self, spec: BudgetSpec) -> BudgetReservation:
        self._settle_orphans()
        attempt = 0
        while True:
            seen = self._releases
            answer = self.store.budget_reserve(
                spec.key, spec.limit_usd, spec.amount_usd, spec.window_s
            )
            if (reservation := self._admitted(answer)) is not None:
                return reservation
            with self._released:
                if threading.get_ident() in self._unknown_cost_threads:
                    raise BudgetExceededError(
                        "the cost of a call is not known yet and the call in flight "
                        "runs on this thread: waiting for it would deadlock"
                    )
                if self._releases == seen:
                    self._released.wait(self.wait_seconds(attempt))
            attempt += 1

    async def _atake(self, spec: BudgetSpec) -> BudgetReservation:
        self._settle_orphans()
        attempt = 0
        while True:
            seen = self._releases
            if (reservation := self._admitted(await self._areserve(spec))) is not None:
                return reservation
            await self._apause(seen, self.wait_seconds(attempt))
            attempt += 1

    async def _areserve(self, spec: BudgetSpec) -> BudgetAnswer:
        """``abudget_reserve``, giving the reservation back if the caller is cancelled."""
        reserving = asyncio.ensure_future(
            self.store.abudget_reserve(spec.key, spec.limit_usd, spec.amount_usd, spec.window_s)
        )
        try:
            return await asyncio.shield(reserving)
        except asyncio.CancelledError:
            reserving.add_done_callback(self._give_back)
            raise

    def _give_back(self, reserving: asyncio.Future[BudgetAnswer]) -> None:
        if not reserving.cancelled() and reserving.exception() is None:
            answer = reserving.result()
            if isinstance(answer, BudgetReservation):
                self.store.budget_release(answer)
                self._wake()

    def _admitted(self, answer: BudgetAnswer) -> BudgetReservation | None:
        """The reservation, or None for a ``wait`` refusal; raises for a spent budget."""
        if isinstance(answer, BudgetReservation):
            if answer.unknown_cost:
                with self._lock:
                    self._unknown_cost_threads.append(threading.get_ident())
            return answer
        if answer.wait:
            return None
        raise self.exceeded(answer)

    async def _apause(self, seen: int, delay_s: float) -> None:
        """Sleep ``delay_s``, or less if a hold of this process ends meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        with self._lock:
            if self._releases != seen:
                return
            self._async_waiters.append(waiter)
        try:
            await asyncio.wait((future,), timeout=delay_s)
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._async_waiters.remove(waiter)

    # -- ending a hold ----------------------------------------------------------------------

    def _wake(self, unknown_cost_thread: int | None = None) -> None:
        with self._released:
            if unknown_cost_thread is not None:
                self._unknown_cost_threads.remove(unknown_cost_thread)
            self._releases += 1
            self._released.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    def _release_later(self, hold: Hold) -> None:
        """Release ``hold`` from a finalizer, which the garbage collector may run on a
        thread inside any lock (the store's too): in a thread of its own, or on this
        budget's next use, whichever comes first."""
        self._orphans.append(hold)
        with contextlib.suppress(RuntimeError):  # the interpreter is shutting down
            threading.Thread(target=self._settle_orphans, daemon=True).start()

    def _settle_orphans(self) -> None:
        with self._orphans_lock:
            while self._orphans:
                self._orphans.popleft().release()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Hold:
    """One call's reservation on a :class:`CostBudget` (or on none, when ``budget`` is None).

    Taken by ``with`` (blocking) or ``async with`` (awaiting), and settled on
    leaving, or by :meth:`release` / :meth:`arelease`, which may be called any
    number of times from any thread (only the first settles).
    """

    def __init__(
        self, budget: CostBudget | None, prompt: str, max_tokens: int | None, samples: int = 1
    ) -> None:
        self._budget = budget
        self._prompt = prompt
        self._max_tokens = max_tokens
        self._samples = samples
        self._reservation: BudgetReservation | None = None
        self._thread = 0
        self._cost: float | None = None

    def settle(self, cost_usd: float) -> None:
        """The call's real cost, settled when the hold ends (instead of measuring it).

        ``InvalidInputError`` unless it is a finite amount >= 0.
        """
        if not 0.0 <= cost_usd < math.inf:
            raise InvalidInputError(f"a call's cost must be a finite amount >= 0, got {cost_usd!r}")
        self._cost = cost_usd

    def __enter__(self) -> None:
        if self._budget is not None:
            spec = self._budget.spec(self._prompt, self._max_tokens, self._samples)
            self._admit(self._budget._take(spec))

    async def __aenter__(self) -> None:
        if self._budget is not None:
            spec = self._budget.spec(self._prompt, self._max_tokens, self._samples)
            self._admit(await self._budget._atake(spec))

    def _admit(self, reservation: BudgetReservation) -> None:
        self._thread = threading.get_ident()
        self._reservation = reservation

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.arelease()

    def _end(self) -> tuple[CostBudget, BudgetReservation, float] | None:
        """Take the reservation (once: None afterwards) with the cost to settle it with."""
        budget = self._budget
        if budget is None:
            return None
        with budget._lock:
            reservation, self._reservation = self._reservation, None
        if reservation is None:
            return None
        return budget, reservation, self._cost if self._cost is not None else budget.measure()

    def _done(self, budget: CostBudget, reservation: BudgetReservation) -> None:
        budget._wake(self._thread if reservation.unknown_cost else None)

    def release(self) -> None:
        """Settle the call's cost and give the reservation back (once)."""
        if (ending := self._end()) is not None:
            budget, reservation, cost = ending
            try:
                budget.store.budget_settle(reservation, cost)
            finally:
                self._done(budget, reservation)

    async def arelease(self) -> None:
        """:meth:`release` for async callers; it completes even if the caller is cancelled."""
        if (ending := self._end()) is not None:
            budget, reservation, cost = ending
            try:
                await asyncio.shield(budget.store.abudget_settle(reservation, cost))
            finally:
                self._done(budget, reservation)


class HeldStream(AsyncIterator[T]):
    """An async iterator that holds a budget reservation while it is being read.

    ``start`` runs on the first ``__anext__`` and returns the stream to read
    and its (already taken) hold. The hold is released when the stream ends
    or fails, on :meth:`aclose`, and when this object is dropped: after
    ``async for ... : break`` that happens at once, whereas an async generator
    would only be finalized later by the event loop, keeping the reservation
    (and, before a call's cost is known, every waiting caller) until then.
    """

    def __init__(self, start: Callable[[], Awaitable[tuple[AsyncIterator[T], Hold]]]) -> None:
        self._start: Callable[[], Awaitable[tuple[AsyncIterator[T], Hold]]] | None = start
        self._inner: AsyncIterator[T] | None = None
        self._hold: Hold | None = None

    def __aiter__(self) -> HeldStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            if self._inner is None:
                if self._start is None:
                    raise StopAsyncIteration
                start, self._start = self._start, None
                self._inner, self._hold = await start()
            return await anext(self._inner)
        except BaseException:
            await self._finish()
            raise

    async def _finish(self) -> None:
        self._start = None
        if self._hold is not None:
            await self._hold.arelease()

    async def aclose(self) -> None:
        """Release the reservation and close the underlying stream."""
        await self._finish()
        inner, self._inner = self._inner, None
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()

    def __del__(self) -> None:
        hold = self._hold
        if hold is not None and hold._reservation is not None and hold._budget is not None:
            hold._budget._release_later(hold)
