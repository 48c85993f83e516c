"""Cost budgets: spend, reservations of calls in flight, and the largest call, per key and window.

The rules are :class:`pygent_lc.budget.CostBudget`'s, made fleet-wide. A
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

import math
from dataclasses import dataclass, field

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
    """Every budget of a :class:`~pygent_lc.state.MemoryStore`."""

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


__all__ = [
    "LEDGER_LUA",
    "LedgerBucket",
    "LedgerKeys",
    "Ledgers",
    "bucket_of",
    "check",
    "commit",
    "ledger_keys",
    "purge",
    "settle",
]
