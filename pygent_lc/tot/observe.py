"""Where an observer may watch a search: the solve and each level. The process-wide one
(:func:`set_observer`: telemetry) is entered first, then one search's own
(``ToTEngine(observer=...)``: a progress display); both read the search's context."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, Protocol


class SearchObserver(Protocol):
    """Sees each search; ``ctx`` is its :class:`~pygent_lc.tot.search.SearchContext`."""

    def solving(self, ctx: Any) -> AbstractContextManager[object]: ...  # the whole search
    def level(self, ctx: Any, depth: int) -> AbstractContextManager[object]: ...  # one level


class SearchContext(Protocol):
    observer: SearchObserver | None


_observer: SearchObserver | None = None


def set_observer(observer: SearchObserver | None) -> None:
    """Install ``observer`` for every search from now on (``None`` removes it)."""
    global _observer
    _observer = observer


def current_observer() -> SearchObserver | None:
    return _observer


def solving(ctx: SearchContext) -> AbstractContextManager[None]:
    return _around(ctx, lambda observer: observer.solving(ctx))


def level(ctx: SearchContext, depth: int) -> AbstractContextManager[None]:
    return _around(ctx, lambda observer: observer.level(ctx, depth))


@contextmanager
def _around(
    ctx: SearchContext, enter: Callable[[SearchObserver], AbstractContextManager[object]]
) -> Iterator[None]:
    with ExitStack() as stack:
        for observer in (_observer, ctx.observer):
            if observer is not None:
                stack.enter_context(enter(observer))
        yield
