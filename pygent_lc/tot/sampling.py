"""When more value samples cannot change a greedy beam, stop asking for them.

Each candidate state of a level has the scores asked so far and may get more,
up to ``n`` in all. Its final value (the mean of its samples) then lies in an
interval: from all further samples scoring the task's lowest value to all
scoring its highest. A state whose interval puts it in the beam whatever the
other states score is *surely in*; one that at least ``beam`` states surely
outrank is *surely out*. Once every state is one or the other, and the best
state is known to be final or known not to be (the search stops on a final
best), further samples could change nothing the search does with them.
Ties rank by creation order, as the stable sort of the selection does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """One state of a level as the beam sees it."""

    order: int
    """Creation order: breaks ties, earlier first."""
    low: float
    high: float
    final: bool
    open: bool
    """More samples may still be asked for it."""
    valued: bool = True
    """It has a value already (at least one sample, or a static value)."""


def value_interval(
    scores: Sequence[float], n: int, value_range: tuple[float, float], *, settled: bool
) -> tuple[float, float]:
    """Where the mean of a state's samples can still end, given ``scores`` of up to ``n``."""
    lowest, highest = value_range
    k = len(scores)
    if k == 0:
        return (lowest, highest) if not settled else (lowest, lowest)
    total = math.fsum(scores)
    if settled or k >= n:
        return total / k, total / k
    missing = n - k
    return (total + missing * lowest) / n, (total + missing * highest) / n


def _may_outrank(a: Candidate, b: Candidate) -> bool:
    """``a`` can end above ``b`` in the stable, descending sort."""
    return a.high > b.low or (a.high == b.low and a.order < b.order)


def _surely_outranks(a: Candidate, b: Candidate) -> bool:
    return a.low > b.high or (a.low == b.high and a.order < b.order)


def to_sample(candidates: Sequence[Candidate], beam: int, *, need_top: bool = False) -> list[int]:
    """The ``order`` of the open candidates whose next samples could change the beam.

    ``need_top``: which candidate is best must be known too (it is the answer),
    and it must have a value: a candidate that may be best and has none is asked.
    """
    undecided: set[int] = set()
    for c in candidates:
        others = [o for o in candidates if o is not c]
        surely_in = sum(_may_outrank(o, c) for o in others) < beam
        surely_out = sum(_surely_outranks(o, c) for o in others) >= beam
        if not (surely_in or surely_out):
            undecided.add(c.order)
    # The search stops when the best state is final: whether it is must be known.
    could_top = [c for c in candidates if not any(_surely_outranks(o, c) for o in candidates)]
    if len({c.final for c in could_top}) > 1 or (need_top and len(could_top) > 1):
        undecided.update(c.order for c in could_top)
    if need_top:
        undecided.update(c.order for c in could_top if not c.valued)
    return [c.order for c in candidates if c.order in undecided and c.open]


__all__ = ["Candidate", "to_sample", "value_interval"]
