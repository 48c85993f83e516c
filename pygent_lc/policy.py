"""``ProviderPolicy``: one provider's model under its limits, breaker, retries and deadline.

Per provider call, in this order:

1. the deadline (``request_timeout``) starts; it covers every attempt and wait;
2. one step of the state store (:meth:`~pygent_lc.limits.StateStore.begin_call`)
   decides whether the call may go: the cost budget, the circuit breaker
   (:class:`~pygent_lc.limits.breaker.CircuitBreaker`) and the rate limit. A refused
   call raises without touching the network: ``BudgetExceededError``,
   ``CircuitOpenError``, or for the rate limit ``LocalRateLimitError`` (mode
   ``raise``, or when the wait would pass the deadline; mode ``wait`` waits);
3. the model is tried under the :class:`~pygent_lc.retry.RetryPolicy`; a retry
   takes a rate-limit slot of its own. Streams are retried only before their
   first chunk, since after that text has been delivered, and get the full
   deadline again after each chunk;
4. one step (:meth:`~pygent_lc.limits.StateStore.end_call`) records the
   outcome: the breaker's (one decision per provider call, so a call that used
   up its retries counts once), the budget's settlement with the call's real
   cost, and the usage totals.

Nothing is asked of the store when a policy has no limit, no enabled breaker
and no usage to record. The model runs as a direct child of the caller's run,
so LangChain traces show each attempt (tagged ``retry:attempt:N`` after the
first) under the chain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, convert_to_messages, get_buffer_string
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableSerializable,
)
from pydantic import ConfigDict, Field, PrivateAttr
from tenacity import AsyncRetrying, AttemptManager, Retrying

from pygent_lc.errors import BudgetExceededError, ConfigurationError, ProviderError
from pygent_lc.limits import (
    ADMITTED,
    BudgetSpec,
    CallEnd,
    CallPlan,
    CallStart,
    MemoryStore,
    RateSpec,
    Settlement,
    StateStore,
)
from pygent_lc.limits.breaker import CircuitBreaker, log_change
from pygent_lc.limits.budget import CostBudget
from pygent_lc.limits.call import budget_wait, reserved_here
from pygent_lc.limits.rate import LocalRateLimitError, RateLimitMode
from pygent_lc.limits.usage import CallMeter, fed_tracker, with_handler
from pygent_lc.providers.boundary import ProviderBoundary
from pygent_lc.providers.http import Deadline
from pygent_lc.retry import RetryPolicy, deadline_scope

_NOTHING: Any = object()


class ProviderPolicy(RunnableSerializable[Any, Any]):
    """A provider's model (``bound``) behind its limits, breaker, retry policy and deadline."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    bound: Runnable[Any, Any]
    """The chat model, possibly with bindings (tools, structured output)."""

    provider: str = "provider"
    """The provider's name, for errors and usage."""

    model_name: str | None = None
    """The model's name, for usage (a reply that names the model that served wins)."""

    retry: RetryPolicy = RetryPolicy()

    circuit: CircuitBreaker | None = None
    """The provider's breaker; None turns it off. Its store is this policy's store."""

    store: StateStore = Field(default_factory=MemoryStore)
    """Where limits and usage are kept; a breaker keeps its circuit in its own store,
    which :func:`~pygent_lc.chain.with_provider_policy` makes this one."""

    rate: RateSpec | None = None
    """Requests allowed per sliding window, shared by everything using the same key."""

    rate_mode: RateLimitMode = "wait"

    budget: CostBudget | None = None
    """A spending limit every call of this provider reserves against."""

    record_usage: bool = False
    """Add each call's usage to the store's totals (``pygent-lc usage``)."""

    _traced_names: dict[tuple[int, object], tuple[BaseChatModel, tuple[str, str]]] = PrivateAttr(
        default_factory=dict
    )
    """The provider and model names a model's runs are traced with, per per-call ``model``."""

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self._one_store()  # here, not in a validator, which would wrap its error in pydantic's

    def _one_store(self) -> None:
        """Breaker, budget, rate limit and usage live in one store, never split.

        A breaker or budget built without a store of its own keeps its state in
        this policy's store; without a policy store, the policy adopts theirs.
        Two stores chosen on purpose that differ are a configuration error.
        """
        for part in (self.circuit, self.budget):
            if part is None or part.store is self.store:
                continue
            if not part.store_given:
                part.store = self.store
            elif "store" not in self.model_fields_set:
                self.store = part.store
            else:
                raise ConfigurationError(
                    f"the {type(part).__name__} of provider {self.provider!r} keeps its state "
                    "in another store than its policy: give both the same store",
                    field="store",
                )

    @property
    def state(self) -> StateStore:
        """The store this policy's steps run in: its breaker's, which validation makes
        the policy's own (a ``model_copy`` that swaps the breaker keeps the breaker's)."""
        return self.circuit.store if self.circuit is not None else self.store

    # invoke/ainvoke make the first attempt before any retry machinery: most calls
    # need no second one. A failure is handed to the tenacity loop as its attempt 1
    # (see _replayed), so what is retried, the attempt numbers and the deadline are
    # those of a loop that made every attempt. The loop runs outside the ``except``
    # block, so a later attempt's error does not get the first one as its context.
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        with _ProviderCall(self, input, kwargs, config) as call:
            started = time.perf_counter()
            first: Exception | None = None
            try:
                result = self.bound.invoke(input, call.config(config, 1), **kwargs)
            except Exception as exc:
                first = exc
            if first is not None:
                call.attempt_ended(started, failed=True)
                elapsed = time.perf_counter() - started
                result = self._retried(call, first, elapsed, input, config, kwargs)
            else:
                call.attempt_ended(started, result)
            call.observe(result)
        return result

    def _retried(
        self,
        call: _ProviderCall,
        first: Exception,
        elapsed: float,
        input: Any,
        config: RunnableConfig | None,
        kwargs: dict[str, Any],
    ) -> Any:
        for attempt in Retrying(**self.retry.tenacity_kwargs_after(elapsed)):
            with attempt:
                number = _replayed(attempt, first)
                call.before_attempt(number)
                started = time.perf_counter()
                try:
                    result = self.bound.invoke(input, call.config(config, number), **kwargs)
                except Exception:
                    call.attempt_ended(started, failed=True)
                    raise
                call.attempt_ended(started, result)
        return result

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        async with _ProviderCall(self, input, kwargs, config) as call:
            started = time.perf_counter()
            first: Exception | None = None
            try:
                result = await self.bound.ainvoke(input, call.config(config, 1), **kwargs)
            except Exception as exc:
                first = exc
            if first is not None:
                call.attempt_ended(started, failed=True)
                elapsed = time.perf_counter() - started
                result = await self._aretried(call, first, elapsed, input, config, kwargs)
            else:
                call.attempt_ended(started, result)
            call.observe(result)
        return result

    async def _aretried(
        self,
        call: _ProviderCall,
        first: Exception,
        elapsed: float,
        input: Any,
        config: RunnableConfig | None,
        kwargs: dict[str, Any],
    ) -> Any:
        async for attempt in AsyncRetrying(**self.retry.tenacity_kwargs_after(elapsed)):
            with attempt:
                number = _replayed(attempt, first)
                await call.abefore_attempt(number)
                started = time.perf_counter()
                try:
                    result = await self.bound.ainvoke(input, call.config(config, number), **kwargs)
                except Exception:
                    call.attempt_ended(started, failed=True)
                    raise
                call.attempt_ended(started, result)
        return result

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        with _ProviderCall(self, input, kwargs, config) as call:
            for attempt in Retrying(**self.retry.tenacity_kwargs):
                with attempt:
                    number = attempt.retry_state.attempt_number
                    call.before_attempt(number)
                    started = time.perf_counter()
                    with call.attempt_failing(started):
                        chunks = self.bound.stream(input, call.config(config, number), **kwargs)
                        chunk = next(chunks, _NOTHING)
            with call.streaming(started) as delivered:
                while chunk is not _NOTHING:
                    delivered(chunk)
                    yield chunk
                    call.restart_deadline()
                    chunk = next(chunks, _NOTHING)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async with _ProviderCall(self, input, kwargs, config) as call:
            async for attempt in AsyncRetrying(**self.retry.tenacity_kwargs):
                with attempt:
                    number = attempt.retry_state.attempt_number
                    await call.abefore_attempt(number)
                    started = time.perf_counter()
                    with call.attempt_failing(started):
                        chunks = self.bound.astream(input, call.config(config, number), **kwargs)
                        chunk = await anext(chunks, _NOTHING)
            with call.streaming(started) as delivered:
                while chunk is not _NOTHING:
                    delivered(chunk)
                    yield chunk
                    call.restart_deadline()
                    chunk = await anext(chunks, _NOTHING)

    def batch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return Runnable.batch(self, inputs, config, **kwargs)

    async def abatch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return await Runnable.abatch(self, inputs, config, **kwargs)


