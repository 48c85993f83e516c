"""``ResilientStore``: shared state when Redis serves, this process's memory when it does not.

The store must never cause an outage of its own: when an operation on the
shared store fails with one of its outage errors (Redis refused, reset, timed
out, still loading; or it answers but will not serve: a read-only replica, out
of memory, a wrong or missing password, a user without permission to run the
scripts), one line is logged and the operation is answered from an in-process
:class:`~pygent_lc.state.MemoryStore`; so is every operation after it until a
backoff (1 s, doubling to 5 s while Redis stays down) has passed. Then the
next caller that changes state, and only that one, tries Redis again (one
that only reads would pass on a read-only Redis); when it succeeds, one info
line says shared state resumed. No thread runs in the background.

The line is a warning, or an error when only a change of settings fixes the
cause (the password, the user's permissions), so that it shows where warnings
do not (``pygent-lc chat``). The step after a provider call
(:attr:`Script.after_call <pygent_lc.state.op.Script.after_call>`) falls
back on any error of the shared store, an outage or not: the call was made
and paid for, and its reply must not be lost.

What this means for the guarantees while Redis is down: each process
enforces every limit on its own, from the state it kept in memory since the
outage began (not from the shared totals). A fleet of N processes can then
pass a rate limit or budget up to N times; breakers open per process; usage
and spend recorded during the outage stay in that process and are not added
to the shared totals when Redis comes back; reservations and probe slots
taken on one side and given back on the other are not found there (the
shared ones expire with their lease, the probe slot with the cooldown).
An operation cut off by a timeout may have run in Redis as well.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from pygent_lc.state.memory import MemoryStore
from pygent_lc.state.op import Op
from pygent_lc.state.store import Clock, StateStore
from pygent_lc.state.types import CallPlan

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_AFTER_S = 1.0
MAX_RETRY_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class Outage:
    """Why the shared store did not serve an operation."""

    reason: str
    """What follows the store's name in the log line: ``unreachable``, ``is read-only``..."""
    misconfigured: bool = False
    """Only a change of settings fixes it (a password, a user's permissions): logged as an
    error rather than a warning."""
    error: str = ""
    """The error that showed it, ``Kind: message``."""

    def __str__(self) -> str:
        return f"{self.reason} ({self.error})" if self.error else self.reason


UNREACHABLE = Outage("unreachable")
AFTER_CALL_FAILED = Outage("failed the step after a provider call")

OutageCheck = Callable[[Exception], Outage | None]
"""The primary's error, read: an :class:`Outage`, or None for a bug (which propagates)."""


