"""The two steps around a provider call: ``begin`` (budgets, breaker, rate limits) and ``end``.

Every state change a call makes is one of these two scripts, so a call costs
at most two round trips to Redis however many limits apply; the single
operations (``take_rate_token``, ``breaker_admit``, ``budget_settle`` ...)
are these scripts with one part filled in. ``begin`` checks everything
before it changes anything, so a refused call takes nothing; it only writes
one key first (:func:`writable_key`), so that a Redis that takes no writes
says so before the provider is called, not after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pygent_lc.state import circuit, ledger, rate, usage_log
from pygent_lc.state.memory_state import MemoryState
from pygent_lc.state.op import (
    LUA_PRELUDE,
    Arg,
    Encoded,
    Script,
    Timed,
    json_rows,
    number,
    rows,
    text,
)
from pygent_lc.state.types import (
    ADMITTED,
    BudgetRefusal,
    BudgetReservation,
    CallEnd,
    CallEnded,
    CallPlan,
    CallStart,
    Refusal,
)

MIN_RATE_WAIT_S = 1e-6
"""A refusal never says "retry in 0 s" (rounding could make the computed wait 0)."""

WRITABLE_TTL_MS = 60_000
"""How long the key ``begin`` writes first lives (it only proves that Redis takes writes)."""


def writable_key(prefix: str) -> str:
    """The key ``begin`` writes before anything else.

    A read-only replica or a Redis out of memory refuses that write, so the step before a
    provider call fails whatever the plan (a closed breaker, say, only reads), and the
    call goes on under per-process limits instead of failing after it was paid for.
    """
    return f"{prefix}writable"


@dataclass(frozen=True, slots=True)
class Begin(Timed):
    """A :class:`CallPlan` with the time and the ids the client chose for it."""

    plan: CallPlan
    probe_id: int
    members: tuple[str, ...]
    """One rate-log entry name per rate limit."""
    holds: tuple[str, ...]
    """One hold id per budget."""


@dataclass(frozen=True, slots=True)
class End(Timed):
    """A :class:`CallEnd` at a time."""

    call: CallEnd


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What ``begin`` found, before it is turned into a :class:`CallStart`."""

    status: str
    now: float
    """The time the step ran at (see :mod:`pygent_lc.state.rate`)."""
    budgets: Sequence[tuple[str, float, float, float]]
    breaker: tuple[str, float, int, str] | None
    rate_wait: float = 0.0
    rate_index: int = 0


_STEP_ARGS = """
local now = tonumber(ARGV[1])
local a, k = 3, 1"""
"""How both steps start: ``now`` is ``ARGV[1]``; the cursors ``a`` (into ``ARGV``, at the
first part's count) and ``k`` (into ``KEYS``) then walk the parts in order."""


def _step_script(*libraries: str, body: str) -> str:
    """A step's Lua: the prelude, the ``libraries`` it calls, the time and cursors, ``body``."""
    return LUA_PRELUDE + "".join(libraries) + _STEP_ARGS + body


