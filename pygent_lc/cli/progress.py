"""The live progress line of ``pygent-lc solve``, on a terminal's standard error."""

from __future__ import annotations

import time
from typing import TextIO

from pygent_lc.agents import SolveProgress


class ProgressLine:
    """One status line on a terminal, rewritten in place at most every 0.1 s.

    ``update`` is the ``on_progress`` callback of ``ReasoningAgent.solve``: it
    sees each level the search enters and each call, with its spend.
    """

    def __init__(self, stream: TextIO, *, interval_s: float = 0.1) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self._last = 0.0
        self._shown = False

    def update(self, progress: SolveProgress) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self.stream.write(f"\r\x1b[2K{progress.line()}")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """Erase the line, so the answer starts on a clean one."""
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


__all__ = ["ProgressLine"]
