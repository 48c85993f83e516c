"""``MemoryStore``: state in this process, the default.

Every operation runs its Python twin (see :mod:`pygent_lc.state.op`) under
one lock, held for a few dict operations and never across I/O, so one store
serves threads, asyncio tasks and several event loops at once; async
methods do not await anything.
"""

from __future__ import annotations

import threading
import time
from typing import TypeVar

from pygent_lc.state.cache import DEFAULT_MAX_ENTRIES, Caches
from pygent_lc.state.memory_state import MemoryState
from pygent_lc.state.op import Op
from pygent_lc.state.store import DEFAULT_PREFIX, Clock, StateStore

T = TypeVar("T")


class MemoryStore(StateStore):
    """Limits enforced within this process only.

    ``max_cache_entries`` bounds each cache namespace (least recently used go first).
    """

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = time.time,
        max_cache_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        super().__init__(prefix=prefix, clock=clock)
        self._max_cache_entries = max_cache_entries
        self._lock = threading.Lock()
        self._state = self._fresh()

    def _fresh(self) -> MemoryState:
        return MemoryState(caches=Caches(max_entries=self._max_cache_entries))

    def run(self, op: Op[T]) -> T:
        with self._lock:
            result = op.script.local(self._state, op.request)
        return op.finish(result)

    async def arun(self, op: Op[T]) -> T:
        return self.run(op)

    def clear(self) -> None:
        with self._lock:
            self._state = self._fresh()

    async def aclear(self) -> None:
        self.clear()


__all__ = ["MemoryStore"]
