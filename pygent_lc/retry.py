"""The one retry policy: LangChain's ``RunnableRetry`` with provider-aware waits.

Only :class:`~pygent_lc.errors.ProviderError` with ``retryable=True`` is
retried. Waits back off exponentially with jitter; a server's ``Retry-After``
replaces the backoff, capped at ``max_wait`` so a long advice cannot stall the
chain (the fallback runs instead once attempts are used up). Streams are
retried only before their first chunk: after that, text has been delivered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.retry import RunnableRetry
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt
from tenacity import wait_exponential_jitter as exponential_jitter

from pygent_lc.errors import ProviderError

logger = logging.getLogger(__name__)

# Set by a fallback chain for the length of one call: the error each provider
# finally failed with, in order (see pygent_lc.fallbacks).
provider_failures: ContextVar[list[ProviderError] | None] = ContextVar(
    "provider_failures", default=None
)


_NOTHING = object()


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class ProviderRetry(RunnableRetry):  # type: ignore[type-arg]
    """Retry one provider's model under the project's policy."""

    initial_wait: float = 0.5
    """First backoff wait in seconds; doubles per retry, plus jitter of up to as much."""

    max_wait: float = 20.0
    """Cap for one wait, ``Retry-After`` included."""

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

        return {
            "stop": stop_after_attempt(self.max_attempt_number),
            "wait": wait_seconds,
            "retry": retry_if_exception(_is_retryable),
            "before_sleep": _log_retry,
        }

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        try:
            return super().invoke(input, config, **kwargs)
        except ProviderError as exc:
            _report(exc)
            raise

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        try:
            return await super().ainvoke(input, config, **kwargs)
        except ProviderError as exc:
            _report(exc)
            raise

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        try:
            for attempt in self._sync_retrying(reraise=True):
                with attempt:
                    chunks = self.bound.stream(
                        input, self._merge_configs(config), **{**self.kwargs, **kwargs}
                    )
                    first = next(chunks, _NOTHING)
            if first is not _NOTHING:
                yield first
                yield from chunks
        except ProviderError as exc:
            _report(exc)
            raise

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        try:
            async for attempt in self._async_retrying(reraise=True):
                with attempt:
                    chunks = self.bound.astream(
                        input, self._merge_configs(config), **{**self.kwargs, **kwargs}
                    )
                    first = await anext(chunks, _NOTHING)
            if first is not _NOTHING:
                yield first
                async for chunk in chunks:
                    yield chunk
        except ProviderError as exc:
            _report(exc)
            raise


def _report(exc: ProviderError) -> None:
    failures = provider_failures.get()
    if failures is not None:
        failures.append(exc)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.info("attempt %d failed (%r); retrying in %.2fs", state.attempt_number, error, wait)
