"""``StateStore``: every limit's state behind one interface, in this process or in Redis.

A store only knows how to run an :class:`~pygent_lc.state.op.Op` (``run``
for sync callers, ``arun`` for async ones); every public method here builds
an op and runs it, so each operation is written once for both. Methods come
in pairs: ``take_rate_token`` / ``atake_rate_token`` and so on. Where the
parameters fill several lines, the op's builder is the one definition and
``_sync``/``_async`` make the pair of it (``record_usage = _sync(_usage_op)``).

Times are the client's wall clock (``clock``, ``time.time`` by default),
sent with each operation: processes sharing a Redis must share a clock (one
host, or NTP). A clock that jumps shifts cooldowns and windows by the jump.
"""

from __future__ import annotations

import abc
import functools
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Concatenate, Generic, ParamSpec, TypeVar

from pygent_lc.errors import ConfigurationError, InvalidInputError
from pygent_lc.state import queries, usage_log
from pygent_lc.state.calls import BEGIN, END, Begin, End
from pygent_lc.state.op import Op, make_op, same
from pygent_lc.state.types import (
    ADMITTED,
    DEFAULT_BUDGET_LEASE_S,
    DEFAULT_INFLIGHT_LEASE_S,
    BreakerAdmission,
    BreakerOutcome,
    BreakerSpec,
    BreakerStatus,
    BudgetAnswer,
    BudgetReservation,
    BudgetSpec,
    BudgetStatus,
    CallEnd,
    CallEnded,
    CallPlan,
    CallStart,
    InflightTicket,
    RateSpec,
    Settlement,
    UsageRecord,
    UsageRow,
)

DEFAULT_PREFIX = "pygent:"
"""Where a store's keys live in Redis (and a name for an in-process store)."""

Clock = Callable[[], float]
T = TypeVar("T")
P = ParamSpec("P")


def _token() -> str:
    return secrets.token_hex(8)


def _probe_id() -> int:
    # 53 bits: exact in Lua's doubles, and never 0.
    return secrets.randbits(53) | 1


def _check_plan(plan: CallPlan) -> None:
    for limit in plan.rates:
        if limit.limit < 1 or not limit.period_s > 0:
            raise ConfigurationError(
                f"rate limit of {limit.key!r} needs limit >= 1 and period_s > 0, "
                f"got {limit.limit} per {limit.period_s}s",
                field="rate_limit",
            )
    for budget in plan.budgets:
        if budget.window_s is not None and budget.window_s < 1:
            raise ConfigurationError(
                f"budget window of {budget.key!r} must be >= 1 s, got {budget.window_s}",
                field="budget_window",
            )
        if not budget.limit_usd >= 0:
            raise ConfigurationError(
                f"budget limit of {budget.key!r} must be >= 0, got {budget.limit_usd}",
                field="max_cost_usd",
            )
        if budget.amount_usd is not None and not budget.amount_usd >= 0:
            raise ConfigurationError(
                f"estimated cost for {budget.key!r} must be >= 0, got {budget.amount_usd}",
                field="max_cost_usd",
            )


def _check_end(call: CallEnd) -> None:
    """Costs and usage are finite and not negative: a NaN or an infinity must never reach
    the ledger or the usage totals (nor Redis's Lua, whose ``tonumber`` reads them as nil).
    Replies' costs are checked where they enter (:func:`pygent_lc.usage.message_usage`);
    this refuses whatever else a caller passes."""
    for settlement in call.settlements:
        if not 0.0 <= settlement.cost_usd < math.inf:
            raise InvalidInputError(
                f"a call's cost must be a finite amount >= 0, got {settlement.cost_usd!r}"
            )
    if call.usage is not None and not all(
        0.0 <= v < math.inf for v in usage_log.values(call.usage)
    ):
        raise InvalidInputError("usage figures must be finite and >= 0")


def _rate_wait(start: CallStart) -> float:
    return start.rate_wait_s


def _breaker_answer(start: CallStart) -> BreakerAdmission:
    return start.breaker or ADMITTED


def _budget_answer(start: CallStart) -> BudgetAnswer:
    if start.budget_refusal is not None:
        return start.budget_refusal
    return start.reservations[0]


def _changed(ended: CallEnded) -> bool:
    return ended.breaker_changed


def _nothing(ended: CallEnded) -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Known(Generic[T]):
    """An answer found without asking the store (say, from a disabled breaker)."""

    value: T


OpBuilder = Callable[Concatenate["StateStore", P], Op[T] | _Known[T]]
"""A method that turns its arguments into an op (or an answer known without one)."""


