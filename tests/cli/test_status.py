"""``pygent_lc.cli.output``: status lines that tick while nothing happens, erased on close."""

from __future__ import annotations

import asyncio
import io
import re

from pygent_lc.agents import SolveProgress
from pygent_lc.cli.output import ProgressLine, StatusLine

ERASE = "\r\x1b[2K"


def frames(stream: io.StringIO) -> list[str]:
    """The lines drawn, in order (an empty one for each erase)."""
    return stream.getvalue().split(ERASE)[1:]


def elapsed(frame: str) -> float:
    match = re.search(r"(\d+\.\d)s$", frame)
    assert match is not None, frame
    return float(match.group(1))


def test_the_progress_line_ticks_while_a_call_runs() -> None:
    """One call in flight for 0.35 s: its line is redrawn with the time going on."""
    stream = io.StringIO()

    async def solve() -> None:
        progress = SolveProgress(max_depth=2, level=1)
        async with ProgressLine(stream, tick_s=0.05) as line:
            progress.calls, progress.in_flight = 1, 1
            line.update(progress)  # the call starts; nothing else happens for a while
            await asyncio.sleep(0.35)

    asyncio.run(solve())
    drawn = [frame for frame in frames(stream) if frame]
    assert len(drawn) >= 4
    assert all(frame.startswith("level 1/2 · 1 calls (1 running) · ") for frame in drawn)
    times = [elapsed(frame) for frame in drawn]
    assert times == sorted(times)
    assert times[-1] - times[0] >= 0.2
    assert stream.getvalue().endswith(ERASE)  # erased when the block ends


def test_nothing_is_drawn_before_the_first_progress() -> None:
    stream = io.StringIO()

    async def solve() -> None:
        async with ProgressLine(stream, tick_s=0.01):
            await asyncio.sleep(0.05)

    asyncio.run(solve())
    assert stream.getvalue() == ""


def test_a_status_line_ticks_until_closed_then_stays_erased() -> None:
    stream = io.StringIO()

    async def wait_for_first_token() -> int:
        async with StatusLine(
            stream, "local/model: loading the model or thinking…", tick_s=0.05
        ) as line:
            await asyncio.sleep(0.2)
            line.close()  # the first text arrived
            shown = len(stream.getvalue())
            await asyncio.sleep(0.15)
            assert len(stream.getvalue()) == shown  # no redraw after close
        return shown

    shown = asyncio.run(wait_for_first_token())
    drawn = frames(stream)
    assert drawn[-1] == ""  # the last thing written is the erase
    assert len(stream.getvalue()) == shown
    waiting = [frame for frame in drawn if frame]
    assert len(waiting) >= 3
    assert all(
        frame.startswith("local/model: loading the model or thinking… ") for frame in waiting
    )
    assert elapsed(waiting[-1]) > elapsed(waiting[0])
