"""Cost budgets: spending limits checked before each call.

Cost budgets: spend, reservations of calls in flight, and the largest call, per key and window.

The rules are :class:`pygent_lc.limits.budget.CostBudget`'s, made fleet-wide. A
call reserves an amount before it runs and settles with its real cost after:

* with a bound (the most the call can cost), it reserves the bound and goes
  only if spend, the reservations and the bound stay within the limit;
* without one (its cost is unknown until it ends), it reserves the largest
  cost of one call seen so far on the key and goes while spend plus
  reservations is under the limit, and only while no other call without a
  bound is in flight: those run one at a time (the others are told to wait).
  A cheap first call so says nothing about how many dear calls may start.

Each call admitted saw spend plus reservations within the limit, calls with
a bound cost at most their bound, and at most one call without a bound is in
flight, so spend stays within the limit plus the cost of one call without a
bound (within the limit itself when every call has a bound), however many
processes share the budget. A call that costs more than its bound passes the
limit by that excess.

Per key and window bucket (``floor(now / window_s)``; one bucket ``all``
without a window) Redis holds a hash ``H`` (``s`` spent, ``r`` reserved,
``u`` the hold without a bound, ``h:<id>`` each hold's amount) and a sorted
set ``Z`` of holds scored by the end of their lease; ``M`` holds the key's
largest call cost, across windows. A process that dies holding a
reservation would hold it for ever; the lease (default 15 min) bounds that:
expired holds are dropped before every check. Window buckets expire two
windows after their last write.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from pygent_lc.errors import BudgetExceededError, ConfigurationError, InvalidInputError
from pygent_lc.limits.script import LUA_PRELUDE, Arg, MemoryState, Step, number, rows
from pygent_lc.limits.store import MemoryStore, StateStore

DEFAULT_BUDGET_LEASE_S = 900.0
"""How long a budget reservation outlives a process that died holding it.

A call that runs longer than this loses its reservation early (its cost is
still added when it settles), so it should be longer than any call's timeout
with its retries and fallbacks.
"""


@dataclass(frozen=True, slots=True)
class BudgetReservation:
    """A call's hold on a budget; give it back with :class:`Settle`.

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


LEDGER_LUA = """
local function ledger_purge(h, z, now)
  local stale = redis.call('ZRANGEBYSCORE', z, '-inf', fmt(now))
  if #stale == 0 then return end
  local reserved = tonumber(redis.call('HGET', h, 'r')) or 0
  local unknown = redis.call('HGET', h, 'u')
  for _, id in ipairs(stale) do
    reserved = reserved - (tonumber(redis.call('HGET', h, 'h:' .. id)) or 0)
    redis.call('HDEL', h, 'h:' .. id)
    if unknown == id then redis.call('HDEL', h, 'u') end
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', fmt(now))
  if reserved < 0 or redis.call('ZCARD', z) == 0 then reserved = 0 end
  redis.call('HSET', h, 'r', fmt(reserved))
end

local function ledger_check(h, z, m, now, limit, amount)
  ledger_purge(h, z, now)
  local v = redis.call('HMGET', h, 's', 'r', 'u')
  local spent = tonumber(v[1]) or 0
  local reserved = tonumber(v[2]) or 0
  local unit = amount
  if amount == nil then
    unit = tonumber(redis.call('GET', m)) or 0
    if v[3] then return 'wait', spent, reserved, unit end
  end
  local committed = spent + reserved
  if committed >= limit or (amount ~= nil and committed + unit > limit) then
    return 'refused', spent, reserved, unit
  end
  return 'ok', spent, reserved, unit
end

local function ledger_commit(h, z, now, id, unit, unknown, reserved, lease, ttl)
  redis.call('ZADD', z, fmt(now + lease), id)
  redis.call('HSET', h, 'h:' .. id, fmt(unit), 'r', fmt(reserved + unit))
  if unknown then redis.call('HSET', h, 'u', id) end
  if ttl > 0 then
    redis.call('PEXPIRE', h, ttl)
    redis.call('PEXPIRE', z, ttl)
  end
end

local function ledger_settle(h, z, m, id, cost, ttl)
  if redis.call('ZREM', z, id) == 1 then
    local v = redis.call('HMGET', h, 'h:' .. id, 'r', 'u')
    local reserved = (tonumber(v[2]) or 0) - (tonumber(v[1]) or 0)
    if reserved < 0 or redis.call('ZCARD', z) == 0 then reserved = 0 end
    redis.call('HDEL', h, 'h:' .. id)
    redis.call('HSET', h, 'r', fmt(reserved))
    if v[3] == id then redis.call('HDEL', h, 'u') end
  end
  if cost > 0 then
    redis.call('HSET', h, 's', fmt((tonumber(redis.call('HGET', h, 's')) or 0) + cost))
    if cost > (tonumber(redis.call('GET', m)) or 0) then redis.call('SET', m, fmt(cost)) end
  end
  if ttl > 0 and redis.call('EXISTS', h) == 1 then
    redis.call('PEXPIRE', h, ttl)
  end
end
"""
"""``ledger_check`` answers ``ok``, ``wait`` or ``refused`` with spent, reserved and the amount."""


