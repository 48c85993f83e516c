"""``ProviderPolicy``: one provider's model under its breaker, retries and deadline.

Per provider call, in this order:

1. the circuit breaker decides whether the call may go at all
   (:class:`~pygent_lc.breaker.CircuitBreaker`; a refused call raises
   ``CircuitOpenError`` without touching the network);
2. the deadline (``request_timeout``) starts, and covers every attempt and wait;
3. the model is tried under the :class:`~pygent_lc.retry.RetryPolicy`;
   streams are retried only before their first chunk, since after that text
   has been delivered, and get the full deadline again after each chunk;
4. the outcome goes back to the breaker: one decision per provider call, so a
   call that used up its retries counts as one failure.

The model runs as a direct child of the caller's run, so LangChain traces show
each attempt (tagged ``retry:attempt:N`` after the first) under the chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from pydantic import ConfigDict
from tenacity import AsyncRetrying, AttemptManager, Retrying

from pygent_lc.breaker import Admission, CircuitBreaker
from pygent_lc.errors import ProviderError
from pygent_lc.providers.http import Deadline
from pygent_lc.retry import RetryPolicy, deadline_scope

_NOTHING: Any = object()


class ProviderPolicy(RunnableSerializable[Any, Any]):
    """A provider's model (``bound``) behind its breaker, retry policy and deadline."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    bound: Runnable[Any, Any]
    """The chat model, possibly with bindings (tools, structured output)."""

    retry: RetryPolicy = RetryPolicy()

    circuit: CircuitBreaker | None = None
    """The provider's breaker, shared by every copy of this policy; None turns it off."""

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        with _ProviderCall(self):
            for attempt in Retrying(**self.retry.tenacity_kwargs()):
                with attempt:
                    result = self.bound.invoke(input, _tagged(config, attempt), **kwargs)
        return result

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        with _ProviderCall(self):
            async for attempt in AsyncRetrying(**self.retry.tenacity_kwargs()):
                with attempt:
                    result = await self.bound.ainvoke(input, _tagged(config, attempt), **kwargs)
        return result

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        with _ProviderCall(self) as call:
            for attempt in Retrying(**self.retry.tenacity_kwargs()):
                with attempt:
                    chunks = self.bound.stream(input, _tagged(config, attempt), **kwargs)
                    chunk = next(chunks, _NOTHING)
            while chunk is not _NOTHING:
                call.delivered = True
                yield chunk
                call.restart_deadline()
                chunk = next(chunks, _NOTHING)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        with _ProviderCall(self) as call:
            async for attempt in AsyncRetrying(**self.retry.tenacity_kwargs()):
                with attempt:
                    chunks = self.bound.astream(input, _tagged(config, attempt), **kwargs)
                    chunk = await anext(chunks, _NOTHING)
            while chunk is not _NOTHING:
                call.delivered = True
                yield chunk
                call.restart_deadline()
                chunk = await anext(chunks, _NOTHING)

    def batch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return Runnable.batch(self, inputs, config, **kwargs)

    async def abatch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return await Runnable.abatch(self, inputs, config, **kwargs)


class _ProviderCall:
    """The breaker decision and deadline around one provider call, with its outcome."""

    __slots__ = ("_admission", "_circuit", "_deadline", "_deadline_scope", "delivered")

    def __init__(self, policy: ProviderPolicy) -> None:
        self._circuit = policy.circuit
        self._deadline_scope = deadline_scope(policy.retry.deadline)
        self._admission: Admission | None = None
        self._deadline: Deadline | None = None
        self.delivered = False
        """A stream handed out a chunk: the provider was serving."""

    def __enter__(self) -> _ProviderCall:
        if self._circuit is not None:
            self._admission = self._circuit.enter()
        self._deadline = self._deadline_scope.__enter__()
        return self

    def restart_deadline(self) -> None:
        """The next chunk of a stream gets the full deadline again."""
        if self._deadline is not None:
            self._deadline.restart()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._deadline_scope.__exit__(exc_type, exc, traceback)
        if self._circuit is None or self._admission is None:
            return
        if exc is None or (self.delivered and not isinstance(exc, ProviderError)):
            self._circuit.record_success(self._admission)
        elif isinstance(exc, ProviderError):
            self._circuit.record_error(self._admission, exc)
        else:  # cancelled, or a bug: neither success nor failure
            self._circuit.release(self._admission)


def _tagged(config: RunnableConfig | None, attempt: AttemptManager) -> RunnableConfig | None:
    """``config`` for one attempt: tagged ``retry:attempt:N`` after the first."""
    number = attempt.retry_state.attempt_number
    if number == 1:
        return config
    config = config or {}
    return {**config, "tags": [*config.get("tags", []), f"retry:attempt:{number}"]}


__all__ = ["ProviderPolicy"]
