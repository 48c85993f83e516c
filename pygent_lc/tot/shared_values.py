"""The ToT value cache (:class:`pygent_lc.tot.value_store.ValueStore`) on a state store.

With a Redis store (:func:`pygent_lc.limits.store.shared_store` of a ``redis://``
URL), every worker process reuses the state values any of them computed. Values
are JSON in one Redis hash per namespace, the next steps found from states
(``StoredChildren``) in another; Redis keeps every entry (bound it with
its ``maxmemory`` policy). The in-process twin (a Redis outage, or a memory
store) keeps the most recently used :data:`MAX_MEMORY_ENTRIES` per namespace.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, cast

from pydantic import ValidationError

from pygent_lc.limits.script import Arg, MemoryState, Step
from pygent_lc.limits.shared import shared_store
from pygent_lc.limits.store import StateStore
from pygent_lc.tot.value_store import (
    MEMORY,
    ROWS,
    BaseValueStore,
    Entry,
    MemoryValueStore,
    SQLiteValueStore,
    StoredChildren,
    StoredValue,
    ValueStore,
)

NAMESPACE = "tot-values"
CHILDREN_NAMESPACE = "tot-children"
MAX_MEMORY_ENTRIES = 100_000


class _Caches(dict[str, OrderedDict[str, str]]):
    """The in-process twin: an LRU dict per namespace."""


@dataclass(frozen=True, slots=True)
class CacheGet(Step[str | None]):
    lua: ClassVar[str] = "return redis.call('HGET', KEYS[1], ARGV[1])"
    reads_only: ClassVar[bool] = True
    namespace: str
    key: str

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [f"{prefix}kv:{self.namespace}"], [self.key]

    def decode(self, reply: Any) -> str | None:
        return None if reply is None else str(reply)

    def local(self, state: MemoryState) -> str | None:
        entries = state.part(_Caches).get(self.namespace)
        if entries is None or self.key not in entries:
            return None
        entries.move_to_end(self.key)
        return entries[self.key]


@dataclass(frozen=True, slots=True)
class CacheSet(Step[None]):
    lua: ClassVar[str] = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])"
    namespace: str
    key: str
    value: str

    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        return [f"{prefix}kv:{self.namespace}"], [self.key, self.value]

    def decode(self, reply: Any) -> None:
        return None

    def local(self, state: MemoryState) -> None:
        entries = state.part(_Caches).setdefault(self.namespace, OrderedDict())
        entries[self.key] = self.value
        entries.move_to_end(self.key)
        while len(entries) > MAX_MEMORY_ENTRIES:
            entries.popitem(last=False)


class SharedValueStore(BaseValueStore):
    """A value cache over ``store``'s hashes (``close`` leaves ``store`` to its owner)."""

    def __init__(self, store: StateStore, namespace: str = NAMESPACE) -> None:
        self.store = store
        self.namespace = namespace
        self.where = f"the shared value cache ({namespace!r})"
        self.children_namespace = (
            CHILDREN_NAMESPACE if namespace == NAMESPACE else f"{namespace}:children"
        )

    def _namespace(self, kind: type) -> str:
        return self.namespace if kind is StoredValue else self.children_namespace

    def _read(self, kind: type[Entry], key: str) -> Entry | None:
        raw = self.store.run(CacheGet(self._namespace(kind), key))
        if raw is None:
            return None
        try:
            return cast("Entry", ROWS[kind].validate_json(raw, strict=True))
        except ValidationError:
            self._ignored(kind, key)
            return None

    def _write(self, key: str, entry: StoredValue | StoredChildren) -> None:
        raw = json.dumps(asdict(entry))
        self.store.run(CacheSet(self._namespace(type(entry)), key, raw))


def open_value_store(spec: str | None, max_entries: int) -> ValueStore | None:
    """The store ``ToTConfig.value_cache`` names: ``"memory"``, a SQLite path, a
    state store URL (``redis://...``: shared by every process using it), or none."""
    if spec is None:
        return None
    if spec == MEMORY:
        return MemoryValueStore(max_entries)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return SharedValueStore(shared_store(spec))
    return SQLiteValueStore(spec)


__all__ = [
    "CHILDREN_NAMESPACE",
    "MAX_MEMORY_ENTRIES",
    "NAMESPACE",
    "CacheGet",
    "CacheSet",
    "SharedValueStore",
    "open_value_store",
]