@dataclass(frozen=True, slots=True)
class LedgerKeys:
    """Where one budget bucket lives in Redis."""

    bucket: str
    holds: str
    largest: str
    ttl_ms: int


def bucket_of(now: float, window_s: int | None) -> int:
    """The window a time falls in (0 without a window)."""
    return 0 if window_s is None else math.floor(now / window_s)


def ledger_keys(prefix: str, key: str, window_s: int | None, bucket: int) -> LedgerKeys:
    base = f"{prefix}bg:{key}"
    tag = "all" if window_s is None else f"{int(window_s)}:{bucket}"
    return LedgerKeys(
        bucket=f"{base}:{tag}",
        holds=f"{base}:{tag}:holds",
        largest=f"{base}:largest",
        ttl_ms=0 if window_s is None else int(2 * window_s * 1000),
    )


@dataclass
class LedgerBucket:
    """The in-process twin of one bucket's hash and holds (``id -> (amount, lease end)``)."""

    spent: float = 0.0
    reserved: float = 0.0
    unknown: str | None = None
    holds: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class Ledgers:
    """Every budget of a :class:`~pygent_lc.limits.store.MemoryStore`."""

    buckets: dict[tuple[str, int | None], dict[int, LedgerBucket]] = field(default_factory=dict)
    largest: dict[str, float] = field(default_factory=dict)

    def bucket(self, key: str, window_s: int | None, bucket: int) -> LedgerBucket:
        """The bucket, made if new; buckets two or more windows old are dropped (Redis's TTL)."""
        windows = self.buckets.setdefault((key, window_s), {})
        found = windows.get(bucket)
        if found is None:
            for old in [b for b in windows if b < bucket - 1]:
                del windows[old]
            found = windows[bucket] = LedgerBucket()
        return found


def purge(b: LedgerBucket, now: float) -> None:
    """``ledger_purge``: drop the holds whose lease ended (their process died)."""
    stale = sorted((deadline, hold) for hold, (_, deadline) in b.holds.items() if deadline <= now)
    if not stale:
        return
    reserved = b.reserved
    for _, hold in stale:
        reserved = reserved - b.holds.pop(hold)[0]
        if b.unknown == hold:
            b.unknown = None
    b.reserved = 0.0 if reserved < 0 or not b.holds else reserved


def check(
    b: LedgerBucket, largest: float, now: float, limit: float, amount: float | None
) -> tuple[str, float, float, float]:
    """``ledger_check``: ``ok``, ``wait`` or ``refused``, with spent, reserved and the amount."""
    purge(b, now)
    unit = amount
    if unit is None:
        unit = largest
        if b.unknown is not None:
            return "wait", b.spent, b.reserved, unit
    committed = b.spent + b.reserved
    if committed >= limit or (amount is not None and committed + unit > limit):
        return "refused", b.spent, b.reserved, unit
    return "ok", b.spent, b.reserved, unit


