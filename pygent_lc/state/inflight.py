"""In-flight call counts per key (an Ollama host of a pool), fleet-wide, that heal after crashes.

Why tickets with leases rather than ``INCR``/``DECR``: a process that dies
between its increment and its decrement would leave the count too high for
ever, and a busy host's key never sits idle long enough for a TTL on it to
reset it. Here each call adds a ticket to a sorted set scored by the end of
its lease; ending the call removes it; counting ignores tickets whose lease
has passed, so a crashed process's calls stop counting after the lease
(default 5 min). A call that runs longer than its lease stops counting
early: the counts are for picking the least busy host, where being briefly
off by one does no harm.
"""

from __future__ import annotations

from collections.abc import Sequence

INFLIGHT_ENTER_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], fmt(tonumber(ARGV[1]) + tonumber(ARGV[2])), ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
return redis.call('ZCARD', KEYS[1])
"""
"""Take a ticket: ``ARGV`` now, lease, ticket id; answers the count with it."""

INFLIGHT_EXIT_LUA = """
redis.call('ZREM', KEYS[1], ARGV[2])
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
"""
"""Give a ticket back: ``ARGV`` now, ticket id; answers the count left."""

INFLIGHT_COUNT_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('ZCOUNT', key, '(' .. ARGV[1], '+inf')
end
return out
"""
"""The live tickets of every key in ``KEYS`` at ``ARGV[1]``, in order."""

Tickets = dict[str, dict[str, float]]
"""The in-process twin: per key, ticket id -> end of its lease."""


def inflight_key(prefix: str, key: str) -> str:
    return f"{prefix}if:{key}"


def enter(tickets: Tickets, key: str, now: float, lease: float, ticket: str) -> int:
    held = tickets.setdefault(key, {})
    for stale in [t for t, deadline in held.items() if deadline <= now]:
        del held[stale]
    held[ticket] = now + lease
    return len(held)


def exit_(tickets: Tickets, key: str, now: float, ticket: str) -> int:
    held = tickets.get(key, {})
    held.pop(ticket, None)
    return sum(1 for deadline in held.values() if deadline > now)


def count(tickets: Tickets, keys: Sequence[str], now: float) -> list[int]:
    return [sum(1 for deadline in tickets.get(key, {}).values() if deadline > now) for key in keys]


__all__ = [
    "INFLIGHT_COUNT_LUA",
    "INFLIGHT_ENTER_LUA",
    "INFLIGHT_EXIT_LUA",
    "Tickets",
    "count",
    "enter",
    "exit_",
    "inflight_key",
]
