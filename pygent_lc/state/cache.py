"""A string cache per namespace (the ToT value cache): one Redis hash per namespace.

Redis keeps every entry (bound it with Redis's ``maxmemory`` policy, or
clear the namespace); the in-process twin keeps the most recently used
``max_entries`` per namespace, like :class:`pygent_lc.tot.value_store.MemoryValueStore`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

CACHE_GET_LUA = "return redis.call('HGET', KEYS[1], ARGV[1])"
CACHE_SET_LUA = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])"

DEFAULT_MAX_ENTRIES = 100_000


def cache_key(prefix: str, namespace: str) -> str:
    return f"{prefix}kv:{namespace}"


@dataclass
class Caches:
    """The in-process twin: an LRU dict per namespace."""

    max_entries: int = DEFAULT_MAX_ENTRIES
    namespaces: dict[str, OrderedDict[str, str]] = field(default_factory=dict)

    def get(self, namespace: str, key: str) -> str | None:
        entries = self.namespaces.get(namespace)
        if entries is None or key not in entries:
            return None
        entries.move_to_end(key)
        return entries[key]

    def set(self, namespace: str, key: str, value: str) -> None:
        entries = self.namespaces.setdefault(namespace, OrderedDict())
        entries[key] = value
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)


__all__ = ["CACHE_GET_LUA", "CACHE_SET_LUA", "DEFAULT_MAX_ENTRIES", "Caches", "cache_key"]
