"""``ProviderChain``: providers tried in order, every failure collected.

Each provider is a :class:`~pygent_lc.policy.ProviderPolicy` (breaker,
retries, deadline). The chain owns the loop over them, like pydantic-ai's
``FallbackModel``: a ``ProviderError`` moves on to the next provider, and when
every provider failed the caller gets
:class:`~pygent_lc.errors.AllProvidersFailedError` with each error. Bad input
(``InvalidInputError``, checked here before any request) and anything that is
not a provider error propagate at once.

A stream falls back only before its first chunk; after that the text has been
delivered, and a failure propagates as the provider's own error.

The chain is one LangChain run; each provider attempt is a child run of it.

A subclass may rank its providers per call (``_order`` / ``_aorder``) and
raise its own error when all failed (``_failed``): that is how
:class:`~pygent_lc.host_pool.HostPool` tries an Ollama pool's hosts, least
busy first, inside a chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Self

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
)
from pydantic import BaseModel, ConfigDict

from pygent_lc.errors import AllProvidersFailedError, ConfigurationError, ProviderError
from pygent_lc.resources import Closable, aclose_runnable, close_runnable
from pygent_lc.validation import validate_chat_call

_NOTHING: Any = object()


class ProviderChain(Closable, RunnableSerializable[Any, Any]):
    """Providers in order; the next one runs when the previous raised a ``ProviderError``.

    The input and call keywords are checked first (:func:`validate_chat_call`):
    the caller's bad input raises ``InvalidInputError`` before any request, so
    it never retries, never falls back and never counts against a breaker.
    ``close()`` / ``aclose()`` (or ``with`` / ``async with``) release pooled
    connections and stop an embedded server this process started.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    providers: list[Runnable[Any, Any]]
    """Usually one :class:`~pygent_lc.policy.ProviderPolicy` per provider, primary first."""

    def close(self) -> None:
        close_runnable(self)

    async def aclose(self) -> None:
        await aclose_runnable(self)

    def _order(self) -> list[Runnable[Any, Any]]:
        """The providers in the order this call tries them (a subclass may rank them)."""
        return self.providers

    async def _aorder(self) -> list[Runnable[Any, Any]]:
        return self._order()

    def _failed(
        self, failures: list[ProviderError], tried: Sequence[Runnable[Any, Any]]
    ) -> ProviderError | AllProvidersFailedError:
        """The error for a call every provider failed; ``failures[i]`` is ``tried[i]``'s."""
        if len(failures) == 1:
            return failures[0]  # one provider: its own typed error says it best
        return AllProvidersFailedError(
            {f"{i}:{error.provider}": error for i, error in enumerate(failures, start=1)}
        )

    def _run_of(self, config: RunnableConfig | None) -> tuple[RunnableConfig, dict[str, Any]]:
        """The call's config, and how its chain run is named."""
        config = ensure_config(config)
        name = config.get("run_name") or self.get_name()
        return config, {"name": name, "run_id": config.pop("run_id", None)}

    @contextmanager
    def _run(
        self, input: Any, config: RunnableConfig | None
    ) -> Iterator[tuple[RunnableConfig, CallbackManagerForChainRun | None]]:
        """The chain's run for one call; an error that leaves the call ends it."""
        config, names = self._run_of(config)
        manager = get_callback_manager_for_config(config)
        if not manager.handlers:  # see _arun
            yield config, None
            return
        run = manager.on_chain_start(None, input, **names)
        try:
            yield config, run
        except BaseException as exc:
            run.on_chain_error(exc)
            raise

    @asynccontextmanager
    async def _arun(
        self, input: Any, config: RunnableConfig | None
    ) -> AsyncIterator[tuple[RunnableConfig, AsyncCallbackManagerForChainRun | None]]:
        """The chain's run for one call, or None when no handler would see it (no
        callbacks, no tracer): then nothing is started, and the providers' runs
        are the caller's children, as they would be with an unobserved chain run."""
        config, names = self._run_of(config)
        manager = get_async_callback_manager_for_config(config)
        if not manager.handlers:
            yield config, None
            return
        run = await manager.on_chain_start(None, input, **names)
        try:
            yield config, run
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        kwargs = validate_chat_call(input, kwargs)
        with self._run(input, config) as (config, run):
            failures: list[ProviderError] = []
            order = self._order()
            for provider in order:
                try:
                    output = provider.invoke(input, _child(config, run), **kwargs)
                except ProviderError as exc:
                    failures.append(exc)
                    continue
                if run is not None:
                    run.on_chain_end(output)
                return output
            raise self._failed(failures, order)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        kwargs = validate_chat_call(input, kwargs)
        async with self._arun(input, config) as (config, run):
            failures: list[ProviderError] = []
            order = await self._aorder()
            for provider in order:
                try:
                    output = await provider.ainvoke(input, _child(config, run), **kwargs)
                except ProviderError as exc:
                    failures.append(exc)
                    continue
                if run is not None:
                    await run.on_chain_end(output)
                return output
            raise self._failed(failures, order)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        kwargs = validate_chat_call(input, kwargs)
        with self._run(input, config) as (config, run):
            failures: list[ProviderError] = []
            order = self._order()
            for provider in order:
                chunks = provider.stream(input, _child(config, run), **kwargs)
                try:
                    output = next(chunks, _NOTHING)
                except ProviderError as exc:
                    failures.append(exc)
                    continue
                if output is not _NOTHING:  # the first chunk: no falling back from here on
                    yield output
                    for chunk in chunks:
                        output = _added(output, chunk)
                        yield chunk
                if run is not None:
                    run.on_chain_end(None if output is _NOTHING else output)
                return
            raise self._failed(failures, order)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        kwargs = validate_chat_call(input, kwargs)
        async with self._arun(input, config) as (config, run):
            failures: list[ProviderError] = []
            order = await self._aorder()
            for provider in order:
                chunks = provider.astream(input, _child(config, run), **kwargs)
                try:
                    output = await anext(chunks, _NOTHING)
                except ProviderError as exc:
                    failures.append(exc)
                    continue
                if output is not _NOTHING:  # the first chunk: no falling back from here on
                    yield output
                    async for chunk in chunks:
                        output = _added(output, chunk)
                        yield chunk
                if run is not None:
                    await run.on_chain_end(None if output is _NOTHING else output)
                return
            raise self._failed(failures, order)

    def batch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return Runnable.batch(self, inputs, config, **kwargs)

    async def abatch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Any]:
        return await Runnable.abatch(self, inputs, config, **kwargs)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ProviderChain:
        """Bind ``tools`` to every provider's model, keeping retries, breakers and fallbacks."""
        return self._per_model(lambda model: model.bind_tools(tools, **kwargs))

    def with_structured_output(self, schema: Any, **kwargs: Any) -> ProviderChain:
        """Structured output from every provider (each in its own way: ``response_format``
        for OpenRouter, ``format`` for Ollama), keeping retries, breakers and fallbacks."""
        return self._per_model(lambda model: model.with_structured_output(schema, **kwargs))

    def _per_model(self, change: Callable[[BaseChatModel], Runnable[Any, Any]]) -> Self:
        """A copy (same class and fields) whose providers' models are ``change(model)``."""
        providers = [_rewrapped(provider, change) for provider in self.providers]
        return self.model_copy(update={"providers": providers})


