"""Circuit breaker: a provider that keeps failing is skipped for a cooldown.

Anchor: LiteLLM Router's cooldowns. Without a breaker a dead primary costs
every call its full retry budget (a timeout, or three 503s with backoff)
before the fallback runs. With it, after ``failure_threshold`` consecutive
*counted* failures the circuit **opens**: for ``cooldown`` seconds each call
fails at once, without touching the network, with :class:`CircuitOpenError`
(a ``ProviderUnavailableError``), so the fallback chain moves on in
microseconds. When the cooldown has passed the circuit is **half-open**: one
call goes through as a probe while the others keep failing fast; a probe that
succeeds **closes** the circuit, one that fails opens it for another cooldown.

Which failures count (:data:`BREAKER_ERRORS`): those that say the provider
cannot serve anyone right now, whatever the prompt —
``ProviderUnavailableError`` (5xx, 408, timeouts, refused or reset
connections, errors inside a 200 body), ``RateLimitError`` (429),
``AuthenticationError`` (401), ``InsufficientCreditsError`` (402) and
``ModelNotFoundError`` (404). LiteLLM cools down on 429, 401, 408, 404 and
5xx; we add 402 (no credits will not fix itself in seconds) and refused
connections (the commonest way a local Ollama is "down").
Not counted: a plain ``ProviderError`` (400 and other client errors: this
request's fault), ``ContentRefusedError`` (403: this input's fault) and
``StreamInterruptedError`` (the provider was serving). Those prove the provider
answered, so, like a success, they reset the count and close a half-open circuit.

One breaker decision is made per provider call: the breaker sits *outside*
the retry policy, so a call that used up its retries is one failure.
Cancellation and non-provider exceptions (bugs) are neither success nor
failure; a probe cut short that way frees the probe slot for the next call.
A probe that takes longer than ``cooldown`` (a slow timeout with retries) no
longer blocks the slot: another probe may go, at most one per cooldown.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.base import RunnableBindingBase

from pygent_lc.errors import (
    AuthenticationError,
    InsufficientCreditsError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
)
from pygent_lc.retry import provider_failures
from pygent_lc.settings import Settings

logger = logging.getLogger(__name__)

BREAKER_ERRORS: tuple[type[ProviderError], ...] = (
    ProviderUnavailableError,
    RateLimitError,
    AuthenticationError,
    InsufficientCreditsError,
    ModelNotFoundError,
)
"""Errors that count towards opening the circuit (see the module docstring)."""

CircuitState = Literal["closed", "open", "half_open"]


class CircuitOpenError(ProviderUnavailableError):
    """Raised without any network call while a provider's circuit is open.

    ``retry_after`` is the time left in the cooldown (``None`` while a probe
    is in flight). Not retryable: the next provider should run instead.
    """


@dataclass(frozen=True, slots=True)
class Admission:
    """The breaker's answer to one call: go ahead (maybe as the probe), or fail fast."""

    allowed: bool
    probe_id: int | None = None
    retry_in: float | None = None


_GO = Admission(allowed=True)


class CircuitBreaker:
    """Per-provider breaker state: consecutive failures, open since, probe in flight.

    Thread-safe (one lock, held for a few assignments, never across I/O), so
    one instance serves sync, threaded and async callers alike. ``clock`` is
    injectable for tests. A ``failure_threshold`` or ``cooldown`` of 0
    disables the breaker: every call is admitted and nothing is recorded.
    """

    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        *,
        provider: str = "provider",
        model: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 0 or cooldown < 0:
            raise ValueError("failure_threshold and cooldown must be >= 0")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.provider = provider
        self.model = model
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_id: int | None = None
        self._probe_started = 0.0
        self._probe_ids = itertools.count(1)
        self._last_error: ProviderError | None = None
        _LIVE.add(self)

    @property
    def enabled(self) -> bool:
        return self.failure_threshold > 0 and self.cooldown > 0

    @property
    def state(self) -> CircuitState:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._clock() < self._opened_at + self.cooldown:
                return "open"
            return "half_open"

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failures

    def admit(self) -> Admission:
        """Whether a call may go to the provider now; the first after a cooldown is the probe."""
        if not self.enabled:
            return _GO
        with self._lock:
            if self._opened_at is None:
                return _GO
            now = self._clock()
            reopen_at = self._opened_at + self.cooldown
            if now < reopen_at:
                return Admission(allowed=False, retry_in=reopen_at - now)
            if self._probe_id is not None and now < self._probe_started + self.cooldown:
                return Admission(allowed=False)
            self._probe_id = next(self._probe_ids)
            self._probe_started = now
            probe_id = self._probe_id
        logger.info("circuit of %s half-open: probing with one call", self.provider)
        return Admission(allowed=True, probe_id=probe_id)

    def record_success(self, admission: Admission) -> None:
        """The provider answered: close the circuit and reset the count."""
        if not self.enabled:
            return
        with self._lock:
            was_open = self._opened_at is not None
            self._failures = 0
            self._opened_at = None
            self._probe_id = None
            self._last_error = None
        if was_open:
            logger.info("circuit of %s closed: the provider answered", self.provider)

    def record_error(self, admission: Admission, error: ProviderError) -> None:
        """A call ended in ``error``: counted, or evidence the provider answered."""
        if not isinstance(error, BREAKER_ERRORS) or isinstance(error, CircuitOpenError):
            self.record_success(admission)
            return
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            is_current_probe = (
                admission.probe_id is not None and admission.probe_id == self._probe_id
            )
            if is_current_probe:
                self._probe_id = None
            elif self._opened_at is not None:
                return  # a call admitted before the circuit opened: already counted out
            self._failures += 1
            self._last_error = error
            opening = is_current_probe or self._failures >= self.failure_threshold
            if opening:
                self._opened_at = now
            failures = self._failures
        if opening:
            logger.warning(
                "circuit of %s open for %.1fs after %d consecutive failure(s): %r",
                self.provider,
                self.cooldown,
                failures,
                error,
            )

    def release(self, admission: Admission) -> None:
        """A call ended without an outcome (cancelled, or a bug): free the probe slot."""
        if admission.probe_id is None:
            return
        with self._lock:
            if admission.probe_id == self._probe_id:
                self._probe_id = None

    def open_error(self, admission: Admission) -> CircuitOpenError:
        """The fast failure for a call the breaker turned away."""
        with self._lock:
            failures, last = self._failures, self._last_error
        cause = "" if last is None else f"; last error: {type(last).__name__}: {last.message}"
        if admission.retry_in is None:
            message = f"circuit half-open, a probe call is in flight{cause}"
        else:
            message = (
                f"circuit open after {failures} consecutive failure(s), "
                f"cooling down for {admission.retry_in:.1f}s{cause}"
            )
        return CircuitOpenError(
            message,
            provider=self.provider,
            model=self.model,
            retryable=False,
            retry_after=admission.retry_in,
        )


