"""The scripts outside a call's two steps: state reads, in-flight tickets and the cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pygent_lc.state import cache, circuit, inflight, ledger, usage_log
from pygent_lc.state.memory_state import MemoryState
from pygent_lc.state.op import LUA_PRELUDE, Encoded, Script, Timed, json_rows, number, rows, text
from pygent_lc.state.types import BreakerStatus, BudgetStatus, InflightTicket, UsageRow


@dataclass(frozen=True, slots=True)
class BreakerQuery(Timed):
    key: str
    cooldown_s: float


@dataclass(frozen=True, slots=True)
class BudgetQuery(Timed):
    key: str
    window_s: int | None


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Every (provider, model) row."""


@dataclass(frozen=True, slots=True)
class TicketTake(Timed):
    ticket: InflightTicket
    lease_s: float


@dataclass(frozen=True, slots=True)
class TicketReturn(Timed):
    ticket: InflightTicket


@dataclass(frozen=True, slots=True)
class TicketCount(Timed):
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CacheRead:
    namespace: str
    key: str


@dataclass(frozen=True, slots=True)
class CacheWrite(CacheRead):
    value: str


BREAKER_STATUS_LUA = (
    LUA_PRELUDE
    + circuit.BREAKER_LUA
    + """
local verdict, _, failures, err = breaker_check(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {verdict, failures, err}
"""
)


def _decode_breaker(request: BreakerQuery, reply: Any) -> BreakerStatus:
    verdict, failures, error = rows(reply)
    return circuit.status_from(str(verdict), int(failures), text(error))


def _local_breaker(state: MemoryState, request: BreakerQuery) -> BreakerStatus:
    verdict, _, failures, error = circuit.check(
        state.breakers, request.key, request.now, request.cooldown_s
    )
    return circuit.status_from(verdict, failures, error)


BREAKER_STATUS: Script[BreakerQuery, BreakerStatus] = Script(
    name="breaker_status",
    reads_only=True,
    lua=BREAKER_STATUS_LUA,
    encode=lambda q, prefix: Encoded(
        keys=[circuit.breaker_key(prefix, q.key)], args=[q.now, q.cooldown_s]
    ),
    decode=_decode_breaker,
    local=_local_breaker,
)

BUDGET_STATUS_LUA = (
    LUA_PRELUDE
    + ledger.LEDGER_LUA
    + """
ledger_purge(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local v = redis.call('HMGET', KEYS[1], 's', 'r')
return {fmt(tonumber(v[1]) or 0), fmt(tonumber(v[2]) or 0), redis.call('ZCARD', KEYS[2]),
        fmt(tonumber(redis.call('GET', KEYS[3])) or 0)}
"""
)


def _encode_budget(request: BudgetQuery, prefix: str) -> Encoded:
    bucket = ledger.bucket_of(request.now, request.window_s)
    where = ledger.ledger_keys(prefix, request.key, request.window_s, bucket)
    return Encoded(keys=[where.bucket, where.holds, where.largest], args=[request.now])


def _decode_budget(request: BudgetQuery, reply: Any) -> BudgetStatus:
    spent, reserved, in_flight, largest = rows(reply)
    return BudgetStatus(
        spent_usd=number(spent),
        reserved_usd=number(reserved),
        in_flight=int(in_flight),
        largest_call_usd=number(largest),
    )


def _local_budget(state: MemoryState, request: BudgetQuery) -> BudgetStatus:
    bucket = state.ledgers.bucket(
        request.key, request.window_s, ledger.bucket_of(request.now, request.window_s)
    )
    ledger.purge(bucket, request.now)
    return BudgetStatus(
        spent_usd=bucket.spent,
        reserved_usd=bucket.reserved,
        in_flight=len(bucket.holds),
        largest_call_usd=state.ledgers.largest.get(request.key, 0.0),
    )


BUDGET_STATUS: Script[BudgetQuery, BudgetStatus] = Script(
    name="budget_status",
    lua=BUDGET_STATUS_LUA,
    encode=_encode_budget,
    decode=_decode_budget,
    local=_local_budget,
)


