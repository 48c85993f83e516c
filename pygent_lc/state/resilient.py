"""``ResilientStore``: shared state when Redis serves, this process's memory when it does not.

The store must never cause an outage of its own: when an operation on the
shared store fails with one of its outage errors (Redis refused, reset, timed
out, still loading, read-only), one warning is logged and the operation is
answered from an in-process :class:`~pygent_lc.state.MemoryStore`; so is
every operation after it until a backoff (1 s, doubling to 5 s while Redis
stays down) has passed. Then the next caller, and only that one, tries Redis
again; when it answers, one info line says shared state resumed. No thread
runs in the background.

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
from typing import TypeVar

from pygent_lc.state.memory import MemoryStore
from pygent_lc.state.op import Op
from pygent_lc.state.store import Clock, StateStore

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_AFTER_S = 1.0
MAX_RETRY_AFTER_S = 5.0


class ResilientStore(StateStore):
    """``primary`` (a :class:`~pygent_lc.state.RedisStore`) with ``fallback`` for its outages.

    ``outage_errors`` are the primary's "not serving now" errors; any other
    error (a bug) propagates. ``name`` names the primary in log lines (a
    redacted URL). ``monotonic`` is injectable for tests.
    """

    def __init__(
        self,
        primary: StateStore,
        outage_errors: tuple[type[Exception], ...],
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
        self._outage_errors = outage_errors
        self._name = name
        self._first_backoff = retry_after_s
        self._max_backoff = max(retry_after_s, max_retry_after_s)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._down = False
        self._backoff = retry_after_s
        self._retry_at = 0.0

    @property
    def shared(self) -> bool:
        """Whether the last operation went to the shared store."""
        return not self._down

    def run(self, op: Op[T]) -> T:
        if self._skip_primary():
            return self.fallback.run(op)
        try:
            result = self.primary.run(op)
        except self._outage_errors as exc:
            self._went_down(exc)
            return self.fallback.run(op)
        self._came_back()
        return result

    async def arun(self, op: Op[T]) -> T:
        if self._skip_primary():
            return await self.fallback.arun(op)
        try:
            result = await self.primary.arun(op)
        except self._outage_errors as exc:
            self._went_down(exc)
            return await self.fallback.arun(op)
        self._came_back()
        return result

    def _skip_primary(self) -> bool:
        """Whether to answer from memory; past the backoff, the first caller gets to try Redis."""
        if not self._down:
            return False
        with self._lock:
            now = self._monotonic()
            if not self._down or now >= self._retry_at:
                # This caller tries; the others stay on memory until it has its answer.
                self._retry_at = now + self._backoff
                return False
            return True

    def _went_down(self, error: Exception) -> None:
        with self._lock:
            first = not self._down
            self._backoff = (
                self._first_backoff if first else min(self._backoff * 2, self._max_backoff)
            )
            self._retry_at = self._monotonic() + self._backoff
            self._down = True
        if first:
            logger.warning(
                "shared state store %s unreachable (%s: %s); each process now enforces "
                "limits from its own memory; trying again in %gs (then every %gs at most)",
                self._name,
                type(error).__name__,
                error,
                self._first_backoff,
                self._max_backoff,
            )
        else:
            logger.debug("shared state store %s still unreachable: %s", self._name, error)

    def _came_back(self) -> None:
        if not self._down:
            return
        with self._lock:
            was_down, self._down = self._down, False
            self._backoff = self._first_backoff
        if was_down:
            logger.info("shared state store %s reachable again: limits are shared", self._name)

    def clear(self) -> None:
        self.fallback.clear()
        try:
            self.primary.clear()
        except self._outage_errors as exc:
            self._went_down(exc)

    async def aclear(self) -> None:
        self.fallback.clear()
        try:
            await self.primary.aclear()
        except self._outage_errors as exc:
            self._went_down(exc)

    def close(self) -> None:
        self.primary.close()

    async def aclose(self) -> None:
        await self.primary.aclose()

    def __repr__(self) -> str:
        return f"ResilientStore({self.primary!r})"


__all__ = ["MAX_RETRY_AFTER_S", "RETRY_AFTER_S", "ResilientStore"]
