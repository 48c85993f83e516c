"""Helpers of the state store tests (importable by spawned worker processes too)."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence

from pygent_lc.limits import StateStore

StoreFactory = Callable[..., StateStore]
"""``make_store(clock=None)``: a store sharing the test's state (see conftest.py)."""

START = 1_799_971_200.0
"""A fake clock's first reading: a whole hour and day, so window buckets start there."""


class FakeClock:
    """A wall clock that moves only when told; thread-safe."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def most_in_window(times: Sequence[float], period: float) -> int:
    """The most of ``times`` that fall in any half-open window ``[t, t + period)``."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + period) - i for i, t in enumerate(ordered)), default=0
    )
