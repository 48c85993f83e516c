"""The old name of :mod:`pygent_lc.closing`, kept for code written against it."""

from pygent_lc.closing import (
    Closable,
    aclose_runnable,
    chat_models_in,
    close_runnable,
    runnable_parts,
)

__all__ = ["Closable", "aclose_runnable", "chat_models_in", "close_runnable", "runnable_parts"]