def commit(
    b: LedgerBucket,
    now: float,
    hold: str,
    unit: float,
    unknown: bool,
    reserved: float,
    lease: float,
) -> None:
    b.holds[hold] = (unit, now + lease)
    b.reserved = reserved + unit
    if unknown:
        b.unknown = hold


def settle(ledgers: Ledgers, key: str, b: LedgerBucket, hold: str, cost: float) -> None:
    """``ledger_settle``: give the hold back, add the cost, raise the largest call cost."""
    held = b.holds.pop(hold, None)
    if held is not None:
        reserved = b.reserved - held[0]
        b.reserved = 0.0 if reserved < 0 or not b.holds else reserved
        if b.unknown == hold:
            b.unknown = None
    if cost > 0:
        b.spent = b.spent + cost
        if cost > ledgers.largest.get(key, 0.0):
            ledgers.largest[key] = cost


def check_spec(spec: BudgetSpec) -> None:
    """``ConfigurationError`` for a window under 1 s, or a limit or bound that is no amount."""
    if spec.window_s is not None and spec.window_s < 1:
        raise ConfigurationError(
            f"budget window of {spec.key!r} must be >= 1 s, got {spec.window_s}",
            field="budget_window",
        )
    if not spec.limit_usd >= 0:
        raise ConfigurationError(
            f"budget limit of {spec.key!r} must be >= 0, got {spec.limit_usd}",
            field="max_cost_usd",
        )
    if spec.amount_usd is not None and not spec.amount_usd >= 0:
        raise ConfigurationError(
            f"estimated cost for {spec.key!r} must be >= 0, got {spec.amount_usd}",
            field="max_cost_usd",
        )


def check_cost(cost_usd: float) -> None:
    """``InvalidInputError`` unless a finite amount >= 0: a NaN or an infinity must never
    reach the ledger (nor Redis's Lua, whose ``tonumber`` reads them as nil)."""
    if not 0.0 <= cost_usd < math.inf:
        raise InvalidInputError(f"a call's cost must be a finite amount >= 0, got {cost_usd!r}")


Verdict = tuple[str, float, float, float]
"""``ledger_check``'s answer: ``ok``, ``wait`` or ``refused``; spent, reserved, amount."""


def answer(spec: BudgetSpec, hold: str, now: float, verdict: Verdict) -> BudgetAnswer:
    """The reservation or refusal a ``ledger_check`` verdict stands for."""
    found, spent, reserved, unit = verdict
    if found != "ok":
        return BudgetRefusal(spec.key, spec.limit_usd, spent, reserved, unit, found == "wait")
    return BudgetReservation(
        key=spec.key,
        window_s=spec.window_s,
        bucket=bucket_of(now, spec.window_s),
        hold_id=hold,
        amount_usd=unit,
        unknown_cost=spec.amount_usd is None,
        spent_usd=spent,
        reserved_usd=reserved,
    )


def redis_keys(prefix: str, spec: BudgetSpec, now: float) -> LedgerKeys:
    return ledger_keys(prefix, spec.key, spec.window_s, bucket_of(now, spec.window_s))


