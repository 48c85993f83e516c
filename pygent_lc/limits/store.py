"""Where every limit keeps its state: :class:`MemoryStore` runs a step's twin under one lock;
``RedisStore`` its Lua script, behind a :class:`ResilientStore` that answers from memory
while Redis does not serve. Times are the client's: processes sharing a Redis share a clock."""

from __future__ import annotations

import abc
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import urlsplit

from pygent_lc.limits.script import Arg, MemoryState, Step
from pygent_lc.limits.usage import UsageRows, UsageSummary

logger = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

DEFAULT_PREFIX = "pygent:"

Clock = Callable[[], float]

WRITABLE_TTL_MS = 60_000


def writable_key(prefix: str) -> str:
    # Written first before a call: a Redis that takes no writes says so before it is paid.
    return f"{prefix}writable"


@dataclass(frozen=True, slots=True)
class Writable(Step[None]):
    lua: ClassVar[str] = "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])"

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [writable_key(prefix)], [1, WRITABLE_TTL_MS]

    def local(self, state: MemoryState) -> None:
        return None


class Request(Protocol[T_co]):
    def step(self, now: float) -> Step[T_co]: ...


class StateStore(abc.ABC):
    """Every limit's state; each step atomic across every process sharing the store."""

    def __init__(self, *, prefix: str = DEFAULT_PREFIX, clock: Clock = time.time) -> None:
        self.prefix = prefix
        self.clock = clock

    @abc.abstractmethod
    def run(self, step: Step[T]) -> T: ...

    async def arun(self, step: Step[T]) -> T:
        return self.run(step)  # in memory: it never waits on I/O

    @abc.abstractmethod
    def clear(self) -> None: ...

    async def aclear(self) -> None:
        self.clear()  # a reset, not a call's step: blocking briefly is fine

    def close(self) -> None:  # noqa: B027 - nothing to release in memory
        """Release connections; the store opens them again if used afterwards."""

    async def aclose(self) -> None:
        self.close()

    def begin_call(self, plan: Request[T]) -> T:
        return self.run(plan.step(self.clock()))

    async def abegin_call(self, plan: Request[T]) -> T:
        return await self.arun(plan.step(self.clock()))

    end_call = begin_call
    aend_call = abegin_call

    def usage_rows(self) -> list[UsageSummary]:
        return self.run(UsageRows())


class MemoryStore(StateStore):
    """Limits in this process: one lock, never held across I/O, serves threads and loops."""

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
    """Why the shared store did not serve; ``misconfigured``: only new settings fix it."""

    reason: str
    misconfigured: bool = False
    error: str = ""

    def __str__(self) -> str:
        return f"{self.reason} ({self.error})" if self.error else self.reason


UNREACHABLE = Outage("unreachable")
AFTER_CALL_FAILED = Outage("failed the step after a provider call")

OutageCheck = Callable[[Exception], Outage | None]


class ResilientStore(StateStore):
    """``primary`` with an in-process store for its outages (``outage_of``: the outage an error
    means, None for a bug, which propagates except after a call)."""

    def __init__(
        self,
        primary: StateStore,
        outage_of: OutageCheck,
        *,
        name: str = "redis",
        retry_after_s: float = RETRY_AFTER_S,
        max_retry_after_s: float = MAX_RETRY_AFTER_S,
        clock: Clock = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(prefix=primary.prefix, clock=clock)
        self.primary = primary
        self.fallback = MemoryStore(prefix=primary.prefix, clock=clock)
        self._outage_of = outage_of
        self._name = name
        self._first_backoff = self._backoff = retry_after_s
        self._max_backoff = max(retry_after_s, max_retry_after_s)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self.outage: Outage | None = None

    @property
    def shared(self) -> bool:
        return self.outage is None

    def check(self) -> Outage | None:
        """Whether the shared store takes a write now; nothing falls back or logs (doctor)."""
        try:
            self.primary.run(Writable())
        except Exception as exc:
            if (outage := self.outage_in(exc)) is None:
                raise
            return outage
        return None

    def outage_in(self, error: Exception) -> Outage | None:
        outage = self._outage_of(error)
        return None if outage is None else replace(outage, error=_summary(error))

    def run(self, op: Step[T]) -> T:
        if not self._skip_primary(op):
            try:
                return self._came_back(op, self.primary.run(op))
            except Exception as exc:
                self._failed(op, exc)
        return self.fallback.run(op)

    async def arun(self, op: Step[T]) -> T:
        if not self._skip_primary(op):
            try:
                return self._came_back(op, await self.primary.arun(op))
            except Exception as exc:
                self._failed(op, exc)
        return self.fallback.run(op)

    def _skip_primary(self, op: Step[T]) -> bool:
        """While down, reads stay in memory; past the backoff, the first writer tries Redis."""
        if self.outage is None:
            return False
        if type(op).reads_only:
            return True
        with self._lock:
            now = self._monotonic()
            if self.outage is None or now >= self._retry_at:
                # This caller tries; the others stay on memory until it has its answer.
                self._retry_at = now + self._backoff
                return False
            return True

    def _failed(self, op: Step[Any] | None, error: Exception) -> None:
        outage = self.outage_in(error)
        if outage is None and op is not None and type(op).after_call:
            outage = replace(AFTER_CALL_FAILED, error=_summary(error))
        if outage is None:
            raise error
        with self._lock:
            was = self.outage
            self._backoff = (
                self._first_backoff if was is None else min(self._backoff * 2, self._max_backoff)
            )
            self._retry_at = self._monotonic() + self._backoff
            self.outage = outage
        if was is None or was.reason != outage.reason:  # one line per outage and new cause
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

    def _came_back(self, op: Step[T], result: T) -> T:
        if self.outage is None or type(op).reads_only:
            return result
        with self._lock:
            was, self.outage = self.outage, None
            self._backoff = self._first_backoff
        if was is not None:
            logger.info("shared state store %s reachable again: limits are shared", self._name)
        return result

    def clear(self) -> None:
        self.fallback.clear()
        try:
            self.primary.clear()
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


REDIS_SCHEMES = ("redis", "rediss", "unix")
MEMORY_URLS = ("", "memory", "memory://")  # state in this process, as without a URL

_PASSWORD_QUERY = re.compile(r"(?i)([?&]password=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with any password (userinfo or ``password=`` query) as ``***``, for logs."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            host = netloc.rpartition("@")[2]
            # "redis://token@host": some servers take a lone userinfo as the password.
            user = "" if parts.password is None else f"{parts.username or ''}:"
            netloc = f"{user}***@{host}"
    except ValueError:  # unparsable (a bad port): show nothing that could be a secret
        return "<unparsable URL>"
    redacted = url if netloc == parts.netloc else url.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    return _PASSWORD_QUERY.sub(r"\1***", redacted)
