"""An atomic state operation as data, run by any store.

Each operation is written twice, once per place state can live, side by
side in the same module: a Lua script for Redis (atomic because Redis runs a
script alone) and a Python twin for :class:`~pygent_lc.state.MemoryStore`
(atomic because the store runs it under one lock). A :class:`Script` holds
both, plus how to turn a typed request into the script's ``KEYS``/``ARGV``
and its reply into the typed result. An :class:`Op` is a script with one
request and a final mapping; stores only know how to run ops, so every
public method is written once, for sync and async callers alike.

Numbers cross into Lua as strings and are done in Lua's doubles, with the
same operations in the same order as in the twin, so both stores give
bit-identical results; Lua formats them back with ``%.17g``, which
round-trips a double exactly (a plain Lua number reply would be truncated to
an integer).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from pygent_lc.state.memory_state import MemoryState

Arg = str | int | float
"""A script argument; redis-py sends it as its ``str``."""

R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")

LUA_PRELUDE = """
local function fmt(x) return string.format('%.17g', x) end
local function reply(t) return cjson.encode(t) end
"""
"""Helpers every script starts with."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """A request as a script's ``KEYS`` and ``ARGV``."""

    keys: list[str]
    args: list[Arg]


@dataclass(frozen=True, slots=True)
class Script(Generic[R, S]):
    """One atomic operation: its Lua source and its Python twin.

    ``encode(request, prefix)`` gives the script's keys (under ``prefix``)
    and arguments; ``decode(request, reply)`` turns the script's reply into
    the result; ``local(state, request)`` computes the same result on
    in-process state.
    """

    name: str
    lua: str
    encode: Callable[[R, str], Encoded]
    decode: Callable[[R, Any], S]
    local: Callable[[MemoryState, R], S]
    reads_only: bool = False
    """Changes nothing: a Redis that takes no writes still answers it."""
    after_call: bool = False
    """Records what a provider call did, after it: no error of the shared store may lose
    the call's reply, so :class:`~pygent_lc.state.ResilientStore` answers it from memory."""


@dataclass(frozen=True, slots=True)
class Timed:
    """A request that carries the client's clock: stores decide by the caller's time."""

    now: float


@dataclass(frozen=True, slots=True)
class Op(Generic[T]):
    """A script with its request, and what to return from its result."""

    script: Script[Any, Any]
    request: Any
    finish: Callable[[Any], T]


def make_op(script: Script[R, S], request: R, finish: Callable[[S], T]) -> Op[T]:
    """An op whose types line up: ``finish`` takes what ``script`` returns for ``request``."""
    return Op(script=script, request=request, finish=finish)


def same(value: T) -> T:
    """The ``finish`` of an op whose result is the script's own."""
    return value


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
    """An array from a Lua reply: a Redis array, or a part of a JSON one (``reply``).

    cjson encodes an empty Lua table as ``{}``: that is an empty array too.
    """
    if isinstance(value, list | tuple):
        return value
    if value == {}:
        return []
    raise TypeError(f"not an array in a script reply: {value!r}")


def json_rows(value: object) -> Sequence[Any]:
    """The array a script returned as JSON with ``reply(t)``.

    Scripts with nested replies send one JSON string: redis-py's pure-Python
    parser reads a nested array element by element, which costs more than
    the whole script does in Redis.
    """
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        raise TypeError(f"not a JSON script reply: {value!r}")
    return rows(json.loads(value))


__all__ = [
    "LUA_PRELUDE",
    "Arg",
    "Encoded",
    "Op",
    "Script",
    "Timed",
    "json_rows",
    "make_op",
    "number",
    "rows",
    "same",
    "text",
]
