"""One limit at a time, through a store's public steps (``begin_call``, ``end_call``,
and the limits' read steps): what the tests of a single limit ask a store."""

from __future__ import annotations

from typing import Any

from pygent_lc.backend import UsageTotals
from pygent_lc.limits import RateSpec, StateStore
from pygent_lc.limits.breaker import (
    ADMITTED,
    BreakerAdmission,
    BreakerOutcome,
    BreakerSpec,
    BreakerStatus,
    CircuitBreaker,
    ReadStatus,
)
from pygent_lc.limits.budget import (
    DEFAULT_BUDGET_LEASE_S,
    BudgetRefusal,
    BudgetReservation,
    BudgetSpec,
    BudgetStatus,
    ReadBudget,
)
from pygent_lc.limits.call import CallEnd, CallPlan, CallStart, Settlement
from pygent_lc.limits.usage import CallMeter
from pygent_lc.tot.value_store import CacheGet, CacheSet


def _budget_answer(start: CallStart) -> BudgetReservation | BudgetRefusal:
    return start.budget_refusal if start.budget_refusal is not None else start.reservations[0]


def breaker_admit(
    store: StateStore, key: str, threshold: int, cooldown_s: float
) -> BreakerAdmission:
    spec = BreakerSpec(key, threshold, cooldown_s)
    return (
        store.begin_call(CallPlan(breaker=spec)).breaker or ADMITTED if spec.enabled else ADMITTED
    )


async def abreaker_admit(store: Any, key: Any, threshold: Any, cooldown_s: Any) -> Any:
    spec = BreakerSpec(key, threshold, cooldown_s)
    if not spec.enabled:
        return ADMITTED
    return (await store.abegin_call(CallPlan(breaker=spec))).breaker or ADMITTED


def breaker_success(store: StateStore, key: str, admission: BreakerAdmission) -> bool:
    outcome = BreakerOutcome(key, admission, "success")
    return store.end_call(CallEnd(breaker=outcome))


async def abreaker_success(store: Any, key: Any, admission: Any) -> Any:
    outcome = BreakerOutcome(key, admission, "success")
    return await store.aend_call(CallEnd(breaker=outcome))


def breaker_failure(
    store: Any, key: Any, admission: Any, threshold: Any, cooldown_s: Any, error_summary: Any = ""
) -> Any:
    if not BreakerSpec(key, threshold, cooldown_s).enabled:
        return False
    outcome = BreakerOutcome(key, admission, "failure", threshold, error_summary)
    return store.end_call(CallEnd(breaker=outcome))


async def abreaker_failure(
    store: Any, key: Any, admission: Any, threshold: Any, cooldown_s: Any, error_summary: Any = ""
) -> Any:
    if not BreakerSpec(key, threshold, cooldown_s).enabled:
        return False
    outcome = BreakerOutcome(key, admission, "failure", threshold, error_summary)
    return await store.aend_call(CallEnd(breaker=outcome))


def breaker_release(store: Any, key: Any, admission: Any) -> Any:
    if admission.probe_id is not None:
        store.end_call(CallEnd(breaker=BreakerOutcome(key, admission, "release")))


async def abreaker_release(store: Any, key: Any, admission: Any) -> Any:
    if admission.probe_id is not None:
        await store.aend_call(CallEnd(breaker=BreakerOutcome(key, admission, "release")))


def breaker_state(store: StateStore, key: str, cooldown_s: float) -> BreakerStatus:
    return store.run(ReadStatus(key, cooldown_s, store.clock()))


async def abreaker_state(store: Any, key: Any, cooldown_s: Any) -> Any:
    return await store.arun(ReadStatus(key, cooldown_s, store.clock()))


def budget_reserve(
    store: Any,
    key: Any,
    limit_usd: Any,
    amount_usd: Any = None,
    window_s: Any = None,
    *,
    lease_s: Any = DEFAULT_BUDGET_LEASE_S,
) -> Any:
    spec = BudgetSpec(key, limit_usd, amount_usd, window_s, lease_s)
    return _budget_answer(store.begin_call(CallPlan(budgets=(spec,))))


async def abudget_reserve(
    store: Any,
    key: Any,
    limit_usd: Any,
    amount_usd: Any = None,
    window_s: Any = None,
    *,
    lease_s: Any = DEFAULT_BUDGET_LEASE_S,
) -> Any:
    spec = BudgetSpec(key, limit_usd, amount_usd, window_s, lease_s)
    return _budget_answer(await store.abegin_call(CallPlan(budgets=(spec,))))


