"""Observers of a search and of each level: the process-wide one (:func:`set_observer`:
telemetry) first, then the search's own (``ToTEngine(observer=...)``: a progress display)."""

from __future__ import annotations

from collections.abc import Iterator
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


@contextmanager
def watching(ctx: SearchContext, depth: int | None = None) -> Iterator[None]:
    """The solve (no ``depth``) or one level, seen by the global observer, then ``ctx``'s."""
    with ExitStack() as stack:
        for observer in (_observer, ctx.observer):
            if observer is not None:
                entered = observer.solving(ctx) if depth is None else observer.level(ctx, depth)
                stack.enter_context(entered)
        yield
