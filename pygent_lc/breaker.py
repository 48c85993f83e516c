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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pygent_lc.errors import (
    AuthenticationError,
    InsufficientCreditsError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
)

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

    def enter(self) -> Admission:
        """Admit a call, or raise :class:`CircuitOpenError` when it must fail fast."""
        admission = self.admit()
        if not admission.allowed:
            raise self.open_error(admission)
        return admission

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


__all__ = [
    "BREAKER_ERRORS",
    "Admission",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "live_breakers",
]
