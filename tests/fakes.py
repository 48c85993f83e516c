"""Scripted chat models for unit tests: no sockets, exact control over failures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


class ScriptedChatModel(BaseChatModel):
    """Each call takes the next outcome: an exception to raise or a reply text.

    For streams, an outcome may be a tuple ``(text, exception)``: the text is
    streamed word by word, then the exception is raised.
    """

    provider: str = "fake"
    outcomes: list[Any] = Field(default_factory=list)
    calls: list[dict[str, Any]] = Field(default_factory=list)
    cost_per_call: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider=self.provider, ls_model_name=f"{self.provider}-model")

    def _next(self, stop: list[str] | None, kwargs: dict[str, Any]) -> Any:
        self.calls.append({"stop": stop, **kwargs})
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _reply(self, text: str) -> AIMessage:
        words = len(text.split())
        return AIMessage(
            content=text,
            usage_metadata={"input_tokens": 3, "output_tokens": words, "total_tokens": 3 + words},
            response_metadata={"cost": self.cost_per_call, "finish_reason": "stop"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        outcome = self._next(stop, kwargs)
        if isinstance(outcome, tuple):
            raise outcome[1]
        return ChatResult(generations=[ChatGeneration(message=self._reply(outcome))])

    def _chunks(self, outcome: Any) -> Iterator[ChatGenerationChunk]:
        text, error = outcome if isinstance(outcome, tuple) else (outcome, None)
        words = text.split(" ") if text else []
        for i, word in enumerate(words):
            piece = word if i == 0 else f" {word}"
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        if error is not None:
            raise error
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata={"input_tokens": 3, "output_tokens": len(words), "total_tokens": 3},
                response_metadata={"cost": self.cost_per_call},
            ),
            generation_info={"finish_reason": "stop"},
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks(self._next(stop, kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._next(stop, kwargs)):
            yield chunk
