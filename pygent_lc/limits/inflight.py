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
from dataclasses import dataclass
from typing import Any, ClassVar

from pygent_lc.limits.script import LUA_PRELUDE, Arg, MemoryState, Step, rows

DEFAULT_INFLIGHT_LEASE_S = 300.0
"""How long an in-flight ticket counts if nobody ends it (its process died)."""


@dataclass(frozen=True, slots=True)
class InflightTicket:
    """One call counted as in flight on ``key`` until it exits or its lease ends."""

    key: str
    ticket_id: str


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


class Tickets(dict[str, dict[str, float]]):
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


@dataclass(frozen=True, slots=True)
class Enter(Step[int]):
    """Take a ticket; the count with it."""

    lua: ClassVar[str] = LUA_PRELUDE + INFLIGHT_ENTER_LUA
    ticket: InflightTicket
    lease_s: float
    now: float

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        keys = [inflight_key(prefix, self.ticket.key)]
        return keys, [self.now, self.lease_s, self.ticket.ticket_id]

    def decode(self, reply: Any) -> int:
        return int(reply)

    def local(self, state: MemoryState) -> int:
        return enter(
            state.part(Tickets), self.ticket.key, self.now, self.lease_s, self.ticket.ticket_id
        )


@dataclass(frozen=True, slots=True)
class Exit(Step[int]):
    """Give a ticket back; the count left."""

    lua: ClassVar[str] = INFLIGHT_EXIT_LUA
    after_call: ClassVar[bool] = True
    ticket: InflightTicket
    now: float

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [inflight_key(prefix, self.ticket.key)], [self.now, self.ticket.ticket_id]

    def decode(self, reply: Any) -> int:
        return int(reply)

    def local(self, state: MemoryState) -> int:
        return exit_(state.part(Tickets), self.ticket.key, self.now, self.ticket.ticket_id)


@dataclass(frozen=True, slots=True)
class Count(Step[list[int]]):
    """The live tickets of each key, in order."""

    lua: ClassVar[str] = INFLIGHT_COUNT_LUA
    reads_only: ClassVar[bool] = True
    keys: tuple[str, ...]
    now: float

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [inflight_key(prefix, key) for key in self.keys], [self.now]

    def decode(self, reply: Any) -> list[int]:
        return [int(n) for n in rows(reply)]

    def local(self, state: MemoryState) -> list[int]:
        return count(state.part(Tickets), self.keys, self.now)


__all__ = [
    "DEFAULT_INFLIGHT_LEASE_S",
    "Count",
    "Enter",
    "Exit",
    "InflightTicket",
    "Tickets",
    "count",
    "enter",
    "exit_",
    "inflight_key",
]
