"""The state store: where every limit keeps its state, in this process or in Redis.

A :class:`StateStore` runs :class:`~pygent_lc.limits.script.Step` s, each atomic:
:class:`MemoryStore` runs a step's Python twin under one lock (limits per
process, the default); :class:`~pygent_lc.limits.redis_store.RedisStore` runs its
Lua script (limits for every process on that Redis), behind a
:class:`ResilientStore`. Times are the client's wall clock (``clock``), sent with
each step: processes sharing a Redis must share a clock (one host, or NTP).

**When Redis does not serve** (:class:`ResilientStore`): an outage error (refused,
reset, timed out, loading; or read-only, out of memory, a wrong password, an ACL
without the scripts) logs one line (an error when only new settings fix it, a
warning otherwise) and the step is answered from an in-process
:class:`MemoryStore`, as is every step until a backoff (1 s, doubling to 5 s)
has passed; then the next step that writes, and only that one, tries Redis
again. No thread runs in the background. The step after a provider call
(:attr:`Step.after_call <pygent_lc.limits.script.Step.after_call>`) falls back on
any error: the call was paid for and its reply must not be lost.

Meanwhile each process enforces every limit from what it kept in memory since
the outage began: N processes may pass a rate limit or budget up to N times,
breakers open per process, and usage and spend recorded then stay in that
process. Reservations and probe slots taken on one side and given back on the
other expire with their lease or cooldown. A step cut off by a timeout may have
run in Redis as well.
"""

from __future__ import annotations

import abc
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import SplitResult, urlsplit

from pygent_lc.limits.rate import RateSpec, TakeRate, check_spec
from pygent_lc.limits.script import Arg, MemoryState, Step
from pygent_lc.limits.usage import UsageRows, UsageSummary

logger = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

DEFAULT_PREFIX = "pygent:"
"""Where a store's keys live in Redis (and a name for an in-process store)."""

Clock = Callable[[], float]

WRITABLE_TTL_MS = 60_000


def writable_key(prefix: str) -> str:
    """The key the step before a call writes first: a read-only replica or a Redis out of
    memory refuses it whatever the plan (a closed breaker only reads), so the call goes on
    under per-process limits instead of failing after it was paid for."""
    return f"{prefix}writable"


@dataclass(frozen=True, slots=True)
class Writable(Step[None]):
    """Only the write that opens the step before a call: whether Redis serves this client."""

    lua: ClassVar[str] = "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])"

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [writable_key(prefix)], [1, WRITABLE_TTL_MS]

    def decode(self, reply: Any) -> None:
        return None

    def local(self, state: MemoryState) -> None:
        return None


class Request(Protocol[T_co]):
    """What :meth:`StateStore.begin_call` and :meth:`StateStore.end_call` take: a
    :class:`~pygent_lc.limits.call.CallPlan` or :class:`~pygent_lc.limits.call.CallEnd`,
    which make their step at the store's time."""

    def step(self, now: float) -> Step[T_co]: ...


class StateStore(abc.ABC):
    """Rate limits, circuit breakers, cost budgets, usage and in-flight counts; every step
    atomic across every process sharing the store."""

    def __init__(self, *, prefix: str = DEFAULT_PREFIX, clock: Clock = time.time) -> None:
        self.prefix = prefix
        self.clock = clock

    @abc.abstractmethod
    def run(self, step: Step[T]) -> T:
        """Run one atomic step and return its answer."""

    async def arun(self, step: Step[T]) -> T:
        """:meth:`run` for async callers (in memory, the same: it never waits on I/O)."""
        return self.run(step)

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget everything under this store's prefix (tests, benchmarks, a reset)."""

    async def aclear(self) -> None:
        self.clear()

    def close(self) -> None:  # noqa: B027 - nothing to release in memory
        """Release connections; the store opens them again if used afterwards."""

    async def aclose(self) -> None:
        """Release the running event loop's connections (and the sync ones)."""
        self.close()

    # -- a call's two steps ----------------------------------------------------------------

    def begin_call(self, plan: Request[T]) -> T:
        """Budgets, breaker and rate limits of one call in one atomic step (all or nothing)."""
        return self.run(plan.step(self.clock()))

    async def abegin_call(self, plan: Request[T]) -> T:
        return await self.arun(plan.step(self.clock()))

    def end_call(self, call: Request[T]) -> T:
        """Settle, record usage and report to the breaker in one atomic step."""
        return self.run(call.step(self.clock()))

    async def aend_call(self, call: Request[T]) -> T:
        return await self.arun(call.step(self.clock()))

    def take_rate_token(self, key: str, limit: int, period_s: float) -> float:
        """0.0 when a call may go now (its slot is taken), else seconds until a slot frees."""
        return self.run(self._rate(key, limit, period_s))

    async def atake_rate_token(self, key: str, limit: int, period_s: float) -> float:
        return await self.arun(self._rate(key, limit, period_s))

    def _rate(self, key: str, limit: int, period_s: float) -> TakeRate:
        spec = RateSpec(key, limit, period_s)
        check_spec(spec)
        return TakeRate(spec, self.clock())

    def usage_rows(self) -> list[UsageSummary]:
        """Totals per (provider, model), sorted, with mean and p95 latency."""
        return self.run(UsageRows())


