"""Closing what a chain's chat models hold (pooled connections, an embedded server); a
closed object stays usable: the next call opens them again."""

from __future__ import annotations

from typing import Self

from pygent_lc.providers.boundary import ProviderBoundary

# Attributes through which LangChain's wrappers (and a backend's ``inner``) hold others.
_CHILDREN = ("bound", "runnable", "first", "last", "inner", "providers", "fallbacks", "middle")


def runnable_parts(runnable: object) -> list[object]:
    """Everything inside ``runnable``, ``runnable`` first, once each (depth first)."""
    parts: dict[int, object] = {}
    todo = [runnable]
    while todo:
        part = todo.pop()
        if part is not None and id(part) not in parts:
            parts[id(part)] = part
            for name in reversed(_CHILDREN):  # popped in order
                child = getattr(part, name, None)
                todo += reversed(child) if isinstance(child, list | tuple) else [child]
    return list(parts.values())


def chat_models_in(runnable: object) -> list[ProviderBoundary]:
    return [part for part in runnable_parts(runnable) if isinstance(part, ProviderBoundary)]


def close_runnable(runnable: object) -> None:
    for model in chat_models_in(runnable):
        model.close()


async def aclose_runnable(runnable: object) -> None:
    for model in chat_models_in(runnable):
        await model.aclose()


class Closable:
    """``close()`` / ``aclose()`` of the provider models inside; ``with``, ``async with``."""

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
