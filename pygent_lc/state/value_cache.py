"""The ToT value cache (:class:`pygent_lc.tot.value_store.ValueStore`) on a state store.

With a :class:`~pygent_lc.state.RedisStore`, every worker process reuses the
state values any of them computed. Values are JSON in one cache namespace,
the next steps found from states (``StoredChildren``) in another.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, ValidationError

from pygent_lc.state.store import StateStore
from pygent_lc.tot.value_store import (
    Scores,
    StoredChildren,
    StoredValue,
    Thoughts,
    UnusableValues,
)

NAMESPACE = "tot-values"
CHILDREN_NAMESPACE = "tot-children"


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
        raw = self.store.cache_get(self.namespace, key)
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
        self.store.cache_set(self.namespace, key, raw)

    def get_children(self, key: str) -> StoredChildren | None:
        """The children under ``key``; ``None`` (and one warning per store) when unusable."""
        raw = self.store.cache_get(self.children_namespace, key)
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
        self.store.cache_set(self.children_namespace, key, raw)

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


__all__ = ["CHILDREN_NAMESPACE", "NAMESPACE", "SharedValueStore"]