@dataclass(frozen=True, slots=True)
class Reserve(Step[BudgetAnswer]):
    """One budget's check and, if it fits, its hold (:class:`CostBudget`'s own step)."""

    lua: ClassVar[str] = (
        LUA_PRELUDE
        + LEDGER_LUA
        + """
local now = tonumber(ARGV[1])
local amount = tonumber(ARGV[3])
local verdict, spent, reserved, unit = ledger_check(KEYS[1], KEYS[2], KEYS[3], now,
                                                    tonumber(ARGV[2]), amount)
if verdict == 'ok' then
  ledger_commit(KEYS[1], KEYS[2], now, ARGV[4], unit, amount == nil, reserved,
                tonumber(ARGV[5]), tonumber(ARGV[6]))
end
return {verdict, fmt(spent), fmt(reserved), fmt(unit)}
"""
    )
    spec: BudgetSpec
    now: float
    hold: str = field(default_factory=lambda: secrets.token_hex(8))

    def __post_init__(self) -> None:
        check_spec(self.spec)

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        where = redis_keys(prefix, self.spec, self.now)
        amount: Arg = "" if self.spec.amount_usd is None else self.spec.amount_usd
        args: list[Arg] = [self.now, self.spec.limit_usd, amount, self.hold, self.spec.lease_s]
        return [where.bucket, where.holds, where.largest], [*args, where.ttl_ms]

    def decode(self, reply: Any) -> BudgetAnswer:
        verdict, spent, reserved, unit = rows(reply)
        return answer(
            self.spec,
            self.hold,
            self.now,
            (str(verdict), number(spent), number(reserved), number(unit)),
        )

    def local(self, state: MemoryState) -> BudgetAnswer:
        spec, now = self.spec, self.now
        ledgers = state.part(Ledgers)
        bucket = ledgers.bucket(spec.key, spec.window_s, bucket_of(now, spec.window_s))
        verdict = check(
            bucket, ledgers.largest.get(spec.key, 0.0), now, spec.limit_usd, spec.amount_usd
        )
        if verdict[0] == "ok":
            unknown = spec.amount_usd is None
            commit(bucket, now, self.hold, verdict[3], unknown, verdict[2], spec.lease_s)
        return answer(spec, self.hold, now, verdict)


@dataclass(frozen=True, slots=True)
class Settle(Step[None]):
    """A hold given back with the call's real cost (0 when it failed before any)."""

    lua: ClassVar[str] = (
        LUA_PRELUDE
        + LEDGER_LUA
        + """
ledger_settle(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 0
"""
    )
    after_call: ClassVar[bool] = True
    reservation: BudgetReservation
    cost_usd: float

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        held = self.reservation
        where = ledger_keys(prefix, held.key, held.window_s, held.bucket)
        keys = [where.bucket, where.holds, where.largest]
        return keys, [held.hold_id, self.cost_usd, where.ttl_ms]

    def decode(self, reply: Any) -> None:
        return None

    def local(self, state: MemoryState) -> None:
        held = self.reservation
        ledgers = state.part(Ledgers)
        bucket = ledgers.bucket(held.key, held.window_s, held.bucket)
        settle(ledgers, held.key, bucket, held.hold_id, self.cost_usd)


@dataclass(frozen=True, slots=True)
class ReadBudget(Step[BudgetStatus]):
    """A budget window now (drops expired holds first)."""

    lua: ClassVar[str] = (
        LUA_PRELUDE
        + LEDGER_LUA
        + """
ledger_purge(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local v = redis.call('HMGET', KEYS[1], 's', 'r')
return {fmt(tonumber(v[1]) or 0), fmt(tonumber(v[2]) or 0), redis.call('ZCARD', KEYS[2]),
        fmt(tonumber(redis.call('GET', KEYS[3])) or 0)}
"""
    )
    key: str
    window_s: int | None
    now: float

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        where = ledger_keys(prefix, self.key, self.window_s, bucket_of(self.now, self.window_s))
        return [where.bucket, where.holds, where.largest], [self.now]

    def decode(self, reply: Any) -> BudgetStatus:
        spent, reserved, in_flight, largest = rows(reply)
        return BudgetStatus(number(spent), number(reserved), int(in_flight), number(largest))

    def local(self, state: MemoryState) -> BudgetStatus:
        ledgers = state.part(Ledgers)
        bucket = ledgers.bucket(self.key, self.window_s, bucket_of(self.now, self.window_s))
        purge(bucket, self.now)
        largest = ledgers.largest.get(self.key, 0.0)
        return BudgetStatus(bucket.spent, bucket.reserved, len(bucket.holds), largest)


CostEstimator = Callable[[str, int | None], float | None]
"""``(prompt, max_tokens) ->`` the most the call can cost in USD, or None when unknown."""

PROMPT_OVERHEAD_TOKENS = 16
"""Tokens a chat template adds around a prompt (role markers), on top of its text."""
FIRST_WAIT_S = 0.02  # polls of a waiting caller: short at first, as the first call may be quick,
MAX_WAIT_S = 0.1  # then no more often than this, as each poll is a store round trip