class ResilientStore(StateStore):
    """``primary`` (a :class:`~pygent_lc.state.RedisStore`) with ``fallback`` for its outages.

    ``outage_errors`` are the primary's "not serving now" errors, or a
    function that reads an error as an :class:`Outage` (None: not one); any
    other error (a bug) propagates, except from the step after a provider
    call. ``name`` names the primary in log lines (a redacted URL).
    ``monotonic`` is injectable for tests.
    """

    def __init__(
        self,
        primary: StateStore,
        outage_errors: tuple[type[Exception], ...] | OutageCheck,
        *,
        fallback: MemoryStore | None = None,
        name: str = "redis",
        retry_after_s: float = RETRY_AFTER_S,
        max_retry_after_s: float = MAX_RETRY_AFTER_S,
        clock: Clock = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(prefix=primary.prefix, clock=clock)
        self.primary = primary
        self.fallback = fallback if fallback is not None else MemoryStore(prefix=primary.prefix)
        self._outage_of = _checker(outage_errors)
        self._name = name
        self._first_backoff = retry_after_s
        self._max_backoff = max(retry_after_s, max_retry_after_s)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._down = False
        self._backoff = retry_after_s
        self._retry_at = 0.0
        self._outage: Outage | None = None
        self._logged_reason: str | None = None

    @property
    def shared(self) -> bool:
        """Whether the last operation went to the shared store."""
        return not self._down

    @property
    def outage(self) -> Outage | None:
        """Why operations are answered from memory now, or None."""
        return self._outage if self._down else None

    def check(self) -> Outage | None:
        """Whether the shared store serves this client now: None, or why not.

        One step as before a provider call (so a Redis that takes no writes
        fails it), straight to the shared store: nothing falls back and
        nothing is logged (for ``pygent-lc doctor``). A bug raises.
        """
        try:
            self.primary.begin_call(CallPlan())
        except Exception as exc:
            if (outage := self.outage_in(exc)) is None:
                raise
            return outage
        return None

    def outage_in(self, error: Exception) -> Outage | None:
        """The outage an error of the shared store shows (with the error), or None for a bug."""
        outage = self._outage_of(error)
        return None if outage is None else replace(outage, error=_summary(error))

    def run(self, op: Op[T]) -> T:
        if self._skip_primary(op):
            return self.fallback.run(op)
        try:
            result = self.primary.run(op)
        except Exception as exc:
            if (outage := self._outage_of_step(op, exc)) is None:
                raise
            self._went_down(outage, exc)
            return self.fallback.run(op)
        self._came_back(op)
        return result

    async def arun(self, op: Op[T]) -> T:
        if self._skip_primary(op):
            return await self.fallback.arun(op)
        try:
            result = await self.primary.arun(op)
        except Exception as exc:
            if (outage := self._outage_of_step(op, exc)) is None:
                raise
            self._went_down(outage, exc)
            return await self.fallback.arun(op)
        self._came_back(op)
        return result

    def _skip_primary(self, op: Op[T]) -> bool:
        """Whether to answer from memory; past the backoff, the first caller gets to try Redis.

        While Redis is down, what only reads stays on memory: it would pass on a Redis that
        takes no writes, and the limits this process enforces are in its memory.
        """
        if not self._down:
            return False
        if op.script.reads_only:
            return True
        with self._lock:
            now = self._monotonic()
            if not self._down or now >= self._retry_at:
                # This caller tries; the others stay on memory until it has its answer.
                self._retry_at = now + self._backoff
                return False
            return True

    def _outage_of_step(self, op: Op[T] | None, error: Exception) -> Outage | None:
        """The outage ``error`` shows; None for a bug, except in the step after a call."""
        outage = self.outage_in(error)
        if outage is None and op is not None and op.script.after_call:
            return replace(AFTER_CALL_FAILED, error=_summary(error))
        return outage

    def _went_down(self, outage: Outage, error: Exception) -> None:
        """Answer from memory until the backoff passes; log once per cause."""
        with self._lock:
            first = not self._down
            self._backoff = (
                self._first_backoff if first else min(self._backoff * 2, self._max_backoff)
            )
            self._retry_at = self._monotonic() + self._backoff
            self._down = True
            self._outage = outage
            # Reset when Redis serves again: one line per outage, and one per new cause.
            new_cause, self._logged_reason = outage.reason != self._logged_reason, outage.reason
        if new_cause:
            logger.log(
                logging.ERROR if outage.misconfigured else logging.WARNING,
                "shared state store %s %s; each process now enforces limits from its own "
                "memory; trying again in %gs (then every %gs at most)",
                self._name,
                outage,
                self._first_backoff,
                self._max_backoff,
            )
        else:
            logger.debug("shared state store %s still not serving: %s", self._name, outage)

    def _came_back(self, op: Op[T]) -> None:
        if not self._down or op.script.reads_only:
            return
        with self._lock:
            was_down, self._down = self._down, False
            self._backoff = self._first_backoff
            self._logged_reason = None
        if was_down:
            logger.info("shared state store %s reachable again: limits are shared", self._name)

    def clear(self) -> None:
        self.fallback.clear()
        try:
            self.primary.clear()
        except Exception as exc:
            if (outage := self._outage_of_step(None, exc)) is None:
                raise
            self._went_down(outage, exc)

    async def aclear(self) -> None:
        self.fallback.clear()
        try:
            await self.primary.aclear()
        except Exception as exc:
            if (outage := self._outage_of_step(None, exc)) is None:
                raise
            self._went_down(outage, exc)

    def close(self) -> None:
        self.primary.close()

    async def aclose(self) -> None:
        await self.primary.aclose()

    def __repr__(self) -> str:
        return f"ResilientStore({self.primary!r})"


def _summary(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _checker(outage_errors: tuple[type[Exception], ...] | OutageCheck) -> OutageCheck:
    if callable(outage_errors):
        return outage_errors
    return lambda error: UNREACHABLE if isinstance(error, outage_errors) else None


__all__ = [
    "AFTER_CALL_FAILED",
    "MAX_RETRY_AFTER_S",
    "RETRY_AFTER_S",
    "UNREACHABLE",
    "Outage",
    "OutageCheck",
    "ResilientStore",
]
