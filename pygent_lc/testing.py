"""Offline fakes that follow a script, for testing code built on pygent_lc (docs/testing.md):
an LLMBackend, and a chat model that, unlike LangChain's ``GenericFakeChatModel``, also
scripts errors (mid-stream too), usage and cost."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from pygent_lc.backend import LLMBackend, UsageTotals

__all__ = ["DEFAULT_REPLY", "Outcome", "ScriptedBackend", "ScriptedChatModel", "count_words"]

DEFAULT_REPLY = "ok"  # once the outcomes are used up, without a reply

Outcome = str | BaseException | tuple[str, BaseException]
"""One scripted call: a reply, an exception to raise, or (chat model streams only)
``(text, exception)``: ``text`` is streamed, then ``exception`` is raised."""


def count_words(text: str) -> int:
    """The fakes' token count: words, at least 1."""
    return max(1, len(text.split()))


class ScriptedBackend(LLMBackend):
    """Each call takes the next of ``outcomes`` (a reply or an exception), then :meth:`reply`
    answers; ``fail(prompt, index)`` may return an exception to raise instead. Usage is
    tracked only with a price (``cost_per_call``, ``price_per_1k_tokens``)."""

    def __init__(
        self,
        reply: Callable[[str], str] | None = None,
        *,
        outcomes: Iterable[str | BaseException] = (),
        model_id: str | None = None,
        latency_s: float = 0.0,
        fail: Callable[[str, int], BaseException | None] | None = None,
        cost_per_call: float | None = None,
        price_per_1k_tokens: tuple[float, float] | None = None,
        honours_n: bool = False,
    ) -> None:
        self._reply = reply
        self.honours_n = honours_n  # n choices in one request, as OpenAI-compatible servers
        self.outcomes: deque[str | BaseException] = deque(outcomes)
        self.model_id = model_id
        self.latency_s = latency_s
        self.fail = fail
        self.cost_per_call = cost_per_call
        self.price_per_1k_tokens = price_per_1k_tokens
        self.prompts: list[str] = []  # failed calls included
        self.kwargs: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._totals = UsageTotals()

    @property
    def calls(self) -> int:
        return len(self.prompts)

    def reply(self, prompt: str) -> str:
        return DEFAULT_REPLY if self._reply is None else self._reply(prompt)

    def count_tokens(self, text: str) -> int:
        return count_words(text)

    async def generate(self, prompt: str, **kwargs: Any) -> str:
        return (await self._request(prompt, kwargs, 1))[0]

    async def generate_samples(self, prompt: str, n: int, **kwargs: Any) -> list[str]:
        if not self.honours_n or n <= 1:
            return [await self.generate(prompt, **kwargs)]
        return await self._request(prompt, {**kwargs, "n": n}, n)

    async def _request(self, prompt: str, kwargs: dict[str, Any], n: int) -> list[str]:
        index = len(self.prompts)
        self.prompts.append(prompt)
        self.kwargs.append(kwargs)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            outputs = [self._answer(prompt, index) for _ in range(n)]
        except Exception:
            self._totals += UsageTotals(calls=1, failures=1)  # no tokens, no cost
            raise
        finally:
            self.in_flight -= 1
        tokens_in = self.count_tokens(prompt)
        tokens_out = sum(self.count_tokens(output) for output in outputs)
        cost = self.cost_per_call or 0.0
        if self.price_per_1k_tokens is not None:
            price_in, price_out = self.price_per_1k_tokens
            cost += (tokens_in * price_in + tokens_out * price_out) / 1000
        self._totals += UsageTotals(
            calls=1, input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost
        )
        return outputs

    def _answer(self, prompt: str, index: int) -> str:
        error = self.fail(prompt, index) if self.fail is not None else None
        outcome = error or (self.outcomes.popleft() if self.outcomes else self.reply(prompt))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def usage_totals(self) -> UsageTotals | None:
        if self.cost_per_call is None and self.price_per_1k_tokens is None:
            return None
        return self._totals


class ScriptedChatModel(BaseChatModel):
    """A chat model whose calls follow ``outcomes`` (each an :data:`Outcome`), then
    ``reply(prompt)``. Replies carry usage and ``response_metadata["cost"]``, as OpenRouter
    reports it; LangSmith sees ``provider`` and ``"<provider>-model"``."""

    outcomes: list[Any] = Field(default_factory=list)
    reply: Callable[[str], str] | None = None
    provider: str = "scripted"
    cost_per_call: float | Annotated[list[float], Field(min_length=1)] = 0.0
    latency_s: float = Field(default=0.0, ge=0.0)
    calls: list[dict[str, Any]] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0

    # Threads share one model under ``batch`` and sync callers; taking the next
    # outcome and recording the call happen together.
    _script_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider=self.provider, ls_model_name=f"{self.provider}-model")

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    @contextmanager
    def _call(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: Any
    ) -> Iterator[tuple[Any, float]]:
        prompt = messages[-1].text if messages else ""
        with self._script_lock:
            index = len(self.calls)
            self.calls.append({"stop": stop, **kwargs})
            self.prompts.append(prompt)
            outcome = self.outcomes.pop(0) if self.outcomes else None
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        costs = self.cost_per_call if isinstance(self.cost_per_call, list) else [self.cost_per_call]
        try:
            if outcome is None:
                outcome = DEFAULT_REPLY if self.reply is None else self.reply(prompt)
            yield outcome, costs[min(index, len(costs) - 1)]
        finally:
            with self._script_lock:
                self.in_flight -= 1

    def _chunks(
        self, messages: Sequence[BaseMessage], scripted: tuple[Any, float]
    ) -> Iterator[ChatGenerationChunk]:
        """The reply word by word, then its usage and cost (a plain call joins them)."""
        outcome, cost = scripted
        if isinstance(outcome, BaseException):
            raise outcome
        text, error = outcome if isinstance(outcome, tuple) else (outcome, None)
        for i, word in enumerate(text.split(" ") if text else []):
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=word if i == 0 else f" {word}")
            )
        if error is not None:
            raise error
        words_in = count_words(" ".join(message.text for message in messages))
        words_out = len(text.split())
        usage = UsageMetadata(
            input_tokens=words_in, output_tokens=words_out, total_tokens=words_in + words_out
        )
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage,
                response_metadata={"cost": cost, "finish_reason": "stop"},
            ),
            generation_info={"finish_reason": "stop"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with self._call(messages, stop, kwargs) as scripted:
            if self.latency_s:
                time.sleep(self.latency_s)
            yield from self._chunks(messages, scripted)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        with self._call(messages, stop, kwargs) as scripted:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            for chunk in self._chunks(messages, scripted):
                yield chunk
