"""The value cache: a state's value samples and next steps, in memory, a SQLite file or the
state store (Redis: every process). An unusable entry is asked again (one warning a store);
a SQLite file that fails moves to memory."""

from __future__ import annotations

import abc
import json
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from annotated_types import MinLen
from pydantic import AfterValidator, FiniteFloat, Json, TypeAdapter

from pygent_lc.errors import ConfigurationError
from pygent_lc.limits.script import Arg, MemoryState, Step
from pygent_lc.limits.shared import shared_store
from pygent_lc.limits.store import StateStore

logger = logging.getLogger(__name__)

NAMESPACE = "tot-values"
CHILDREN_NAMESPACE = "tot-children"
MAX_MEMORY_ENTRIES = 100_000

Scores = Annotated[tuple[FiniteFloat, ...], MinLen(1)]
Thoughts = tuple[Annotated[str, MinLen(1)], ...]


@dataclass(frozen=True)
class StoredValue:
    scores: Scores
    settled: bool  # no more samples wanted: they agree, or all were asked


@dataclass(frozen=True)
class StoredChildren:
    thoughts: Thoughts  # the next steps kept from a state's proposals, in order found


Entry = StoredValue | StoredChildren
E = TypeVar("E", StoredValue, StoredChildren)
T = TypeVar("T")
# Read strictly (no strings for numbers); SQLite rows: JSON text, settled as 0 or 1.
_JSON: dict[type, TypeAdapter[Any]] = {
    kind: TypeAdapter(kind) for kind in (StoredValue, StoredChildren)
}
_COLUMNS: dict[type, TypeAdapter[Any]] = {
    StoredValue: TypeAdapter(tuple[Json[Scores], Annotated[Literal[0, 1], AfterValidator(bool)]]),
    StoredChildren: TypeAdapter(tuple[Json[Thoughts]]),
}


@runtime_checkable
class ValueStore(Protocol):
    """Values of states by key; safe to use from several threads and searches at once."""

    def get(self, key: str) -> StoredValue | None: ...
    def put(self, key: str, value: StoredValue) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class ChildrenStore(Protocol):
    """A store that also keeps next steps (all of ours do); other stores reuse none."""

    def get_children(self, key: str) -> StoredChildren | None: ...
    def put_children(self, key: str, children: StoredChildren) -> None: ...


class BaseValueStore(abc.ABC):
    """Both kinds of entry over one ``_read``/``_write`` pair, and the one warning."""

    where = "the value cache"
    _warned = False

    @abc.abstractmethod
    def _read(self, kind: type[E], key: str) -> E | None:
        """The entry, ``None``, or ``ValueError`` when the stored one is unusable."""

    @abc.abstractmethod
    def _write(self, key: str, entry: Entry) -> None: ...

    def get(self, key: str) -> StoredValue | None:
        return self._load(StoredValue, key)

    def put(self, key: str, value: StoredValue) -> None:
        self._write(key, value)

    def get_children(self, key: str) -> StoredChildren | None:
        return self._load(StoredChildren, key)

    def put_children(self, key: str, children: StoredChildren) -> None:
        self._write(key, children)

    def close(self) -> None:  # noqa: B027 - nothing to release unless a store says so
        pass

    def _load(self, kind: type[E], key: str) -> E | None:
        try:
            return self._read(kind, key)
        except ValueError:  # pydantic's ValidationError among them
            why = "scores and settled flag" if kind is StoredValue else "next steps"
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        message = "ignored an unusable cached value in %s (not usable %s); such values are "
        logger.log(level, message + "asked again (this warning is shown once)", self.where, why)
        return None


class _LRU(OrderedDict[Any, Any]):
    """Entries past ``limit`` go, least recently used (read or written) first."""

    limit = MAX_MEMORY_ENTRIES

    def use(self, key: Any) -> Any:
        if key in self:
            self.move_to_end(key)
        return self.get(key)

    def add(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class MemoryValueStore(BaseValueStore):
    """In-process, ``max_entries`` in all (values and children): least recently used go."""

    def __init__(self, max_entries: int = MAX_MEMORY_ENTRIES) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1", field="value_cache_size")
        self._entries = _LRU()
        self._entries.limit = max_entries
        self._lock = threading.Lock()

    def _read(self, kind: type[E], key: str) -> E | None:
        with self._lock:
            entry: E | None = self._entries.use((kind, key))
            return entry

    def _write(self, key: str, entry: Entry) -> None:
        with self._lock:
            self._entries.add((type(entry), key), entry)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


# Columns as PRAGMA table_info gives them (name, type, notnull, pk); a missing table is added.
_TABLES = {StoredValue: "tot_values", StoredChildren: "tot_children"}
_NAMESPACES = {StoredValue: NAMESPACE, StoredChildren: CHILDREN_NAMESPACE}
_COLUMNS_OF = {
    "tot_values": [("key", "TEXT", 0, 1), ("scores", "TEXT", 1, 0), ("settled", "INTEGER", 1, 0)],
    "tot_children": [("key", "TEXT", 0, 1), ("thoughts", "TEXT", 1, 0)],
}
_CREATE = (
    "CREATE TABLE IF NOT EXISTS tot_values "
    "(key TEXT PRIMARY KEY, scores TEXT NOT NULL, settled INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tot_children (key TEXT PRIMARY KEY, thoughts TEXT NOT NULL);"
)


def _not_ours(connection: sqlite3.Connection) -> str | None:
    """Why the database is not one this store made, if it is not (read-only checks)."""
    others = sorted(
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE tbl_name NOT IN (?, ?) "
            "AND name NOT LIKE 'sqlite^_%' ESCAPE '^'",
            tuple(_COLUMNS_OF),
        )
    )
    if others:
        return f"it holds other tables ({', '.join(others[:5])})"
    for table, expected in _COLUMNS_OF.items():
        found = [
            (name, str(kind).upper(), notnull, pk)
            for _, name, kind, notnull, _, pk in connection.execute(f"PRAGMA table_info({table})")
        ]
        if found and found != expected:
            return f"its {table} table has another schema"
    return None


