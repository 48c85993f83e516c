"""The provider boundary: where raw SDK exceptions become typed errors, once, and replies
that are no answer (empty, or a stream that ends unfinished) are rejected. How secrets
are kept out: ARCHITECTURE.md, "The key never leaves SecretStr"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import Field

from pygent_lc.errors import (
    InvalidInputError,
    ProviderError,
    ProviderUnavailableError,
    StreamInterruptedError,
)
from pygent_lc.providers.error_mapping import holds_secret, map_exception
from pygent_lc.providers.forced_tools import as_chunk
from pygent_lc.providers.http import ProviderHttp
from pygent_lc.providers.text import StreamText, clean_result

Messages = list[BaseMessage]
Stop = list[str] | None
SyncRun = CallbackManagerForLLMRun | None
AsyncRun = AsyncCallbackManagerForLLMRun | None


@dataclass(frozen=True)
class ChatRequest:
    """One call as the provider class gets it (see :meth:`ProviderBoundary._request`)."""

    messages: list[BaseMessage]
    kwargs: dict[str, Any]
    finish: Callable[[ChatResult], ChatResult] | None = None  # served whole, never streamed

    def reply(self, result: ChatResult) -> ChatResult:
        return result if self.finish is None else self.finish(result)


class ProviderBoundary(BaseChatModel):
    """Mixin in front of a LangChain chat model. A provider adapts calls with :meth:`_request`
    (rewrite one, or have it served whole) and the slots held around each request."""

    provider_label: str = "provider"  # in errors, usage summaries and ``ls_provider``
    # The HTTP clients' transport, when this package built them (closed by ``aclose``).
    http_pools: ProviderHttp | None = Field(default=None, exclude=True, repr=False)

    def _model_label(self) -> str | None:
        return getattr(self, "model_name", None) or getattr(self, "model", None)

    def _secrets(self) -> Sequence[str]:  # never in an error message
        return ()

    def _check_ready(self) -> None:
        """Raise ``ConfigurationError`` if a call cannot be made (say, no key); no I/O."""

    def _request(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatRequest:
        return ChatRequest(messages, kwargs)

    def _call_slot(self) -> AbstractContextManager[object]:
        return nullcontext()

    def _acall_slot(self) -> AbstractAsyncContextManager[object]:
        return nullcontext()

    def _is_final_chunk(self, chunk: ChatGenerationChunk) -> bool:
        return bool((chunk.generation_info or {}).get("finish_reason"))

    def _typed(self, exc: Exception, partial_text: str = "") -> Exception:
        """``exc`` as a typed error, secrets removed; unknown exceptions (bugs) unchanged."""
        typed = map_exception(exc, provider=self.provider_label, model=self._model_label())
        if typed is None:
            return exc
        interrupted = partial_text and not isinstance(typed, StreamInterruptedError)
        if interrupted and isinstance(typed, ProviderError):
            typed = StreamInterruptedError(
                f"stream interrupted after {len(partial_text)} characters: {typed.message}",
                partial_text=partial_text,
                provider=typed.provider,
                model=typed.model,
                status_code=typed.status_code,
            )
        _scrub(typed, self._secrets())
        if typed is exc:
            # Raised by our parsing code, whose frames hold the reply (perhaps the key): cut them.
            typed.__context__ = None
            return typed.with_traceback(None)
        # The raw error holds its request (the key in its headers): chained only if no secret shows.
        typed.__cause__ = None if holds_secret(exc, self._secrets()) else exc
        return typed

    def _empty(self, finish_reason: object) -> ProviderUnavailableError:
        return ProviderUnavailableError(
            f"the model returned an empty reply (finish_reason={finish_reason!r})",
            provider=self.provider_label,
            model=self._model_label(),
            retryable=False,
        )

    def _answered(self, result: ChatResult) -> ChatResult:
        result = clean_result(result)
        if any(_has_content(generation.message) for generation in result.generations):
            return result
        info = result.generations[0].generation_info if result.generations else None
        raise self._empty((info or {}).get("finish_reason"))

    def _prepared(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatRequest:
        self._check_ready()
        return self._request(messages, kwargs)

    def _generate(
        self, messages: Messages, stop: Stop = None, run_manager: SyncRun = None, **kwargs: Any
    ) -> ChatResult:
        request = self._prepared(messages, kwargs)
        with self._call_slot():
            try:
                result = super()._generate(request.messages, stop, run_manager, **request.kwargs)  # type: ignore[safe-super]
            except Exception as exc:
                failure = self._typed(exc)
            else:
                return request.reply(self._answered(result))
        raise failure

    async def _agenerate(
        self, messages: Messages, stop: Stop = None, run_manager: AsyncRun = None, **kwargs: Any
    ) -> ChatResult:
        request = self._prepared(messages, kwargs)
        async with self._acall_slot():
            try:
                result = await super()._agenerate(
                    request.messages, stop, run_manager, **request.kwargs
                )
            except Exception as exc:
                failure = self._typed(exc)
            else:
                return request.reply(self._answered(result))
        raise failure

    def _stream(
        self, messages: Messages, stop: Stop = None, run_manager: SyncRun = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        request = self._prepared(messages, kwargs)
        if request.finish is not None:
            whole = as_chunk(self._generate(messages, stop, **kwargs))
            if run_manager is not None:
                run_manager.on_llm_new_token(whole.text, chunk=whole)
            yield whole
            return
        watch = _ReplyWatch(self)
        with self._call_slot():
            try:
                for chunk in super()._stream(request.messages, stop, run_manager, **request.kwargs):
                    yield from watch.accept(chunk)
                yield from watch.leftover()
            except Exception as exc:
                watch.failure = self._typed(exc, watch.text)
        watch.raise_unless_complete()

    async def _astream(
        self, messages: Messages, stop: Stop = None, run_manager: AsyncRun = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = self._prepared(messages, kwargs)
        if request.finish is not None:
            whole = as_chunk(await self._agenerate(messages, stop, **kwargs))
            if run_manager is not None:
                await run_manager.on_llm_new_token(whole.text, chunk=whole)
            yield whole
            return
        watch = _ReplyWatch(self)
        async with self._acall_slot():
            try:
                chunks = super()._astream(request.messages, stop, run_manager, **request.kwargs)
                async for chunk in chunks:
                    for ready in watch.accept(chunk):
                        yield ready
                for ready in watch.leftover():
                    yield ready
            except Exception as exc:
                watch.failure = self._typed(exc, watch.text)
        watch.raise_unless_complete()

    def close(self) -> None:  # the model stays usable
        if self.http_pools is not None:
            self.http_pools.close()

    async def aclose(self) -> None:
        if self.http_pools is not None:
            await self.http_pools.aclose()


class _ReplyWatch:
    """Follows one stream; its ``failure`` is raised outside the ``except`` block (so the
    raw error is not its context). Chunks without content (role chunk, keep-alives) are
    held back until one has some: an empty reply raises before anything was delivered."""

    def __init__(self, model: ProviderBoundary) -> None:
        self._model = model
        self._parts: list[str] = []
        self._held: list[ChatGenerationChunk] = []
        self._finish_reason: object = None
        self._finished = False
        self._tool_names: dict[object, str] = {}
        self._text = StreamText()
        self.failure: Exception | None = None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def accept(self, chunk: ChatGenerationChunk) -> list[ChatGenerationChunk]:
        chunk = self._text.accept(chunk)
        # llama.cpp repeats a call's name in each of its chunks, which merge to "addadd...".
        for fragment in getattr(chunk.message, "tool_call_chunks", None) or ():
            name = fragment.get("name")
            if name and self._tool_names.get(fragment.get("index")) == name:
                fragment["name"] = None
            elif name:
                self._tool_names[fragment.get("index")] = name
        if self._model._is_final_chunk(chunk):
            self._finished = True
            self._finish_reason = (chunk.generation_info or {}).get("finish_reason")
        if self._parts:  # started: the first chunk with content has been delivered
            self._parts.append(chunk.text)
            return [chunk]
        self._held.append(chunk)
        if not _has_content(chunk.message):
            return []
        ready, self._held = self._held, []
        self._parts.extend(held.text for held in ready)
        return ready

    def leftover(self) -> list[ChatGenerationChunk]:  # half a pair held back at the end
        last = self._text.leftover()
        return [] if last is None else self.accept(last)

    def raise_unless_complete(self) -> None:
        """Raise what the stream ended with: its error, else an incomplete or empty reply."""
        model = self._model
        if self.failure is not None:
            raise self.failure
        if not self._finished:
            incomplete = ProviderUnavailableError(
                "reply ended before the provider marked it finished",
                provider=model.provider_label,
                model=model._model_label(),
            )
            raise model._typed(incomplete, self.text)
        if not self._parts:
            raise model._empty(self._finish_reason)


def _has_content(message: BaseMessage) -> bool:
    """Whether a reply (or a chunk of one) carries text, a tool call or a refusal."""
    if message.text.strip():
        return True
    if isinstance(message, AIMessage) and (
        message.tool_calls
        or message.invalid_tool_calls
        or getattr(message, "tool_call_chunks", None)
    ):
        return True
    extras = message.additional_kwargs
    return bool(extras.get("refusal") or extras.get("function_call") or extras.get("tool_calls"))


def _scrub(error: Exception, secrets: Sequence[str]) -> None:
    if not isinstance(error, ProviderError | InvalidInputError) or not error.args:
        return
    message = cleaned = str(error.args[0])
    for secret in filter(None, secrets):
        cleaned = cleaned.replace(secret, "***")
    if cleaned != message:
        error.args = (cleaned,)
        if hasattr(error, "message"):
            error.message = cleaned
