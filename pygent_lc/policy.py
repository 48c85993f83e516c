"""``ProviderPolicy``: one provider's model under its limits, breaker, retries and deadline
(retries, streams and deadlines: see ARCHITECTURE.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

import tenacity
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import convert_to_messages, get_buffer_string
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, Field, PrivateAttr
from tenacity import AsyncRetrying, RetryCallState, Retrying

from pygent_lc.errors import BudgetExceededError, ConfigurationError, ProviderError
from pygent_lc.limits import MemoryStore, RateSpec, StateStore
from pygent_lc.limits.breaker import ADMITTED, CircuitBreaker, log_change
from pygent_lc.limits.budget import CostBudget
from pygent_lc.limits.call import (
    CallEnd,
    CallPlan,
    CallStart,
    Settlement,
    abegin_call,
    budget_wait,
    reserved_here,
)
from pygent_lc.limits.rate import LocalRateLimitError, RateLimitMode
from pygent_lc.limits.usage import CallMeter, fed_tracker, with_handler
from pygent_lc.providers.boundary import ProviderBoundary
from pygent_lc.providers.http import Deadline

logger = logging.getLogger(__name__)

NOTHING: Any = object()  # what ``next`` answers at the end of a stream
T = TypeVar("T")


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.info("attempt %d failed (%r); retrying in %.2fs", state.attempt_number, error, wait)


class ProviderPolicy(RunnableSerializable[Any, Any]):
    """A provider's model (``bound``) behind its limits, breaker, retries and deadline. The
    model runs as a child of the caller's run: traces show each attempt (``retry:attempt:N``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    bound: Runnable[Any, Any]
    provider: str = "provider"
    model_name: str | None = None  # for usage; a reply that names the model that served wins
    max_attempts: int = 3  # the first included; see ``retryable`` for what is retried
    initial_wait: float = 0.5  # doubles per retry, plus jitter of up to as much
    max_wait: float = 20.0
    deadline: float | None = None  # every attempt and wait; a stream's restarts per chunk
    circuit: CircuitBreaker | None = None
    store: StateStore = Field(default_factory=MemoryStore)  # the breaker's and budget's too
    rate: RateSpec | None = None
    rate_mode: RateLimitMode = "wait"
    budget: CostBudget | None = None
    record_usage: bool = False  # add each call's usage to the store's totals (pygent-lc usage)

    _traced_names: dict[tuple[int, object], tuple[BaseChatModel, tuple[str, str]]] = PrivateAttr(
        default_factory=dict
    )

    def __init__(self, **values: Any) -> None:
        if unknown := sorted(values.keys() - type(self).model_fields.keys()):  # not ignored
            raise ConfigurationError(
                f"ProviderPolicy has no setting {unknown[0]!r}", field=unknown[0]
            )
        super().__init__(**values)
        # One store, never split: a part without one takes the policy's, and the reverse; two
        # that differ are an error (raised here: a validator's would be wrapped in pydantic's).
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

    def retryable(self, error: BaseException) -> bool:
        """A retryable ``ProviderError``, unless its ``Retry-After`` is over ``max_wait``."""
        if not isinstance(error, ProviderError) or not error.retryable:
            return False
        return error.retry_after is None or error.retry_after <= self.max_wait

    @property
    def state(self) -> StateStore:
        """Its breaker's store (a ``model_copy`` that swaps the breaker keeps it), else its own."""
        return self.circuit.store if self.circuit is not None else self.store

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        with _ProviderCall(self, input, kwargs, config) as call:
            return call.answered(call.attempts(lambda c: self.bound.invoke(input, c, **kwargs)))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        async with _ProviderCall(self, input, kwargs, config) as call:
            reply = await call.aattempts(lambda c: self.bound.ainvoke(input, c, **kwargs))
            return call.answered(reply)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        def start(config: RunnableConfig | None) -> tuple[Iterator[Any], Any]:
            chunks = self.bound.stream(input, config, **kwargs)
            return chunks, next(chunks, NOTHING)

        with _ProviderCall(self, input, kwargs, config, stream=True) as call:
            chunks, chunk = call.attempts(start)
            with call.streaming():
                while chunk is not NOTHING:
                    yield call.delivered(chunk)
                    call.restart_deadline()
                    chunk = next(chunks, NOTHING)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async def start(config: RunnableConfig | None) -> tuple[AsyncIterator[Any], Any]:
            chunks = self.bound.astream(input, config, **kwargs)
            return chunks, await anext(chunks, NOTHING)

        async with _ProviderCall(self, input, kwargs, config, stream=True) as call:
            chunks, chunk = await call.aattempts(start)
            with call.streaming():
                while chunk is not NOTHING:
                    yield call.delivered(chunk)
                    call.restart_deadline()
                    chunk = await anext(chunks, NOTHING)


