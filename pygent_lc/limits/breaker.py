"""Circuit breaker (docs/limits.md): open after ``failure_threshold`` consecutive counted
failures, half-open after ``cooldown`` with one probe fleet-wide; a failure of a call admitted
before it opened is ignored while open. In Redis a hash per key: ``f`` failures, ``o`` opened
at, ``p``/``ps`` the probe and its start, ``e`` the last error."""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

from pygent_lc import errors
from pygent_lc.errors import ConfigurationError, ProviderError, ProviderUnavailableError
from pygent_lc.limits.rate import LocalRateLimitError
from pygent_lc.limits.script import LUA_PRELUDE, Arg, MemoryState, Step, rows
from pygent_lc.limits.store import MemoryStore, StateStore

logger = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerAdmission:
    """``probe_id``: the one call fleet-wide probing a half-open circuit; ``retry_in``: the
    cooldown left when refused while open (None while another call probes)."""

    allowed: bool
    probe_id: int | None = None
    retry_in: float | None = None
    failures: int = 0
    last_error: str | None = None


ADMITTED = BreakerAdmission(allowed=True)  # no breaker, or a disabled one


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    state: CircuitState
    failures: int
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class BreakerSpec:
    """Threshold or cooldown 0 disables it."""

    key: str
    threshold: int
    cooldown_s: float

    @property
    def enabled(self) -> bool:
        return self.threshold > 0 and self.cooldown_s > 0


@dataclass(frozen=True, slots=True)
class BreakerOutcome:
    """How an admitted call ended; ``threshold`` and ``error_summary``: for a failure."""

    key: str
    admission: BreakerAdmission
    kind: Literal["success", "failure", "release"]
    threshold: int = 1
    error_summary: str = ""


ERROR_SUMMARY_CHARS = 200  # the hash holds a hint, not a log

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
    return 0
  end
  local failures = (tonumber(h[1]) or 0) + 1
  redis.call('HSET', key, 'f', failures, 'e', summary)
  if is_probe or failures >= threshold then
    redis.call('HSET', key, 'o', fmt(now))
    return 1
  end
  return 0
end

local function breaker_release(key, probe_id)
  if probe_id ~= '' and redis.call('HGET', key, 'p') == probe_id then
    redis.call('HDEL', key, 'p', 'ps')
  end
end
"""


@dataclass
class BreakerRecord:
    failures: int = 0
    opened_at: float | None = None
    probe_id: str | None = None
    probe_started: float = 0.0
    last_error: str = ""


class BreakerRecords(dict[str, BreakerRecord]):
    # The twin: its methods are the Lua functions of the same names.

    def check(self, key: str, now: float, cooldown: float) -> tuple[str, float, int, str]:
        r = self.get(key) or BreakerRecord()
        if r.opened_at is None:
            return "closed", 0.0, r.failures, r.last_error
        if now < r.opened_at + cooldown:
            return "open", r.opened_at + cooldown - now, r.failures, r.last_error
        if r.probe_id is not None and now < r.probe_started + cooldown:
            return "probing", 0.0, r.failures, r.last_error
        return "probe", 0.0, r.failures, r.last_error

    def take_probe(self, key: str, now: float, probe_id: str) -> None:
        record = self.setdefault(key, BreakerRecord())
        record.probe_id, record.probe_started = probe_id, now

    def success(self, key: str) -> bool:
        record = self.pop(key, None)
        return record is not None and record.opened_at is not None

    def failure(self, key: str, now: float, threshold: int, probe_id: str, error: str) -> bool:
        record = self.setdefault(key, BreakerRecord())
        is_probe = probe_id != "" and record.probe_id == probe_id
        if is_probe:
            record.probe_id, record.probe_started = None, 0.0
        elif record.opened_at is not None:
            return False
        record.failures += 1
        record.last_error = error
        if is_probe or record.failures >= threshold:
            record.opened_at = now
            return True
        return False

    def release(self, key: str, probe_id: str) -> None:
        record = self.get(key)
        if probe_id != "" and record is not None and record.probe_id == probe_id:
            record.probe_id, record.probe_started = None, 0.0


def breaker_key(prefix: str, key: str) -> str:
    return f"{prefix}cb:{key}"


def summary(error: str) -> str:
    line = " ".join(error.split())
    return line if len(line) <= ERROR_SUMMARY_CHARS else line[: ERROR_SUMMARY_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class ReadStatus(Step[BreakerStatus]):
    lua: ClassVar[str] = (
        LUA_PRELUDE
        + BREAKER_LUA
        + """