def _child(
    config: RunnableConfig,
    run: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun | None,
) -> RunnableConfig:
    if run is None:  # nothing listens: the call's config, less what named the chain's run
        return {key: value for key, value in config.items() if key != "run_name"}  # type: ignore[return-value]
    return patch_config(config, callbacks=run.get_child())


def _added(output: Any, chunk: Any) -> Any:
    """The stream's output so far, for the chain run's end (chunks that add up do)."""
    try:
        return output + chunk
    except TypeError:
        return chunk


def _rewrapped(
    runnable: Runnable[Any, Any], change: Callable[[BaseChatModel], Runnable[Any, Any]]
) -> Runnable[Any, Any]:
    """``runnable`` with the chat model inside its wrappers replaced by ``change(model)``.

    The wrappers (provider policy, bindings) are copied, not rebuilt, so their
    settings and shared state (the breaker) carry over.
    """
    if isinstance(runnable, BaseChatModel):
        return change(runnable)
    if isinstance(runnable, ProviderChain):  # a chain inside a chain (a host pool)
        return runnable._per_model(change)
    bound = getattr(runnable, "bound", None)  # a policy or a RunnableBinding-style wrapper
    if isinstance(bound, Runnable) and isinstance(runnable, BaseModel):
        copied: Runnable[Any, Any] = runnable.model_copy(
            update={"bound": _rewrapped(bound, change)}
        )
        return copied
    raise ConfigurationError(
        f"cannot reach the chat model inside {type(runnable).__name__} to change it"
    )


__all__ = ["ProviderChain"]