_LIVE: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()


def live_breakers() -> list[CircuitBreaker]:
    """Every breaker still in use in this process (telemetry reports their state)."""
    return list(_LIVE)


class ProviderBreaker(RunnableBindingBase[Any, Any]):
    """A provider's Runnable (usually its :class:`~pygent_lc.retry.ProviderRetry`) behind a breaker.

    A turned-away call raises :class:`CircuitOpenError` and reports it into
    :data:`~pygent_lc.retry.provider_failures`, like ``ProviderRetry`` does for
    real failures, so :class:`~pygent_lc.fallbacks.ProviderChain` still
    raises ``AllProvidersFailedError`` with every provider's error.
    """

    circuit: CircuitBreaker
    """The breaker state; shared by every copy and binding of this Runnable."""

    def _admit(self) -> Admission:
        admission = self.circuit.admit()
        if not admission.allowed:
            error = self.circuit.open_error(admission)
            failures = provider_failures.get()
            if failures is not None:
                failures.append(error)
            raise error
        return admission

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        admission = self._admit()
        try:
            result = self.bound.invoke(
                input, self._merge_configs(config), **{**self.kwargs, **kwargs}
            )
        except ProviderError as exc:
            self.circuit.record_error(admission, exc)
            raise
        except BaseException:
            self.circuit.release(admission)
            raise
        self.circuit.record_success(admission)
        return result

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        admission = self._admit()
        try:
            result = await self.bound.ainvoke(
                input, self._merge_configs(config), **{**self.kwargs, **kwargs}
            )
        except ProviderError as exc:
            self.circuit.record_error(admission, exc)
            raise
        except BaseException:
            self.circuit.release(admission)
            raise
        self.circuit.record_success(admission)
        return result

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        admission = self._admit()
        delivered = False
        try:
            for chunk in self.bound.stream(
                input, self._merge_configs(config), **{**self.kwargs, **kwargs}
            ):
                delivered = True
                yield chunk
        except ProviderError as exc:
            self.circuit.record_error(admission, exc)
            raise
        except BaseException:  # GeneratorExit when the consumer stops early, or a bug
            self._abandoned(admission, delivered)
            raise
        self.circuit.record_success(admission)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        admission = self._admit()
        delivered = False
        try:
            async for chunk in self.bound.astream(
                input, self._merge_configs(config), **{**self.kwargs, **kwargs}
            ):
                delivered = True
                yield chunk
        except ProviderError as exc:
            self.circuit.record_error(admission, exc)
            raise
        except BaseException:  # GeneratorExit, CancelledError, or a bug
            self._abandoned(admission, delivered)
            raise
        self.circuit.record_success(admission)

    def _abandoned(self, admission: Admission, delivered: bool) -> None:
        if delivered:  # the provider was streaming: it is up
            self.circuit.record_success(admission)
        else:
            self.circuit.release(admission)

    # The binding defaults would call the bound Runnable directly, past the breaker.
    def batch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return Runnable.batch(self, inputs, config, **kwargs)

    async def abatch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return await Runnable.abatch(self, inputs, config, **kwargs)

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from Runnable.transform(self, input, config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for chunk in Runnable.atransform(self, input, config, **kwargs):
            yield chunk


def with_circuit_breaker(
    runnable: Runnable[Any, Any], settings: Settings, *, provider: str, model: str | None = None
) -> ProviderBreaker:
    """``runnable`` behind a fresh breaker configured from ``settings``."""
    circuit = CircuitBreaker(
        settings.breaker_failures, settings.breaker_cooldown, provider=provider, model=model
    )
    return ProviderBreaker(bound=runnable, circuit=circuit)


__all__ = [
    "BREAKER_ERRORS",
    "Admission",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ProviderBreaker",
    "live_breakers",
    "with_circuit_breaker",
]
