"""``RedisStore``: each step one ``EVALSHA`` of its script; an async client per running
loop (closed loops' dropped when a new loop comes); short timeouts, so a stuck Redis cannot
stall calls. Redis Cluster is not supported (a step spans limits)."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.commands.core import Script as RedisScript
from redis.retry import Retry

from pygent_lc.limits.script import Step
from pygent_lc.limits.store import (
    DEFAULT_PREFIX,
    UNREACHABLE,
    Clock,
    Outage,
    StateStore,
    redact_url,
)

T = TypeVar("T")

CREDENTIALS = Outage(
    "rejected the password (wrong or missing): check the password in the state store URL",
    misconfigured=True,
)
PERMISSION = Outage(
    "denied this user a command the state store runs: its ACL must allow EVAL and "
    "EVALSHA (+eval +evalsha) on the keys under the prefix",
    misconfigured=True,
)
READ_ONLY = Outage("is read-only (a replica, after a failover?)")
OUT_OF_MEMORY = Outage("is out of memory (maxmemory reached, maxmemory-policy noeviction)")
NOT_SERVING = Outage("is not serving now")

_BY_CODE = {
    "NOAUTH": CREDENTIALS,
    "WRONGPASS": CREDENTIALS,
    "NOPERM": PERMISSION,
    "READONLY": READ_ONLY,
    "OOM": OUT_OF_MEMORY,
    "MISCONF": NOT_SERVING,  # writes stopped: its last snapshot failed
    "MASTERDOWN": NOT_SERVING,
    "LOADING": NOT_SERVING,
    "BUSY": NOT_SERVING,  # another script runs too long
}
_BY_CLASS: tuple[tuple[type[Exception], Outage], ...] = (
    (redis.exceptions.AuthenticationError, CREDENTIALS),
    (redis.exceptions.NoPermissionError, PERMISSION),
    (redis.exceptions.ReadOnlyError, READ_ONLY),
    (redis.exceptions.OutOfMemoryError, OUT_OF_MEMORY),
    (redis.exceptions.MasterDownError, NOT_SERVING),
    (redis.exceptions.ConnectionError, UNREACHABLE),
    (redis.exceptions.TimeoutError, UNREACHABLE),
)
# Redis before 7 wraps a command's error in a script's: "Error running script: -READONLY ..."
_SCRIPT_ERROR_CODE = re.compile(r"\s-([A-Z][A-Z0-9_]*)\s")


def outage_of(error: Exception) -> Outage | None:
    """Why ``error`` means Redis will not serve this client now; None for a bug."""
    for kind, outage in _BY_CLASS:
        if isinstance(error, kind):
            return outage
    if not isinstance(error, redis.exceptions.ResponseError):
        return None
    code = getattr(error, "status_code", None)
    if code not in _BY_CODE:
        found = _SCRIPT_ERROR_CODE.search(str(error))
        code = found.group(1) if found else None
    return _BY_CODE.get(code) if code is not None else None


CONNECT_TIMEOUT_S = 0.5
TIMEOUT_S = 1.0
SCAN_BATCH = 500


class RedisStore(StateStore):
    """State in Redis at ``url``; raises redis-py's errors (``ResilientStore`` reads them)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, clock: Clock = time.time) -> None:
        super().__init__(prefix=prefix, clock=clock)
        self._url = url
        self._options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_timeout": TIMEOUT_S,
        }
        # A connection from before a Redis restart is broken: tried again once (a timeout is not).
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
        self._sync = redis.Redis.from_url(url, retry=retry, **self._options)
        self._sync_scripts: dict[type, RedisScript] = {}
        self._lock = threading.Lock()
        self._loops: dict[
            asyncio.AbstractEventLoop, tuple[redis.asyncio.Redis, dict[type, AsyncScript]]
        ] = {}

    def __repr__(self) -> str:
        return f"RedisStore({redact_url(self._url)!r}, prefix={self.prefix!r})"

    def run(self, step: Step[T]) -> T:
        kind, scripts = type(step), self._sync_scripts
        script = scripts.get(kind) or scripts.setdefault(kind, self._sync.register_script(kind.lua))
        return step.decode(script(*step.redis_args(self.prefix)))

    async def arun(self, step: Step[T]) -> T:
        (client, scripts), kind = self._loop_client(), type(step)
        script = scripts.get(kind) or scripts.setdefault(kind, client.register_script(kind.lua))
        return step.decode(await script(*step.redis_args(self.prefix)))

    def _loop_client(self) -> tuple[redis.asyncio.Redis, dict[type, AsyncScript]]:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._loops.get(loop)
            if entry is None:
                for stale in [known for known in self._loops if known.is_closed()]:
                    del self._loops[stale]
                retry = redis.asyncio.retry.Retry(
                    NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)
                )
                client = redis.asyncio.Redis.from_url(self._url, retry=retry, **self._options)
                entry = self._loops[loop] = (client, {})
            return entry

    def clear(self) -> None:
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"
        keys = self._sync.scan_iter(match=pattern, count=SCAN_BATCH)
        while batch := list(itertools.islice(keys, SCAN_BATCH)):
            self._sync.unlink(*batch)

    def ping(self) -> bool:
        return bool(self._sync.ping())

    async def aping(self) -> bool:
        return bool(await self._loop_client()[0].ping())

    def close(self) -> None:
        """Close the sync pool and drop closed loops' clients (a running loop's: :meth:`aclose`)."""
        self._sync.close()
        with self._lock:
            self._loops = {loop: e for loop, e in self._loops.items() if not loop.is_closed()}

    async def aclose(self) -> None:
        with self._lock:
            entry = self._loops.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].aclose()
        self.close()
