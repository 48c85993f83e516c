"""``ProviderChain``: providers tried in order, on a ``ProviderError`` the next; each fallback
reported on the ``pygent_lc.fallbacks`` logger, never silently and never with a secret."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Self

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
)
from pydantic import BaseModel, ConfigDict

from pygent_lc import errors
from pygent_lc.closing import Closable
from pygent_lc.errors import AllProvidersFailedError, ConfigurationError, ProviderError
from pygent_lc.limits.breaker import CircuitOpenError
from pygent_lc.limits.rate import LocalRateLimitError
from pygent_lc.policy import NOTHING, PAST_OPEN_BREAKER
from pygent_lc.validation import validate_chat_call

logger = logging.getLogger("pygent_lc.fallbacks")  # each failed provider (DEBUG), each fallback

FALLBACK_WARNING_INTERVAL_S = 60.0  # how often one kind of fallback is a WARNING at most

# The first class in an error's MRO found here names its reason (subclasses first).
_REASONS: dict[type[ProviderError], str] = {
    errors.AuthenticationError: "unauthorized",
    errors.InsufficientCreditsError: "no credits left",
    errors.ContentRefusedError: "refused by moderation",
    errors.ModelNotFoundError: "model not found",
    LocalRateLimitError: "local rate limit reached",
    errors.RateLimitError: "rate limited",
    errors.UnsupportedRequestError: "unsupported request",
    errors.StreamInterruptedError: "stream interrupted",
    CircuitOpenError: "circuit open",
    errors.ProviderUnavailableError: "unavailable",
}

_TIMEOUT_MESSAGES = ("request timed out", "no reply within the deadline", "the deadline")
_CONNECTION_MESSAGES = ("connection refused", "connection failed", "host name not found")


def short_reason(error: ProviderError) -> str:
    """Why a provider failed in a few words (``"401 unauthorized"``, ``"timeout"``): its
    type and status only (and the start of an unavailable one's message), never a secret."""
    label = next(
        (_REASONS[cls] for cls in type(error).__mro__ if cls in _REASONS), "provider error"
    )
    if label == "unavailable":
        if error.message.startswith(_TIMEOUT_MESSAGES):
            label = "timeout"
        elif error.message.startswith(_CONNECTION_MESSAGES):
            label = error.message.split(" (")[0]  # "connection refused" / "... failed" / DNS
    return label if error.status_code is None else f"{error.status_code} {label}"


@dataclass(frozen=True)
class FallbackNotice:
    """One call served after others failed (``record.fallback`` of the WARNING)."""

    failed: tuple[tuple[str, str], ...]  # (provider, short reason), in order
    served_by: str
    suppressed: int = 0  # such fallbacks not logged since the last one was

    def message(self) -> str:
        failures = ", ".join(f"{name} failed ({reason})" for name, reason in self.failed)
        left_out = f" [{self.suppressed} more like this not logged]" if self.suppressed else ""
        return f"fell back: {failures}; {self.served_by} answered{left_out}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "failed": [{"provider": name, "reason": reason} for name, reason in self.failed],
            "served_by": self.served_by,
            "suppressed": self.suppressed,
            "message": self.message(),
        }


