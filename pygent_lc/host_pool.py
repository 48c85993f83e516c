"""``HostPool``: one provider served by several hosts, each call to the least busy one.

``OLLAMA_BASE_URL=http://gpu1:11434,http://gpu2:11434`` makes the chain's
"ollama" step a pool: one :class:`~pygent_lc.policy.ProviderPolicy` per host
(each with its own circuit breaker, retries and deadline), each wrapped in a
:class:`HostSlot` that counts its calls in flight in a
:class:`~pygent_lc.limits.StateStore`. Per call the pool

1. reads every host's count with one ``inflight_get`` (with a Redis store,
   the counts of every process sharing it) and tries the hosts from the
   least busy up; ties go round-robin, so idle hosts take turns;
2. counts the call on the host it tries (``inflight_enter`` / ``inflight_exit``,
   also when the call fails or is cancelled);
3. on a ``ProviderError`` from a host (refused, 5xx, timeout, open circuit...)
   tries the next host within the same call; when every host failed it
   raises :class:`AllHostsFailedError`, a ``ProviderUnavailableError`` naming
   each host's error, so the outer chain falls back to its next provider.

It is a :class:`~pygent_lc.fallbacks.ProviderChain` (same loop, same
stream rule: another host only before the first chunk), ranking its
providers per call and failing with its own error. So ``bind_tools`` and
``with_structured_output`` reach every host's model, ``close()`` closes
them all, and a trace shows the pool as a run under the chain with each host
attempt (tagged ``host:<url>``) under it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, PrivateAttr

from pygent_lc.errors import ProviderError, ProviderUnavailableError
from pygent_lc.fallbacks import ProviderChain
from pygent_lc.limits import InflightTicket, StateStore
from pygent_lc.limits.inflight import DEFAULT_INFLIGHT_LEASE_S


class AllHostsFailedError(ProviderUnavailableError):
    """Every host of a pool failed this call; ``errors`` maps each host's URL to its error.

    A ``ProviderUnavailableError`` (so a chain falls back to its next
    provider), not retryable: each host already had its retries.
    """

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


class HostSlot(RunnableSerializable[Any, Any]):
    """One host of a pool: its policy (``bound``), counted in flight under ``key`` while it runs.

    Makes no run of its own: the host's model run is the attempt a trace
    shows, tagged ``host:<url>``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    bound: Runnable[Any, Any]
    """The host's :class:`~pygent_lc.policy.ProviderPolicy` (breaker, retries, deadline)."""

    host: str
    """The host's base URL."""

    key: str
    """Its in-flight key in ``store``: ``<provider>|<url>``."""

    store: StateStore

    lease_s: float = DEFAULT_INFLIGHT_LEASE_S
    """How long a call counts at most (a crashed process's calls stop counting then)."""

    def _config(self, config: RunnableConfig | None) -> RunnableConfig:
        config = config or {}
        return {**config, "tags": [*config.get("tags", []), f"host:{self.host}"]}

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        ticket, _ = self.store.inflight_enter(self.key, self.lease_s)
        try:
            return self.bound.invoke(input, self._config(config), **kwargs)
        finally:
            self.store.inflight_exit(ticket)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        ticket, _ = await self.store.ainflight_enter(self.key, self.lease_s)
        try:
            return await self.bound.ainvoke(input, self._config(config), **kwargs)
        finally:
            await self._aexit(ticket)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        ticket, _ = self.store.inflight_enter(self.key, self.lease_s)
        try:
            yield from self.bound.stream(input, self._config(config), **kwargs)
        finally:
            self.store.inflight_exit(ticket)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        ticket, _ = await self.store.ainflight_enter(self.key, self.lease_s)
        try:
            async for chunk in self.bound.astream(input, self._config(config), **kwargs):
                yield chunk
        finally:
            await self._aexit(ticket)

    async def _aexit(self, ticket: InflightTicket) -> None:
        """Stop counting the call, even when it was cancelled (and again while this runs)."""
        await asyncio.shield(self.store.ainflight_exit(ticket))

    def batch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return Runnable.batch(self, inputs, config, **kwargs)

    async def abatch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return await Runnable.abatch(self, inputs, config, **kwargs)


class HostPool(ProviderChain):
    """One provider's hosts (:class:`HostSlot` each); every call starts at the least busy.

    Build it with :meth:`of`. ``providers`` are the slots, in the configured
    host order (the order ties start from).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    provider: str
    """The provider the hosts serve, for errors (``"ollama"``)."""

    store: StateStore
    """Where the in-flight counts live (shared by the slots)."""

    _turns: Iterator[int] = PrivateAttr(default_factory=itertools.count)

    @classmethod
    def of(
        cls,
        hosts: Mapping[str, Runnable[Any, Any]],
        *,
        provider: str,
        store: StateStore,
        lease_s: float = DEFAULT_INFLIGHT_LEASE_S,
    ) -> HostPool:
        """A pool over ``hosts`` (base URL -> that host's policy), counting in ``store``."""
        slots: list[Runnable[Any, Any]] = [
            HostSlot(bound=policy, host=url, key=f"{provider}|{url}", store=store, lease_s=lease_s)
            for url, policy in hosts.items()
        ]
        return cls(providers=slots, provider=provider, store=store)

    @property
    def hosts(self) -> list[str]:
        """Each host's base URL, in the configured order."""
        return [_slot(provider).host for provider in self.providers]

    @property
    def keys(self) -> list[str]:
        """Each host's in-flight key in :attr:`store`, in the configured order."""
        return [_slot(provider).key for provider in self.providers]

    def in_flight(self) -> dict[str, int]:
        """The calls in flight on each host now (every process's, with a shared store)."""
        return dict(zip(self.hosts, self.store.inflight_get(self.keys), strict=True))

    def _order(self) -> list[Runnable[Any, Any]]:
        return self._ranked(self.store.inflight_get(self.keys))

    async def _aorder(self) -> list[Runnable[Any, Any]]:
        return self._ranked(await self.store.ainflight_get(self.keys))

    def _ranked(self, counts: Sequence[int]) -> list[Runnable[Any, Any]]:
        """Fewest calls in flight first; among equals, the next in a rotating turn."""
        size = len(self.providers)
        start = next(self._turns) % size
        ranked = sorted(range(size), key=lambda index: (counts[index], (index - start) % size))
        return [self.providers[index] for index in ranked]

    def _label(self, provider: Runnable[Any, Any]) -> str:
        return f"{self.provider} at {_slot(provider).host}"

    def _failed(
        self, failures: list[ProviderError], tried: Sequence[Runnable[Any, Any]]
    ) -> ProviderError:
        return AllHostsFailedError(
            self.provider,
            {_slot(slot).host: error for slot, error in zip(tried, failures, strict=True)},
        )


def _slot(runnable: Runnable[Any, Any]) -> HostSlot:
    if not isinstance(runnable, HostSlot):
        raise TypeError(f"a HostPool holds HostSlots, not {type(runnable).__name__}")
    return runnable


__all__ = ["AllHostsFailedError", "HostPool", "HostSlot"]