BEGIN_LUA = _step_script(
    ledger.LEDGER_LUA,
    circuit.BREAKER_LUA,
    rate.RATE_LUA,
    body="""
redis.call('SET', KEYS[#KEYS], ARGV[1], 'PX', ARGV[#ARGV])
local rates = {}
for i = 1, tonumber(ARGV[2]) do
  rates[i] = {key = KEYS[k], clock = KEYS[k + 1], limit = tonumber(ARGV[a]),
              period = tonumber(ARGV[a + 1]), member = ARGV[a + 2]}
  now = math.max(now, rate_time(KEYS[k + 1], now))
  k = k + 2
  a = a + 3
end
local t = fmt(now)
local budgets, budget_out = {}, {}
local count = tonumber(ARGV[a])
a = a + 1
for i = 1, count do
  local b = {h = KEYS[k], z = KEYS[k + 1], m = KEYS[k + 2], limit = tonumber(ARGV[a]),
             amount = tonumber(ARGV[a + 1]), id = ARGV[a + 2], lease = tonumber(ARGV[a + 3]),
             ttl = tonumber(ARGV[a + 4])}
  k = k + 3
  a = a + 5
  local verdict, spent, reserved, unit = ledger_check(b.h, b.z, b.m, now, b.limit, b.amount)
  budget_out[i] = {verdict, fmt(spent), fmt(reserved), fmt(unit)}
  if verdict ~= 'ok' then
    return reply({verdict == 'wait' and 'budget_wait' or 'budget', budget_out, {}, '0', 0, t})
  end
  b.unit = unit
  b.reserved = reserved
  budgets[i] = b
end
local breaker, breaker_out = nil, {}
if ARGV[a] == '1' then
  breaker = {key = KEYS[k], probe_id = ARGV[a + 2]}
  local verdict, retry_in, failures, err = breaker_check(breaker.key, now, tonumber(ARGV[a + 1]))
  breaker.verdict = verdict
  breaker_out = {verdict, fmt(retry_in), failures, err}
  if verdict == 'open' or verdict == 'probing' then
    return reply({'breaker', budget_out, breaker_out, '0', 0, t})
  end
end
for i, r in ipairs(rates) do
  local free, wait = rate_check(r.key, r.clock, now, r.limit, r.period)
  if not free then return reply({'rate', budget_out, breaker_out, fmt(wait), i, t}) end
end
for _, b in ipairs(budgets) do
  ledger_commit(b.h, b.z, now, b.id, b.unit, b.amount == nil, b.reserved,
                b.lease, b.ttl)
end
if breaker and breaker.verdict == 'probe' then
  breaker_take_probe(breaker.key, now, breaker.probe_id)
end
for _, r in ipairs(rates) do rate_commit(r.key, now, r.period, r.member) end
return reply({'ok', budget_out, breaker_out, '0', 0, t})
""",
)

END_LUA = _step_script(
    ledger.LEDGER_LUA,
    usage_log.USAGE_LUA,
    circuit.BREAKER_LUA,
    body="""
for i = 1, tonumber(ARGV[2]) do
  ledger_settle(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[a], tonumber(ARGV[a + 1]),
                tonumber(ARGV[a + 2]))
  k = k + 3
  a = a + 3
end
if ARGV[a] == '1' then
  local values = {}
  for i = 1, #USAGE_FIELDS do values[i] = tonumber(ARGV[a + 2 + i]) end
  usage_record(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[a + 1], ARGV[a + 2], values,
               tonumber(ARGV[a + 3 + #USAGE_FIELDS]))
  k = k + 3
  a = a + 4 + #USAGE_FIELDS
else
  a = a + 1
end
local mode = ARGV[a]
if mode == 'success' then return {breaker_success(KEYS[k]), 0} end
if mode == 'failure' then
  local opened, failures = breaker_failure(KEYS[k], now, tonumber(ARGV[a + 1]), ARGV[a + 2],
                                           ARGV[a + 3])
  return {opened, failures}
end
if mode == 'release' then breaker_release(KEYS[k], ARGV[a + 2]) end
return {0, 0}
""",
)


def _encode_begin(request: Begin, prefix: str) -> Encoded:
    plan = request.plan
    keys: list[str] = []
    args: list[Arg] = [request.now, len(plan.rates)]
    for limit, member in zip(plan.rates, request.members, strict=True):
        keys += [rate.rate_key(prefix, limit.key), rate.clock_key(prefix, limit.key)]
        args += [limit.limit, limit.period_s, member]
    args.append(len(plan.budgets))
    for spec, hold in zip(plan.budgets, request.holds, strict=True):
        where = ledger.ledger_keys(
            prefix, spec.key, spec.window_s, ledger.bucket_of(request.now, spec.window_s)
        )
        keys += [where.bucket, where.holds, where.largest]
        amount: Arg = "" if spec.amount_usd is None else spec.amount_usd
        args += [spec.limit_usd, amount, hold, spec.lease_s, where.ttl_ms]
    breaker = plan.breaker
    if breaker is not None and breaker.enabled:
        keys.append(circuit.breaker_key(prefix, breaker.key))
        args += [1, breaker.cooldown_s, request.probe_id]
    else:
        args.append(0)
    keys.append(writable_key(prefix))
    args.append(WRITABLE_TTL_MS)
    return Encoded(keys=keys, args=args)


