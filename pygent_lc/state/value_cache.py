"""The ToT value cache (:class:`pygent_lc.tot.value_store.ValueStore`) on a state store.

With a :class:`~pygent_lc.state.RedisStore`, every worker process reuses the
state values any of them computed. Values are JSON in one cache namespace.
"""

from __future__ import annotations

import json

from pygent_lc.state.store import StateStore
from pygent_lc.tot.value_store import StoredValue

NAMESPACE = "tot-values"


class SharedValueStore:
    """A :class:`~pygent_lc.tot.value_store.ValueStore` over ``store``'s cache.

    ``close`` does not close ``store``: its owner does.
    """

    def __init__(self, store: StateStore, namespace: str = NAMESPACE) -> None:
        self.store = store
        self.namespace = namespace

    def get(self, key: str) -> StoredValue | None:
        raw = self.store.cache_get(self.namespace, key)
        if raw is None:
            return None
        data = json.loads(raw)
        return StoredValue(
            scores=tuple(float(s) for s in data["scores"]), settled=bool(data["settled"])
        )

    def put(self, key: str, value: StoredValue) -> None:
        raw = json.dumps({"scores": list(value.scores), "settled": value.settled})
        self.store.cache_set(self.namespace, key, raw)

    def close(self) -> None:
        """Nothing to release here (the store is not ours)."""


__all__ = ["NAMESPACE", "SharedValueStore"]
