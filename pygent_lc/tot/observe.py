"""Where an observer (telemetry) may watch a search: the solve and each level.

Nothing is watched unless :func:`set_observer` installed one; then
:func:`solving` and :func:`level` return a no-op context manager, so a search
pays one global read per level. The observer reads what it reports (nodes,
values, counters) from the :class:`~pygent_lc.tot.search.SearchContext`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pygent_lc.tot.search import SearchContext


class SearchObserver(Protocol):
    def solving(self, ctx: SearchContext) -> AbstractContextManager[object]:
        """Around one whole search."""
        ...

    def level(self, ctx: SearchContext, depth: int) -> AbstractContextManager[object]:
        """Around one expansion: generating children at ``depth``, valuing and keeping them."""
        ...


_observer: SearchObserver | None = None
_NOTHING: AbstractContextManager[object] = nullcontext()


def set_observer(observer: SearchObserver | None) -> None:
    """Install ``observer`` for every search from now on (``None`` removes it)."""
    global _observer
    _observer = observer


def current_observer() -> SearchObserver | None:
    return _observer


def solving(ctx: SearchContext) -> AbstractContextManager[object]:
    observer = _observer
    return _NOTHING if observer is None else observer.solving(ctx)


def level(ctx: SearchContext, depth: int) -> AbstractContextManager[object]:
    observer = _observer
    return _NOTHING if observer is None else observer.level(ctx, depth)
