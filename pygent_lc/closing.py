"""Closing what a chain holds: pooled HTTP connections and an embedded server.

Everything that owns a chain (the chain, ``LangChainBackend``, the agents) is a
:class:`Closable`; closing ends in the chat models it wraps. A closed object stays
usable: the next call opens new connections (and restarts the embedded server).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Self

from pygent_lc.providers.boundary import ProviderBoundary

# Attributes through which LangChain wrappers (and backend wrappers: ``inner``) reach
# what they wrap.
_CHILDREN = ("bound", "runnable", "first", "last", "inner")
_CHILD_LISTS = ("providers", "fallbacks", "middle", "steps")


def runnable_parts(runnable: object) -> list[object]:
    """Everything inside ``runnable`` that the walk reaches, ``runnable`` first, once each."""
    return list(_walk(runnable, set()))


def _walk(runnable: object, seen: set[int]) -> Iterator[object]:
    if runnable is None or id(runnable) in seen:
        return
    seen.add(id(runnable))
    yield runnable
    for name in _CHILDREN:
        yield from _walk(getattr(runnable, name, None), seen)
    for name in _CHILD_LISTS:
        for child in getattr(runnable, name, None) or ():
            yield from _walk(child, seen)


def chat_models_in(runnable: object) -> list[ProviderBoundary]:
    """The provider models inside ``runnable`` (retry, breaker, bindings, sequences)."""
    return [part for part in runnable_parts(runnable) if isinstance(part, ProviderBoundary)]


def close_runnable(runnable: object) -> None:
    """Release what the provider models inside ``runnable`` hold (sync connections)."""
    for model in chat_models_in(runnable):
        model.close()


async def aclose_runnable(runnable: object) -> None:
    """Release what the provider models inside ``runnable`` hold, async pools included."""
    for model in chat_models_in(runnable):
        await model.aclose()


class Closable:
    """``close()`` / ``aclose()`` of the provider models inside, and ``with`` / ``async with``."""

    def close(self) -> None:
        close_runnable(self)

    async def aclose(self) -> None:
        await aclose_runnable(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


__all__ = ["Closable", "aclose_runnable", "chat_models_in", "close_runnable", "runnable_parts"]