class _ProviderCall:
    """One provider call's deadline, its steps in the state store, and its outcome."""

    def __init__(
        self,
        policy: ProviderPolicy,
        input: Any,
        kwargs: dict[str, Any],
        config: RunnableConfig | None,
    ) -> None:
        self._policy = policy
        self._kwargs = kwargs
        self._call_config = config
        self._deadline_scope = deadline_scope(policy.retry.deadline)
        self._deadline: Deadline | None = None
        self._plan = _plan_of(policy, input, kwargs)
        self._start: CallStart | None = None
        self._meter = _meter_of(policy)
        self._tracker = fed_tracker(config)
        # Usage is read from what the model returns; a model whose output is parsed
        # (structured output) is watched through callbacks instead.
        watched = (self._meter is not None or self._tracker is not None) and not _returns_messages(
            policy.bound
        )
        self._meter_as_callback = watched and self._meter is not None
        self._tracker_as_callback = watched and self._tracker is not None
        self._names: tuple[str, str] | None = None
        self.delivered = False
        """A stream handed out a chunk: the provider was serving."""

    # -- before ----------------------------------------------------------------------------

    def __enter__(self) -> _ProviderCall:
        self._deadline = self._deadline_scope.__enter__()
        try:
            if self._plan is not None:
                tries = 0
                store = self._policy.state
                while wait := self._verdict(store.begin_call(self._plan), tries, blocking=True):
                    time.sleep(wait)
                    tries += 1
        except BaseException:
            self._deadline_scope.__exit__(None, None, None)
            raise
        return self

    async def __aenter__(self) -> _ProviderCall:
        self._deadline = self._deadline_scope.__enter__()
        try:
            if self._plan is not None:
                tries = 0
                store = self._policy.state
                while (wait := self._verdict(await store.abegin_call(self._plan), tries)) > 0:
                    await asyncio.sleep(wait)
                    tries += 1
        except BaseException:
            self._deadline_scope.__exit__(None, None, None)
            raise
        return self

    def _verdict(self, start: CallStart, tries: int, *, blocking: bool = False) -> float:
        """0 when the call may go; else seconds to wait before asking again, or raise
        (``blocking``: the wait would block this thread)."""
        if start.allowed:
            self._start = start
            return 0.0
        policy = self._policy
        if start.refused_by == "breaker" and policy.circuit is not None:
            raise policy.circuit.open_error(start.breaker or ADMITTED)
        if start.refused_by == "budget" and policy.budget is not None:
            refusal = start.budget_refusal
            assert refusal is not None  # the store says why a budget refused
            wait_s = budget_wait(policy.budget, policy.state, refusal, tries, blocking=blocking)
            if not self._fits(wait_s):
                raise BudgetExceededError("waited for the budget until the deadline")
            return wait_s
        if start.refused_by == "rate":
            return self._rate_wait(start.rate_wait_s)
        raise BudgetExceededError(f"call refused by {start.refused_by}")  # pragma: no cover

    def _rate_wait(self, wait_s: float) -> float:
        policy = self._policy
        if policy.rate_mode == "raise" or not self._fits(wait_s):
            rate = policy.rate
            limit = "" if rate is None else f" {rate.limit}/{rate.period_s:g}s"
            raise LocalRateLimitError(
                f"rate limit{limit} reached; a slot frees in {wait_s:.2f}s",
                provider=policy.provider,
                retryable=False,
                retry_after=wait_s,
            )
        return wait_s

    def _fits(self, wait_s: float) -> bool:
        return self._deadline is None or wait_s < self._deadline.remaining()

    def before_attempt(self, number: int) -> None:
        """A retry takes a rate-limit slot of its own (the first one came with the plan)."""
        rate = self._policy.rate
        if rate is None or number == 1:
            return
        store = self._policy.state
        while (wait := store.take_rate_token(rate.key, rate.limit, rate.period_s)) > 0:
            time.sleep(self._rate_wait(wait))

    async def abefore_attempt(self, number: int) -> None:
        rate = self._policy.rate
        if rate is None or number == 1:
            return
        store = self._policy.state
        # The slot frees in the store (maybe in another process): asking again is the signal.
        while (wait := await store.atake_rate_token(rate.key, rate.limit, rate.period_s)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(self._rate_wait(wait))

    def config(self, config: RunnableConfig | None, number: int) -> RunnableConfig | None:
        """``config`` for attempt ``number``: tagged ``retry:attempt:N`` after the first,
        metered."""
        if number > 1:
            config = config or {}
            config = {**config, "tags": [*config.get("tags", []), f"retry:attempt:{number}"]}
        if self._tracker_as_callback:
            assert self._tracker is not None
            config = with_handler(config, self._tracker)
        if self._meter is None:
            return config
        self._meter.attempts += 1
        return with_handler(config, self._meter) if self._meter_as_callback else config

    def attempt_ended(self, started: float, reply: Any = None, *, failed: bool = False) -> None:
        """The attempt begun at ``started`` answered ``reply``, or ``failed``: one request
        for the tracker the call feeds, counted as its callbacks would count it."""
        tracker = self._tracker
        if tracker is None or self._tracker_as_callback:
            return
        latency_s = time.perf_counter() - started
        provider, model = self._names or self._traced_names()
        answer = reply if isinstance(reply, BaseMessage) else None
        tracker.count(provider, model, latency_s, answer, failed=failed)

    @contextmanager
    def attempt_failing(self, started: float) -> Iterator[None]:
        """Count the attempt begun at ``started`` as failed if the block raises
        (a failure, or the call was cancelled)."""
        try:
            yield
        except BaseException:
            self.attempt_ended(started, failed=True)
            raise

    @contextmanager
    def streaming(self, started: float) -> Iterator[Callable[[Any], None]]:
        """The stream of the attempt begun at ``started``, from its first chunk: each
        chunk is given to the callable yielded before it is handed out; the stream is
        counted as one request when the block ends (failed, closed by its consumer or
        cancelled counts as failed, as the model's own run does)."""
        chunks: list[Any] = []
        counted = self._tracker is not None and not self._tracker_as_callback

        def delivered(chunk: Any) -> None:
            self.observe(chunk)
            if counted:
                chunks.append(chunk)

        try:
            yield delivered
        except BaseException:
            if counted:
                self.attempt_ended(started, failed=True)
            raise
        if counted:
            reply = chunks[0] + chunks[1:] if len(chunks) > 1 else (chunks or [None])[0]
            self.attempt_ended(started, reply)

    def _traced_names(self) -> tuple[str, str]:
        """The provider and model a callback would see the model's run start with:
        ``ls_provider`` and ``ls_model_name`` of its LangSmith params, which a call's
        keywords (a per-call ``model``, the binding's) may change."""
        runnable, kwargs = self._policy.bound, self._kwargs
        if isinstance(runnable, RunnableBinding):
            kwargs = {**runnable.kwargs, **kwargs}
            runnable = runnable.bound
        assert isinstance(runnable, BaseChatModel)  # _returns_messages
        # This package's models name the provider and model from themselves and a
        # per-call ``model`` only, so theirs are worked out once per such ``model``.
        per_call = kwargs.get("model")
        cache = self._policy._traced_names
        key = (id(runnable), per_call) if isinstance(runnable, ProviderBoundary) else None
        if key is not None and isinstance(per_call, str | None):
            known = cache.get(key)
            if known is not None and known[0] is runnable:
                self._names = known[1]
                return known[1]
        traced: dict[str, Any] = dict((self._call_config or {}).get("metadata") or {})
        traced.update(runnable._get_ls_params(**kwargs))
        self._names = (
            str(traced.get("ls_provider") or "unknown"),
            str(traced.get("ls_model_name") or "unknown"),
        )
        if key is not None and isinstance(per_call, str | None):
            cache[key] = (runnable, self._names)
        return self._names

    def observe(self, output: Any) -> None:
        """A reply, or a chunk of a stream: the provider answered (and said what it cost)."""
        self.delivered = True
        if self._meter is not None and not self._meter_as_callback:
            self._meter.observe(output)

    def restart_deadline(self) -> None:
        """The next chunk of a stream gets the full deadline again."""
        if self._deadline is not None:
            self._deadline.restart()

    # -- after -----------------------------------------------------------------------------

    def __exit__(self, *exc_info: Any) -> None:
        end = self._ended(*exc_info)
        if end is not None:
            self._changed(self._policy.state.end_call(end).breaker_changed, end)

    async def __aexit__(self, *exc_info: Any) -> None:
        end = self._ended(*exc_info)
        if end is not None:
            self._changed((await self._policy.state.aend_call(end)).breaker_changed, end)

    def _ended(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> CallEnd | None:
        self._deadline_scope.__exit__(exc_type, error, traceback)
        return self._end(error)

    def _end(self, error: BaseException | None) -> CallEnd | None:
        """What the store records for this call; None when there is nothing to record."""
        start = self._start
        if start is None and self._plan is not None:
            return None  # refused: no request was made
        start = start or CallStart(allowed=True, breaker=ADMITTED)
        policy = self._policy
        outcome = None
        if policy.circuit is not None:
            answered = error is None or (self.delivered and not isinstance(error, ProviderError))
            outcome = policy.circuit.outcome(start.breaker or ADMITTED, None if answered else error)
        meter = self._meter
        cost = meter.usage.cost_usd if meter is not None else 0.0
        settlements = tuple(Settlement(reservation, cost) for reservation in start.reservations)
        answered = error is None or self.delivered
        usage = meter.record(answered) if meter is not None and policy.record_usage else None
        if outcome is None and not settlements and usage is None:
            return None
        return CallEnd(breaker=outcome, settlements=settlements, usage=usage)

    def _changed(self, changed: bool, end: CallEnd) -> None:
        if changed and end.breaker is not None and self._policy.circuit is not None:
            log_change(self._policy.circuit, end.breaker)


def _replayed(attempt: AttemptManager, first: Exception) -> int:
    """The number of ``attempt``; attempt 1, made before the loop, fails again with
    its error (the loop then decides about it as if it had made the call)."""
    number = attempt.retry_state.attempt_number
    if number == 1:
        raise first
    return number


past_open_breaker: ContextVar[bool] = ContextVar("past_open_breaker", default=False)
"""Set by a chain for its last resort: the call goes although the breaker is open."""


def breaker_passed(passed: bool = True) -> AbstractContextManager[None]:
    """Calls in this block go past an open breaker (when ``passed``)."""
    return _UNCHANGED if past_open_breaker.get() is passed else _breaker_passed(passed)


_UNCHANGED = nullcontext()


@contextmanager
def _breaker_passed(passed: bool) -> Iterator[None]:
    token = past_open_breaker.set(passed)
    try:
        yield
    finally:
        past_open_breaker.reset(token)


def _plan_of(policy: ProviderPolicy, input: Any, kwargs: dict[str, Any]) -> CallPlan | None:
    """What to ask the store before a call; None when nothing needs asking.

    A call whose usage is recorded after it asks before it too, even with no
    limit: the step before is how a store that cannot record (a Redis that
    takes no writes) is found out before the provider is paid, not after.
    """
    circuit = policy.circuit if policy.circuit is not None and policy.circuit.enabled else None
    if circuit is not None and past_open_breaker.get():
        circuit = None  # the chain's last resort: its outcome is still recorded
    budgets: tuple[BudgetSpec, ...] = ()
    if policy.budget is not None and not reserved_here(policy.state, policy.budget.key):
        max_tokens = kwargs.get("max_tokens") or _max_tokens_of(policy.bound)
        samples = kwargs.get("n") or 1  # n completions in one request: one call, n bounds
        budgets = (policy.budget.spec(_prompt_text(input), max_tokens, samples),)
    rates = (policy.rate,) if policy.rate is not None else ()
    if circuit is None and not budgets and not rates and not policy.record_usage:
        return None
    return CallPlan(breaker=circuit.spec if circuit else None, rates=rates, budgets=budgets)


def _meter_of(policy: ProviderPolicy) -> CallMeter | None:
    """A meter when the call's usage or cost is wanted (usage totals, or a budget)."""
    if not (policy.record_usage or policy.budget is not None):
        return None
    return CallMeter(policy.provider, policy.model_name)


def _returns_messages(runnable: Runnable[Any, Any]) -> bool:
    """Whether ``runnable`` returns the chat model's own messages (not parsed output)."""
    if isinstance(runnable, RunnableBinding):
        runnable = runnable.bound
    return isinstance(runnable, BaseChatModel)


def _max_tokens_of(runnable: Runnable[Any, Any]) -> int | None:
    """The reply limit the chat model is built with (``max_tokens``, Ollama's
    ``num_predict``), which bounds a call without its own ``max_tokens``."""
    if isinstance(runnable, RunnableBinding):
        bound = runnable.kwargs.get("max_tokens")
        if isinstance(bound, int) and bound > 0:
            return bound
        runnable = runnable.bound
    for name in ("max_tokens", "num_predict"):
        value = getattr(runnable, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _prompt_text(input: Any) -> str:
    """The prompt's text, for a budget's cost estimate (LangChain's own reading of it)."""
    if isinstance(input, str):
        return input
    if isinstance(input, PromptValue):
        return input.to_string()
    return get_buffer_string(convert_to_messages(input))


__all__ = ["ProviderPolicy"]
