"""Spending limits checked before each call, with estimates from catalog prices."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Protocol, TypeVar

from pygent_lc.errors import BudgetExceededError, ConfigurationError

# (prompt, max_tokens) -> estimated USD of the call
CostEstimator = Callable[[str, int | None], float]

CHARS_PER_TOKEN = 4  # a common rule of thumb for English text; only an estimate
DEFAULT_OUTPUT_TOKENS = 256

T = TypeVar("T")


class PricedModel(Protocol):
    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float: ...


def estimator_from_prices(
    model: PricedModel, default_output_tokens: int = DEFAULT_OUTPUT_TOKENS
) -> CostEstimator:
    """Estimate a call from list prices: prompt length in tokens, output up to ``max_tokens``."""

    def estimate(prompt: str, max_tokens: int | None) -> float:
        input_tokens = math.ceil(len(prompt) / CHARS_PER_TOKEN)
        return model.estimate_cost(input_tokens, max_tokens or default_output_tokens)

    return estimate


class CostBudget:
    """Refuses a call once tracked spend plus the calls in flight would pass ``max_cost_usd``.

    Each call in flight reserves what it may cost until it finishes, so
    concurrent calls cannot all pass the check against the same spend:

    * with an ``estimator``, a call reserves its estimate and runs only if
      spend, the reservations and its own estimate stay within the limit;
    * without one, a call reserves the largest cost of one call seen so far
      (``call_cost``, e.g. from the usage tracker, or measured here from calls
      that ran alone) and runs while spend plus reservations is under the
      limit, the rule calls one after another always had. While no call has
      cost anything yet the next call's cost is unknown, so calls are admitted
      one at a time: the others wait for it rather than fail.

    Either way spend passes the limit by at most about one call's cost. Calls
    may come from asyncio tasks on any number of event loops and from plain
    threads: state is guarded by a thread lock held only briefly, async
    callers wait on a future of their own loop, sync callers on a condition.
    """

    def __init__(
        self,
        max_cost_usd: float,
        spent: Callable[[], float],
        estimator: CostEstimator | None = None,
        call_cost: Callable[[], float] | None = None,
    ) -> None:
        if not math.isfinite(max_cost_usd) or max_cost_usd < 0:
            raise ConfigurationError(
                f"max_cost_usd must be >= 0, got {max_cost_usd}", field="max_cost_usd"
            )
        self.max_cost_usd = max_cost_usd
        self._spent = spent
        self._estimator = estimator
        self._call_cost = call_cost
        # Reentrant: a stream's hold may be released from ``__del__``, which the
        # garbage collector can run on a thread that is inside this lock.
        self._lock = threading.RLock()
        self._released = threading.Condition(self._lock)
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._reserved = 0.0
        self._in_flight = 0
        self._admitted = 0  # admissions so far: tells whether a call ran alone
        self._measured_call_cost = 0.0
        self._unknown_cost_thread: int | None = None  # thread of the unknown-cost call

    @property
    def reserved_usd(self) -> float:
        """What the calls in flight have reserved."""
        with self._lock:
            return self._reserved

    @property
    def in_flight(self) -> int:
        """Calls admitted and not yet finished."""
        with self._lock:
            return self._in_flight

    def reserve(self, prompt: str, max_tokens: int | None) -> Hold:
        """A hold on the budget for one call, taken with ``with`` or ``async with``.

        Entering it waits while another call of unknown cost is in flight and
        raises ``BudgetExceededError`` when the call would pass the limit;
        leaving it releases the reservation.
        """
        return Hold(self, prompt, max_tokens)

    def _largest_call_cost(self) -> float:
        reported = self._call_cost() if self._call_cost is not None else 0.0
        return max(reported, self._measured_call_cost)

    def _admit(self, hold: Hold, estimate: float | None) -> bool:
        """Admit ``hold`` (True), ask it to wait (False) or raise. Call with the lock held."""
        unknown_in_flight = self._unknown_cost_thread is not None
        unit = estimate if estimate is not None else self._largest_call_cost()
        if estimate is None and (unknown_in_flight or (unit <= 0 and self._in_flight)):
            return False
        spent = self._spent()
        committed = spent + self._reserved
        over = committed >= self.max_cost_usd
        if estimate is not None:
            over = over or committed + estimate > self.max_cost_usd
        if over:
            raise BudgetExceededError(
                f"cost budget ${self.max_cost_usd:.4f} would be passed: spent "
                f"${spent:.4f}, in flight ${self._reserved:.4f}, next call ~${unit:.4f}"
            )
        hold._amount = unit
        hold._unknown_cost = unit <= 0 and estimate is None
        hold._spent_before = spent
        hold._alone = self._in_flight == 0
        self._admitted += 1
        hold._admitted_as = self._admitted
        self._reserved += unit
        self._in_flight += 1
        if hold._unknown_cost:
            self._unknown_cost_thread = threading.get_ident()
        return True

    def _release(self, hold: Hold) -> None:
        with self._lock:
            self._reserved = max(0.0, self._reserved - hold._amount)
            self._in_flight -= 1
            if hold._unknown_cost:
                self._unknown_cost_thread = None
            if hold._alone and self._admitted == hold._admitted_as:
                # No other call overlapped this one, so the spend since it
                # started is its own cost, retries and fallbacks included.
                cost = self._spent() - hold._spent_before
                self._measured_call_cost = max(self._measured_call_cost, cost)
            self._released.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    def _take_sync(self, hold: Hold, estimate: float | None) -> None:
        with self._released:
            while not self._admit(hold, estimate):
                if self._unknown_cost_thread == threading.get_ident():
                    # The call we would wait for runs on this thread (an enclosing
                    # call, or a task of the event loop this call blocks): waiting
                    # would never end.
                    raise BudgetExceededError(
                        "the cost of a call is not known yet and the call in flight "
                        "runs on this thread: waiting for it would deadlock"
                    )
                self._released.wait()

    async def _take(self, hold: Hold, estimate: float | None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._admit(hold, estimate):
                    return
                future: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((loop, future))
            try:
                await future
            finally:
                with self._lock:
                    if (loop, future) in self._async_waiters:
                        self._async_waiters.remove((loop, future))

    def _estimate(self, prompt: str, max_tokens: int | None) -> float | None:
        return self._estimator(prompt, max_tokens) if self._estimator is not None else None


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Hold:
    """One call's reservation on a :class:`CostBudget` (or on none, when ``budget`` is None).

    Taken by ``with`` (blocking) or ``async with`` (awaiting), and released on
    leaving, or by :meth:`release`, which may be called any number of times
    from any thread.
    """

    def __init__(self, budget: CostBudget | None, prompt: str, max_tokens: int | None) -> None:
        self._budget = budget
        self._prompt = prompt
        self._max_tokens = max_tokens
        self._held = False
        self._amount = 0.0
        self._unknown_cost = False
        self._spent_before = 0.0
        self._alone = False
        self._admitted_as = 0

    def __enter__(self) -> None:
        if self._budget is not None:
            estimate = self._budget._estimate(self._prompt, self._max_tokens)
            self._budget._take_sync(self, estimate)
            self._held = True

    async def __aenter__(self) -> None:
        if self._budget is not None:
            estimate = self._budget._estimate(self._prompt, self._max_tokens)
            await self._budget._take(self, estimate)
            self._held = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Give the reservation back (once; later calls do nothing)."""
        if self._budget is None:
            return
        with self._budget._lock:
            if not self._held:
                return
            self._held = False
        self._budget._release(self)


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
            self._finish()
            raise

    def _finish(self) -> None:
        self._start = None
        if self._hold is not None:
            self._hold.release()

    async def aclose(self) -> None:
        """Release the reservation and close the underlying stream."""
        self._finish()
        inner, self._inner = self._inner, None
        self._start = None
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()

    def __del__(self) -> None:
        self._finish()
