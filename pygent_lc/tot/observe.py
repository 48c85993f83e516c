"""Where an observer may watch a search: the solve and each level.

Two kinds: the process-wide one :func:`set_observer` installs (telemetry),
and one search's own (``ToTEngine(observer=...)``, ``SearchContext.observer``:
a progress display). Without either, :func:`solving` and :func:`level`
return a no-op context manager, so a search pays two reads per level. The
observer reads what it reports (nodes, values, counters) from the
:class:`~pygent_lc.tot.search.SearchContext`; this module needs only its
``observer`` (so it does not import the search, which imports it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol


class SearchObserver(Protocol):
    """Sees each search; ``ctx`` is its :class:`~pygent_lc.tot.search.SearchContext`."""

    def solving(self, ctx: Any) -> AbstractContextManager[object]:
        """Around one whole search."""
        ...

    def level(self, ctx: Any, depth: int) -> AbstractContextManager[object]:
        """Around one expansion: generating children at ``depth``, valuing and keeping them."""
        ...


class SearchContext(Protocol):
    """What this module reads of a search: its own observer."""

    observer: SearchObserver | None


_observer: SearchObserver | None = None
_NOTHING: AbstractContextManager[object] = nullcontext()


def set_observer(observer: SearchObserver | None) -> None:
    """Install ``observer`` for every search from now on (``None`` removes it)."""
    global _observer
    _observer = observer


def current_observer() -> SearchObserver | None:
    return _observer


def solving(ctx: SearchContext) -> AbstractContextManager[object]:
    return _each([observer.solving(ctx) for observer in _observers(ctx)])


def level(ctx: SearchContext, depth: int) -> AbstractContextManager[object]:
    return _each([observer.level(ctx, depth) for observer in _observers(ctx)])


def _observers(ctx: SearchContext) -> list[SearchObserver]:
    return [observer for observer in (_observer, ctx.observer) if observer is not None]


def _each(managers: list[AbstractContextManager[object]]) -> AbstractContextManager[object]:
    if not managers:
        return _NOTHING
    return managers[0] if len(managers) == 1 else _nested(managers)


@contextmanager
def _nested(managers: list[AbstractContextManager[object]]) -> Iterator[object]:
    with managers[0], _each(managers[1:]):
        yield None
