"""The one retry policy: LangChain's ``RunnableRetry`` with provider-aware waits.

Only :class:`~pygent_lc.errors.ProviderError` with ``retryable=True`` is
retried. Waits back off exponentially with jitter; a server's ``Retry-After``
replaces the backoff when it is at most ``max_wait``; a longer one is not
waited for at all: the call fails at once and the fallback runs. Streams are
retried only before their first chunk: after that, text has been delivered.

``deadline`` (the ``request_timeout`` setting) bounds one provider's whole part
of a call: connect, body, every attempt and every wait. It is enforced below
the SDKs by the HTTP transport (:mod:`pygent_lc.providers.http`); a stream gets
the full ``deadline`` again after each chunk it delivers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.retry import RunnableRetry
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)
from tenacity import wait_exponential_jitter as exponential_jitter
from tenacity.stop import stop_base

from pygent_lc.errors import ProviderError
from pygent_lc.providers.http import Deadline, current_deadline

logger = logging.getLogger(__name__)

# Set by a fallback chain for the length of one call: the error each provider
# finally failed with, in order (see pygent_lc.fallbacks).
provider_failures: ContextVar[list[ProviderError] | None] = ContextVar(
    "provider_failures", default=None
)


_NOTHING = object()


@contextmanager
def _deadline_scope(seconds: float | None) -> Iterator[Deadline | None]:
    """:data:`current_deadline` for the length of one provider call (none without a limit)."""
    if seconds is None:
        yield None
        return
    deadline = Deadline(seconds)
    token = current_deadline.set(deadline)
    try:
        yield deadline
    finally:
        with suppress(ValueError):  # a generator closed from another context
            current_deadline.reset(token)


class ProviderRetry(RunnableRetry):  # type: ignore[type-arg]
    """Retry one provider's model under the project's policy.

    The four call methods drive tenacity directly rather than through
    ``RunnableRetry.invoke``: that opens an extra callback run per call, which
    cost ~0.4 ms (a quarter of a zero-latency request, see BENCHMARKS.md). The
    model's run is then a direct child of the caller's, as under a plain
    ``RunnableBinding``; attempts after the first are tagged ``retry:attempt:N``.
    """

    initial_wait: float = 0.5
    """First backoff wait in seconds; doubles per retry, plus jitter of up to as much."""

    max_wait: float = 20.0
    """Cap for one wait, ``Retry-After`` included."""

    deadline: float | None = None
    """Seconds all attempts of one call may take, waits included: no retry (and no
    wait) starts that would end past it, so a hung provider costs one timeout
    before the fallback runs, not one per attempt."""

    @property
    def _kwargs_retrying(self) -> dict[str, Any]:
        backoff = exponential_jitter(
            multiplier=self.initial_wait, max=self.max_wait, jitter=self.initial_wait
        )

        def wait_seconds(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, ProviderError) and error.retry_after is not None:
                return min(error.retry_after, self.max_wait)
            return float(backoff(state))

        def retryable(exc: BaseException) -> bool:
            if not isinstance(exc, ProviderError) or not exc.retryable:
                return False
            return exc.retry_after is None or exc.retry_after <= self.max_wait

        stop: stop_base = stop_after_attempt(self.max_attempt_number)
        if self.deadline is not None:
            stop = stop | stop_before_delay(self.deadline)
        return {
            "stop": stop,
            "wait": wait_seconds,
            "retry": retry_if_exception(retryable),
            "before_sleep": _log_retry,
            "reraise": True,
        }

    def _attempt_config(self, config: RunnableConfig | None, attempt: int) -> RunnableConfig:
        merged = self._merge_configs(config)
        if attempt == 1:
            return merged
        return {**merged, "tags": [*merged.get("tags", []), f"retry:attempt:{attempt}"]}

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        call_kwargs = {**self.kwargs, **kwargs}
        try:
            with _deadline_scope(self.deadline):
                for attempt in Retrying(**self._kwargs_retrying):
                    with attempt:
                        number = attempt.retry_state.attempt_number
                        result = self.bound.invoke(
                            input, self._attempt_config(config, number), **call_kwargs
                        )
        except ProviderError as exc:
            _report(exc)
            raise
        return result

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        call_kwargs = {**self.kwargs, **kwargs}
        try:
            with _deadline_scope(self.deadline):
                async for attempt in AsyncRetrying(**self._kwargs_retrying):
                    with attempt:
                        number = attempt.retry_state.attempt_number
                        result = await self.bound.ainvoke(
                            input, self._attempt_config(config, number), **call_kwargs
                        )
        except ProviderError as exc:
            _report(exc)
            raise
        return result

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        call_kwargs = {**self.kwargs, **kwargs}
        try:
            with _deadline_scope(self.deadline) as deadline:
                for attempt in Retrying(**self._kwargs_retrying):
                    with attempt:
                        number = attempt.retry_state.attempt_number
                        chunks = self.bound.stream(
                            input, self._attempt_config(config, number), **call_kwargs
                        )
                        first = next(chunks, _NOTHING)
                if first is _NOTHING:
                    return
                yield first
                yield from _restarting(chunks, deadline)
        except ProviderError as exc:
            _report(exc)
            raise

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        call_kwargs = {**self.kwargs, **kwargs}
        try:
            with _deadline_scope(self.deadline) as deadline:
                async for attempt in AsyncRetrying(**self._kwargs_retrying):
                    with attempt:
                        number = attempt.retry_state.attempt_number
                        chunks = self.bound.astream(
                            input, self._attempt_config(config, number), **call_kwargs
                        )
                        first = await anext(chunks, _NOTHING)
                if first is _NOTHING:
                    return
                yield first
                while True:
                    if deadline is not None:
                        deadline.restart()
                    chunk = await anext(chunks, _NOTHING)
                    if chunk is _NOTHING:
                        return
                    yield chunk
        except ProviderError as exc:
            _report(exc)
            raise


def _restarting(chunks: Iterator[Any], deadline: Deadline | None) -> Iterator[Any]:
    """``chunks``, giving the wait for each next one the full deadline again."""
    while True:
        if deadline is not None:
            deadline.restart()
        chunk = next(chunks, _NOTHING)
        if chunk is _NOTHING:
            return
        yield chunk


def _report(exc: ProviderError) -> None:
    failures = provider_failures.get()
    if failures is not None:
        failures.append(exc)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.info("attempt %d failed (%r); retrying in %.2fs", state.attempt_number, error, wait)
