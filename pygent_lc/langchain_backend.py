"""``LangChainBackend``: the PyGent ``LLMBackend`` contract over any chat Runnable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, ensure_config
from langchain_core.runnables.config import merge_configs

from pygent_lc.backend import LLMBackend, UsageTotals
from pygent_lc.chain import ProviderChain
from pygent_lc.closing import Closable, runnable_parts
from pygent_lc.errors import (
    ConfigurationError,
    InvalidInputError,
    ProviderError,
    ProviderUnavailableError,
    StreamInterruptedError,
)
from pygent_lc.limits.budget import CostBudget, CostEstimator, spend_meter
from pygent_lc.limits.call import HeldStream, Hold
from pygent_lc.limits.usage import UsageTracker, feeding
from pygent_lc.policy import ProviderPolicy
from pygent_lc.providers.boundary import ProviderBoundary
from pygent_lc.providers.cache_markers import cached_prefix_message
from pygent_lc.validation import GenerationParams, checked, validate_prompt

ChatRunnable = Runnable[Any, BaseMessage]


class LangChainBackend(LLMBackend, Closable):
    """Ask a chat Runnable (usually :func:`pygent_lc.build_chat_model`) for text; ``usage`` is
    fed by its policies (else it listens as a callback); ``cache_prefix`` is sent marked
    ``cache_control`` when every chat model inside is one of ours."""

    def __init__(
        self,
        runnable: ChatRunnable,
        callbacks: Sequence[BaseCallbackHandler] | None = None,
        *,
        budget: CostBudget | None = None,
        max_cost_usd: float | None = None,
        cost_estimator: CostEstimator | None = None,
    ) -> None:
        """Every call reserves on ``budget`` (concurrently given an ``estimator``, else one
        at a time). ``max_cost_usd`` is short for ``budget=CostBudget(max_cost_usd, ...)``."""
        if max_cost_usd is not None:
            if budget is not None:
                raise ConfigurationError(
                    "give budget or max_cost_usd, not both", field="max_cost_usd"
                )
            budget = CostBudget(max_cost_usd, estimator=cost_estimator)
        self.runnable = runnable
        self.usage = UsageTracker()
        self._callbacks: list[BaseCallbackHandler] = list(callbacks or [])
        self._fed: tuple[object, bool] = (None, False)
        self._estimator = cost_estimator or (budget.estimator if budget is not None else None)
        self.budget = budget  # every call reserves on it (None: no limit)
        self._call_cost = spend_meter(lambda: self.usage.totals().cost_usd)

    accepts_cache_prefix = True

    async def generate(self, prompt: str, **kwargs: Any) -> str:
        messages, config, kwargs, hold = self._prepared(prompt, kwargs)
        async with hold:
            return reply_text(await self.runnable.ainvoke(messages, config, **kwargs))

    def generate_sync(self, prompt: str, **kwargs: Any) -> str:
        """``generate`` for code without an event loop (scripts, notebooks' plain cells)."""
        messages, config, kwargs, hold = self._prepared(prompt, kwargs)
        with hold:
            return reply_text(self.runnable.invoke(messages, config, **kwargs))

    async def generate_samples(self, prompt: str, n: int, **kwargs: Any) -> list[str]:
        """Up to ``n`` completions in one request (one reservation for all); blank ones are
        dropped, all blank is ``generate``'s error. Most OpenRouter routes answer one."""
        choices = _Choices()
        messages, config, call_kwargs, hold = self._prepared(
            prompt, {**kwargs, "n": n}, choices, samples=True
        )
        if call_kwargs.get("n") is None:
            raise InvalidInputError(f"n must be an integer, got {n!r}")
        if n == 1:
            return [await self.generate(prompt, **kwargs)]
        async with hold:
            reply = await self.runnable.ainvoke(messages, config, **call_kwargs)
        return choices.texts(reply)

    def _prepared(
        self,
        prompt: object,
        kwargs: dict[str, Any],
        *extra: BaseCallbackHandler,
        samples: bool = False,
    ) -> tuple[list[BaseMessage], RunnableConfig, dict[str, Any], Hold]:
        if "n" in kwargs and not samples:
            raise InvalidInputError("n is generate_samples' argument: generate returns one text")
        kwargs = dict(kwargs)
        prefix = kwargs.pop("cache_prefix", None)
        text = validate_prompt(prompt)
        params = GenerationParams.check(kwargs)
        messages: list[BaseMessage] = [HumanMessage(content=text)]
        if prefix is not None and prefix != "":
            if not isinstance(prefix, str) or not text.startswith(prefix):
                raise InvalidInputError("cache_prefix must be a string the prompt starts with")
            models = [p for p in runnable_parts(self.runnable) if isinstance(p, BaseChatModel)]
            if models and all(isinstance(model, ProviderBoundary) for model in models):
                messages = [cached_prefix_message(prefix, text[len(prefix) :])]
        call_kwargs = params.model_dump(exclude_none=True)
        if self._fed[0] is not self.runnable:  # whether policies feed usage, per runnable
            self._fed = (self.runnable, _policies_only(self.runnable))
        handlers = [*([] if self._fed[1] else [self.usage]), *self._callbacks, *extra]
        config = ensure_config()  # the ambient run's: calls nest in a caller's trace
        if handlers:
            config = merge_configs(config, {"callbacks": handlers})
        if isinstance(self.runnable, ProviderChain):
            config = checked(config, messages, call_kwargs)
        config = feeding(config, self.usage) if self._fed[1] else config
        hold = Hold(self.budget, text, params.max_tokens, params.n or 1, measure=self._call_cost)
        return messages, config, call_kwargs, hold

    def stream(self, prompt: str, **kwargs: Any) -> AsyncIterator[str]:
        """Text as it arrives (see :func:`stream_text`); the budget's hold ends with the
        stream, or when it is closed or dropped."""

        async def start() -> tuple[AsyncIterator[str], Hold]:
            messages, config, call_kwargs, hold = self._prepared(prompt, kwargs)
            await hold.__aenter__()
            return stream_text(self.runnable, messages, config, **call_kwargs), hold

        return HeldStream(start)

    def usage_totals(self) -> UsageTotals:
        return self.usage.totals()

    def cost_bound(self, prompt: str, max_tokens: int | None) -> float | None:
        return None if self._estimator is None else self._estimator(prompt, max_tokens)


class _Choices(BaseCallbackHandler):
    """The choices of the answering request (a chat Runnable returns only the first): the
    last ``on_llm_end`` (failed attempts end in ``on_llm_error``)."""

    run_inline = True

    def __init__(self) -> None:
        self._last: list[BaseMessage] = []

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        if response.generations:
            generations = response.generations[0]
            self._last = [g.message for g in generations if isinstance(g, ChatGeneration)]

    def texts(self, reply: BaseMessage) -> list[str]:
        """The non-blank texts of the choices whose first is ``reply``; else ``reply``'s."""
        if not self._last or self._last[0].text != reply.text:
            return [reply_text(reply)]  # the Runnable's output is not that request's reply
        texts = [str(message.text) for message in self._last if message.text.strip()]
        return texts or [reply_text(reply)]


def _policies_only(runnable: object) -> bool:
    """Whether every request ``runnable`` makes is made by a provider policy."""
    if isinstance(runnable, ProviderPolicy):
        return True
    if isinstance(runnable, ProviderChain):
        return bool(runnable.providers) and all(map(_policies_only, runnable.providers))
    if isinstance(runnable, RunnableBinding):  # a HostSlot too
        return _policies_only(runnable.bound)
    return False


async def stream_text(
    runnable: Runnable[Any, BaseMessage], inputs: Any, config: RunnableConfig, **params: Any
) -> AsyncIterator[str]:
    """The text of ``runnable.astream(inputs)``, never empty; a ``ProviderError`` after
    some text becomes :class:`StreamInterruptedError` carrying that text."""
    parts: list[str] = []
    try:
        async for chunk in runnable.astream(inputs, config, **params):
            if text := chunk.text:
                parts.append(text)
                yield text
    except ProviderError as exc:
        if not parts or isinstance(exc, StreamInterruptedError):
            raise
        raise StreamInterruptedError(
            f"stream interrupted: {exc.message}",
            partial_text="".join(parts),
            provider=exc.provider,
            model=exc.model,
            status_code=exc.status_code,
        ) from exc
    if not parts:
        raise ProviderUnavailableError(
            "the stream ended without any text", provider="chain", retryable=False
        )


def reply_text(message: BaseMessage) -> str:
    """The reply's text; an empty reply is an error, never ``""``."""
    text = message.text
    if text.strip():
        return text
    metadata = message.response_metadata
    raise ProviderUnavailableError(
        f"the model returned no text (finish_reason={metadata.get('finish_reason')!r})",
        provider=str(metadata.get("model_provider") or "chain"),
        model=metadata.get("model_name"),
        retryable=False,
    )
