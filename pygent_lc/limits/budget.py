"""Cost budgets: spend, reservations of calls in flight and the largest call, per key and
window (docs/limits.md). Per window bucket a hash (``s`` spent, ``r`` reserved, ``u`` the
hold without a bound, ``h:<id>`` each hold) and a sorted set of holds by lease end; buckets
expire two windows after their last write."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pygent_lc.errors import BudgetExceededError, ConfigurationError, InvalidInputError
from pygent_lc.limits.script import LUA_PRELUDE, Arg, MemoryState, Step, number, rows
from pygent_lc.limits.store import MemoryStore, StateStore

DEFAULT_BUDGET_WAIT_S = 300.0
# How long a reservation outlives a process that died holding it; a longer call loses its
# reservation early (its cost still counts), so this should exceed any call's timeout.
DEFAULT_BUDGET_LEASE_S = 900.0


@dataclass(frozen=True, slots=True)
class BudgetReservation:
    """A call's hold on a budget; ``spent_usd`` and ``reserved_usd``: the totals before it."""

    key: str
    window_s: int | None
    bucket: int
    hold_id: str
    spent_usd: float
    reserved_usd: float
    amount_usd: float
    unknown_cost: bool


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """``wait``: the call may go later (another call of unknown cost is in flight)."""

    key: str
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    amount_usd: float
    wait: bool


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    spent_usd: float
    reserved_usd: float
    in_flight: int
    largest_call_usd: float


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A limit on ``key`` for one call; ``amount_usd``: its bound (None: unknown)."""

    key: str
    limit_usd: float
    amount_usd: float | None = None
    window_s: int | None = None
    lease_s: float = DEFAULT_BUDGET_LEASE_S


LEDGER_LUA = """
local function ledger_drop(h, z, id)
  if redis.call('ZREM', z, id) == 0 then return end
  local v = redis.call('HMGET', h, 'h:' .. id, 'r', 'u')
  local reserved = (tonumber(v[2]) or 0) - (tonumber(v[1]) or 0)
  if reserved < 0 or redis.call('ZCARD', z) == 0 then reserved = 0 end
  redis.call('HDEL', h, 'h:' .. id)
  redis.call('HSET', h, 'r', fmt(reserved))
  if v[3] == id then redis.call('HDEL', h, 'u') end
end

