"""One atomic step on a store, written twice: a Lua script for Redis and its Python twin.

Redis runs a script alone and ``MemoryStore`` runs the twin under one lock. Numbers cross
into Lua as strings and go through the same operations in the same order as in the twin,
so both stores give the same doubles; Lua returns them formatted with ``%.17g``, which
round-trips a double (a plain Lua number reply would be truncated to an integer).
"""

from __future__ import annotations

import abc
import json
from typing import Any, ClassVar, Generic, TypeVar, cast

Arg = str | int | float

T_co = TypeVar("T_co", covariant=True)
P = TypeVar("P")

LUA_PRELUDE = """
local function fmt(x) return string.format('%.17g', x) end
local function reply(t) return cjson.encode(t) end
"""


class MemoryState(dict[type, Any]):
    """In-process state: one part per limit, made on first use; the store's lock guards it."""

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
    """Records a provider call: it was paid for, so any error of the shared store falls back."""

    @abc.abstractmethod
    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]:
        """The script's ``KEYS`` (under ``prefix``) and ``ARGV``."""

    def decode(self, reply: Any) -> T_co:
        """The answer, from the script's reply."""
        return cast(T_co, reply)

    @abc.abstractmethod
    def local(self, state: MemoryState) -> T_co:
        """The same answer, computed on in-process state."""


def number(value: Any) -> float:
    """A number from a reply: a string formatted with ``%.17g``, or an integer."""
    return float(value) if value != "" else 0.0


def text(value: Any) -> str | None:
    """A string from a reply; None for nil, false or the empty string."""
    return str(value) if value else None


def rows(value: Any) -> list[Any]:
    """An array from a reply (cjson encodes an empty Lua table as ``{}``)."""
    return [] if value == {} else list(value)


def json_rows(value: Any) -> list[Any]:
    """The array a script returned with ``reply(t)``: redis-py's pure-Python parser reads
    a nested array element by element, which costs more than the script in Redis."""
    return rows(json.loads(value))