class _ProviderCall:
    """One provider call's deadline, its steps in the state store, and its outcome."""

    def __init__(
        self,
        policy: ProviderPolicy,
        input: Any,
        kwargs: dict[str, Any],
        config: RunnableConfig | None,
        *,
        stream: bool = False,
    ) -> None:
        self._policy = policy
        self.stream = stream  # a stream's attempt that is cancelled or closed counts as failed
        self._kwargs = kwargs
        self._config = config
        self._deadline = Deadline(policy.deadline) if policy.deadline is not None else None
        # Without a deadline of its own, an enclosing one stays in force.
        self._scope: AbstractContextManager[Any] = self._deadline or nullcontext()
        self._plan = _plan_of(policy, input, kwargs, config)
        self._start: CallStart | None = None
        wanted = policy.record_usage or policy.budget is not None  # usage totals, or cost
        self._meter = CallMeter(policy.provider, policy.model_name) if wanted else None
        self._tracker = fed_tracker(config)
        model = policy.bound.bound if isinstance(policy.bound, RunnableBinding) else policy.bound
        self._watched = not isinstance(model, BaseChatModel)  # a parsed output: by callbacks
        watchers = (self._tracker, self._meter) if self._watched else ()
        self._watchers = [watcher for watcher in watchers if watcher is not None]
        self._names: tuple[str, str] | None = None
        self._chunks: list[Any] | None = None  # a counted stream's chunks
        self.started = 0.0  # when the latest attempt started
        self._first_error: Exception | None = None
        self.delivered_any = False  # a reply or a chunk came: the provider was serving

    def __enter__(self) -> _ProviderCall:
        self._scope.__enter__()  # the deadline counts admission waits too
        return self

    async def __aenter__(self) -> _ProviderCall:
        return self.__enter__()

    def _admit(self, plan: CallPlan | None) -> None:
        tries, store = 0, self._policy.state
        while plan and (wait := self._verdict(store.begin_call(plan), tries, blocking=True)):
            time.sleep(wait)
            tries += 1

    async def _aadmit(self, plan: CallPlan | None) -> None:
        tries, store = 0, self._policy.state
        while plan and (wait := self._verdict(await abegin_call(store, plan), tries)):
            await asyncio.sleep(wait)
            tries += 1

    def _verdict(self, start: CallStart, tries: int, *, blocking: bool = False) -> float:
        """0 when the call may go, else seconds to wait before asking again."""
        if start.allowed:
            self._start = self._start or start  # a retry's rate slot adds nothing to settle
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
        wait_s = start.rate_wait_s
        if policy.rate_mode == "raise" or not self._fits(wait_s):
            limit = "" if policy.rate is None else f" {policy.rate.limit}/{policy.rate.period_s:g}s"
            raise LocalRateLimitError(
                f"rate limit{limit} reached; a slot frees in {wait_s:.2f}s",
                provider=policy.provider,
                retryable=False,
                retry_after=wait_s,
            )
        return wait_s

    def _fits(self, wait_s: float) -> bool:
        return self._deadline is None or wait_s < self._deadline.remaining()

    # Attempt 1 runs before tenacity's loop, which replays its failure (``_replayed``) from
    # outside any ``except`` block: a later error does not get the first as context.
    def attempts(self, attempt: Callable[[RunnableConfig | None], T]) -> T:
        self._admit(self._plan)
        with self._attempt(1) as config:
            return attempt(config)
        for retry in Retrying(**self._retrying(self._before)):
            with retry, self._attempt(self._replayed(retry)) as config:
                return attempt(config)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def aattempts(self, attempt: Callable[[RunnableConfig | None], Awaitable[T]]) -> T:
        await self._aadmit(self._plan)
        with self._attempt(1) as config:
            return await attempt(config)
        async for retry in AsyncRetrying(**self._retrying(self._abefore)):
            with retry, self._attempt(self._replayed(retry)) as config:
                return await attempt(config)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _retrying(self, before: Callable[[RetryCallState], Any]) -> dict[str, Any]:
        """Tenacity's loop, as if it had made the first attempt (``self.started``)."""
        policy = self._policy
        backoff = tenacity.wait_exponential_jitter(
            multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.initial_wait
        )

        def wait_seconds(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, ProviderError) and error.retry_after is not None:
                return min(error.retry_after, policy.max_wait)
            return float(backoff(state))

        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(policy.max_attempts)
        if policy.deadline is not None:
            elapsed = time.perf_counter() - self.started
            stop = stop | tenacity.stop_before_delay(policy.deadline - elapsed)
        return {
            "stop": stop,
            "wait": wait_seconds,
            "retry": tenacity.retry_if_exception(policy.retryable),
            "before": before,
            "before_sleep": _log_retry,
            "reraise": True,
        }

    @contextmanager
    def _attempt(self, number: int) -> Iterator[RunnableConfig | None]:
        """One request: a failure is counted; the first attempt's error is kept, not raised."""
        config = self.config(number)
        self.started = time.perf_counter()
        try:
            yield config
        except BaseException as error:
            if self.stream or isinstance(error, Exception):  # as the model's run counts it
                self.attempt_ended(failed=True)
            if number > 1 or not isinstance(error, Exception):
                raise
            self._first_error = error

    def _replayed(self, retry: tenacity.AttemptManager) -> int:
        """Attempt 1, made before the loop, fails again with its error."""
        if (number := retry.retry_state.attempt_number) == 1:
            assert self._first_error is not None
            raise self._first_error
        return number

    def _before(self, state: RetryCallState) -> None:
        """A retry takes a rate-limit slot of its own (the first one came with the plan)."""
        if self._policy.rate is not None and state.attempt_number > 1:
            self._admit(CallPlan(rates=(self._policy.rate,)))

    async def _abefore(self, state: RetryCallState) -> None:
        if self._policy.rate is not None and state.attempt_number > 1:
            await self._aadmit(CallPlan(rates=(self._policy.rate,)))

    def config(self, number: int) -> RunnableConfig | None:
        config = self._config
        if number > 1:
            config = config or {}
            config = {**config, "tags": [*config.get("tags", []), f"retry:attempt:{number}"]}
        for handler in self._watchers:
            config = with_handler(config, handler)
        if self._meter is not None:
            self._meter.attempts += 1
        return config

    def attempt_ended(self, reply: Any = None, *, failed: bool = False) -> None:
        """One request for the tracker the call feeds, counted as its callbacks would."""
        tracker = self._tracker
        if tracker is None or self._watched:
            return
        latency_s = time.perf_counter() - self.started
        provider, model = self._names or self._traced_names()
        tracker.count(provider, model, latency_s, reply, failed=failed)

    def answered(self, reply: Any) -> Any:
        self.attempt_ended(reply)
        return self.delivered(reply)

    def delivered(self, output: Any) -> Any:
        self.delivered_any = True
        if self._meter is not None and not self._watched:
            self._meter.observe(output)
        if self._chunks is not None:
            self._chunks.append(output)
        return output

    @contextmanager
    def streaming(self) -> Iterator[None]:
        """One request when the stream ends (closed or cancelled counts as failed, as in the
        model's own run)."""
        if self._tracker is not None and not self._watched:
            self._chunks = []
        try:
            yield
        except BaseException:
            self.attempt_ended(failed=True)
            raise
        chunks = self._chunks or [None]
        self.attempt_ended(chunks[0] + chunks[1:] if len(chunks) > 1 else chunks[0])

    def restart_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.restart()

    def _traced_names(self) -> tuple[str, str]:
        """``ls_provider`` and ``ls_model_name``, as a callback would see the model's run
        start (a call's keywords may change them)."""
        runnable, kwargs = self._policy.bound, self._kwargs
        if isinstance(runnable, RunnableBinding):
            kwargs = {**runnable.kwargs, **kwargs}
            runnable = runnable.bound
        assert isinstance(runnable, BaseChatModel)  # else its usage is watched as a callback
        # This package's models name them from themselves and a per-call ``model`` only.
        key = (id(runnable), kwargs.get("model"))
        cached = isinstance(runnable, ProviderBoundary) and isinstance(key[1], str | None)
        known = self._policy._traced_names.get(key) if cached else None
        if known is None or known[0] is not runnable:
            traced = {**((self._config or {}).get("metadata") or {})}
            traced.update(runnable._get_ls_params(**kwargs))
            names = (
                str(traced.get("ls_provider") or "unknown"),
                str(traced.get("ls_model_name") or "unknown"),
            )
            known = (runnable, names)
            if cached:
                self._policy._traced_names[key] = known
        self._names = known[1]
        return self._names

    def __exit__(self, exc_type: object, error: BaseException | None, tb: object) -> None:
        self._scope.__exit__(None, None, None)
        if (end := self._end(error)) is not None and self._policy.state.end_call(end):
            log_change(self._policy.circuit, end.breaker)

    async def __aexit__(self, exc_type: object, error: BaseException | None, tb: object) -> None:
        self._scope.__exit__(None, None, None)
        if (end := self._end(error)) is not None and await self._policy.state.aend_call(end):
            log_change(self._policy.circuit, end.breaker)

    def _end(self, error: BaseException | None) -> CallEnd | None:
        if self._start is None and self._plan is not None:
            return None  # refused before any request: nothing to record
        start = self._start or CallStart(allowed=True, breaker=ADMITTED)  # None: no plan
        policy, meter = self._policy, self._meter
        answered = error is None or self.delivered_any  # a provider error mid-stream still fails
        failure = None if answered and not isinstance(error, ProviderError) else error
        circuit = policy.circuit
        outcome = circuit.outcome(start.breaker or ADMITTED, failure) if circuit else None
        cost = meter.usage.cost_usd if meter is not None else 0.0
        settlements = tuple(Settlement(reservation, cost) for reservation in start.reservations)
        usage = meter.record(answered) if meter is not None and policy.record_usage else None
        if outcome is None and not settlements and usage is None:
            return None
        return CallEnd(breaker=outcome, settlements=settlements, usage=usage)