def _decode_usage(request: UsageQuery, reply: Any) -> list[UsageRow]:
    found = json_rows(reply)
    result = []
    for values, samples in zip(found[0::2], found[1::2], strict=True):
        provider, model, *totals = rows(values)
        result.append(
            usage_log.row(
                str(provider),
                str(model),
                [number(t) if t not in (None, False) else 0.0 for t in totals],
                [number(s) for s in rows(samples)],
            )
        )
    return sorted(result, key=lambda r: (r.provider, r.model))


def _local_usage(state: MemoryState, request: UsageQuery) -> list[UsageRow]:
    return [
        usage_log.row(provider, model, bucket.totals, list(bucket.latencies))
        for (provider, model), bucket in sorted(state.usage.items())
    ]


USAGE_ROWS: Script[UsageQuery, list[UsageRow]] = Script(
    name="usage_rows",
    reads_only=True,
    lua=LUA_PRELUDE + usage_log.USAGE_LUA + usage_log.USAGE_ROWS_LUA,
    encode=lambda q, prefix: Encoded(keys=[usage_log.usage_index(prefix)], args=[]),
    decode=_decode_usage,
    local=_local_usage,
)

INFLIGHT_ENTER: Script[TicketTake, int] = Script(
    name="inflight_enter",
    lua=LUA_PRELUDE + inflight.INFLIGHT_ENTER_LUA,
    encode=lambda q, prefix: Encoded(
        keys=[inflight.inflight_key(prefix, q.ticket.key)],
        args=[q.now, q.lease_s, q.ticket.ticket_id],
    ),
    decode=lambda q, reply: int(reply),
    local=lambda state, q: inflight.enter(
        state.tickets, q.ticket.key, q.now, q.lease_s, q.ticket.ticket_id
    ),
)

INFLIGHT_EXIT: Script[TicketReturn, int] = Script(
    name="inflight_exit",
    after_call=True,
    lua=inflight.INFLIGHT_EXIT_LUA,
    encode=lambda q, prefix: Encoded(
        keys=[inflight.inflight_key(prefix, q.ticket.key)], args=[q.now, q.ticket.ticket_id]
    ),
    decode=lambda q, reply: int(reply),
    local=lambda state, q: inflight.exit_(state.tickets, q.ticket.key, q.now, q.ticket.ticket_id),
)

INFLIGHT_COUNT: Script[TicketCount, list[int]] = Script(
    name="inflight_count",
    reads_only=True,
    lua=inflight.INFLIGHT_COUNT_LUA,
    encode=lambda q, prefix: Encoded(
        keys=[inflight.inflight_key(prefix, key) for key in q.keys], args=[q.now]
    ),
    decode=lambda q, reply: [int(n) for n in rows(reply)],
    local=lambda state, q: inflight.count(state.tickets, q.keys, q.now),
)

CACHE_GET: Script[CacheRead, str | None] = Script(
    name="cache_get",
    reads_only=True,
    lua=cache.CACHE_GET_LUA,
    encode=lambda q, prefix: Encoded(keys=[cache.cache_key(prefix, q.namespace)], args=[q.key]),
    decode=lambda q, reply: None if reply is None else str(reply),
    local=lambda state, q: state.caches.get(q.namespace, q.key),
)

CACHE_SET: Script[CacheWrite, None] = Script(
    name="cache_set",
    lua=cache.CACHE_SET_LUA,
    encode=lambda q, prefix: Encoded(
        keys=[cache.cache_key(prefix, q.namespace)], args=[q.key, q.value]
    ),
    decode=lambda q, reply: None,
    local=lambda state, q: state.caches.set(q.namespace, q.key, q.value),
)


__all__ = [
    "BREAKER_STATUS",
    "BUDGET_STATUS",
    "CACHE_GET",
    "CACHE_SET",
    "INFLIGHT_COUNT",
    "INFLIGHT_ENTER",
    "INFLIGHT_EXIT",
    "USAGE_ROWS",
    "BreakerQuery",
    "BudgetQuery",
    "CacheRead",
    "CacheWrite",
    "TicketCount",
    "TicketReturn",
    "TicketTake",
    "UsageQuery",
]
