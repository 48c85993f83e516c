"""``HostPool``: one provider on several hosts (``OLLAMA_BASE_URL=a,b``), each call to the
host with the fewest calls in flight (in the state store: with Redis, every process's)."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from pydantic import PrivateAttr

from pygent_lc.chain import ProviderChain
from pygent_lc.errors import ProviderError, ProviderUnavailableError
from pygent_lc.limits.script import Arg, MemoryState, Step
from pygent_lc.limits.store import StateStore

DEFAULT_INFLIGHT_LEASE_S = 300.0  # how long a ticket counts if nobody ends it (its process died)


class Tickets(dict[str, dict[str, float]]):
    """The in-process twin: per key, ticket id -> end of its lease."""

    def live(self, key: str, now: float) -> int:
        return sum(1 for deadline in self.get(key, {}).values() if deadline > now)


def inflight_key(prefix: str, key: str) -> str:
    return f"{prefix}if:{key}"


@dataclass(frozen=True, slots=True)
class Enter(Step[int]):
    """Count one call on ``key`` until its :meth:`exit` or its lease ends; answers the count.
    Leases, not ``INCR``/``DECR``: a process that died between the two would count for ever."""

    lua: ClassVar[str] = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4]) * 1000))
return redis.call('ZCARD', KEYS[1])
"""
    key: str
    now: float
    lease_s: float = DEFAULT_INFLIGHT_LEASE_S
    ticket: str = field(default_factory=lambda: secrets.token_hex(8))

    def exit(self, now: float) -> Exit:
        return Exit(self.key, now, self.ticket)

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        ends = self.now + self.lease_s  # added here for both stores: the same double
        return [inflight_key(prefix, self.key)], [self.now, ends, self.ticket, self.lease_s]

    def local(self, state: MemoryState) -> int:
        held = state.part(Tickets).setdefault(self.key, {})
        for stale in [t for t, deadline in held.items() if deadline <= self.now]:
            del held[stale]
        held[self.ticket] = self.now + self.lease_s
        return len(held)


@dataclass(frozen=True, slots=True)
class Exit(Step[int]):
    """Give a ticket back (twice is harmless); answers the count left."""

    lua: ClassVar[str] = """
redis.call('ZREM', KEYS[1], ARGV[2])
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
"""
    after_call: ClassVar[bool] = True
    key: str
    now: float
    ticket: str

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [inflight_key(prefix, self.key)], [self.now, self.ticket]

    def local(self, state: MemoryState) -> int:
        tickets = state.part(Tickets)
        tickets.get(self.key, {}).pop(self.ticket, None)
        return tickets.live(self.key, self.now)


@dataclass(frozen=True, slots=True)
class Count(Step[list[int]]):
    """The calls in flight on each key, in order, in one round trip."""

    lua: ClassVar[str] = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('ZCOUNT', key, '(' .. ARGV[1], '+inf') end
return out
"""
    reads_only: ClassVar[bool] = True
    keys: tuple[str, ...]
    now: float

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [inflight_key(prefix, key) for key in self.keys], [self.now]

    def local(self, state: MemoryState) -> list[int]:
        return [state.part(Tickets).live(key, self.now) for key in self.keys]


class AllHostsFailedError(ProviderUnavailableError):
    """Every host of a pool failed; ``errors`` maps each URL to its error. Not retryable."""

    errors: dict[str, ProviderError]

    def __init__(self, provider: str, errors: Mapping[str, ProviderError]) -> None:
        lines = "; ".join(f"{host}: {type(e).__name__}: {e.message}" for host, e in errors.items())
        models = {e.model for e in errors.values()}
        super().__init__(
            f"all {len(errors)} hosts failed: {lines}",
            provider=provider,
            model=models.pop() if len(models) == 1 else None,
            retryable=False,
        )
        self.errors = dict(errors)


class HostSlot(RunnableBinding[Any, Any]):
    """One host of a pool: its policy (``bound``), its attempts tagged ``host:<url>``, counted
    in flight under ``key`` while it runs."""

    host: str
    key: str
    store: StateStore

    @contextmanager
    def _counted(self) -> Iterator[None]:
        self.store.run(ticket := Enter(self.key, self.store.clock()))
        try:
            yield
        finally:
            self.store.run(ticket.exit(self.store.clock()))

    @asynccontextmanager
    async def _acounted(self) -> AsyncIterator[None]:
        await self.store.arun(ticket := Enter(self.key, self.store.clock()))
        try:
            yield
        finally:  # shielded: stop counting a cancelled call too (and if cancelled again)
            await asyncio.shield(self.store.arun(ticket.exit(self.store.clock())))

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        with self._counted():
            return super().invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        async with self._acounted():
            return await super().ainvoke(input, config, **kwargs)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        with self._counted():
            yield from super().stream(input, config, **kwargs)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async with self._acounted():
            async for chunk in super().astream(input, config, **kwargs):
                yield chunk


class HostPool(ProviderChain):
    """One provider's hosts, a :class:`HostSlot` each; build it with :meth:`of`."""

    provider: str
    store: StateStore
    _turns: Iterator[int] = PrivateAttr(default_factory=itertools.count)

    @classmethod
    def of(
        cls, hosts: Mapping[str, Runnable[Any, Any]], *, provider: str, store: StateStore
    ) -> HostPool:
        """A pool over ``hosts`` (base URL -> that host's policy)."""
        slots: list[Runnable[Any, Any]] = [
            HostSlot(
                bound=policy,
                config={"tags": [f"host:{url}"]},
                host=url,
                key=f"{provider}|{url}",
                store=store,
            )
            for url, policy in hosts.items()
        ]
        return cls(providers=slots, provider=provider, store=store)

    @property
    def hosts(self) -> list[str]:
        return [cast(HostSlot, provider).host for provider in self.providers]

    def in_flight(self) -> dict[str, int]:
        return dict(zip(self.hosts, self.store.run(self._count()), strict=True))

    def _count(self) -> Count:
        return Count(tuple(cast(HostSlot, slot).key for slot in self.providers), self.store.clock())

    def _order(self) -> list[Runnable[Any, Any]]:
        return self._ranked(self.store.run(self._count()))

    async def _aorder(self) -> list[Runnable[Any, Any]]:
        return self._ranked(await self.store.arun(self._count()))

    def _ranked(self, counts: Sequence[int]) -> list[Runnable[Any, Any]]:
        """Fewest calls in flight first; among equals, the next in a rotating turn."""
        size = len(self.providers)
        start = next(self._turns) % size
        ranked = sorted(range(size), key=lambda index: (counts[index], (index - start) % size))
        return [self.providers[index] for index in ranked]

    def _label(self, provider: Runnable[Any, Any]) -> str:
        return f"{self.provider} at {cast(HostSlot, provider).host}"

    def _failed(
        self, failures: list[ProviderError], tried: Sequence[Runnable[Any, Any]]
    ) -> ProviderError:
        hosts = [cast(HostSlot, slot).host for slot in tried]
        return AllHostsFailedError(self.provider, dict(zip(hosts, failures, strict=True)))
