"""A provider call's two steps, one round trip each: :class:`CallPlan` before it (all or
nothing), :class:`CallEnd` after it; :class:`Hold` and :class:`HeldStream` for a non-policy."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

from pygent_lc.errors import BudgetExceededError, InvalidInputError
from pygent_lc.limits import breaker, budget, rate, usage
from pygent_lc.limits.breaker import ADMITTED, BreakerAdmission, BreakerOutcome, BreakerSpec
from pygent_lc.limits.budget import BudgetRefusal, BudgetReservation, BudgetSpec, CostBudget
from pygent_lc.limits.rate import MIN_RATE_WAIT_S, RateSpec
from pygent_lc.limits.script import LUA_PRELUDE, Arg, MemoryState, Step, json_rows, number, rows
from pygent_lc.limits.store import WRITABLE_TTL_MS, StateStore, writable_key
from pygent_lc.limits.usage import CallMeter

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CallStart:
    """Allowed, or ``refused_by`` one part; ``now``: the time decided at (maybe later than
    the caller's clock, see :mod:`~pygent_lc.limits.rate`)."""

    allowed: bool
    refused_by: Literal["breaker", "budget", "rate"] | None = None
    breaker: BreakerAdmission | None = None
    reservations: tuple[BudgetReservation, ...] = ()
    budget_refusal: BudgetRefusal | None = None
    rate_wait_s: float = 0.0
    rate_key: str | None = None
    now: float = 0.0


class Settlement(NamedTuple):
    """A reservation given back, with the call's real cost (0 when it failed before any)."""

    reservation: BudgetReservation
    cost_usd: float


# Both steps read ``now``, then each part's KEYS and ARGV in order (Lua 5.1 evaluates
# argument lists and table constructors left to right).
_READER = """
local k, a = 0, 0
local function key() k = k + 1 return KEYS[k] end
local function arg() a = a + 1 return ARGV[a] end
local function num() return tonumber(arg()) end
local now = num()
"""

BEGIN_LUA = (
    LUA_PRELUDE
    + budget.LEDGER_LUA
    + breaker.BREAKER_LUA
    + rate.RATE_LUA
    + _READER
    + """
redis.call('SET', KEYS[#KEYS], ARGV[1], 'PX', ARGV[#ARGV])
local rates = {}
for i = 1, num() do
  rates[i] = {key = key(), clock = key(), limit = num(), period = num(), member = arg()}
  now = math.max(now, rate_time(rates[i].clock, now))
end
local t = fmt(now)
local budgets, budget_out = {}, {}
for i = 1, num() do
  local b = {h = key(), z = key(), m = key(), limit = num(), amount = num(), id = arg(),
             lease = num(), ttl = num()}
  local verdict, spent, reserved, unit = ledger_check(b.h, b.z, b.m, now, b.limit, b.amount)
  budget_out[i] = {verdict, fmt(spent), fmt(reserved), fmt(unit)}
  if verdict ~= 'ok' then
    return reply({'budget', budget_out, {}, '0', 0, t})
  end
  b.unit = unit
  b.reserved = reserved
  budgets[i] = b
end
local breaker, breaker_out = nil, {}
if arg() == '1' then
  breaker = {key = key(), cooldown = num(), probe_id = arg()}
  local verdict, retry_in, failures, err = breaker_check(breaker.key, now, breaker.cooldown)
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
  ledger_commit(b.h, b.z, now, b.id, b.unit, b.amount == nil, b.reserved, b.lease, b.ttl)
end
if breaker and breaker.verdict == 'probe' then
  breaker_take_probe(breaker.key, now, breaker.probe_id)
end
for _, r in ipairs(rates) do rate_commit(r.key, now, r.period, r.member) end
return reply({'ok', budget_out, breaker_out, '0', 0, t})
"""
)

END_LUA = (
    LUA_PRELUDE
    + budget.LEDGER_LUA
    + usage.USAGE_LUA
    + breaker.BREAKER_LUA
    + _READER
    + """
for _ = 1, num() do
  ledger_settle(key(), key(), key(), arg(), num(), num())
end
if arg() == '1' then
  local h, l, index, provider, model, values = key(), key(), key(), arg(), arg(), {}
  for i = 1, #USAGE_FIELDS do values[i] = num() end
  usage_record(h, l, index, provider, model, values, num())
end
local mode = arg()
if mode == 'success' then return breaker_success(key()) end
if mode == 'failure' then return breaker_failure(key(), now, num(), arg(), arg()) end
if mode == 'release' then
  local cb, _ = key(), num()
  breaker_release(cb, arg())
end
return 0
"""
)


@dataclass(frozen=True, slots=True)
class CallPlan(Step[CallStart]):
    """Budgets, breaker, rate limits: a refusal takes nothing. Keys should differ between a
    plan's rate limits, and between its budgets; :meth:`step` picks the time and the ids."""

    lua: ClassVar[str] = BEGIN_LUA
    breaker: BreakerSpec | None = None
    rates: tuple[RateSpec, ...] = ()
    budgets: tuple[BudgetSpec, ...] = ()
    now: float = 0.0
    probe_id: int = 0
    members: tuple[str, ...] = ()
    holds: tuple[str, ...] = ()

    def step(self, now: float) -> CallPlan:
        for limit in self.rates:
            rate.check_spec(limit)
        for spec in self.budgets:
            budget.check_spec(spec)
        return CallPlan(  # not dataclasses.replace: this runs before every call
            self.breaker,
            self.rates,
            self.budgets,
            now,
            secrets.randbits(53) | 1,  # exact in Lua's doubles, and never 0
            tuple(secrets.token_hex(8) for _ in self.rates),
            tuple(secrets.token_hex(8) for _ in self.budgets),
        )

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        keys: list[str] = []
        args: list[Arg] = [self.now, len(self.rates)]
        for limit, member in zip(self.rates, self.members, strict=True):
            keys += rate.rate_keys(prefix, limit.key)
            args += [limit.limit, limit.period_s, member]
        args.append(len(self.budgets))
        for spec, hold in zip(self.budgets, self.holds, strict=True):
            bucket = budget.bucket_of(self.now, spec.window_s)
            ledger, ttl_ms = budget.ledger_keys(prefix, spec.key, spec.window_s, bucket)
            keys += ledger
            amount: Arg = "" if spec.amount_usd is None else spec.amount_usd
            args += [spec.limit_usd, amount, hold, spec.lease_s, ttl_ms]
        spec_b = self.breaker
        if spec_b is not None and spec_b.enabled:
            keys.append(breaker.breaker_key(prefix, spec_b.key))
            args += [1, spec_b.cooldown_s, self.probe_id]
        else:
            args.append(0)
        return [*keys, writable_key(prefix)], [*args, WRITABLE_TTL_MS]

    def decode(self, reply: Any) -> CallStart:
        status, budgets, found, wait, index, now = (
            reply if isinstance(reply, tuple) else json_rows(reply)
        )
        decided_at = number(now)
        admission = ADMITTED
        if rows(found):  # the breaker's verdict: closed, open, probing or probe
            verdict, retry_in, failures, error = found
            admission = BreakerAdmission(
                allowed=verdict in ("closed", "probe"),
                probe_id=self.probe_id if verdict == "probe" else None,
                retry_in=number(retry_in) if verdict == "open" else None,
                failures=int(failures),
                last_error=error or None,
            )
        found_budgets = [(str(v), number(s), number(r), number(u)) for v, s, r, u in rows(budgets)]
        if status == "budget":
            spec, last = self.budgets[len(found_budgets) - 1], found_budgets[-1]
            refusal = BudgetRefusal(spec.key, spec.limit_usd, *last[1:], last[0] == "wait")
            return CallStart(False, "budget", budget_refusal=refusal, now=decided_at)
        if status == "breaker":
            return CallStart(False, "breaker", admission, now=decided_at)
        if status == "rate":
            wait_s, key = max(number(wait), MIN_RATE_WAIT_S), self.rates[int(index) - 1].key
            return CallStart(False, "rate", rate_wait_s=wait_s, rate_key=key, now=decided_at)
        reservations = []
        for s, hold, found in zip(self.budgets, self.holds, found_budgets, strict=True):
            at = budget.bucket_of(self.now, s.window_s)
            unknown = s.amount_usd is None
            reservations.append(BudgetReservation(s.key, s.window_s, at, hold, *found[1:], unknown))
        return CallStart(True, breaker=admission, reservations=tuple(reservations), now=decided_at)

    def local(self, state: MemoryState) -> CallStart:
        now = self.now
        logs, ledgers = state.part(rate.RateLogs), state.part(budget.Ledgers)
        records = state.part(breaker.BreakerRecords)
        for limit in self.rates:
            now = max(now, logs.time(limit.key, now))
        found: list[tuple[str, float, float, float]] = []
        buckets: list[budget.LedgerBucket] = []
        for spec in self.budgets:
            # The bucket the client's time falls in, as the Redis keys are.
            where = budget.bucket_of(self.now, spec.window_s)
            buckets.append(ledgers.bucket(spec.key, spec.window_s, where))
            largest = ledgers.largest.get(spec.key, 0.0)
            found.append(buckets[-1].check(largest, now, spec.limit_usd, spec.amount_usd))
            if found[-1][0] != "ok":
                return self.decode(("budget", found, (), 0, 0, now))
        verdict: tuple[str, float, int, str] | tuple[()] = ()
        spec_b = self.breaker
        if spec_b is not None and spec_b.enabled:
            verdict = records.check(spec_b.key, now, spec_b.cooldown_s)
            if verdict[0] in ("open", "probing"):
                return self.decode(("breaker", found, verdict, 0, 0, now))
        for index, limit in enumerate(self.rates, start=1):
            free, wait = logs.check(limit.key, now, limit.limit, limit.period_s)
            if not free:
                return self.decode(("rate", found, verdict, wait, index, now))
        for spec, bucket, hold, (_, _, reserved, unit) in zip(
            self.budgets, buckets, self.holds, found, strict=True
        ):
            bucket.commit(now, hold, unit, spec.amount_usd is None, reserved, spec.lease_s)
        if spec_b is not None and verdict and verdict[0] == "probe":
            records.take_probe(spec_b.key, now, str(self.probe_id))
        for limit in self.rates:
            logs.commit(limit.key, now)
        return self.decode(("ok", found, verdict, 0, 0, now))


@dataclass(frozen=True, slots=True)
class CallEnd(Step[bool]):
    """Answers whether the breaker changed: a failure opened it or a success closed it."""

    lua: ClassVar[str] = END_LUA
    after_call: ClassVar[bool] = True
    breaker: BreakerOutcome | None = None
    settlements: tuple[Settlement, ...] = ()
    usage: CallMeter | None = None
    now: float = 0.0

    def step(self, now: float) -> CallEnd:
        """``InvalidInputError`` for a figure not finite and >= 0 (Lua reads NaN as nil)."""
        for settlement in self.settlements:
            budget.check_cost(settlement.cost_usd)
        used = self.usage
        if used is not None and not all(0.0 <= v < math.inf for v in used.values()):
            raise InvalidInputError("usage figures must be finite and >= 0")
        return CallEnd(self.breaker, self.settlements, self.usage, now)

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        keys: list[str] = []
        args: list[Arg] = [self.now, len(self.settlements)]
        for held, cost in self.settlements:
            ledger, ttl_ms = budget.ledger_keys(prefix, held.key, held.window_s, held.bucket)
            keys += ledger
            args += [held.hold_id, cost, ttl_ms]
        used = self.usage
        if used is not None:
            keys += usage.usage_keys(prefix, used.provider, used.model)
            args += [1, used.provider, used.model, *used.values(), usage.LATENCY_SAMPLES]
        else:
            args.append(0)
        outcome = self.breaker
        if outcome is None:
            return keys, [*args, ""]
        probe = outcome.admission.probe_id
        keys.append(breaker.breaker_key(prefix, outcome.key))
        summary = breaker.summary(outcome.error_summary)
        return keys, [*args, outcome.kind, outcome.threshold, probe or "", summary]

    def decode(self, reply: Any) -> bool:
        return bool(reply)

    def local(self, state: MemoryState) -> bool:
        for held, cost in self.settlements:
            state.part(budget.Ledgers).settle(held, cost)
        if (used := self.usage) is not None:
            state.part(usage.UsageBuckets).add(used)
        outcome = self.breaker
        if outcome is None:
            return False
        records, key, probe = state.part(breaker.BreakerRecords), outcome.key, outcome.admission
        probe_id = "" if probe.probe_id is None else str(probe.probe_id)
        if outcome.kind == "success":
            return records.success(key)
        if outcome.kind == "failure":
            error = breaker.summary(outcome.error_summary)
            return records.failure(key, self.now, outcome.threshold, probe_id, error)
        records.release(key, probe_id)
        return False


# The holds whose call this thread or task is making (maybe given back since).
_holds: ContextVar[tuple[Hold, ...]] = ContextVar("budget_holds", default=())
_releasing = threading.Lock()
_on_loops: set[Hold] = set()  # holds of unknown cost in flight, taken on an event loop
STALL_S = 2.0  # how long a thread waits on a call of unknown cost whose loop does not run
RELEASE_WAIT_S = 0.1  # how long a dropped HeldStream waits for its reservation to go back


def budget_wait(
    budget: CostBudget,
    store: StateStore,
    refusal: BudgetRefusal,
    tries: int,
    *,
    blocking: bool = False,
) -> float:
    """Jittered seconds to wait after ``budget`` refused; ``BudgetExceededError`` when it is
    spent, or waiting would deadlock (our own call, or a ``blocking`` wait on a running loop)."""
    if not refusal.wait:
        raise budget.exceeded(refusal)
    if any(hold.holds(store, refusal.key, unknown_cost=True) for hold in _holds.get()):
        raise BudgetExceededError(
            "the cost of a call is not known yet and the call in flight was started by "
            "this thread or task: waiting for it would deadlock"
        )
    if blocking and _loop_running_here():
        raise BudgetExceededError(
            f"a call of unknown cost is in flight on budget {refusal.key!r}, and waiting "
            "for it here would block this thread's running event loop, which that call "
            "may need: use the async entry point (await generate / ainvoke), or give "
            "the budget an estimator (calls with a bound do not wait)"
        )
    return budget.wait_seconds(tries) * random.uniform(0.5, 1.0)


def _loop_running_here() -> bool:
    with contextlib.suppress(RuntimeError):
        return asyncio.get_running_loop() is not None
    return False


async def abegin_call(store: StateStore, plan: CallPlan) -> CallStart:
    """``store.abegin_call(plan)``; a caller cancelled during a round trip (the store may have
    reserved already) gives the reservations back once the reply comes."""
    if type(store).arun is StateStore.arun:  # in memory: no await, nothing to cancel midway
        return await store.abegin_call(plan)
    begun = asyncio.ensure_future(store.abegin_call(plan))
    try:
        return await asyncio.shield(begun)
    except asyncio.CancelledError:

        def give_back(done: asyncio.Future[CallStart]) -> None:
            if not done.cancelled() and done.exception() is None:
                settled = tuple(Settlement(r, 0.0) for r in done.result().reservations)
                store.end_call(CallEnd(settlements=settled))

        begun.add_done_callback(give_back)
        raise


def reserved_here(store: StateStore, key: str) -> bool:
    """Whether this thread or task holds ``key`` of ``store`` (a call inside is the same one)."""
    return any(hold.holds(store, key) for hold in _holds.get())


class Hold:
    """One call's reservation on ``budget`` (none when None), taken by ``(async) with``,
    settled once on leaving or :meth:`release` with :meth:`settle`'s cost, else ``measure()``."""

    def __init__(
        self,
        budget: CostBudget | None,
        prompt: str,
        max_tokens: int | None,
        samples: int = 1,
        *,
        measure: Callable[[], float] | None = None,
    ) -> None:
        self._budget = budget
        spec = None if budget is None else budget.spec(prompt, max_tokens, samples)
        self._plan = None if spec is None else CallPlan(budgets=(spec,))
        self._measure = measure if measure is not None or budget is None else budget.measure
        self._reservation: BudgetReservation | None = None
        self._cost: float | None = None
        self._give_up = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ping: tuple[asyncio.AbstractEventLoop, float, threading.Event] | None = None

    @property
    def held(self) -> bool:
        return self._reservation is not None

    def holds(self, store: StateStore, key: str, *, unknown_cost: bool = False) -> bool:
        held, owner = self._reservation, self._budget
        return (
            held is not None
            and (held.unknown_cost or not unknown_cost)
            and held.key == key
            and owner is not None
            and owner.store is store
        )

    def _scope(self, entered: bool) -> None:
        others = tuple(hold for hold in _holds.get() if hold.held and hold is not self)
        _holds.set((*others, self) if entered else others)

    def settle(self, cost_usd: float) -> None:
        budget.check_cost(cost_usd)
        self._cost = cost_usd

    def __enter__(self) -> None:
        if self._budget is None or self._plan is None:
            return
        tries = 0
        while wait := self._verdict(self._budget.store.begin_call(self._plan), tries, True):
            time.sleep(wait)
            tries += 1

    async def __aenter__(self) -> None:
        if self._budget is None or self._plan is None:
            return
        self._loop, tries = asyncio.get_running_loop(), 0
        while wait := self._verdict(await abegin_call(self._budget.store, self._plan), tries):
            await asyncio.sleep(wait)
            tries += 1

    def _verdict(self, start: CallStart, tries: int, blocking: bool = False) -> float:
        """0 once admitted; else seconds to wait (or raise, also past ``max_wait_s``)."""
        budget = self._budget
        assert budget is not None
        if start.allowed:
            self._reservation = start.reservations[0]
            self._scope(entered=True)
            if self._reservation.unknown_cost and self._loop is not None:
                with _releasing:
                    _on_loops.add(self)
            return 0.0
        assert start.budget_refusal is not None  # the only part of the plan
        wait = budget_wait(budget, budget.store, start.budget_refusal, tries, blocking=blocking)
        if blocking:
            self._check_loop_runs(budget)
        if tries == 0:
            self._give_up = time.monotonic() + budget.max_wait_s
        elif time.monotonic() + wait > self._give_up:
            raise BudgetExceededError(
                f"waited {budget.max_wait_s:g} s (max_wait_s) for the call of unknown cost "
                f"in flight on budget {budget.key!r}; it may be waiting for this caller "
                "(e.g. its event loop blocked until this thread ends)"
            )
        return wait

    def _check_loop_runs(self, budget: CostBudget) -> None:
        """Raise when the call waited for runs on this process's loop, stalled for STALL_S."""
        with _releasing:
            holder = next(
                (h for h in _on_loops if h.holds(budget.store, budget.key, unknown_cost=True)), None
            )
        loop, ping = None if holder is None else holder._loop, self._ping
        if loop is None:
            self._ping = None
        elif ping is None or ping[0] is not loop or ping[2].is_set():
            ran = threading.Event()
            with contextlib.suppress(RuntimeError):  # a closed loop never runs it
                loop.call_soon_threadsafe(ran.set)
            self._ping = (loop, time.monotonic(), ran)
        elif time.monotonic() - ping[1] > STALL_S:
            raise BudgetExceededError(
                f"the call of unknown cost in flight on budget {budget.key!r} runs on an "
                f"event loop that has not run for {STALL_S:g} s: its thread is blocked, "
                "maybe waiting for this one (call with await there, or off that thread)"
            )

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.arelease()

    def _end(self) -> tuple[StateStore, CallEnd] | None:
        with _releasing:
            reservation, self._reservation = self._reservation, None
            _on_loops.discard(self)
        self._scope(entered=False)
        if reservation is None or self._budget is None or self._measure is None:
            return None
        cost = self._measure() if self._cost is None else self._cost
        return self._budget.store, CallEnd(settlements=(Settlement(reservation, cost),))

    def release(self) -> None:
        if (ending := self._end()) is not None:
            ending[0].end_call(ending[1])

    async def arelease(self) -> None:
        """Completes even if the caller is cancelled."""
        if (ending := self._end()) is not None:
            await asyncio.shield(ending[0].aend_call(ending[1]))


class HeldStream(AsyncIterator[T]):
    """A stream holding a budget reservation (``start`` gives both) until it ends, is closed
    or dropped (not an async generator: its loop finalizes it late); the finalizer releases
    from a thread, as it may run anywhere (inside the store's lock too)."""

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
                self._hold._scope(entered=False)  # the reader's code is not the stream's call
            assert self._hold is not None  # taken with the stream
            self._hold._scope(entered=True)
            try:
                return await anext(self._inner)
            finally:
                self._hold._scope(entered=False)
        except BaseException:
            self._start = None
            if self._hold is not None:
                await self._hold.arelease()
            raise

    async def aclose(self) -> None:
        self._start = None
        if self._hold is not None:
            await self._hold.arelease()
        inner, self._inner = self._inner, None
        if (aclose := getattr(inner, "aclose", None)) is not None:
            await aclose()

    def __del__(self) -> None:
        hold = self._hold
        if hold is not None and hold.held:
            releasing = threading.Thread(target=hold.release, daemon=True)
            with contextlib.suppress(RuntimeError):  # the interpreter is shutting down
                releasing.start()
                releasing.join(RELEASE_WAIT_S)