@dataclass
class FallbackNotices:
    """Logs fallbacks at WARNING, each kind at most once per ``interval_s``."""

    interval_s: float = FALLBACK_WARNING_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    _last: dict[Any, tuple[float, int]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fell_back(self, failed: Sequence[tuple[str, str]], served_by: str) -> None:
        key = (tuple(failed), served_by)
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.interval_s:
                self._last[key] = (last[0], last[1] + 1)
                return
            self._last[key] = (now, 0)
        notice = FallbackNotice(tuple(failed), served_by, last[1] if last else 0)
        logger.warning("%s", notice.message(), extra={"fallback": notice})

    def reset(self) -> None:
        with self._lock:
            self._last.clear()


fallback_notices = FallbackNotices()  # one rate limit for every chain of the process


class ProviderChain(Closable, RunnableSerializable[Any, Any]):
    """Providers in order. Bad input is refused first: it never retries, falls back or counts
    against a breaker. A subclass may rank its providers per call (``_order``) and raise its
    own error when all failed (``_failed``), as ``HostPool`` does."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    providers: list[Runnable[Any, Any]]  # usually one ``ProviderPolicy`` each, primary first

    def _order(self) -> list[Runnable[Any, Any]]:
        return self.providers

    async def _aorder(self) -> list[Runnable[Any, Any]]:
        return self._order()

    def _label(self, provider: Runnable[Any, Any]) -> str:
        name = getattr(provider, "provider", None)
        return name if isinstance(name, str) else provider.get_name()

    def _failed(
        self, failures: list[ProviderError], tried: Sequence[Runnable[Any, Any]]
    ) -> ProviderError | AllProvidersFailedError:
        if len(failures) == 1:
            return failures[0]  # one provider: its own typed error says it best
        return AllProvidersFailedError(
            {f"{i}:{error.provider}": error for i, error in enumerate(failures, start=1)}
        )

    # A chain run only when a handler would see it; else the providers' runs are the caller's.
    @contextmanager
    def _run(self, input: Any, config: RunnableConfig | None) -> Iterator[_Fallbacks]:
        call = _Fallbacks(self, config)
        manager = get_callback_manager_for_config(call.config)
        if not manager.handlers:
            yield call
            return
        run = manager.on_chain_start(None, input, **call.names)
        call.config = patch_config(call.config, callbacks=run.get_child())
        try:
            yield call
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end(call.output)

    @asynccontextmanager
    async def _arun(self, input: Any, config: RunnableConfig | None) -> AsyncIterator[_Fallbacks]:
        call = _Fallbacks(self, config)
        manager = get_async_callback_manager_for_config(call.config)
        if not manager.handlers:
            yield call
            return
        run = await manager.on_chain_start(None, input, **call.names)
        call.config = patch_config(call.config, callbacks=run.get_child())
        try:
            yield call
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end(call.output)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        kwargs = validate_chat_call(input, kwargs, config)
        with self._run(input, config) as call:
            for provider in call.tries(self._order()):
                with call:
                    return call.served(provider.invoke(input, call.config, **kwargs))
            raise call.error()

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        kwargs = validate_chat_call(input, kwargs, config)
        async with self._arun(input, config) as call:
            for provider in call.tries(await self._aorder()):
                with call:
                    return call.served(await provider.ainvoke(input, call.config, **kwargs))
            raise call.error()

    # A stream falls back only before its first chunk: after it, text has been delivered.
    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        kwargs = validate_chat_call(input, kwargs, config)
        with self._run(input, config) as call:
            for provider in call.tries(self._order()):
                chunks = provider.stream(input, call.config, **kwargs)
                with call:  # the policy plans at the first chunk
                    output = call.served(next(chunks, NOTHING))
                    break
            else:
                raise call.error()
            if output is not NOTHING:
                yield output
                for chunk in chunks:
                    yield call.added(chunk)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        kwargs = validate_chat_call(input, kwargs, config)
        async with self._arun(input, config) as call:
            for provider in call.tries(await self._aorder()):
                chunks = provider.astream(input, call.config, **kwargs)
                with call:  # the policy plans at the first chunk
                    output = call.served(await anext(chunks, NOTHING))
                    break
            else:
                raise call.error()
            if output is not NOTHING:
                yield output
                async for chunk in chunks:
                    yield call.added(chunk)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ProviderChain:
        return self._per_model(lambda model: model.bind_tools(tools, **kwargs))

    def with_structured_output(self, schema: Any, **kwargs: Any) -> ProviderChain:
        """Each provider's model asked in its own way."""
        return self._per_model(lambda model: model.with_structured_output(schema, **kwargs))

    def _per_model(self, change: Callable[[BaseChatModel], Runnable[Any, Any]]) -> Self:
        providers = [_rewrapped(provider, change) for provider in self.providers]
        return self.model_copy(update={"providers": providers})


class _Fallbacks(AbstractContextManager["_Fallbacks"]):
    """One call's way through the providers. ``with`` it around one provider's call: a
    ``ProviderError`` is logged (DEBUG) and kept, and the loop goes on."""

    def __init__(self, chain: ProviderChain, config: RunnableConfig | None) -> None:
        self.chain = chain
        self.config = ensure_config(config)  # a copy: less what names the chain's run
        name = self.config.pop("run_name", None) or chain.get_name()
        self.names: dict[str, Any] = {"name": name, "run_id": self.config.pop("run_id", None)}
        self.failures: list[ProviderError] = []
        self.failed: list[tuple[str, str]] = []  # (label, short reason), for the notice
        self.output: Any = None
        self._order: Sequence[Runnable[Any, Any]] = ()
        self._provider: Runnable[Any, Any] | None = None

    def tries(self, order: Sequence[Runnable[Any, Any]]) -> Iterator[Runnable[Any, Any]]:
        """Each provider once; then, if all failed and the last was refused by its breaker
        only, that one again past it as a probe (a cooldown would only lock the caller out)."""
        self._order = order
        for provider in order:
            self._provider = provider
            yield provider
        if (
            order
            and len(self.failures) == len(order)
            and isinstance(self.failures[-1], CircuitOpenError)
        ):
            self.failures.pop()
            self.failed.pop()
            configurable = {**self.config.get("configurable", {}), PAST_OPEN_BREAKER: True}
            self.config = {**self.config, "configurable": configurable}
            yield order[-1]

    def __exit__(self, exc_type: object, error: BaseException | None, tb: object) -> bool:
        if not isinstance(error, ProviderError):
            return False
        assert self._provider is not None
        name, reason = self.chain._label(self._provider), short_reason(error)
        logger.debug("%s failed (%s): %s: %s", name, reason, type(error).__name__, error)
        self.failures.append(error)
        self.failed.append((name, reason))
        return True

    def served(self, output: Any) -> Any:
        if self.failed:
            assert self._provider is not None
            fallback_notices.fell_back(self.failed, self.chain._label(self._provider))
        self.output = None if output is NOTHING else output
        return output

    def added(self, chunk: Any) -> Any:
        try:
            self.output = self.output + chunk
        except TypeError:
            self.output = chunk
        return chunk

    def error(self) -> ProviderError | AllProvidersFailedError:
        return self.chain._failed(self.failures, self._order)


def _rewrapped(
    runnable: Runnable[Any, Any], change: Callable[[BaseChatModel], Runnable[Any, Any]]
) -> Runnable[Any, Any]:
    """``runnable`` with its chat model ``change``d; wrappers are copied, keeping settings."""
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
