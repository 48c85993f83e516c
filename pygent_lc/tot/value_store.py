"""Where state values outlive one search: a small store interface and two stores.

A value is the list of per-sample scores of one state, and whether sampling
for it is finished (``settled``). Keys are built by the evaluator from the
model, the task's value prompt version and the task's canonical state key, so
a store never mixes models or prompts. Stores are synchronous and fast (a
dict, a local SQLite file); a networked store (Redis) fits the same three
methods.

The same stores keep the next steps found from a state (:class:`StoredChildren`,
``ChildrenStore``), so that a state proposed from once is not proposed from
again: by default only states whose next steps the task checks by program
(``ToTConfig.reuse_proposals``).
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

Thoughts = tuple[Annotated[str, MinLen(1)], ...]
"""Stored next steps: a list (maybe empty) of non-empty strings."""
_THOUGHTS: TypeAdapter[tuple[str, ...]] = TypeAdapter(Thoughts)


@dataclass(frozen=True)
class StoredValue:
    """The value samples of one state."""

    scores: tuple[float, ...]
    settled: bool
    """No more samples are wanted: the task said they agree, or all were asked."""


@dataclass(frozen=True)
class StoredChildren:
    """The next steps found from one state: the thoughts the search kept from its
    proposals (steps the task's program let through that lead somewhere), in the
    order found. Empty: the state was proposed from and nothing came of it."""

    thoughts: tuple[str, ...]


def parse_thoughts(raw: object) -> tuple[str, ...] | None:
    """The thoughts in a stored JSON text, or ``None`` when they are not usable."""
    if not isinstance(raw, str):
        return None
    try:
        return _THOUGHTS.validate_json(raw, strict=True)
    except ValidationError:
        return None


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


@runtime_checkable
class ChildrenStore(Protocol):
    """A store that also keeps the next steps found from a state (all of ours do).
    With a :class:`ValueStore` that is not one, proposals are not reused."""

    def get_children(self, key: str) -> StoredChildren | None: ...

    def put_children(self, key: str, children: StoredChildren) -> None: ...


_Entry = StoredValue | StoredChildren


class MemoryValueStore:
    """A bounded in-process store: the least recently used entries go first.

    Values and children share the bound (``max_entries`` entries in all).
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1", field="value_cache_size")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[bool, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, key: tuple[bool, str]) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def _put(self, key: tuple[bool, str], entry: _Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get(self, key: str) -> StoredValue | None:
        entry = self._get((False, key))
        return entry if isinstance(entry, StoredValue) else None

    def put(self, key: str, value: StoredValue) -> None:
        self._put((False, key), value)

    def get_children(self, key: str) -> StoredChildren | None:
        entry = self._get((True, key))
        return entry if isinstance(entry, StoredChildren) else None

    def put_children(self, key: str, children: StoredChildren) -> None:
        self._put((True, key), children)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


_TABLE = "tot_values"
_CHILDREN_TABLE = "tot_children"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    key TEXT PRIMARY KEY,
    scores TEXT NOT NULL,
    settled INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS {_CHILDREN_TABLE} (
    key TEXT PRIMARY KEY,
    thoughts TEXT NOT NULL
);
"""
# PRAGMA table_info of each table: (name, type, notnull, pk) per column. A file
# made before the children table is ours too (the table is added).
_COLUMNS = {
    _TABLE: [("key", "TEXT", 0, 1), ("scores", "TEXT", 1, 0), ("settled", "INTEGER", 1, 0)],
    _CHILDREN_TABLE: [("key", "TEXT", 0, 1), ("thoughts", "TEXT", 1, 0)],
}


class SQLiteValueStore:
    """A store in one SQLite file, for reuse across runs and processes.

    Each thread gets its own connection (sqlite3 connections must not be
    shared between threads); the file is in WAL mode with a busy timeout, so
    readers and one writer at a time, from any thread or process, do not fail.

    The store only writes to a file it made: opening one that holds other
    tables (another application's database), or a ``tot_values`` or
    ``tot_children`` table of another shape, raises ``ConfigurationError``
    before anything is written and before the journal mode changes. When the
    file fails later (disk full, permission removed, file deleted, locked past
    ``timeout_s``), one warning is logged and the store keeps its values in
    memory from then on.
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
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
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
                "SELECT name FROM sqlite_master WHERE tbl_name NOT IN (?, ?) "
                "AND name NOT LIKE 'sqlite^_%' ESCAPE '^'",
                (_TABLE, _CHILDREN_TABLE),
            )
        ]
        problem = None
        if others:
            problem = f"it holds other tables ({', '.join(sorted(others)[:5])})"
        for table, expected in _COLUMNS.items():
            columns = [
                (name, str(kind).upper(), notnull, pk)
                for _, name, kind, notnull, _, pk in connection.execute(
                    f"PRAGMA table_info({table})"
                )
            ]
            if problem is None and columns and columns != expected:
                problem = f"its {table} table has another schema"
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

    def get_children(self, key: str) -> StoredChildren | None:
        found = self._on_file(
            lambda connection: connection.execute(
                f"SELECT thoughts FROM {_CHILDREN_TABLE} WHERE key = ?", (key,)
            ).fetchone()
        )
        if isinstance(found, MemoryValueStore):
            return found.get_children(key)
        if found is None:
            return None
        thoughts = parse_thoughts(found[0])
        if thoughts is None:
            self._unusable.ignored(key, "its thoughts are not a list of non-empty strings")
            return None
        return StoredChildren(thoughts)

    def put_children(self, key: str, children: StoredChildren) -> None:
        row = (key, json.dumps(list(children.thoughts)))

        def write(connection: sqlite3.Connection) -> None:
            with connection:
                connection.execute(
                    f"INSERT OR REPLACE INTO {_CHILDREN_TABLE} (key, thoughts) VALUES (?, ?)",
                    row,
                )

        done = self._on_file(write)
        if isinstance(done, MemoryValueStore):
            done.put_children(key, children)

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


__all__ = [
    "MEMORY",
    "ChildrenStore",
    "MemoryValueStore",
    "SQLiteValueStore",
    "Scores",
    "StoredChildren",
    "StoredValue",
    "Thoughts",
    "UnusableValues",
    "ValueStore",
    "parse_scores",
    "parse_thoughts",
]