class SQLiteValueStore(BaseValueStore):
    """One SQLite file (WAL, a connection per thread); one it did not make is refused before any
    write; a failing one (disk full, locked past ``timeout_s``) warns once, then memory."""

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self.where = f"the value cache {self.path!r}"
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._fallback: MemoryValueStore | None = None
        try:
            connection = self._connection()
            problem = _not_ours(connection)
            if problem is None:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(_CREATE)
        except sqlite3.Error as exc:
            self.close()
            raise ConfigurationError(
                f"cannot open the value cache {self.path!r}: {exc}", field="value_cache"
            ) from exc
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
            # Used by its own thread alone; shared only so that close() may close it.
            connection = sqlite3.connect(
                self.path, timeout=self._timeout_s, check_same_thread=False
            )
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _on_file(self, operation: Callable[[sqlite3.Connection], T]) -> T | MemoryValueStore:
        """``operation`` on this thread's connection, or the memory store once it failed."""
        if self._fallback is not None:
            return self._fallback
        try:
            return operation(self._connection())
        except sqlite3.Error as exc:
            error = exc
        with self._lock:
            first = self._fallback is None
            fallback = self._fallback = self._fallback or MemoryValueStore()
        if first:
            logger.warning(
                "the value cache %r failed (%s: %s); values are kept in memory for the "
                "rest of this run",
                self.path,
                type(error).__name__,
                error,
            )
        return fallback

    def _read(self, kind: type[E], key: str) -> E | None:
        table = _TABLES[kind]
        row = self._on_file(
            lambda c: c.execute(f"SELECT * FROM {table} WHERE key = ?", (key,)).fetchone()
        )
        if isinstance(row, MemoryValueStore):
            return row._read(kind, key)
        if row is None:
            return None
        if not isinstance(row[1], str):
            raise ValueError("a blob, or a number where JSON text belongs")
        return kind(*_COLUMNS[kind].validate_python(row[1:], strict=True))

    def _write(self, key: str, entry: Entry) -> None:
        if isinstance(entry, StoredValue):
            row: tuple[Any, ...] = (key, json.dumps(list(entry.scores)), int(entry.settled))
        else:
            row = (key, json.dumps(list(entry.thoughts)))
        sql = f"INSERT OR REPLACE INTO {_TABLES[type(entry)]} VALUES ({', '.join('?' * len(row))})"

        def write(connection: sqlite3.Connection) -> None:
            with connection:
                connection.execute(sql, row)

        if isinstance(fallback := self._on_file(write), MemoryValueStore):
            fallback._write(key, entry)

    def close(self) -> None:  # every thread's connection; the store is not used afterwards
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def __len__(self) -> int:  # the values kept, not the children
        counted = self._on_file(lambda c: c.execute("SELECT COUNT(*) FROM tot_values").fetchone())
        if isinstance(counted, MemoryValueStore):
            return len(counted)
        return int(counted[0])


class _Caches(dict[str, _LRU]):
    """In-process twin of the Redis hashes (which keep all: bound them with maxmemory)."""


@dataclass(frozen=True, slots=True)
class CacheGet(Step[str | None]):
    lua: ClassVar[str] = "return redis.call('HGET', KEYS[1], ARGV[1])"
    reads_only: ClassVar[bool] = True
    namespace: str
    key: str

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [f"{prefix}kv:{self.namespace}"], [self.key]

    def local(self, state: MemoryState) -> str | None:
        entries = state.part(_Caches).get(self.namespace)
        return None if entries is None else entries.use(self.key)


@dataclass(frozen=True, slots=True)
class CacheSet(Step[None]):
    lua: ClassVar[str] = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])"
    namespace: str
    key: str
    value: str

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [f"{prefix}kv:{self.namespace}"], [self.key, self.value]

    def local(self, state: MemoryState) -> None:
        state.part(_Caches).setdefault(self.namespace, _LRU()).add(self.key, self.value)


class SharedValueStore(BaseValueStore):
    """Entries as JSON in ``store``'s hashes, one per kind (``close`` leaves ``store``
    to its owner): with a Redis store, every process reuses what any computed."""

    where = "the shared value cache"

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def _read(self, kind: type[E], key: str) -> E | None:
        raw = self.store.run(CacheGet(_NAMESPACES[kind], key))
        return None if raw is None else _JSON[kind].validate_json(raw, strict=True)

    def _write(self, key: str, entry: Entry) -> None:
        raw = json.dumps(asdict(entry))
        self.store.run(CacheSet(_NAMESPACES[type(entry)], key, raw))


def open_value_store(spec: str | None, max_entries: int) -> ValueStore | None:
    """The store ``ToTConfig.value_cache`` names: "memory", a SQLite path, a Redis URL."""
    if spec is None:
        return None
    if spec == "memory":
        return MemoryValueStore(max_entries)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return SharedValueStore(shared_store(spec))
    return SQLiteValueStore(spec)
