"""One atomic step, written twice: a Lua script for Redis and its Python twin, doing the same
operations in the same order so both give the same doubles; Lua returns them formatted with
``%.17g``, which round-trips a double (a Lua number reply is truncated to an integer)."""

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
    """One atomic operation (subclasses are frozen dataclasses)."""

    lua: ClassVar[str]
    reads_only: ClassVar[bool] = False
    """Changes nothing: a Redis that takes no writes still answers it."""
    after_call: ClassVar[bool] = False
    """Records a provider call: it was paid for, so any error of the shared store falls back."""

    @abc.abstractmethod
    def redis_args(self, prefix: str) -> tuple[list[str], list[Arg]]: ...

    def decode(self, reply: Any) -> T_co:
        return cast(T_co, reply)

    @abc.abstractmethod
    def local(self, state: MemoryState) -> T_co: ...


def number(value: Any) -> float:
    """A number from a reply: a string formatted with ``%.17g``, or an integer."""
    return float(value) if value != "" else 0.0


def rows(value: Any) -> list[Any]:
    """An array from a reply (cjson encodes an empty Lua table as ``{}``)."""
    return [] if value == {} else list(value)


def json_rows(value: Any) -> list[Any]:
    """What ``reply(t)`` returned: redis-py's parser reads nested arrays slowly."""
    return rows(json.loads(value))