T = TypeVar("T")


class PricedModel(Protocol):
    """A model's list prices (e.g. :class:`~pygent_lc.providers.openrouter.catalog.ModelInfo`).

    It may also say ``max_completion_tokens`` (the most it writes per reply)
    and ``context_length`` (prompt plus reply), which bound a call without
    ``max_tokens``.
    """

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float: ...


def estimator_from_prices(
    model: PricedModel, default_output_tokens: int | None = None
) -> CostEstimator:
    """The most a call can cost at ``model``'s list prices: a bound, not a guess.

    The prompt counts one token per UTF-8 byte (no tokenizer makes a token of
    less than a byte) plus :data:`PROMPT_OVERHEAD_TOKENS`, at most the model's
    ``context_length``. The reply counts the call's ``max_tokens``, else
    ``default_output_tokens`` (the ``max_tokens`` your model is built with),
    else the model's ``max_completion_tokens``, else its ``context_length``.
    With none of these the estimator returns None: the call's cost has no
    bound, and :class:`CostBudget` runs such calls one at a time.
    """
    context = _positive_int(getattr(model, "context_length", None))
    model_output = _positive_int(getattr(model, "max_completion_tokens", None))

    def estimate(prompt: str, max_tokens: int | None) -> float | None:
        output_tokens = max_tokens or default_output_tokens or model_output or context
        if output_tokens is None:
            return None
        input_tokens = len(prompt.encode("utf-8")) + PROMPT_OVERHEAD_TOKENS
        if context is not None:
            input_tokens = min(input_tokens, context)
        return model.estimate_cost(input_tokens, output_tokens)

    return estimate


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class CostBudget:
    """Refuses a call once spend plus the calls in flight would pass ``max_cost_usd``.

    The rules and the state are the budget ledger's (see
    this module's ledger), on ``store`` under ``key``: each call in
    flight reserves what it may cost until it ends, so concurrent calls
    cannot all pass the check against the same spend. ``estimator`` gives a
    call's bound, the most it can cost (:func:`estimator_from_prices`: list
    prices, the prompt's size and ``max_tokens``); a call with a bound
    reserves it and goes only if it fits under the limit. A call without one
    (no estimator, or it returns None) cannot be bounded by what earlier
    calls cost, as the next may cost far more: it reserves the largest cost
    of one call seen so far and runs only while no other call without a bound
    is in flight (the others wait rather than fail).

    So spend stays within ``max_cost_usd`` when every call has a bound, and
    passes it by at most the cost of one call without a bound otherwise;
    a call that costs more than its bound (wrong prices) passes it by that
    excess. ``store`` None is a private :class:`MemoryStore` (this
    object's calls only); CostBudgets on one shared store with the same
    ``key`` share one limit, across processes with a Redis store.
    ``window_s`` (e.g. 3600 or 86400) limits spend per window instead of in
    total.

    A call's cost, settled on the ledger when its hold ends, is what
    :meth:`Hold.settle` was given, else what ``spent`` (e.g. a usage
    tracker's total) grew by since the last hold ended (:meth:`measure`):
    overlapping calls' own before/after differences would count each other's
    cost, whereas these deltas add up to the real spend. Under overlap one
    hold may so be charged another's cost too, which only raises the largest
    call cost the ledger reserves, never lowers it. Costs are amounts: a
    reply's implausible cost never gets here (it is a cost fault, see
    :func:`pygent_lc.limits.usage.message_usage`), ``settle`` refuses one with
    ``InvalidInputError``, and a ``spent`` that is not finite is not measured.

    :meth:`reserve` gives a :class:`Hold` for ``with`` or ``async with``.
    A caller told to wait polls the store (every 20 ms, growing to 100 ms)
    and is woken at once when a hold of this object ends; a sync caller
    whose thread runs the call without a bound it would wait for is refused
    instead (it would wait for itself; only this object's calls are known).

    A caller that checks the budget inside its own
    :meth:`~pygent_lc.limits.store.StateStore.begin_call` step instead puts
    :meth:`spec` in its :class:`~pygent_lc.limits.call.CallPlan`, retries a
    ``budget_wait`` refusal after :meth:`wait_seconds`, raises
    :meth:`exceeded` for a ``budget`` refusal, and settles with the cost it
    knows or :meth:`measure`.
    """

    def __init__(
        self,
        max_cost_usd: float,
        spent: Callable[[], float] | None = None,
        estimator: CostEstimator | None = None,
        *,
        store: StateStore | None = None,
        key: str = "default",
        window_s: int | None = None,
    ) -> None:
        if not math.isfinite(max_cost_usd) or max_cost_usd < 0:
            raise ConfigurationError(
                f"max_cost_usd must be >= 0, got {max_cost_usd}", field="max_cost_usd"
            )
        if window_s is not None and window_s < 1:
            raise ConfigurationError(
                f"budget window must be >= 1 s, got {window_s}", field="budget_window"
            )
        self.max_cost_usd = max_cost_usd
        self.store: StateStore = store if store is not None else MemoryStore()
        self.store_given = store is not None
        """Whether the caller chose :attr:`store` (a policy may otherwise lend its own)."""
        self.key = key
        self.window_s = window_s
        self._spent = spent
        self._estimator = estimator
        # Guards the spend pointer, the threads below and the wake-ups; never held
        # across a store call.
        self._lock = threading.Lock()
        self._last_spent = 0.0
        # Threads running a call of unknown cost admitted here: a sync caller on one
        # of them must not wait for that call (it would wait for itself).
        self._unknown_cost_threads: list[int] = []
        # Holds of this object ending wake its waiters before their next poll.
        self._released = threading.Condition(self._lock)
        self._releases = 0
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._orphans: deque[Hold] = deque()
        self._orphans_lock = threading.Lock()

    def status(self) -> BudgetStatus:
        """The budget's current window: spent, reserved, calls in flight, largest call."""
        self._settle_orphans()
        return self.store.run(ReadBudget(self.key, self.window_s, self.store.clock()))

    @property
    def reserved_usd(self) -> float:
        """What the calls in flight on the budget (in its current window) have reserved."""
        self._settle_orphans()
        return self.status().reserved_usd

    @property
    def in_flight(self) -> int:
        """Calls admitted on the budget (in its current window) and not yet finished."""
        self._settle_orphans()
        return self.status().in_flight

    def reserve(self, prompt: str, max_tokens: int | None, samples: int = 1) -> Hold:
        """A hold on the budget for one call, taken with ``with`` or ``async with``.

        Entering it waits while another call without a bound is in flight and raises
        ``BudgetExceededError`` when the call would pass the limit; leaving it
        settles the call's cost. ``samples`` is the call's ``n`` (see :meth:`spec`).
        """
        return Hold(self, prompt, max_tokens, samples)

    def spec(self, prompt: str, max_tokens: int | None, samples: int = 1) -> BudgetSpec:
        """This budget's part of a :class:`~pygent_lc.limits.call.CallPlan` for one call.

        A call asking ``samples`` completions (``n``) in one request is still one
        call, with one reservation: ``samples`` times the estimator's bound for one
        completion. That counts the prompt ``samples`` times where the provider
        bills it once, but it is a bound for any estimator (one that caps the
        reply at a model's limit would under-bound ``samples * max_tokens``).
        """
        bound = None if self._estimator is None else self._estimator(prompt, max_tokens)
        if bound is not None:
            bound *= max(1, samples)
        return BudgetSpec(self.key, self.max_cost_usd, bound, self.window_s)

    def exceeded(self, refusal: BudgetRefusal) -> BudgetExceededError:
        """The error for a refusal without ``wait``: the budget is spent."""
        per = "" if self.window_s is None else f" per {self.window_s} s"
        return BudgetExceededError(
            f"cost budget ${refusal.limit_usd:.4f}{per} would be passed: spent "
            f"${refusal.spent_usd:.4f}, in flight ${refusal.reserved_usd:.4f}, "
            f"next call ~${refusal.amount_usd:.4f}"
        )

    @staticmethod
    def wait_seconds(attempt: int) -> float:
        """How long to wait before asking again after ``attempt`` (0, 1, ...) ``wait`` refusals."""
        return min(MAX_WAIT_S, FIRST_WAIT_S * 1.5**attempt)

    def measure(self) -> float:
        """What ``spent`` grew by since the last measurement (0 without ``spent``)."""
        if self._spent is None:
            return 0.0
        with self._lock:
            now = self._spent()
            if not math.isfinite(now):
                return 0.0  # not an amount: nothing is measured, the pointer stays
            cost, self._last_spent = max(0.0, now - self._last_spent), now
            return cost

    # -- taking a hold ----------------------------------------------------------------------

    def _take(self, spec: BudgetSpec) -> BudgetReservation:
        self._settle_orphans()
        attempt = 0
        while True:
            seen = self._releases
            answer = self.store.run(Reserve(spec, self.store.clock()))
            if (reservation := self._admitted(answer)) is not None:
                return reservation
            with self._released:
                if threading.get_ident() in self._unknown_cost_threads:
                    raise BudgetExceededError(
                        "the cost of a call is not known yet and the call in flight "
                        "runs on this thread: waiting for it would deadlock"
                    )
                if self._releases == seen:
                    self._released.wait(self.wait_seconds(attempt))
            attempt += 1

    async def _atake(self, spec: BudgetSpec) -> BudgetReservation:
        self._settle_orphans()
        attempt = 0
        while True:
            seen = self._releases
            if (reservation := self._admitted(await self._areserve(spec))) is not None:
                return reservation
            await self._apause(seen, self.wait_seconds(attempt))
            attempt += 1

    async def _areserve(self, spec: BudgetSpec) -> BudgetAnswer:
        """:class:`Reserve`, giving the reservation back if the caller is cancelled."""
        reserving = asyncio.ensure_future(self.store.arun(Reserve(spec, self.store.clock())))
        try:
            return await asyncio.shield(reserving)
        except asyncio.CancelledError:
            reserving.add_done_callback(self._give_back)
            raise

    def _give_back(self, reserving: asyncio.Future[BudgetAnswer]) -> None:
        if not reserving.cancelled() and reserving.exception() is None:
            answer = reserving.result()
            if isinstance(answer, BudgetReservation):
                self.store.run(Settle(answer, 0.0))
                self._wake()

    def _admitted(self, answer: BudgetAnswer) -> BudgetReservation | None:
        """The reservation, or None for a ``wait`` refusal; raises for a spent budget."""
        if isinstance(answer, BudgetReservation):
            if answer.unknown_cost:
                with self._lock:
                    self._unknown_cost_threads.append(threading.get_ident())
            return answer
        if answer.wait:
            return None
        raise self.exceeded(answer)

    async def _apause(self, seen: int, delay_s: float) -> None:
        """Sleep ``delay_s``, or less if a hold of this process ends meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        with self._lock:
            if self._releases != seen:
                return
            self._async_waiters.append(waiter)
        try:
            await asyncio.wait((future,), timeout=delay_s)
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._async_waiters.remove(waiter)

    # -- ending a hold ----------------------------------------------------------------------

    def _wake(self, unknown_cost_thread: int | None = None) -> None:
        with self._released:
            if unknown_cost_thread is not None:
                self._unknown_cost_threads.remove(unknown_cost_thread)
            self._releases += 1
            self._released.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    def _release_later(self, hold: Hold) -> None:
        """Release ``hold`` from a finalizer, which the garbage collector may run on a
        thread inside any lock (the store's too): in a thread of its own, or on this
        budget's next use, whichever comes first."""
        self._orphans.append(hold)
        with contextlib.suppress(RuntimeError):  # the interpreter is shutting down
            threading.Thread(target=self._settle_orphans, daemon=True).start()

    def _settle_orphans(self) -> None:
        with self._orphans_lock:
            while self._orphans:
                self._orphans.popleft().release()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Hold:
    """One call's reservation on a :class:`CostBudget` (or on none, when ``budget`` is None).

    Taken by ``with`` (blocking) or ``async with`` (awaiting), and settled on
    leaving, or by :meth:`release` / :meth:`arelease`, which may be called any
    number of times from any thread (only the first settles).
    """

    def __init__(
        self, budget: CostBudget | None, prompt: str, max_tokens: int | None, samples: int = 1
    ) -> None:
        self._budget = budget
        self._prompt = prompt
        self._max_tokens = max_tokens
        self._samples = samples
        self._reservation: BudgetReservation | None = None
        self._thread = 0
        self._cost: float | None = None

    def settle(self, cost_usd: float) -> None:
        """The call's real cost, settled when the hold ends (instead of measuring it).

        ``InvalidInputError`` unless it is a finite amount >= 0.
        """
        if not 0.0 <= cost_usd < math.inf:
            raise InvalidInputError(f"a call's cost must be a finite amount >= 0, got {cost_usd!r}")
        self._cost = cost_usd

    def __enter__(self) -> None:
        if self._budget is not None:
            spec = self._budget.spec(self._prompt, self._max_tokens, self._samples)
            self._admit(self._budget._take(spec))

    async def __aenter__(self) -> None:
        if self._budget is not None:
            spec = self._budget.spec(self._prompt, self._max_tokens, self._samples)
            self._admit(await self._budget._atake(spec))

    def _admit(self, reservation: BudgetReservation) -> None:
        self._thread = threading.get_ident()
        self._reservation = reservation

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.arelease()

    def _end(self) -> tuple[CostBudget, BudgetReservation, float] | None:
        """Take the reservation (once: None afterwards) with the cost to settle it with."""
        budget = self._budget
        if budget is None:
            return None
        with budget._lock:
            reservation, self._reservation = self._reservation, None
        if reservation is None:
            return None
        return budget, reservation, self._cost if self._cost is not None else budget.measure()

    def _done(self, budget: CostBudget, reservation: BudgetReservation) -> None:
        budget._wake(self._thread if reservation.unknown_cost else None)

    def release(self) -> None:
        """Settle the call's cost and give the reservation back (once)."""
        if (ending := self._end()) is not None:
            budget, reservation, cost = ending
            try:
                budget.store.run(Settle(reservation, cost))
            finally:
                self._done(budget, reservation)

    async def arelease(self) -> None:
        """:meth:`release` for async callers; it completes even if the caller is cancelled."""
        if (ending := self._end()) is not None:
            budget, reservation, cost = ending
            try:
                await asyncio.shield(budget.store.arun(Settle(reservation, cost)))
            finally:
                self._done(budget, reservation)


class HeldStream(AsyncIterator[T]):
    """An async iterator that holds a budget reservation while it is being read.

    ``start`` runs on the first ``__anext__`` and returns the stream to read
    and its (already taken) hold. The hold is released when the stream ends
    or fails, on :meth:`aclose`, and when this object is dropped: after
    ``async for ... : break`` that happens at once, whereas an async generator
    would only be finalized later by the event loop, keeping the reservation
    (and, before a call's cost is known, every waiting caller) until then.
    """

    def __init__(self, start: Callable[[], Awaitable[tuple[AsyncIterator[T], Hold]]]) -> None:
        self._start: Callable[[], Awaitable[tuple[AsyncIterator[T], Hold]]] | None = start
        self._inner: AsyncIterator[T] | None = None
        self._hold: Hold | None = None

    def __aiter__(self) -> HeldStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            if self._inner is None:
                if self._start is None:
                    raise StopAsyncIteration
                start, self._start = self._start, None
                self._inner, self._hold = await start()
            return await anext(self._inner)
        except BaseException:
            await self._finish()
            raise

    async def _finish(self) -> None:
        self._start = None
        if self._hold is not None:
            await self._hold.arelease()

    async def aclose(self) -> None:
        """Release the reservation and close the underlying stream."""
        await self._finish()
        inner, self._inner = self._inner, None
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()

    def __del__(self) -> None:
        hold = self._hold
        if hold is not None and hold._reservation is not None and hold._budget is not None:
            hold._budget._release_later(hold)