PAST_OPEN_BREAKER = "__pygent_past_open_breaker"  # a chain's last resort passes an open breaker


def _plan_of(
    policy: ProviderPolicy, input: Any, kwargs: dict[str, Any], config: RunnableConfig | None
) -> CallPlan | None:
    """What to ask the store before a call (None: nothing). A call whose usage is recorded
    asks too: a store that cannot record is found out before paying."""
    circuit = policy.circuit if policy.circuit is not None and policy.circuit.enabled else None
    if circuit is not None and config and config.get("configurable", {}).get(PAST_OPEN_BREAKER):
        circuit = None
    budgets: tuple[Any, ...] = ()
    if policy.budget is not None and not reserved_here(policy.state, policy.budget.key):
        max_tokens = kwargs.get("max_tokens") or _max_tokens_of(policy.bound)
        samples = kwargs.get("n") or 1  # n completions in one request: one call, n bounds
        budgets = (policy.budget.spec(_prompt_text(input), max_tokens, samples),)
    rates = (policy.rate,) if policy.rate is not None else ()
    if circuit is None and not budgets and not rates and not policy.record_usage:
        return None
    return CallPlan(breaker=circuit.spec if circuit else None, rates=rates, budgets=budgets)


def _max_tokens_of(runnable: Runnable[Any, Any]) -> int | None:
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
    if isinstance(input, str):
        return input
    if isinstance(input, PromptValue):
        return input.to_string()
    return get_buffer_string(convert_to_messages(input))
