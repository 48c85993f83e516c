"""The store a URL names, and the one per process and URL every chain shares; ``redis_store``
(the ``redis`` extra) is imported only for a Redis URL."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

from pygent_lc.errors import ConfigurationError
from pygent_lc.limits.store import (
    DEFAULT_PREFIX,
    MAX_RETRY_AFTER_S,
    MEMORY_URLS,
    REDIS_SCHEMES,
    RETRY_AFTER_S,
    Clock,
    MemoryStore,
    ResilientStore,
    StateStore,
    redact_url,
)

INSTALL_HINT = 'pip install "pygent-lc[redis]"'


def open_store(
    url: str | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    clock: Clock = time.time,
    retry_after_s: float = RETRY_AFTER_S,
    max_retry_after_s: float = MAX_RETRY_AFTER_S,
) -> StateStore:
    """A ``RedisStore`` behind a :class:`ResilientStore` (not connected yet), or memory."""
    if url is None or url.strip() in MEMORY_URLS:
        return MemoryStore(prefix=prefix, clock=clock)
    shown = redact_url(url)
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in REDIS_SCHEMES:
        raise ConfigurationError(
            f"state store URL {shown!r}: expected redis://, rediss:// or unix:// "
            "(or none, for state in this process)",
            field="state_url",
        )
    try:
        from pygent_lc.limits.redis_store import RedisStore, outage_of
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != "redis":
            raise
        raise ConfigurationError(
            f"a Redis state store needs the redis package: {INSTALL_HINT}", field="state_url"
        ) from None
    try:
        primary = RedisStore(url, prefix=prefix, clock=clock)
    except ValueError as exc:  # redis-py's URL parsing
        raise ConfigurationError(
            f"state store URL {shown!r} is not valid: {redact_url(str(exc))}", field="state_url"
        ) from None
    return ResilientStore(
        primary,
        outage_of,
        name=shown,
        retry_after_s=retry_after_s,
        max_retry_after_s=max_retry_after_s,
        clock=clock,
    )


_PROCESS_STORE = MemoryStore()
_OPENED: dict[str, StateStore] = {}
_OPENING = threading.Lock()


def shared_store(url: str | None = None) -> StateStore:
    """The store every chain of this process shares for ``url``."""
    if url is None or url.strip() in MEMORY_URLS:
        return _PROCESS_STORE
    with _OPENING:
        store = _OPENED.get(url)
        if store is None:
            store = _OPENED[url] = open_store(url)
        return store
