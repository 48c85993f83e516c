"""One atomic step on a store, written twice: a Lua script for Redis and its Python twin.

Redis runs a script alone and :class:`~pygent_lc.limits.store.MemoryStore` runs
the twin under one lock, so both are atomic. Numbers cross into Lua as strings
and are computed in Lua's doubles with the same operations in the same order as
the twin, so both stores give bit-identical results; Lua formats them back with
``%.17g``, which round-trips a double exactly (a plain Lua number reply would be
truncated to an integer).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

Arg = str | int | float

T_co = TypeVar("T_co", covariant=True)
P = TypeVar("P")

LUA_PRELUDE = """
local function fmt(x) return string.format('%.17g', x) end
local function reply(t) return cjson.encode(t) end
"""


class MemoryState(dict[type, Any]):
    """In-process state: one part per limit (a dict subclass of its records), made on first
    use; the store's lock guards it."""

    def part(self, kind: type[P]) -> P:
        found = self.get(kind)
        if found is None:
            found = self[kind] = kind()
        return found


class Step(abc.ABC, Generic[T_co]):
    """One atomic operation and its request (subclasses are frozen dataclasses)."""

    lua: ClassVar[str]
    reads_only: ClassVar[bool] = False
    """Changes nothing: a Redis that takes no writes still answers it."""
    after_call: ClassVar[bool] = False
    """Records what a provider call did, after it: no error of the shared store may lose
    the call's reply, so :class:`~pygent_lc.limits.store.ResilientStore` answers it from
    memory."""

    @abc.abstractmethod
    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        """The script's ``KEYS`` (under ``prefix``) and ``ARGV``."""

    @abc.abstractmethod
    def decode(self, reply: Any) -> T_co:
        """The answer, from the script's reply."""

    @abc.abstractmethod
    def local(self, state: MemoryState) -> T_co:
        """The same answer, computed on in-process state."""


def number(value: object) -> float:
    """A number from a Lua reply: a string formatted with ``%.17g``, or an integer."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str | int | float):
        return float(value) if value != "" else 0.0
    raise TypeError(f"not a number in a script reply: {value!r}")


def text(value: object) -> str | None:
    """A string from a Lua reply; ``None`` for nil, false or the empty string."""
    if value is None or value is False or value == "" or value == b"":
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def rows(value: object) -> Sequence[Any]:
    """An array from a Lua reply: a Redis array, or a part of a JSON one (``reply``; cjson
    encodes an empty Lua table as ``{}``)."""
    if isinstance(value, list | tuple):
        return value
    if value == {}:
        return []
    raise TypeError(f"not an array in a script reply: {value!r}")


def json_rows(value: object) -> Sequence[Any]:
    """The array a script returned as JSON with ``reply(t)``: redis-py's pure-Python parser
    reads a nested array element by element, which costs more than the script in Redis."""
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        raise TypeError(f"not a JSON script reply: {value!r}")
    return rows(json.loads(value))


__all__ = ["LUA_PRELUDE", "Arg", "MemoryState", "Step", "json_rows", "number", "rows", "text"]