def _sync(build: OpBuilder[P, T]) -> Callable[Concatenate[StateStore, P], T]:
    """The public method that runs what ``build`` makes of its arguments."""

    def method(self: StateStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        op = build(self, *args, **kwargs)
        return op.value if isinstance(op, _Known) else self.run(op)

    return functools.wraps(build)(method)


def _async(build: OpBuilder[P, T]) -> Callable[Concatenate[StateStore, P], Awaitable[T]]:
    """:func:`_sync` for async callers."""

    async def method(self: StateStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        op = build(self, *args, **kwargs)
        return op.value if isinstance(op, _Known) else await self.arun(op)

    return functools.wraps(build)(method)


class StateStore(abc.ABC):
    """Rate limits, circuit breakers, cost budgets, usage, in-flight counts and a cache.

    Every operation is atomic across every process sharing the store.
    Implementations provide :meth:`run`, :meth:`arun`, :meth:`clear` and the
    closing methods; see :class:`~pygent_lc.state.MemoryStore` and
    :class:`~pygent_lc.state.RedisStore`.
    """

    prefix: str
    """Prefix of every key this store writes."""

    def __init__(self, *, prefix: str = DEFAULT_PREFIX, clock: Clock = time.time) -> None:
        self.prefix = prefix
        self._clock = clock

    # -- what implementations provide -------------------------------------------------

    @abc.abstractmethod
    def run(self, op: Op[T]) -> T:
        """Run one atomic operation and return its result."""

    @abc.abstractmethod
    async def arun(self, op: Op[T]) -> T:
        """:meth:`run` for async callers."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget everything under this store's prefix (tests, benchmarks, a reset)."""

    @abc.abstractmethod
    async def aclear(self) -> None: ...

    def close(self) -> None:  # noqa: B027 - nothing to release in memory
        """Release connections; the store opens them again if used afterwards."""

    async def aclose(self) -> None:
        """Release the running event loop's connections (and the sync ones)."""
        self.close()

    # -- ops ---------------------------------------------------------------------------

    def _begin(self, plan: CallPlan, finish: Callable[[CallStart], T]) -> Op[T]:
        _check_plan(plan)
        request = Begin(
            plan=plan,
            now=self._clock(),
            probe_id=_probe_id(),
            members=tuple(_token() for _ in plan.rates),
            holds=tuple(_token() for _ in plan.budgets),
        )
        return make_op(BEGIN, request, finish)

    def _end(self, call: CallEnd, finish: Callable[[CallEnded], T]) -> Op[T]:
        _check_end(call)
        return make_op(END, End(call=call, now=self._clock()), finish)

    def _rate_op(self, key: str, limit: int, period_s: float) -> Op[float]:
        return self._begin(CallPlan(rates=(RateSpec(key, limit, period_s),)), _rate_wait)

    def _admit_op(self, key: str, threshold: int, cooldown_s: float) -> Op[BreakerAdmission]:
        return self._begin(
            CallPlan(breaker=BreakerSpec(key, threshold, cooldown_s)), _breaker_answer
        )

    def _outcome_op(self, outcome: BreakerOutcome) -> Op[bool]:
        return self._end(CallEnd(breaker=outcome), _changed)

    def _settle_op(self, reservation: BudgetReservation, cost_usd: float) -> Op[None]:
        return self._end(CallEnd(settlements=(Settlement(reservation, cost_usd),)), _nothing)

    def _budget_status_op(self, key: str, window_s: int | None) -> Op[BudgetStatus]:
        query = queries.BudgetQuery(key=key, window_s=window_s, now=self._clock())
        return make_op(queries.BUDGET_STATUS, query, same)

    def _breaker_status_op(self, key: str, cooldown_s: float) -> Op[BreakerStatus]:
        query = queries.BreakerQuery(key=key, cooldown_s=cooldown_s, now=self._clock())
        return make_op(queries.BREAKER_STATUS, query, same)

    def _enter_op(self, ticket: InflightTicket, lease_s: float) -> Op[int]:
        take = queries.TicketTake(ticket=ticket, lease_s=lease_s, now=self._clock())
        return make_op(queries.INFLIGHT_ENTER, take, same)

    def _exit_op(self, ticket: InflightTicket) -> Op[int]:
        back = queries.TicketReturn(ticket=ticket, now=self._clock())
        return make_op(queries.INFLIGHT_EXIT, back, same)

    def _count_op(self, keys: Sequence[str]) -> Op[list[int]]:
        count = queries.TicketCount(keys=tuple(keys), now=self._clock())
        return make_op(queries.INFLIGHT_COUNT, count, same)

    # -- a call's two steps ----------------------------------------------------------------

    def begin_call(self, plan: CallPlan) -> CallStart:
        """Budgets, breaker and rate limits of one call in one atomic step (all or nothing)."""
        return self.run(self._begin(plan, same))

    async def abegin_call(self, plan: CallPlan) -> CallStart:
        return await self.arun(self._begin(plan, same))

    def end_call(self, call: CallEnd) -> CallEnded:
        """Settle, record usage and report to the breaker in one atomic step."""
        return self.run(self._end(call, same))

    async def aend_call(self, call: CallEnd) -> CallEnded:
        return await self.arun(self._end(call, same))

    # -- rate limits --------------------------------------------------------------------------

    def take_rate_token(self, key: str, limit: int, period_s: float) -> float:
        """0.0 when a call may go now (its slot is taken), else seconds until a slot frees.

        At most ``limit`` calls are let through in any window of ``period_s``.
        """
        return self.run(self._rate_op(key, limit, period_s))

    async def atake_rate_token(self, key: str, limit: int, period_s: float) -> float:
        return await self.arun(self._rate_op(key, limit, period_s))

    # -- circuit breakers ---------------------------------------------------------------------

    def breaker_admit(self, key: str, threshold: int, cooldown_s: float) -> BreakerAdmission:
        """Whether a call may go; after a cooldown exactly one caller, fleet-wide, probes.

        A disabled breaker (threshold or cooldown 0) admits without asking the store.
        """
        if not BreakerSpec(key, threshold, cooldown_s).enabled:
            return ADMITTED
        return self.run(self._admit_op(key, threshold, cooldown_s))

    async def abreaker_admit(self, key: str, threshold: int, cooldown_s: float) -> BreakerAdmission:
        if not BreakerSpec(key, threshold, cooldown_s).enabled:
            return ADMITTED
        return await self.arun(self._admit_op(key, threshold, cooldown_s))

    def breaker_success(self, key: str, admission: BreakerAdmission) -> bool:
        """The provider answered: close and reset. True if the circuit was open."""
        return self.run(self._outcome_op(BreakerOutcome(key, admission, "success")))

    async def abreaker_success(self, key: str, admission: BreakerAdmission) -> bool:
        return await self.arun(self._outcome_op(BreakerOutcome(key, admission, "success")))

    def _failure_op(
        self,
        key: str,
        admission: BreakerAdmission,
        threshold: int,
        cooldown_s: float,
        error_summary: str,
    ) -> Op[bool] | _Known[bool]:
        """A counted failure (see :data:`pygent_lc.breaker.BREAKER_ERRORS`); True if it opened.

        Errors that prove the provider answered are a :meth:`breaker_success`.
        ``cooldown_s`` only says whether the breaker is enabled: the circuit
        stays open for the cooldown each admission asks with.
        """
        if not BreakerSpec(key, threshold, cooldown_s).enabled:
            return _Known(False)
        return self._outcome_op(BreakerOutcome(key, admission, "failure", threshold, error_summary))

    breaker_failure = _sync(_failure_op)
    abreaker_failure = _async(_failure_op)

    def breaker_release(self, key: str, admission: BreakerAdmission) -> None:
        """A call ended without an outcome: free the probe slot if it held it."""
        if admission.probe_id is not None:
            self.run(self._outcome_op(BreakerOutcome(key, admission, "release")))

    async def abreaker_release(self, key: str, admission: BreakerAdmission) -> None:
        if admission.probe_id is not None:
            await self.arun(self._outcome_op(BreakerOutcome(key, admission, "release")))

    def breaker_state(self, key: str, cooldown_s: float) -> BreakerStatus:
        """closed, open (cooling down) or half_open, with the failure count and last error."""
        return self.run(self._breaker_status_op(key, cooldown_s))

    async def abreaker_state(self, key: str, cooldown_s: float) -> BreakerStatus:
        return await self.arun(self._breaker_status_op(key, cooldown_s))

    # -- cost budgets -------------------------------------------------------------------------

    def _reserve_op(
        self,
        key: str,
        limit_usd: float,
        amount_usd: float | None = None,
        window_s: int | None = None,
        *,
        lease_s: float = DEFAULT_BUDGET_LEASE_S,
    ) -> Op[BudgetAnswer]:
        """Reserve a call's cost (its estimate, or the largest call's) or say why not.

        See :mod:`pygent_lc.state.ledger` for the rules; a
        :class:`~pygent_lc.state.types.BudgetRefusal` with ``wait`` asks to try again later.
        """
        spec = BudgetSpec(key, limit_usd, amount_usd, window_s, lease_s)
        return self._begin(CallPlan(budgets=(spec,)), _budget_answer)

    budget_reserve = _sync(_reserve_op)
    abudget_reserve = _async(_reserve_op)

    def budget_settle(self, reservation: BudgetReservation, cost_usd: float) -> None:
        """Give the reservation back and add the call's real cost to its window's spend."""
        self.run(self._settle_op(reservation, cost_usd))

    async def abudget_settle(self, reservation: BudgetReservation, cost_usd: float) -> None:
        await self.arun(self._settle_op(reservation, cost_usd))

    def budget_release(self, reservation: BudgetReservation) -> None:
        """Give the reservation back: the call failed before costing anything."""
        self.run(self._settle_op(reservation, 0.0))

    async def abudget_release(self, reservation: BudgetReservation) -> None:
        await self.arun(self._settle_op(reservation, 0.0))

    def budget_status(self, key: str, window_s: int | None = None) -> BudgetStatus:
        """The current window's spend, reservations, calls in flight and largest call."""
        return self.run(self._budget_status_op(key, window_s))

    async def abudget_status(self, key: str, window_s: int | None = None) -> BudgetStatus:
        return await self.arun(self._budget_status_op(key, window_s))

    def budget_spent(self, key: str, window_s: int | None = None) -> float:
        """What the current window of ``key`` has spent."""
        return self.run(self._budget_status_op(key, window_s)).spent_usd

    async def abudget_spent(self, key: str, window_s: int | None = None) -> float:
        return (await self.arun(self._budget_status_op(key, window_s))).spent_usd

    # -- usage -------------------------------------------------------------------------------

    def _usage_op(
        self,
        provider: str,
        model: str,
        calls: int,
        failures: int,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        latency_s: float,
        cached_input_tokens: int = 0,
        cache_discount_usd: float = 0.0,
        cost_faults: int = 0,
    ) -> Op[None]:
        """Add one request's usage to its (provider, model) totals (one round trip)."""
        usage = UsageRecord(
            provider=provider, model=model, calls=calls, failures=failures,
            input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost_usd,
            cached_input_tokens=cached_input_tokens, cache_discount_usd=cache_discount_usd,
            cost_faults=cost_faults, latency_s=latency_s,
        )  # fmt: skip
        return self._end(CallEnd(usage=usage), _nothing)

    record_usage = _sync(_usage_op)
    arecord_usage = _async(_usage_op)

    def usage_rows(self) -> list[UsageRow]:
        """Totals per (provider, model), sorted, with mean and p95 latency."""
        return self.run(make_op(queries.USAGE_ROWS, queries.UsageQuery(), same))

    async def ausage_rows(self) -> list[UsageRow]:
        return await self.arun(make_op(queries.USAGE_ROWS, queries.UsageQuery(), same))

    # -- in-flight counts ------------------------------------------------------------------------

    def inflight_enter(
        self, key: str, lease_s: float = DEFAULT_INFLIGHT_LEASE_S
    ) -> tuple[InflightTicket, int]:
        """Count one call on ``key`` until :meth:`inflight_exit`; the count including it.

        See :mod:`pygent_lc.state.inflight` for why a ticket with a lease.
        """
        ticket = InflightTicket(key=key, ticket_id=_token())
        return ticket, self.run(self._enter_op(ticket, lease_s))

    async def ainflight_enter(
        self, key: str, lease_s: float = DEFAULT_INFLIGHT_LEASE_S
    ) -> tuple[InflightTicket, int]:
        ticket = InflightTicket(key=key, ticket_id=_token())
        return ticket, await self.arun(self._enter_op(ticket, lease_s))

    def inflight_exit(self, ticket: InflightTicket) -> int:
        """The call ended: stop counting it; the count left on its key."""
        return self.run(self._exit_op(ticket))

    async def ainflight_exit(self, ticket: InflightTicket) -> int:
        return await self.arun(self._exit_op(ticket))

    def inflight_get(self, keys: Sequence[str]) -> list[int]:
        """The calls in flight on each key, in one round trip."""
        return self.run(self._count_op(keys))

    async def ainflight_get(self, keys: Sequence[str]) -> list[int]:
        return await self.arun(self._count_op(keys))

    # -- cache -----------------------------------------------------------------------------------

    def cache_get(self, namespace: str, key: str) -> str | None:
        return self.run(make_op(queries.CACHE_GET, queries.CacheRead(namespace, key), same))

    async def acache_get(self, namespace: str, key: str) -> str | None:
        return await self.arun(make_op(queries.CACHE_GET, queries.CacheRead(namespace, key), same))

    def cache_set(self, namespace: str, key: str, value: str) -> None:
        self.run(make_op(queries.CACHE_SET, queries.CacheWrite(namespace, key, value), same))

    async def acache_set(self, namespace: str, key: str, value: str) -> None:
        await self.arun(make_op(queries.CACHE_SET, queries.CacheWrite(namespace, key, value), same))


__all__ = ["DEFAULT_PREFIX", "Clock", "StateStore"]
