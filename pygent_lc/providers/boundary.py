"""The provider boundary: where raw SDK exceptions become typed errors, once.

:class:`ProviderBoundary` is mixed in front of a stock LangChain chat model
class. It wraps the four methods every ``BaseChatModel`` implements, so
callbacks, retries and fallbacks only ever see :mod:`pygent_lc.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, NoReturn

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from pygent_lc.errors import (
    ProviderError,
    ProviderUnavailableError,
    PygentError,
    StreamInterruptedError,
)
from pygent_lc.providers.error_mapping import map_exception


class ProviderBoundary(BaseChatModel):
    """Mixin: typed errors, incomplete replies detected, secrets kept out of messages."""

    provider_label: str = "provider"
    """Name used in errors, usage summaries and LangSmith params (``ls_provider``)."""

    def _model_label(self) -> str | None:
        return getattr(self, "model_name", None) or getattr(self, "model", None)

    def _secrets(self) -> Sequence[str]:
        """Values that must never appear in an error message."""
        return ()

    def _is_final_chunk(self, chunk: ChatGenerationChunk) -> bool:
        """Whether ``chunk`` is the provider's end-of-reply marker."""
        return bool((chunk.generation_info or {}).get("finish_reason"))

    def _raise_typed(self, exc: Exception, partial_text: str = "") -> NoReturn:
        """Raise ``exc`` as a typed error; unknown exceptions (bugs) pass unchanged."""
        typed = (
            exc
            if isinstance(exc, PygentError)
            else map_exception(exc, provider=self.provider_label, model=self._model_label())
        )
        if typed is None:
            raise exc
        if isinstance(typed, ProviderError):
            for secret in self._secrets():
                if secret and secret in typed.message:
                    typed.message = typed.message.replace(secret, "***")
                    typed.args = (typed.message,)
            if partial_text and not isinstance(typed, StreamInterruptedError):
                typed = StreamInterruptedError(
                    f"stream interrupted after {len(partial_text)} characters: {typed.message}",
                    partial_text=partial_text,
                    provider=typed.provider,
                    model=typed.model,
                    status_code=typed.status_code,
                )
        if typed is exc:
            raise exc
        if _chain_mentions(exc, self._secrets()):
            raise typed from None  # the SDK's exception echoes a credential: drop it
        raise typed from exc

    def _raise_incomplete(self, partial_text: str) -> NoReturn:
        self._raise_typed(
            ProviderUnavailableError(
                "reply ended before the provider marked it finished",
                provider=self.provider_label,
                model=self._model_label(),
            ),
            partial_text,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            return super()._generate(messages, stop, run_manager, **kwargs)  # type: ignore[safe-super]
        except Exception as exc:
            self._raise_typed(exc)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        except Exception as exc:
            self._raise_typed(exc)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text: list[str] = []
        finished = False
        try:
            for chunk in super()._stream(messages, stop, run_manager, **kwargs):
                text.append(chunk.text)
                finished = finished or self._is_final_chunk(chunk)
                yield chunk
        except Exception as exc:
            self._raise_typed(exc, "".join(text))
        if not finished:
            self._raise_incomplete("".join(text))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        text: list[str] = []
        finished = False
        try:
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                text.append(chunk.text)
                finished = finished or self._is_final_chunk(chunk)
                yield chunk
        except Exception as exc:
            self._raise_typed(exc, "".join(text))
        if not finished:
            self._raise_incomplete("".join(text))


def _chain_mentions(exc: BaseException, secrets: Sequence[str]) -> bool:
    """Whether ``exc`` or any exception it was raised from shows one of ``secrets``."""
    secrets = [secret for secret in secrets if secret]
    seen: BaseException | None = exc
    while seen is not None and secrets:
        shown = f"{seen!s} {seen!r} {getattr(seen, 'body', '')!r}"
        if any(secret in shown for secret in secrets):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
