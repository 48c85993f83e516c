"""Which model a backend asks: the part of a value-cache key that keeps models apart."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from pygent_lc.resources import runnable_parts

_ATTRIBUTES = ("model_id", "model_name", "model")


def _own_name(obj: object) -> str | None:
    for attribute in _ATTRIBUTES:
        value = getattr(obj, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


def model_identity(backend: object) -> str | None:
    """The model (or ``a>b`` fallback chain of models) behind ``backend``, if it says.

    A name the backend gives itself (``model_id``, ``model_name`` or ``model``)
    wins; else the chat models inside what it wraps, found by the package's one
    walk over LangChain objects (:func:`~pygent_lc.resources.runnable_parts`:
    bindings, provider policies, a provider chain's providers, fallbacks), in
    the order they are tried.
    """
    if (own := _own_name(backend)) is not None:
        return own
    names: list[str] = []
    for part in runnable_parts(backend):
        if isinstance(part, BaseChatModel) and (name := _own_name(part)) and name not in names:
            names.append(name)
    return ">".join(names) if names else None
