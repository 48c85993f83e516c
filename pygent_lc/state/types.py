"""What callers pass to a :class:`~pygent_lc.state.StateStore` and what they get back.

Plain frozen dataclasses, the same for every store, so the breaker, budget,
limiter and usage code written against them does not care whether state
lives in this process or in Redis. Keys are the caller's own strings (e.g.
``"openrouter|openai/gpt-4o-mini|chat"``); the store adds its prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pygent_lc.backend import UsageTotals

CircuitState = Literal["closed", "open", "half_open"]
"""As :data:`pygent_lc.breaker.CircuitState`."""

BreakerOutcomeKind = Literal["success", "failure", "release"]
"""How a call that a breaker admitted ended: answered, failed (counted), or no outcome."""

Refusal = Literal["breaker", "budget", "budget_wait", "rate"]
"""Which part of a :class:`CallPlan` turned a call away (see :class:`CallStart`)."""

DEFAULT_BUDGET_LEASE_S = 900.0
"""How long a budget reservation outlives a process that died holding it.

A call that runs longer than this loses its reservation early (its cost is
still added when it settles), so it should be longer than any call's timeout
with its retries and fallbacks.
"""

DEFAULT_INFLIGHT_LEASE_S = 300.0
"""How long an in-flight ticket counts if nobody ends it (its process died)."""


@dataclass(frozen=True, slots=True)
class BreakerAdmission:
    """A breaker's answer to one call, as :class:`pygent_lc.breaker.Admission`, plus context.

    ``probe_id`` is set for the one call (fleet-wide) that probes a half-open
    circuit. ``retry_in`` is the cooldown left when refused while open; it is
    ``None`` when refused because another call's probe is in flight.
    ``failures`` and ``last_error`` are read in the same step, so a refused
    caller can say why without asking again.
    """

    allowed: bool
    probe_id: int | None = None
    retry_in: float | None = None
    failures: int = 0
    last_error: str | None = None


ADMITTED = BreakerAdmission(allowed=True)
"""The admission of a call with no breaker, or a disabled one."""


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """A breaker's state now, for telemetry and error messages."""

    state: CircuitState
    failures: int
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetReservation:
    """A call's hold on a budget; give it back with ``budget_settle`` or ``budget_release``.

    ``bucket`` is the window the call started in (``floor(now / window_s)``,
    0 without a window): its cost counts there even if it ends in the next.
    ``unknown_cost`` marks a call admitted without a bound on its cost (at
    most one is in flight per budget). ``spent_usd`` and ``reserved_usd`` are the totals before this
    reservation.
    """

    key: str
    window_s: int | None
    bucket: int
    hold_id: str
    amount_usd: float
    unknown_cost: bool
    spent_usd: float
    reserved_usd: float


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """A budget turned a call away.

    ``wait`` is True when the call may go later: it has no bound on its cost
    and another such call is in flight (poll again, e.g. every 50 ms,
    or after the call in flight ends). Otherwise the budget is spent: the
    caller raises :class:`~pygent_lc.errors.BudgetExceededError`.
    """

    key: str
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    amount_usd: float
    wait: bool


BudgetAnswer = BudgetReservation | BudgetRefusal


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget window now: spent, held by calls in flight, and the largest call seen."""

    spent_usd: float
    reserved_usd: float
    in_flight: int
    largest_call_usd: float


@dataclass(frozen=True, slots=True)
class _ProviderModel:
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class UsageRecord(UsageTotals, _ProviderModel):
    """One request's usage, added to its (provider, model) totals in one step.

    The :class:`~pygent_lc.backend.UsageTotals` of that request (one call by
    default), who served it, and how long it took.
    """

    calls: int = 1
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals of one (provider, model); the fields of :class:`pygent_lc.usage.UsageSummary`.

    ``mean_latency_s`` is over every call; ``p95_latency_s`` over the most
    recent latency samples the store keeps (1,000 per pair).
    """

    provider: str
    model: str
    calls: int
    failures: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    mean_latency_s: float
    p95_latency_s: float
    cached_input_tokens: int = 0
    cache_discount_usd: float = 0.0
    cost_faults: int = 0
    """Replies whose reported cost was no plausible amount (see ``UsageTotals.cost_faults``)."""


@dataclass(frozen=True, slots=True)
class InflightTicket:
    """One call counted as in flight on ``key`` until :meth:`inflight_exit` or its lease ends."""

    key: str
    ticket_id: str


