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
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from pygent_lc.limits.script import Arg, MemoryState, Step
from pygent_lc.limits.shared import shared_store
from pygent_lc.limits.store import StateStore
from pygent_lc.tot.value_store import (
    MEMORY,
    MemoryValueStore,
    Scores,
    SQLiteValueStore,
    StoredChildren,
    StoredValue,
    Thoughts,
    UnusableValues,
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


class SharedValueStore:
    """A :class:`~pygent_lc.tot.value_store.ValueStore` over ``store``'s cache.

    ``close`` does not close ``store``: its owner does.
    """

    def __init__(self, store: StateStore, namespace: str = NAMESPACE) -> None:
        self.store = store
        self.namespace = namespace
        self.children_namespace = (
            CHILDREN_NAMESPACE if namespace == NAMESPACE else f"{namespace}:children"
        )
        self._unusable = UnusableValues(f"the shared value cache ({namespace!r})")

    def get(self, key: str) -> StoredValue | None:
        """The value under ``key``; ``None`` (and one warning per store) when unusable."""
        raw = self.store.run(CacheGet(self.namespace, key))
        if raw is None:
            return None
        try:
            row = _Row.model_validate_json(raw)
        except ValidationError:
            self._unusable.ignored(key, "it is not a JSON object of finite scores and settled")
            return None
        return StoredValue(scores=row.scores, settled=row.settled)

    def put(self, key: str, value: StoredValue) -> None:
        raw = json.dumps({"scores": list(value.scores), "settled": value.settled})
        self.store.run(CacheSet(self.namespace, key, raw))

    def get_children(self, key: str) -> StoredChildren | None:
        """The children under ``key``; ``None`` (and one warning per store) when unusable."""
        raw = self.store.run(CacheGet(self.children_namespace, key))
        if raw is None:
            return None
        try:
            row = _ChildrenRow.model_validate_json(raw)
        except ValidationError:
            self._unusable.ignored(key, "it is not a JSON object of non-empty thoughts")
            return None
        return StoredChildren(row.thoughts)

    def put_children(self, key: str, children: StoredChildren) -> None:
        raw = json.dumps({"thoughts": list(children.thoughts)})
        self.store.run(CacheSet(self.children_namespace, key, raw))

    def close(self) -> None:
        """Nothing to release here (the store is not ours)."""


class _Row(BaseModel):
    """A stored value, as JSON: ``{"scores": [...], "settled": true}``."""

    model_config = ConfigDict(strict=True)
    scores: Scores
    settled: bool


class _ChildrenRow(BaseModel):
    """Stored children, as JSON: ``{"thoughts": [...]}``."""

    model_config = ConfigDict(strict=True)
    thoughts: Thoughts


def open_value_store(spec: str | None, max_entries: int) -> ValueStore | None:
    """The store ``ToTConfig.value_cache`` names: ``"memory"``, a SQLite path, a
    state store URL (``redis://...``: shared by every process using it), or none.

    Here rather than in :mod:`~pygent_lc.tot.value_store`, which this module builds on."""
    if spec is None:
        return None
    if spec == MEMORY:
        return MemoryValueStore(max_entries)
    if spec.startswith(_STATE_STORE_URLS):
        return SharedValueStore(shared_store(spec))
    return SQLiteValueStore(spec)


_STATE_STORE_URLS = ("redis://", "rediss://", "unix://")


__all__ = [
    "CHILDREN_NAMESPACE",
    "MAX_MEMORY_ENTRIES",
    "NAMESPACE",
    "CacheGet",
    "CacheSet",
    "SharedValueStore",
    "open_value_store",
]