def budget_settle(store: StateStore, reservation: BudgetReservation, cost_usd: float) -> None:
    store.end_call(CallEnd(settlements=(Settlement(reservation, cost_usd),)))


async def abudget_settle(store: Any, reservation: Any, cost_usd: Any) -> Any:
    await store.aend_call(CallEnd(settlements=(Settlement(reservation, cost_usd),)))


def budget_release(store: Any, reservation: Any) -> Any:
    budget_settle(store, reservation, 0.0)


async def abudget_release(store: Any, reservation: Any) -> Any:
    await abudget_settle(store, reservation, 0.0)


def budget_status(store: StateStore, key: str, window_s: int | None = None) -> BudgetStatus:
    return store.run(ReadBudget(key, window_s, store.clock()))


async def abudget_status(store: Any, key: Any, window_s: Any = None) -> Any:
    return await store.arun(ReadBudget(key, window_s, store.clock()))


def budget_spent(store: StateStore, key: str, window_s: int | None = None) -> float:
    return budget_status(store, key, window_s).spent_usd


async def abudget_spent(store: Any, key: Any, window_s: Any = None) -> Any:
    return (await abudget_status(store, key, window_s)).spent_usd


def rate_take(store: StateStore, key: str, limit: int, period_s: float) -> float:
    """A slot of one rate limit: 0.0 when taken, else seconds until one frees."""
    start = store.begin_call(CallPlan(rates=(RateSpec(key, limit, period_s),)))
    return 0.0 if start.allowed else start.rate_wait_s


async def arate_take(store: StateStore, key: str, limit: int, period_s: float) -> float:
    start = await store.abegin_call(CallPlan(rates=(RateSpec(key, limit, period_s),)))
    return 0.0 if start.allowed else start.rate_wait_s


def _usage(
    provider: Any,
    model: Any,
    calls: Any,
    failures: Any,
    input_tokens: Any,
    output_tokens: Any,
    cost_usd: Any,
    latency_s: Any,
    cached_input_tokens: Any = 0,
    cache_discount_usd: Any = 0.0,
    cost_faults: Any = 0,
) -> Any:
    used = UsageTotals(
        calls=calls, failures=failures, input_tokens=input_tokens, output_tokens=output_tokens,
        cost_usd=cost_usd, cached_input_tokens=cached_input_tokens,
        cache_discount_usd=cache_discount_usd, cost_faults=cost_faults,
    )  # fmt: skip
    return CallMeter(provider, model, used, latency_s)


def record_usage(store: Any, *args: Any, **kwargs: Any) -> Any:
    store.end_call(CallEnd(usage=_usage(*args, **kwargs)))


async def arecord_usage(store: Any, *args: Any, **kwargs: Any) -> Any:
    await store.aend_call(CallEnd(usage=_usage(*args, **kwargs)))


async def ausage_rows(store: Any) -> Any:
    from pygent_lc.limits.usage import UsageRows

    return await store.arun(UsageRows())


def cache_get(store: Any, namespace: Any, key: Any) -> Any:
    return store.run(CacheGet(namespace, key))


async def acache_get(store: Any, namespace: Any, key: Any) -> Any:
    return await store.arun(CacheGet(namespace, key))


def cache_set(store: Any, namespace: Any, key: Any, value: Any) -> Any:
    store.run(CacheSet(namespace, key, value))


async def acache_set(store: Any, namespace: Any, key: Any, value: Any) -> Any:
    await store.arun(CacheSet(namespace, key, value))


def admit(circuit: CircuitBreaker) -> BreakerAdmission:
    """What a policy's step before a call asks of ``circuit``."""
    return breaker_admit(circuit.store, circuit.key, circuit.failure_threshold, circuit.cooldown)


def record(
    circuit: CircuitBreaker, admission: BreakerAdmission, error: BaseException | None
) -> None:
    """What a policy's step after a call tells ``circuit`` (``error`` None: it answered)."""
    outcome = circuit.outcome(admission, error)
    if outcome is not None:
        circuit.store.end_call(CallEnd(breaker=outcome))


def release(circuit: CircuitBreaker, admission: BreakerAdmission) -> None:
    """A call ended without an outcome (cancelled, a bug): its probe slot is freed."""
    if circuit.enabled:
        breaker_release(circuit.store, circuit.key, admission)