class MemoryStore(StateStore):
    """Limits enforced within this process only: each step's twin runs under one lock, held
    for a few dict operations and never across I/O, so one store serves threads, asyncio
    tasks and several event loops at once."""

    def __init__(self, *, prefix: str = DEFAULT_PREFIX, clock: Clock = time.time) -> None:
        super().__init__(prefix=prefix, clock=clock)
        self._lock = threading.Lock()
        self._state = MemoryState()

    def run(self, step: Step[T]) -> T:
        with self._lock:
            return step.local(self._state)

    def clear(self) -> None:
        with self._lock:
            self._state = MemoryState()


RETRY_AFTER_S = 1.0
MAX_RETRY_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class Outage:
    """Why the shared store did not serve: ``reason`` follows its name in the log line
    (``unreachable``, ``is read-only``...); ``misconfigured`` when only a change of settings
    fixes it (a password, an ACL), logged as an error; ``error`` is ``Kind: message``."""

    reason: str
    misconfigured: bool = False
    error: str = ""

    def __str__(self) -> str:
        return f"{self.reason} ({self.error})" if self.error else self.reason


UNREACHABLE = Outage("unreachable")
AFTER_CALL_FAILED = Outage("failed the step after a provider call")

OutageCheck = Callable[[Exception], Outage | None]
"""The primary's error, read: an :class:`Outage`, or None for a bug (which propagates)."""


class ResilientStore(StateStore):
    """``primary`` (a ``RedisStore``) with ``fallback`` for its outages.

    ``outage_errors`` are the primary's "not serving now" errors, or a function that
    reads an error as an :class:`Outage` (None: a bug, which propagates, except from the
    step after a provider call). ``name`` names the primary in log lines (a redacted URL).
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
            self.primary.run(Writable())
        except Exception as exc:
            if (outage := self.outage_in(exc)) is None:
                raise
            return outage
        return None

    def outage_in(self, error: Exception) -> Outage | None:
        """The outage an error of the shared store shows (with the error), or None for a bug."""
        outage = self._outage_of(error)
        return None if outage is None else replace(outage, error=_summary(error))

    def run(self, op: Step[T]) -> T:
        if not self._skip_primary(op):
            try:
                result = self.primary.run(op)
            except Exception as exc:
                self._failed(op, exc)
            else:
                self._came_back(op)
                return result
        return self.fallback.run(op)

    async def arun(self, op: Step[T]) -> T:
        if not self._skip_primary(op):
            try:
                result = await self.primary.arun(op)
            except Exception as exc:
                self._failed(op, exc)
            else:
                self._came_back(op)
                return result
        return self.fallback.run(op)

    def _skip_primary(self, op: Step[T]) -> bool:
        """Whether to answer from memory; past the backoff, the first caller gets to try Redis.

        While Redis is down, what only reads stays on memory: it would pass on a Redis that
        takes no writes, and the limits this process enforces are in its memory.
        """
        if not self._down:
            return False
        if type(op).reads_only:
            return True
        with self._lock:
            now = self._monotonic()
            if not self._down or now >= self._retry_at:
                # This caller tries; the others stay on memory until it has its answer.
                self._retry_at = now + self._backoff
                return False
            return True

    def _failed(self, op: Step[Any] | None, error: Exception) -> None:
        """Go down for an outage (any error, in the step after a call); raise a bug."""
        outage = self.outage_in(error)
        if outage is None and op is not None and type(op).after_call:
            outage = replace(AFTER_CALL_FAILED, error=_summary(error))
        if outage is None:
            raise error
        self._went_down(outage, error)

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

    def _came_back(self, op: Step[T]) -> None:
        if not self._down or type(op).reads_only:
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
            self._failed(None, exc)

    async def aclear(self) -> None:
        self.fallback.clear()
        try:
            await self.primary.aclear()
        except Exception as exc:
            self._failed(None, exc)

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


REDIS_SCHEMES = ("redis", "rediss", "unix")
"""The schemes :func:`pygent_lc.limits.open_store` hands to redis-py."""

MEMORY_URLS = ("", "memory", "memory://")
"""What means "state in this process" (as does no URL at all)."""

_PASSWORD_QUERY = re.compile(r"(?i)([?&]password=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: in the userinfo or a ``password=`` query.

    Whatever goes into a log line or an error message goes through this.
    """
    try:
        parts = urlsplit(url)
        netloc = _redacted_netloc(parts)
    except ValueError:  # unparsable (a bad port): show nothing that could be a secret
        return "<unparsable URL>"
    redacted = url if netloc == parts.netloc else url.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    return _PASSWORD_QUERY.sub(r"\1***", redacted)


def _redacted_netloc(parts: SplitResult) -> str:
    if "@" not in parts.netloc:
        return parts.netloc
    host = parts.netloc.rpartition("@")[2]
    if parts.password is None:
        # "redis://token@host": some servers take a lone userinfo as the password.
        return f"***@{host}"
    return f"{parts.username or ''}:***@{host}"


__all__ = [
    "DEFAULT_PREFIX",
    "MEMORY_URLS",
    "MemoryStore",
    "Outage",
    "ResilientStore",
    "StateStore",
    "redact_url",
]