def _decode_begin(request: Begin, reply: Any) -> CallStart:
    status, budgets, breaker, wait, index, now = json_rows(reply)
    return _start(
        request,
        _Verdict(
            status=str(status),
            now=number(now),
            budgets=[(str(b[0]), number(b[1]), number(b[2]), number(b[3])) for b in rows(budgets)],
            breaker=(
                None
                if not rows(breaker)
                else (str(breaker[0]), number(breaker[1]), int(breaker[2]), text(breaker[3]) or "")
            ),
            rate_wait=number(wait),
            rate_index=int(index),
        ),
    )


def _local_begin(state: MemoryState, request: Begin) -> CallStart:
    plan, now = request.plan, request.now
    for limit in plan.rates:
        now = max(now, rate.time_of(state.rates, limit.key, now))
    budget_out: list[tuple[str, float, float, float]] = []
    pending: list[tuple[ledger.LedgerBucket, float, bool, float, float]] = []
    for spec in plan.budgets:
        # The bucket is the one the client's time falls in, as the Redis keys are.
        where = ledger.bucket_of(request.now, spec.window_s)
        bucket = state.ledgers.bucket(spec.key, spec.window_s, where)
        largest = state.ledgers.largest.get(spec.key, 0.0)
        verdict = ledger.check(bucket, largest, now, spec.limit_usd, spec.amount_usd)
        budget_out.append(verdict)
        found, _, reserved, unit = verdict
        if found != "ok":
            status = "budget_wait" if found == "wait" else "budget"
            return _start(request, _Verdict(status, now, budget_out, None))
        unknown = spec.amount_usd is None
        pending.append((bucket, unit, unknown, reserved, spec.lease_s))
    breaker_out: tuple[str, float, int, str] | None = None
    breaker = plan.breaker
    if breaker is not None and breaker.enabled:
        breaker_out = circuit.check(state.breakers, breaker.key, now, breaker.cooldown_s)
        if breaker_out[0] in ("open", "probing"):
            return _start(request, _Verdict("breaker", now, budget_out, breaker_out))
    for index, limit in enumerate(plan.rates, start=1):
        free, wait = rate.check(state.rates, limit.key, now, limit.limit, limit.period_s)
        if not free:
            return _start(request, _Verdict("rate", now, budget_out, breaker_out, wait, index))
    for (bucket, unit, unknown, reserved, lease), hold in zip(pending, request.holds, strict=True):
        ledger.commit(bucket, now, hold, unit, unknown, reserved, lease)
    if breaker is not None and breaker_out is not None and breaker_out[0] == "probe":
        circuit.take_probe(state.breakers, breaker.key, now, str(request.probe_id))
    for limit in plan.rates:
        rate.commit(state.rates, limit.key, now)
    return _start(request, _Verdict("ok", now, budget_out, breaker_out))


def _start(request: Begin, verdict: _Verdict) -> CallStart:
    """The :class:`CallStart` of ``begin``'s verdict (the same for both stores)."""
    plan, now = request.plan, request.now
    admission = ADMITTED
    if verdict.breaker is not None:
        found, retry_in, failures, error = verdict.breaker
        admission = circuit.admission(found, retry_in, failures, error, request.probe_id)
    if verdict.status in ("budget", "budget_wait"):
        spec = plan.budgets[len(verdict.budgets) - 1]
        _, spent, reserved, unit = verdict.budgets[-1]
        refusal = BudgetRefusal(
            key=spec.key,
            limit_usd=spec.limit_usd,
            spent_usd=spent,
            reserved_usd=reserved,
            amount_usd=unit,
            wait=verdict.status == "budget_wait",
        )
        refused_by: Refusal = "budget_wait" if refusal.wait else "budget"
        return CallStart(
            allowed=False, refused_by=refused_by, budget_refusal=refusal, now=verdict.now
        )
    if verdict.status == "breaker":
        return CallStart(allowed=False, refused_by="breaker", breaker=admission, now=verdict.now)
    if verdict.status == "rate":
        return CallStart(
            allowed=False,
            refused_by="rate",
            rate_wait_s=max(verdict.rate_wait, MIN_RATE_WAIT_S),
            rate_key=plan.rates[verdict.rate_index - 1].key,
            now=verdict.now,
        )
    reservations = tuple(
        BudgetReservation(
            key=spec.key,
            window_s=spec.window_s,
            bucket=ledger.bucket_of(now, spec.window_s),
            hold_id=hold,
            amount_usd=unit,
            unknown_cost=spec.amount_usd is None,
            spent_usd=spent,
            reserved_usd=reserved,
        )
        for spec, hold, (_, spent, reserved, unit) in zip(
            plan.budgets, request.holds, verdict.budgets, strict=True
        )
    )
    return CallStart(allowed=True, breaker=admission, reservations=reservations, now=verdict.now)


