"""Live status lines on a terminal's standard error: ``solve``'s progress, ``chat``'s wait.

A line is redrawn in place on a clock (every 0.5 s), not only when something
happens: a call to a slow model can take a minute, and a line whose time stands
still looks like a hung program. The caller shows one only when stderr is a
terminal (a log file or a pipe gets no carriage returns).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Self, TextIO

if TYPE_CHECKING:
    from pygent_lc.agents import SolveProgress

_ERASE = "\r\x1b[2K"


class StatusLine:
    """One line, rewritten in place every ``tick_s`` while ``async with`` runs.

    ``text`` is a fixed message or a function giving the current one (``None``:
    nothing to show yet); the elapsed seconds are added to a fixed message.
    :meth:`close` erases it at once, so the text that follows starts on a clean
    line; it is called again, harmlessly, when the block ends.
    """

    def __init__(
        self,
        stream: TextIO,
        text: str | Callable[[], str | None],
        *,
        tick_s: float = 0.5,
    ) -> None:
        self.stream = stream
        self.tick_s = tick_s
        self._started = time.monotonic()
        self._text = text
        self._shown = False
        self._closed = False
        self._ticker: asyncio.Task[None] | None = None

    def current(self) -> str | None:
        """The line as it would be drawn now."""
        if callable(self._text):
            return self._text()
        return f"{self._text} {time.monotonic() - self._started:.1f}s"

    def draw(self) -> None:
        """Rewrite the line now (nothing once closed)."""
        text = None if self._closed else self.current()
        if text is None:
            return
        self.stream.write(_ERASE + text)
        self.stream.flush()
        self._shown = True

    async def _tick(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(self.tick_s)

    def close(self) -> None:
        """Stop redrawing and erase the line."""
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
        if self._shown:
            self.stream.write(_ERASE)
            self.stream.flush()
            self._shown = False

    async def __aenter__(self) -> Self:
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        if self._ticker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker


class ProgressLine(StatusLine):
    """``solve``'s line: level, calls, tokens, cost and elapsed time.

    :meth:`update` is the ``on_progress`` callback of ``ReasoningAgent.solve``:
    it sees each level the search enters and each call start and end, and
    redraws at most every ``interval_s``; the clock redraws in between.
    """

    def __init__(self, stream: TextIO, *, interval_s: float = 0.1, tick_s: float = 0.5) -> None:
        super().__init__(stream, self._line, tick_s=tick_s)
        self.interval_s = interval_s
        self._progress: SolveProgress | None = None
        self._last = 0.0

    def _line(self) -> str | None:
        return None if self._progress is None else self._progress.line()

    def update(self, progress: SolveProgress) -> None:
        self._progress = progress
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self.draw()


__all__ = ["ProgressLine", "StatusLine"]