local verdict, _, failures, err = breaker_check(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {verdict, failures, err}
"""
    )
    reads_only: ClassVar[bool] = True
    key: str
    cooldown_s: float
    now: float

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [breaker_key(prefix, self.key)], [self.now, self.cooldown_s]

    def decode(self, reply: Any) -> BreakerStatus:
        verdict, failures, error = rows(reply)
        state = verdict if verdict in ("closed", "open") else "half_open"
        return BreakerStatus(cast(CircuitState, state), int(failures), error or None)

    def local(self, state: MemoryState) -> BreakerStatus:
        found = state.part(BreakerRecords).check(self.key, self.now, self.cooldown_s)
        return self.decode([found[0], found[2], found[3]])


BREAKER_ERRORS: tuple[type[ProviderError], ...] = (
    ProviderUnavailableError,
    errors.RateLimitError,
    errors.AuthenticationError,
    errors.InsufficientCreditsError,
    errors.ModelNotFoundError,
)
"""Errors that count: the provider serves no one now (402 too: it will not fix itself in
seconds). Another ``ProviderError`` proves it answered; the rest only free the probe slot."""


class CircuitOpenError(ProviderUnavailableError):
    """Raised without a network call while a circuit is open; ``retry_after``: the cooldown
    left (None while a probe is in flight). Not retryable."""


_NOT_THE_PROVIDERS = (CircuitOpenError, LocalRateLimitError)  # raised before any request


class CircuitBreaker:
    """One provider's circuit (by default in its own store); threshold or cooldown 0: off."""

    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        *,
        provider: str = "provider",
        model: str | None = None,
        endpoint: str | None = None,
        store: StateStore | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        for name, value in (("failure_threshold", failure_threshold), ("cooldown", cooldown)):
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                message = f"{name} must be a finite number >= 0, got {value!r}"
                raise ConfigurationError(message, field=name)
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.provider = provider
        self.model = model
        self.endpoint = endpoint
        self.store = store or MemoryStore(clock=clock or time.time)
        # Not chosen (neither a store nor a clock): a policy lends the breaker its store.
        self.store_given = store is not None or clock is not None
        self.key = f"breaker|{provider}|{model or ''}|{endpoint or ''}"
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def enabled(self) -> bool:
        return self.spec.enabled

    @property
    def spec(self) -> BreakerSpec:
        return BreakerSpec(self.key, self.failure_threshold, self.cooldown)

    def status(self) -> BreakerStatus:
        return self.store.run(ReadStatus(self.key, self.cooldown, self.store.clock()))

    @property
    def state(self) -> CircuitState:
        return self.status().state

    def outcome(
        self, admission: BreakerAdmission, error: BaseException | None
    ) -> BreakerOutcome | None:
        if not self.enabled:
            return None
        if error is None or (
            isinstance(error, ProviderError) and not isinstance(error, BREAKER_ERRORS)
        ):
            return BreakerOutcome(self.key, admission, "success")
        if isinstance(error, ProviderError) and not isinstance(error, _NOT_THE_PROVIDERS):
            summary = f"{type(error).__name__}: {error.message}"
            return BreakerOutcome(self.key, admission, "failure", self.failure_threshold, summary)
        return BreakerOutcome(self.key, admission, "release")

    def open_error(self, admission: BreakerAdmission) -> CircuitOpenError:
        last = admission.last_error
        cause = "" if last is None else f"; last error: {last}"
        if admission.retry_in is None:
            message = f"circuit half-open, a probe call is in flight{cause}"
        else:
            message = (
                f"circuit open after {admission.failures} consecutive failure(s), "
                f"cooling down for {admission.retry_in:.1f}s{cause}"
            )
        return CircuitOpenError(
            message,
            provider=self.provider,
            model=self.model,
            retryable=False,
            retry_after=admission.retry_in,
        )


def log_change(circuit: CircuitBreaker | None, outcome: BreakerOutcome | None) -> None:
    if circuit is None or outcome is None:  # no breaker: nothing changed
        return
    if outcome.kind == "failure":
        logger.warning(
            "circuit of %s open for %.1fs: %s",
            circuit.provider,
            circuit.cooldown,
            outcome.error_summary,
        )
    else:
        logger.info("circuit of %s closed: the provider answered", circuit.provider)


_LIVE: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()  # a breaker added by another thread mid-copy would raise


def live_breakers() -> list[CircuitBreaker]:
    with _LIVE_LOCK:
        return list(_LIVE)
