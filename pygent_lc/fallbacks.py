"""``RunnableWithFallbacks`` that reports every provider's error when all fail.

LangChain's fallbacks re-raise only the first error. Each provider in our
chain is a :class:`~pygent_lc.retry.ProviderRetry`, which reports its final
error into :data:`~pygent_lc.retry.provider_failures` for the length of one
call; when every provider has reported, the caller gets
:class:`~pygent_lc.errors.AllProvidersFailedError` with all of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableWithFallbacks,
)
from pydantic import BaseModel

from pygent_lc.errors import AllProvidersFailedError, ConfigurationError, ProviderError
from pygent_lc.resources import Closable, aclose_runnable, close_runnable
from pygent_lc.retry import provider_failures
from pygent_lc.validation import validate_chat_call


class ProviderChain(Closable, RunnableWithFallbacks):  # type: ignore[type-arg]
    """Providers in order; the next one runs when the previous raised a ``ProviderError``.

    The input and call keywords are checked first (:func:`validate_chat_call`):
    the caller's bad input raises ``InvalidInputError`` before any request, so
    it never retries, never falls back and never counts against a breaker.
    ``close()`` / ``aclose()`` (or ``with`` / ``async with``) release pooled
    connections and stop an embedded server this process started.
    """

    def close(self) -> None:
        close_runnable(self)

    async def aclose(self) -> None:
        await aclose_runnable(self)

    def _all_failed(self, failures: list[ProviderError]) -> AllProvidersFailedError | None:
        if not self.fallbacks:
            return None  # one provider: its own typed error says it best
        return AllProvidersFailedError(
            {f"{i}:{error.provider}": error for i, error in enumerate(failures, start=1)}
        )

    @contextmanager
    def _reporting_failures(self, streamed: Callable[[], bool] = lambda: False) -> Iterator[None]:
        """Turn the last provider's error into ``AllProvidersFailedError`` with all of them.

        Not once a stream has delivered chunks: then no fallback ran, and the
        caller needs the error itself (and its partial text).
        """
        failures: list[ProviderError] = []
        token = provider_failures.set(failures)
        try:
            yield
        except ProviderError as exc:
            all_failed = None if streamed() else self._all_failed(failures)
            if all_failed is None:
                raise
            raise all_failed from exc
        finally:
            with suppress(ValueError):  # a generator closed from another context
                provider_failures.reset(token)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        kwargs = validate_chat_call(input, kwargs)
        with self._reporting_failures():
            return super().invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        kwargs = validate_chat_call(input, kwargs)
        with self._reporting_failures():
            return await super().ainvoke(input, config, **kwargs)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        kwargs = validate_chat_call(input, kwargs)
        streamed = False
        with self._reporting_failures(lambda: streamed):
            for chunk in super().stream(input, config, **kwargs):
                streamed = True
                yield chunk

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        kwargs = validate_chat_call(input, kwargs)
        streamed = False
        with self._reporting_failures(lambda: streamed):
            async for chunk in super().astream(input, config, **kwargs):
                streamed = True
                yield chunk

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ProviderChain:
        """Bind ``tools`` to every provider's model, keeping retries, breakers and fallbacks."""
        return self._per_model(lambda model: model.bind_tools(tools, **kwargs))

    def with_structured_output(self, schema: Any, **kwargs: Any) -> ProviderChain:
        """Structured output from every provider (each in its own way: ``response_format``
        for OpenRouter, ``format`` for Ollama), keeping retries, breakers and fallbacks."""
        return self._per_model(lambda model: model.with_structured_output(schema, **kwargs))

    def _per_model(self, change: Callable[[BaseChatModel], Runnable[Any, Any]]) -> ProviderChain:
        return ProviderChain(
            runnable=_rewrapped(self.runnable, change),
            fallbacks=[_rewrapped(fallback, change) for fallback in self.fallbacks],
            exceptions_to_handle=self.exceptions_to_handle,
        )

    def batch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return Runnable.batch(self, inputs, config, **kwargs)

    async def abatch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return await Runnable.abatch(self, inputs, config, **kwargs)


def _rewrapped(
    runnable: Runnable[Any, Any], change: Callable[[BaseChatModel], Runnable[Any, Any]]
) -> Runnable[Any, Any]:
    """``runnable`` with the chat model inside its wrappers replaced by ``change(model)``.

    The wrappers (retry policy, breaker, bindings) are copied, not rebuilt, so
    their settings and shared state carry over.
    """
    if isinstance(runnable, BaseChatModel):
        return change(runnable)
    bound = getattr(runnable, "bound", None)  # a RunnableBinding-style wrapper
    if isinstance(bound, Runnable) and isinstance(runnable, BaseModel):
        copied: Runnable[Any, Any] = runnable.model_copy(
            update={"bound": _rewrapped(bound, change)}
        )
        return copied
    raise ConfigurationError(
        f"cannot reach the chat model inside {type(runnable).__name__} to change it"
    )
