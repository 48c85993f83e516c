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
Cancellation, non-provider exceptions (bugs) and the errors raised before
any request (an open circuit, our own rate limit) are neither success nor
failure; a probe cut short that way frees the probe slot for the next call.
A probe that takes longer than ``cooldown`` (a slow timeout with retries) no
longer blocks the slot: another probe may go, at most one per cooldown.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable

from pygent_lc.errors import (
    AuthenticationError,
    InsufficientCreditsError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
)
from pygent_lc.rate_limits import LocalRateLimitError
from pygent_lc.state import (
    BreakerAdmission,
    BreakerOutcome,
    BreakerSpec,
    CallEnd,
    CircuitState,
    MemoryStore,
    StateStore,
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


class CircuitOpenError(ProviderUnavailableError):
    """Raised without any network call while a provider's circuit is open.

    ``retry_after`` is the time left in the cooldown (``None`` while a probe
    is in flight). Not retryable: the next provider should run instead.
    """


_NOT_THE_PROVIDERS = (CircuitOpenError, LocalRateLimitError)
"""Errors raised before any request: they say nothing about the provider."""


Admission = BreakerAdmission
"""The breaker's answer to one call: go ahead (maybe as the probe), or fail fast."""


class CircuitBreaker:
    """One provider's circuit, its state kept in a :class:`~pygent_lc.state.StateStore`.

    The store holds consecutive failures, open-since and the probe in flight
    under :attr:`key` (``breaker|provider|model|endpoint``): with an
    in-process store (the default, a store of its own) the circuit is this
    object's; with the Redis store every process using the same provider,
    model and endpoint shares it, so one worker's failures open it for all and
    one probe runs fleet-wide. ``clock`` (for tests) drives a store of its own.
    A ``failure_threshold`` or ``cooldown`` of 0 disables the breaker: every
    call is admitted and nothing is recorded.

    :class:`~pygent_lc.policy.ProviderPolicy` asks the store once per call
    (:meth:`spec` in the call's plan, :meth:`outcome` at its end); the
    methods below are the same steps one at a time.
    """

    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        *,
        provider: str = "provider",
        model: str | None = None,
        endpoint: str | None = None,
        store: StateStore | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if failure_threshold < 0 or cooldown < 0:
            raise ValueError("failure_threshold and cooldown must be >= 0")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.provider = provider
        self.model = model
        self.endpoint = endpoint
        self.store = store or MemoryStore(clock=clock or time.time)
        self.store_given = store is not None or clock is not None
        """Whether :attr:`store` was chosen (a store, or a clock to drive a store of its
        own); otherwise a policy lends the breaker its store."""
        self.key = f"breaker|{provider}|{model or ''}|{endpoint or ''}"
        _LIVE.add(self)

    @property
    def enabled(self) -> bool:
        return self.failure_threshold > 0 and self.cooldown > 0

    @property
    def spec(self) -> BreakerSpec:
        """What a call's plan asks of this breaker (see :meth:`StateStore.begin_call`)."""
        return BreakerSpec(self.key, self.failure_threshold, self.cooldown)

    @property
    def state(self) -> CircuitState:
        return self.store.breaker_state(self.key, self.cooldown).state

    @property
    def consecutive_failures(self) -> int:
        return self.store.breaker_state(self.key, self.cooldown).failures

    def outcome(self, admission: Admission, error: BaseException | None) -> BreakerOutcome | None:
        """What to record for a call that ended with ``error`` (None: it answered).

        Counted errors are failures; other provider errors prove the provider
        answered; anything else (cancellation, a bug, a limit of our own) is
        no outcome and only frees the probe slot. Nothing for a disabled breaker.
        """
        if not self.enabled:
            return None
        if error is None or (
            isinstance(error, ProviderError) and not isinstance(error, BREAKER_ERRORS)
        ):
            return BreakerOutcome(self.key, admission, "success")
        if isinstance(error, ProviderError) and not isinstance(error, _NOT_THE_PROVIDERS):
            summary = f"{type(error).__name__}: {error.message}"
            return BreakerOutcome(self.key, admission, "failure", self.failure_threshold, summary)
        return BreakerOutcome(self.key, admission, "release")

    def open_error(self, admission: Admission) -> CircuitOpenError:
        """The fast failure for a call the breaker turned away."""
        last = admission.last_error
        cause = "" if last is None else f"; last error: {last}"
        if admission.retry_in is None:
            message = f"circuit half-open, a probe call is in flight{cause}"
        else:
            message = (
                f"circuit open after {admission.failures} consecutive failure(s), "
                f"cooling down for {admission.retry_in:.1f}s{cause}"
            )
        return CircuitOpenError(
            message,
            provider=self.provider,
            model=self.model,
            retryable=False,
            retry_after=admission.retry_in,
        )

    def admit(self) -> Admission:
        """Whether a call may go to the provider now; the first after a cooldown is the probe."""
        return self.store.breaker_admit(self.key, self.failure_threshold, self.cooldown)

    def enter(self) -> Admission:
        """Admit a call, or raise :class:`CircuitOpenError` when it must fail fast."""
        admission = self.admit()
        if not admission.allowed:
            raise self.open_error(admission)
        return admission

    def record_success(self, admission: Admission) -> None:
        """The provider answered: close the circuit and reset the count."""
        self.record(admission, None)

    def record_error(self, admission: Admission, error: BaseException) -> None:
        """A call ended in ``error``: counted, evidence the provider answered, or neither."""
        self.record(admission, error)

    def release(self, admission: Admission) -> None:
        """A call ended without an outcome (cancelled, or a bug): free the probe slot."""
        if self.enabled:
            self.store.breaker_release(self.key, admission)

    def record(self, admission: Admission, error: BaseException | None) -> None:
        outcome = self.outcome(admission, error)
        if outcome is None:
            return
        changed = self.store.end_call(CallEnd(breaker=outcome)).breaker_changed
        if changed:
            log_change(self, outcome)


def log_change(circuit: CircuitBreaker, outcome: BreakerOutcome) -> None:
    """Log a circuit that opened or closed."""
    if outcome.kind == "failure":
        logger.warning(
            "circuit of %s open for %.1fs: %s",
            circuit.provider,
            circuit.cooldown,
            outcome.error_summary,
        )
    else:
        logger.info("circuit of %s closed: the provider answered", circuit.provider)


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
