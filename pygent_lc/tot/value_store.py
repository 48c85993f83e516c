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
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol, TypeVar, runtime_checkable

from annotated_types import MinLen
from pydantic import FiniteFloat, TypeAdapter, ValidationError

from pygent_lc.errors import ConfigurationError

logger = logging.getLogger(__name__)

MEMORY = "memory"

T = TypeVar("T")

Scores = Annotated[tuple[FiniteFloat, ...], MinLen(1)]
"""Stored scores: a non-empty list of finite numbers (not strings, not booleans)."""
_SCORES: TypeAdapter[tuple[float, ...]] = TypeAdapter(Scores)


@dataclass(frozen=True)
class StoredValue:
    """The value samples of one state."""

    scores: tuple[float, ...]
    settled: bool
    """No more samples are wanted: the task said they agree, or all were asked."""


def parse_scores(raw: object) -> tuple[float, ...] | None:
    """The scores in a stored JSON text, or ``None`` when they are not usable."""
    if not isinstance(raw, str):
        return None
    try:
        return _SCORES.validate_json(raw, strict=True)
    except ValidationError:
        return None


class UnusableValues:
    """Logs the first stored value a store could not use, once per store."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._warned = False

    def ignored(self, key: str, why: str) -> None:
        if self._warned:
            logger.debug("ignored the cached value of %r in %s: %s", key, self._where, why)
            return
        self._warned = True
        logger.warning(
            "ignored an unusable cached value in %s (%s); such values are asked again "
            "(this warning is shown once)",
            self._where,
            why,
        )


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


_TABLE = "tot_values"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    key TEXT PRIMARY KEY,
    scores TEXT NOT NULL,
    settled INTEGER NOT NULL
)
"""
# PRAGMA table_info of that table: (name, type, notnull, pk) per column.
_COLUMNS = [("key", "TEXT", 0, 1), ("scores", "TEXT", 1, 0), ("settled", "INTEGER", 1, 0)]


class SQLiteValueStore:
    """A store in one SQLite file, for reuse across runs and processes.

    Each thread gets its own connection (sqlite3 connections must not be
    shared between threads); the file is in WAL mode with a busy timeout, so
    readers and one writer at a time, from any thread or process, do not fail.

    The store only writes to a file it made: opening one that holds other
    tables (another application's database), or a ``tot_values`` table of
    another shape, raises ``ConfigurationError`` before anything is written
    and before the journal mode changes. When the file fails later (disk full,
    permission removed, file deleted, locked past ``timeout_s``), one warning
    is logged and the store keeps its values in memory from then on.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._fallback: MemoryValueStore | None = None
        self._unusable = UnusableValues(f"the value cache {self.path!r}")
        try:
            connection = self._connection()
            self._check_ours(connection)
            with connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(_SCHEMA)
        except sqlite3.Error as exc:
            self.close()
            raise ConfigurationError(
                f"cannot open the value cache {self.path!r}: {exc}", field="value_cache"
            ) from exc

    def _check_ours(self, connection: sqlite3.Connection) -> None:
        """Refuse a database this store did not make (read-only checks)."""
        others = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name != ? AND name NOT LIKE 'sqlite^_%' "
                "ESCAPE '^'",
                (_TABLE,),
            )
        ]
        columns = [
            (name, str(kind).upper(), notnull, pk)
            for _, name, kind, notnull, _, pk in connection.execute(f"PRAGMA table_info({_TABLE})")
        ]
        problem = None
        if others:
            problem = f"it holds other tables ({', '.join(sorted(others)[:5])})"
        elif columns and columns != _COLUMNS:
            problem = f"its {_TABLE} table has another schema"
        if problem is not None:
            self.close()
            raise ConfigurationError(
                f"the value cache {self.path!r} is not a value cache file: {problem}; "
                "point value_cache at a new file",
                field="value_cache",
            )

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

    def _on_file(self, operation: Callable[[sqlite3.Connection], T]) -> T | MemoryValueStore:
        """``operation`` on this thread's connection, or the memory store that now
        serves instead (once the file has failed)."""
        if self._fallback is not None:
            return self._fallback
        try:
            return operation(self._connection())
        except sqlite3.Error as exc:
            error = exc
        with self._lock:
            first = self._fallback is None
            if first:
                self._fallback = MemoryValueStore()
            fallback = self._fallback
        assert fallback is not None
        if first:
            logger.warning(
                "the value cache %r failed (%s: %s); values are kept in memory for the "
                "rest of this run",
                self.path,
                type(error).__name__,
                error,
            )
        return fallback

    def get(self, key: str) -> StoredValue | None:
        found = self._on_file(
            lambda connection: connection.execute(
                f"SELECT scores, settled FROM {_TABLE} WHERE key = ?", (key,)
            ).fetchone()
        )
        if isinstance(found, MemoryValueStore):
            return found.get(key)
        if found is None:
            return None
        raw_scores, settled = found
        scores = parse_scores(raw_scores)
        if scores is None or type(settled) is not int or settled not in (0, 1):
            why = (
                "its scores are not a list of finite numbers"
                if scores is None
                else "its settled flag is not 0 or 1"
            )
            self._unusable.ignored(key, why)
            return None
        return StoredValue(scores=scores, settled=bool(settled))

    def put(self, key: str, value: StoredValue) -> None:
        row = (key, json.dumps(list(value.scores)), int(value.settled))

        def write(connection: sqlite3.Connection) -> None:
            with connection:
                connection.execute(
                    f"INSERT OR REPLACE INTO {_TABLE} (key, scores, settled) VALUES (?, ?, ?)",
                    row,
                )

        done = self._on_file(write)
        if isinstance(done, MemoryValueStore):
            done.put(key, value)

    def close(self) -> None:
        """Close every thread's connection; the store must not be used afterwards."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def __len__(self) -> int:
        counted = self._on_file(
            lambda connection: connection.execute(f"SELECT COUNT(*) FROM {_TABLE}").fetchone()
        )
        if isinstance(counted, MemoryValueStore):
            return len(counted)
        return int(counted[0])


def open_value_store(spec: str | None, max_entries: int) -> ValueStore | None:
    """The store ``ToTConfig.value_cache`` names: ``"memory"``, a SQLite path, a
    state store URL (``redis://...``: shared by every process using it), or none."""
    if spec is None:
        return None
    if spec == MEMORY:
        return MemoryValueStore(max_entries)
    if spec.startswith(_STATE_STORE_URLS):
        from pygent_lc.limits.store import shared_store
        from pygent_lc.tot.shared_values import SharedValueStore  # it imports this module

        return SharedValueStore(shared_store(spec))
    return SQLiteValueStore(spec)


_STATE_STORE_URLS = ("redis://", "rediss://", "unix://")


__all__ = [
    "MEMORY",
    "MemoryValueStore",
    "SQLiteValueStore",
    "Scores",
    "StoredValue",
    "UnusableValues",
    "ValueStore",
    "open_value_store",
    "parse_scores",
]