local function ledger_purge(h, z, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', fmt(now))) do
    ledger_drop(h, z, id)
  end
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
  ledger_drop(h, z, id)
  if cost > 0 then
    redis.call('HSET', h, 's', fmt((tonumber(redis.call('HGET', h, 's')) or 0) + cost))
    if cost > (tonumber(redis.call('GET', m)) or 0) then redis.call('SET', m, fmt(cost)) end
  end
  if ttl > 0 and redis.call('EXISTS', h) == 1 then
    redis.call('PEXPIRE', h, ttl)
  end
end
"""


def bucket_of(now: float, window_s: int | None) -> int:
    return 0 if window_s is None else math.floor(now / window_s)


def ledger_keys(prefix: str, key: str, window_s: int | None, bucket: int) -> tuple[list[str], int]:
    """A bucket's Redis keys (``H``, ``Z``, ``M``) and its TTL in ms (0: none)."""
    base = f"{prefix}bg:{key}"
    tag = "all" if window_s is None else f"{int(window_s)}:{bucket}"
    keys = [f"{base}:{tag}", f"{base}:{tag}:holds", f"{base}:largest"]
    return keys, 0 if window_s is None else int(2 * window_s * 1000)


@dataclass
class LedgerBucket:
    """The twin of one bucket (holds: ``id -> (amount, lease end)``): the Lua functions."""

    spent: float = 0.0
    reserved: float = 0.0
    unknown: str | None = None
    holds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def purge(self, now: float) -> None:
        for _, hold in sorted((end, h) for h, (_, end) in self.holds.items() if end <= now):
            self.drop(hold)

    def drop(self, hold: str) -> None:
        reserved = self.reserved - self.holds.pop(hold)[0]
        self.reserved = 0.0 if reserved < 0 or not self.holds else reserved
        if self.unknown == hold:
            self.unknown = None

    def check(
        self, largest: float, now: float, limit: float, amount: float | None
    ) -> tuple[str, float, float, float]:
        self.purge(now)
        unit = largest if amount is None else amount
        if amount is None and self.unknown is not None:
            return "wait", self.spent, self.reserved, unit
        committed = self.spent + self.reserved
        if committed >= limit or (amount is not None and committed + unit > limit):
            return "refused", self.spent, self.reserved, unit
        return "ok", self.spent, self.reserved, unit

    def commit(
        self, now: float, hold: str, unit: float, unknown: bool, reserved: float, lease: float
    ) -> None:
        self.holds[hold] = (unit, now + lease)
        self.reserved = reserved + unit
        if unknown:
            self.unknown = hold


@dataclass
class Ledgers:
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

    def settle(self, held: BudgetReservation, cost: float) -> None:
        b = self.bucket(held.key, held.window_s, held.bucket)
        if held.hold_id in b.holds:
            b.drop(held.hold_id)
        if cost > 0:
            b.spent = b.spent + cost
            self.largest[held.key] = max(cost, self.largest.get(held.key, 0.0))


def check_spec(spec: BudgetSpec) -> None:
    if spec.window_s is not None and spec.window_s < 1:
        raise ConfigurationError(
            f"budget window of {spec.key!r} must be >= 1 s, got {spec.window_s}",
            field="budget_window",
        )
    if not 0 <= spec.limit_usd < math.inf:
        raise ConfigurationError(
            f"max_cost_usd of budget {spec.key!r} must be a finite amount >= 0, "
            f"got {spec.limit_usd}",
            field="max_cost_usd",
        )
    if spec.amount_usd is not None and not spec.amount_usd >= 0:
        raise ConfigurationError(
            f"estimated cost for {spec.key!r} must be >= 0, got {spec.amount_usd}",
            field="max_cost_usd",
        )


def check_cost(cost_usd: float) -> None:
    """Refuses NaN too: Lua's ``tonumber`` reads it as nil."""
    if not 0.0 <= cost_usd < math.inf:
        raise InvalidInputError(f"a call's cost must be a finite amount >= 0, got {cost_usd!r}")


@dataclass(frozen=True, slots=True)
class ReadBudget(Step[BudgetStatus]):
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
        keys, _ = ledger_keys(prefix, self.key, self.window_s, bucket_of(self.now, self.window_s))
        return keys, [self.now]

    def decode(self, reply: Any) -> BudgetStatus:
        spent, reserved, in_flight, largest = rows(reply)
        return BudgetStatus(number(spent), number(reserved), int(in_flight), number(largest))

    def local(self, state: MemoryState) -> BudgetStatus:
        ledgers = state.part(Ledgers)
        bucket = ledgers.bucket(self.key, self.window_s, bucket_of(self.now, self.window_s))
        bucket.purge(self.now)
        largest = ledgers.largest.get(self.key, 0.0)
        return BudgetStatus(bucket.spent, bucket.reserved, len(bucket.holds), largest)


CostEstimator = Callable[[str, int | None], float | None]  # the most a call can cost (USD)

PROMPT_OVERHEAD_TOKENS = 16  # what a chat template adds around a prompt (role markers)
FIRST_WAIT_S = 0.02  # polls of a waiting caller: short at first, as the first call may be quick,
MAX_WAIT_S = 0.1  # then no more often than this, as each poll is a store round trip


def estimator_from_prices(model: Any, default_output_tokens: int | None = None) -> CostEstimator:
    """A bound at ``model``'s list prices (an OpenRouter ``ModelInfo``): a prompt token per
    UTF-8 byte, and ``max_tokens``, else the default, the model's maximum or its context."""
    context = _positive_int(getattr(model, "context_length", None))
    model_output = _positive_int(getattr(model, "max_completion_tokens", None))

    def estimate(prompt: str, max_tokens: int | None) -> float | None:
        output_tokens = max_tokens or default_output_tokens or model_output or context
        if output_tokens is None:
            return None
        input_tokens = len(prompt.encode("utf-8")) + PROMPT_OVERHEAD_TOKENS
        if context is not None:
            input_tokens = min(input_tokens, context)
        return float(model.estimate_cost(input_tokens, output_tokens))

    return estimate


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def spend_meter(total: Callable[[], float]) -> Callable[[], float]:
    """Each call's cost as what a running ``total`` grew by since the last reading
    (overlapping calls' own before/after differences would count each other's cost)."""
    lock, last = threading.Lock(), 0.0

    def measure() -> float:
        nonlocal last
        with lock:
            now = total()
            if not math.isfinite(now):
                return 0.0
            cost, last = max(0.0, now - last), now
            return cost

    return measure


class CostBudget:
    """A spending limit, in total or per ``window_s`` (docs/limits.md): calls with a bound
    (``estimator``) run together, others one at a time (the rest poll up to ``max_wait_s``).
    Budgets with one ``key`` on one store are one limit; ``spent`` measures uncosted calls."""

    def __init__(
        self,
        max_cost_usd: float,
        spent: Callable[[], float] | None = None,
        estimator: CostEstimator | None = None,
        *,
        store: StateStore | None = None,
        key: str = "default",
        window_s: int | None = None,
        max_wait_s: float = DEFAULT_BUDGET_WAIT_S,
    ) -> None:
        if not 0 < max_wait_s < math.inf:
            raise ConfigurationError(
                f"max_wait_s must be > 0 and finite, got {max_wait_s}", field="max_wait_s"
            )
        check_spec(BudgetSpec(key, max_cost_usd, None, window_s))
        self.max_cost_usd = max_cost_usd
        self.store: StateStore = store if store is not None else MemoryStore()
        self.store_given = store is not None  # else a policy may lend its own
        self.key = key
        self.window_s = window_s
        self.estimator = estimator
        self.max_wait_s = max_wait_s
        self.measure: Callable[[], float] = (lambda: 0.0) if spent is None else spend_meter(spent)

    def status(self) -> BudgetStatus:
        return self.store.run(ReadBudget(self.key, self.window_s, self.store.clock()))

    def spec(self, prompt: str, max_tokens: int | None, samples: int = 1) -> BudgetSpec:
        """``samples`` completions reserve as many bounds."""
        bound = None if self.estimator is None else self.estimator(prompt, max_tokens)
        if bound is not None:
            bound *= max(1, samples)
        return BudgetSpec(self.key, self.max_cost_usd, bound, self.window_s)

    def exceeded(self, refusal: BudgetRefusal) -> BudgetExceededError:
        per = "" if self.window_s is None else f" per {self.window_s} s"
        return BudgetExceededError(
            f"cost budget ${refusal.limit_usd:.4f}{per} would be passed: spent "
            f"${refusal.spent_usd:.4f}, in flight ${refusal.reserved_usd:.4f}, "
            f"next call ~${refusal.amount_usd:.4f}"
        )

    @staticmethod
    def wait_seconds(attempt: int) -> float:
        return min(MAX_WAIT_S, FIRST_WAIT_S * 1.5**attempt)
