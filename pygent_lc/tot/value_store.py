"""Where state values outlive one search: a small store interface and two stores.

A value is the list of per-sample scores of one state, and whether sampling
for it is finished (``settled``). Keys are built by the evaluator from the
model, the task's value prompt version and the task's canonical state key, so
a store never mixes models or prompts. Stores are synchronous and fast (a
dict, a local SQLite file); a networked store (Redis) fits the same three
methods.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from pygent_lc.errors import ConfigurationError

MEMORY = "memory"


@dataclass(frozen=True)
class StoredValue:
    """The value samples of one state."""

    scores: tuple[float, ...]
    settled: bool
    """No more samples are wanted: the task said they agree, or all were asked."""


@runtime_checkable
class ValueStore(Protocol):
    """Values of states by key; safe to use from several threads and searches at once."""

    def get(self, key: str) -> StoredValue | None: ...

    def put(self, key: str, value: StoredValue) -> None: ...

    def close(self) -> None: ...


class MemoryValueStore:
    """A bounded in-process store: the least recently used entries go first."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1", field="value_cache_size")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, StoredValue] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> StoredValue | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: StoredValue) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tot_values (
    key TEXT PRIMARY KEY,
    scores TEXT NOT NULL,
    settled INTEGER NOT NULL
)
"""


class SQLiteValueStore:
    """A store in one SQLite file, for reuse across runs and processes.

    Each thread gets its own connection (sqlite3 connections must not be
    shared between threads); the file is in WAL mode with a busy timeout, so
    readers and one writer at a time, from any thread or process, do not fail.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            connection = self._connection()
            with connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"cannot open the value cache {self.path!r}: {exc}", field="value_cache"
            ) from exc

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # check_same_thread off only so that close() may close every thread's
            # connection; each connection is used by its own thread alone.
            connection = sqlite3.connect(
                self.path, timeout=self._timeout_s, check_same_thread=False
            )
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def get(self, key: str) -> StoredValue | None:
        row = (
            self._connection()
            .execute("SELECT scores, settled FROM tot_values WHERE key = ?", (key,))
            .fetchone()
        )
        if row is None:
            return None
        scores = tuple(float(score) for score in json.loads(row[0]))
        return StoredValue(scores=scores, settled=bool(row[1]))

    def put(self, key: str, value: StoredValue) -> None:
        connection = self._connection()
        with connection:
            connection.execute(
                "INSERT OR REPLACE INTO tot_values (key, scores, settled) VALUES (?, ?, ?)",
                (key, json.dumps(list(value.scores)), int(value.settled)),
            )

    def close(self) -> None:
        """Close every thread's connection; the store must not be used afterwards."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def __len__(self) -> int:
        row = self._connection().execute("SELECT COUNT(*) FROM tot_values").fetchone()
        return int(row[0])


def open_value_store(spec: str | None, max_entries: int) -> ValueStore | None:
    """The store ``ToTConfig.value_cache`` names: ``"memory"``, a SQLite path, a
    state store URL (``redis://...``: shared by every process using it), or none."""
    if spec is None:
        return None
    if spec == MEMORY:
        return MemoryValueStore(max_entries)
    if spec.startswith(_STATE_STORE_URLS):
        from pygent_lc.state import shared_store  # the state package imports this module
        from pygent_lc.state.value_cache import SharedValueStore

        return SharedValueStore(shared_store(spec))
    return SQLiteValueStore(spec)


_STATE_STORE_URLS = ("redis://", "rediss://", "unix://")


__all__ = [
    "MEMORY",
    "MemoryValueStore",
    "SQLiteValueStore",
    "StoredValue",
    "ValueStore",
    "open_value_store",
]
