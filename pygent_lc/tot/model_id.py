"""Which model a backend asks: the part of a value-cache key that keeps models apart."""

from __future__ import annotations

_ATTRIBUTES = ("model_id", "model_name", "model")
# Where wrappers keep what they wrap: our backends, LangChain bindings and fallbacks.
_INNER = ("inner", "runnable", "bound", "model_instance")
_MAX_DEPTH = 6


def _names(obj: object, depth: int, seen: set[int]) -> list[str]:
    if depth > _MAX_DEPTH or id(obj) in seen:
        return []
    seen.add(id(obj))
    for attribute in _ATTRIBUTES:
        value = getattr(obj, attribute, None)
        if isinstance(value, str) and value:
            return [value]
    names: list[str] = []
    for attribute in _INNER:
        inner = getattr(obj, attribute, None)
        if inner is not None and not isinstance(inner, str):
            names.extend(_names(inner, depth + 1, seen))
            if names:
                break
    for fallback in getattr(obj, "fallbacks", None) or ():
        names.extend(_names(fallback, depth + 1, seen))
    return names


def model_identity(backend: object) -> str | None:
    """The model (or ``a>b`` fallback chain of models) behind ``backend``, if it says.

    Looks for ``model_id``, ``model_name`` or ``model`` on the backend and on
    what it wraps (a LangChain chat model, bindings, fallbacks).
    """
    names = _names(backend, 0, set())
    return ">".join(names) if names else None
