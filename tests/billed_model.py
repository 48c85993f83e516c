"""A scripted chat model that bills each call a scripted cost, for the budget tests.

``costs`` gives the cost each call reports (``response_metadata["cost"]``, as
OpenRouter's ``usage.cost``) in order, the last one repeating; each request
sleeps ``delay_s`` so calls admitted together really are in flight together.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from pygent_lc.testing import ScriptedChatModel


class BilledModel(ScriptedChatModel):
    """Replies ``"ok"``; call ``i`` reports ``costs[i]`` (the last one once they run out)."""

    costs: list[float] = Field(default_factory=lambda: [0.0])
    delay_s: float = 0.02
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _index: int = PrivateAttr(default=0)
    _running: int = PrivateAttr(default=0)
    _peak: int = PrivateAttr(default=0)

    @property
    def peak(self) -> int:
        """The most requests that were in flight at once."""
        return self._peak

    def _next_cost(self) -> float:
        with self._lock:
            cost = self.costs[min(self._index, len(self.costs) - 1)]
            self._index += 1
            self._running += 1
            self._peak = max(self._peak, self._running)
            return cost

    def _done(self) -> None:
        with self._lock:
            self._running -= 1

    def _billed(self, messages: Sequence[BaseMessage], cost: float) -> ChatResult:
        outcome = self._next(messages, None, {})
        message = AIMessage(
            content=outcome,
            usage_metadata=self._usage(messages, outcome),
            response_metadata={"cost": cost, "finish_reason": "stop"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        cost = self._next_cost()
        try:
            threading.Event().wait(self.delay_s)
            return self._billed(messages, cost)
        finally:
            self._done()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        cost = self._next_cost()
        try:
            await asyncio.sleep(self.delay_s)
            return self._billed(messages, cost)
        finally:
            self._done()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        cost = self._next_cost()
        try:
            await asyncio.sleep(self.delay_s)
            outcome = self._next(messages, None, {})
            yield ChatGenerationChunk(message=AIMessageChunk(content=outcome))
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    usage_metadata=self._usage(messages, outcome),
                    response_metadata={"cost": cost},
                )
            )
        finally:
            self._done()