def _encode_end(request: End, prefix: str) -> Encoded:
    call = request.call
    keys: list[str] = []
    args: list[Arg] = [request.now, len(call.settlements)]
    for settlement in call.settlements:
        held = settlement.reservation
        where = ledger.ledger_keys(prefix, held.key, held.window_s, held.bucket)
        keys += [where.bucket, where.holds, where.largest]
        args += [held.hold_id, settlement.cost_usd, where.ttl_ms]
    usage = call.usage
    if usage is not None:
        where_used = usage_log.usage_keys(prefix, usage.provider, usage.model)
        keys += [where_used.totals, where_used.latencies, where_used.index]
        args += [1, usage.provider, usage.model, *usage_log.values(usage)]
        args.append(usage_log.LATENCY_SAMPLES)
    else:
        args.append(0)
    outcome = call.breaker
    if outcome is not None:
        keys.append(circuit.breaker_key(prefix, outcome.key))
        probe = outcome.admission.probe_id
        args += [
            outcome.kind,
            outcome.threshold,
            "" if probe is None else probe,
            circuit.summary(outcome.error_summary),
        ]
    else:
        args.append("")
    return Encoded(keys=keys, args=args)


def _decode_end(request: End, reply: Any) -> CallEnded:
    changed, failures = rows(reply)
    return CallEnded(breaker_changed=bool(changed), failures=int(failures))


def _local_end(state: MemoryState, request: End) -> CallEnded:
    call = request.call
    for settlement in call.settlements:
        held = settlement.reservation
        bucket = state.ledgers.bucket(held.key, held.window_s, held.bucket)
        ledger.settle(state.ledgers, held.key, bucket, held.hold_id, settlement.cost_usd)
    if call.usage is not None:
        usage_log.record(state.usage, call.usage)
    outcome = call.breaker
    if outcome is None:
        return CallEnded()
    key = outcome.key
    probe = outcome.admission.probe_id
    probe_id = "" if probe is None else str(probe)
    if outcome.kind == "success":
        return CallEnded(breaker_changed=circuit.success(state.breakers, key))
    if outcome.kind == "failure":
        opened, failures = circuit.failure(
            state.breakers,
            key,
            request.now,
            outcome.threshold,
            probe_id,
            circuit.summary(outcome.error_summary),
        )
        return CallEnded(breaker_changed=opened, failures=failures)
    circuit.release(state.breakers, key, probe_id)
    return CallEnded()


BEGIN: Script[Begin, CallStart] = Script(
    name="begin", lua=BEGIN_LUA, encode=_encode_begin, decode=_decode_begin, local=_local_begin
)
"""Check budgets, the breaker and rate limits; take them all, or nothing."""

END: Script[End, CallEnded] = Script(
    name="end",
    lua=END_LUA,
    encode=_encode_end,
    decode=_decode_end,
    local=_local_end,
    after_call=True,
)
"""Settle reservations, record usage, tell the breaker how the call ended."""


__all__ = ["BEGIN", "END", "MIN_RATE_WAIT_S", "WRITABLE_TTL_MS", "Begin", "End", "writable_key"]
