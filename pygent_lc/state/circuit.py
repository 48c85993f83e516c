"""Circuit breaker state per key, in Lua and in Python, with :mod:`pygent_lc.breaker`'s rules.

A hash per key: ``f`` consecutive counted failures, ``o`` when the circuit
opened (absent while closed), ``p``/``ps`` the probe in flight and when it
started, ``e`` a short summary of the last counted error. The rules are
those of :class:`pygent_lc.breaker.CircuitBreaker`, made fleet-wide:

* closed: every call goes; open and within ``cooldown``: refused, with the
  time left; after the cooldown (half-open) exactly one caller, in any
  process, gets the probe, the others are refused while it runs, and a probe
  older than ``cooldown`` no longer blocks the slot;
* a success closes the circuit and resets everything;
* a counted failure from a call admitted before the circuit opened, while it
  is open, is ignored (already counted out); a failed probe reopens it;
  ``threshold`` consecutive failures open it.

Probe ids are random 53-bit integers chosen by the client (exact in Lua's
doubles, unique with overwhelming odds, and still unique after Redis lost
its data), rather than a counter kept in the hash.

Times are the clients' wall clocks (``time.time()``), passed in: the
processes sharing a Redis are expected to share one host clock (or NTP).
"""

from __future__ import annotations

from dataclasses import dataclass

from pygent_lc.state.types import BreakerAdmission, BreakerStatus, CircuitState

ERROR_SUMMARY_CHARS = 200
"""Longer error summaries are cut: the hash holds a hint, not a log."""

BREAKER_LUA = """
local function breaker_check(key, now, cooldown)
  local h = redis.call('HMGET', key, 'f', 'o', 'p', 'ps', 'e')
  local failures = tonumber(h[1]) or 0
  local err = h[5] or ''
  if not h[2] then return 'closed', 0, failures, err end
  local reopen = tonumber(h[2]) + cooldown
  if now < reopen then return 'open', reopen - now, failures, err end
  if h[3] and now < (tonumber(h[4]) or 0) + cooldown then
    return 'probing', 0, failures, err
  end
  return 'probe', 0, failures, err
end

local function breaker_take_probe(key, now, probe_id)
  redis.call('HSET', key, 'p', probe_id, 'ps', fmt(now))
end

local function breaker_success(key)
  local was_open = redis.call('HEXISTS', key, 'o')
  redis.call('DEL', key)
  return was_open
end

local function breaker_failure(key, now, threshold, probe_id, summary)
  local h = redis.call('HMGET', key, 'f', 'o', 'p')
  local is_probe = probe_id ~= '' and h[3] == probe_id
  if is_probe then
    redis.call('HDEL', key, 'p', 'ps')
  elseif h[2] then
    return 0, tonumber(h[1]) or 0
  end
  local failures = (tonumber(h[1]) or 0) + 1
  redis.call('HSET', key, 'f', failures, 'e', summary)
  if is_probe or failures >= threshold then
    redis.call('HSET', key, 'o', fmt(now))
    return 1, failures
  end
  return 0, failures
end

local function breaker_release(key, probe_id)
  if probe_id ~= '' and redis.call('HGET', key, 'p') == probe_id then
    redis.call('HDEL', key, 'p', 'ps')
  end
end
"""


@dataclass
class BreakerRecord:
    """The in-process twin of one breaker hash."""

    failures: int = 0
    opened_at: float | None = None
    probe_id: str | None = None
    probe_started: float = 0.0
    last_error: str = ""


BreakerRecords = dict[str, BreakerRecord]


def breaker_key(prefix: str, key: str) -> str:
    return f"{prefix}cb:{key}"


def summary(error: str) -> str:
    """The error summary as stored: one line, at most :data:`ERROR_SUMMARY_CHARS`."""
    line = " ".join(error.split())
    return line if len(line) <= ERROR_SUMMARY_CHARS else line[: ERROR_SUMMARY_CHARS - 1] + "…"


def check(
    records: BreakerRecords, key: str, now: float, cooldown: float
) -> tuple[str, float, int, str]:
    """``breaker_check``: verdict (closed, open, probing, probe), time left, failures, error."""
    record = records.get(key) or BreakerRecord()
    if record.opened_at is None:
        return "closed", 0.0, record.failures, record.last_error
    reopen = record.opened_at + cooldown
    if now < reopen:
        return "open", reopen - now, record.failures, record.last_error
    if record.probe_id is not None and now < record.probe_started + cooldown:
        return "probing", 0.0, record.failures, record.last_error
    return "probe", 0.0, record.failures, record.last_error


def take_probe(records: BreakerRecords, key: str, now: float, probe_id: str) -> None:
    record = records.setdefault(key, BreakerRecord())
    record.probe_id = probe_id
    record.probe_started = now


def success(records: BreakerRecords, key: str) -> bool:
    """``breaker_success``: whether the circuit was open."""
    record = records.pop(key, None)
    return record is not None and record.opened_at is not None


def failure(
    records: BreakerRecords, key: str, now: float, threshold: int, probe_id: str, error: str
) -> tuple[bool, int]:
    """``breaker_failure``: whether the circuit opened, and the failure count."""
    record = records.setdefault(key, BreakerRecord())
    is_probe = probe_id != "" and record.probe_id == probe_id
    if is_probe:
        record.probe_id = None
        record.probe_started = 0.0
    elif record.opened_at is not None:
        return False, record.failures
    record.failures += 1
    record.last_error = error
    if is_probe or record.failures >= threshold:
        record.opened_at = now
        return True, record.failures
    return False, record.failures


def release(records: BreakerRecords, key: str, probe_id: str) -> None:
    record = records.get(key)
    if probe_id != "" and record is not None and record.probe_id == probe_id:
        record.probe_id = None
        record.probe_started = 0.0


def admission(
    verdict: str, retry_in: float, failures: int, error: str | None, probe_id: int
) -> BreakerAdmission:
    """The admission a ``breaker_check`` verdict stands for (``probe_id`` if it is the probe)."""
    last_error = error or None
    if verdict == "closed":
        return BreakerAdmission(allowed=True, failures=failures, last_error=last_error)
    if verdict == "probe":
        return BreakerAdmission(
            allowed=True, probe_id=probe_id, failures=failures, last_error=last_error
        )
    return BreakerAdmission(
        allowed=False,
        retry_in=retry_in if verdict == "open" else None,
        failures=failures,
        last_error=last_error,
    )


def status_from(verdict: str, failures: int, error: str | None) -> BreakerStatus:
    """The state a ``breaker_check`` verdict stands for."""
    state: CircuitState = (
        "closed" if verdict == "closed" else "open" if verdict == "open" else "half_open"
    )
    return BreakerStatus(state=state, failures=failures, last_error=error or None)


__all__ = [
    "BREAKER_LUA",
    "ERROR_SUMMARY_CHARS",
    "BreakerRecord",
    "BreakerRecords",
    "admission",
    "breaker_key",
    "check",
    "failure",
    "release",
    "status_from",
    "success",
    "summary",
    "take_probe",
]