@dataclass(frozen=True, slots=True)
class BreakerSpec:
    """A circuit breaker's key and settings; threshold or cooldown 0 disables it."""

    key: str
    threshold: int
    cooldown_s: float

    @property
    def enabled(self) -> bool:
        return self.threshold > 0 and self.cooldown_s > 0


@dataclass(frozen=True, slots=True)
class RateSpec:
    """At most ``limit`` calls on ``key`` in any sliding window of ``period_s`` seconds."""

    key: str
    limit: int
    period_s: float


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A spending limit on ``key``, in total (``window_s`` None) or per hour/day window.

    ``amount_usd`` is the most the call can cost (its bound); None (no bound
    known) reserves the largest cost of one call seen so far on ``key`` and
    waits while another call without a bound is in flight.
    """

    key: str
    limit_usd: float
    amount_usd: float | None = None
    window_s: int | None = None
    lease_s: float = DEFAULT_BUDGET_LEASE_S


@dataclass(frozen=True, slots=True)
class CallPlan:
    """Everything checked before one provider call, answered in one atomic step.

    Budgets are checked first, then the breaker, then the rate limits. The
    step is all-or-nothing: when any part refuses, nothing is taken (no
    reservation, no probe slot, no rate slot). Keys should differ between
    the rate limits of one plan, and between its budgets.
    """

    breaker: BreakerSpec | None = None
    rates: tuple[RateSpec, ...] = ()
    budgets: tuple[BudgetSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class CallStart:
    """The answer to a :class:`CallPlan`.

    When ``allowed``: ``breaker`` is the admission to pass back at the end
    (``ADMITTED`` without a breaker) and ``reservations`` hold the budgets,
    in plan order. When refused, ``refused_by`` says which part did:
    ``"breaker"`` (``breaker`` says why), ``"budget"`` or ``"budget_wait"``
    (``budget_refusal``) or ``"rate"`` (``rate_wait_s`` until the limit of
    ``rate_key`` frees a slot).
    """

    allowed: bool
    refused_by: Refusal | None = None
    breaker: BreakerAdmission | None = None
    reservations: tuple[BudgetReservation, ...] = ()
    budget_refusal: BudgetRefusal | None = None
    rate_wait_s: float = 0.0
    rate_key: str | None = None
    now: float = 0.0
    """The time the step was decided at: the caller's clock, or a little later when a
    caller with a later clock already reached one of the plan's rate limits (times
    never go backwards on a rate limit; see :mod:`pygent_lc.state.rate`)."""


@dataclass(frozen=True, slots=True)
class BreakerOutcome:
    """How a call admitted by the breaker of ``key`` ended.

    ``threshold`` (failures that open the circuit) and ``error_summary``
    matter for a ``"failure"`` only. Pass no outcome at all for a disabled
    breaker (threshold or cooldown 0), as :class:`pygent_lc.breaker.CircuitBreaker`
    records nothing then.
    """

    key: str
    admission: BreakerAdmission
    kind: BreakerOutcomeKind
    threshold: int = 1
    error_summary: str = ""


@dataclass(frozen=True, slots=True)
class Settlement:
    """A reservation given back, with the call's real cost (0 when it failed before any)."""

    reservation: BudgetReservation
    cost_usd: float


@dataclass(frozen=True, slots=True)
class CallEnd:
    """Everything recorded after one provider call, in one atomic step."""

    breaker: BreakerOutcome | None = None
    settlements: tuple[Settlement, ...] = ()
    usage: UsageRecord | None = None


@dataclass(frozen=True, slots=True)
class CallEnded:
    """What the end of a call changed: ``breaker_changed`` is True when a failure
    opened the circuit or a success closed an open one; ``failures`` is the
    consecutive failure count after a failure."""

    breaker_changed: bool = False
    failures: int = 0


__all__ = [
    "ADMITTED",
    "DEFAULT_BUDGET_LEASE_S",
    "DEFAULT_INFLIGHT_LEASE_S",
    "BreakerAdmission",
    "BreakerOutcome",
    "BreakerOutcomeKind",
    "BreakerSpec",
    "BreakerStatus",
    "BudgetAnswer",
    "BudgetRefusal",
    "BudgetReservation",
    "BudgetSpec",
    "BudgetStatus",
    "CallEnd",
    "CallEnded",
    "CallPlan",
    "CallStart",
    "CircuitState",
    "InflightTicket",
    "RateSpec",
    "Refusal",
    "Settlement",
    "UsageRecord",
    "UsageRow",
]
