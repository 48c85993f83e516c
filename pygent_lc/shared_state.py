"""Which state store this process uses: its URL (``PYGENT_STATE_URL``) and one store per URL.

:func:`configured_state_url` stands in for ``Settings.state_url`` until that
setting exists: it reads the field when a ``Settings`` has it, else the
``PYGENT_STATE_URL`` environment variable (and, for the command line, the
same line of ``./.env``). When the setting lands, callers keep calling this
function and only its body changes.

:func:`process_store` opens the store a URL names once per process, so every
chain built here shares it (a host pool's in-flight counts, for one): with
no URL, one :class:`~pygent_lc.state.MemoryStore` for the whole process;
with a ``redis://`` URL, the fleet's shared store (see :func:`open_store`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from dotenv import dotenv_values

from pygent_lc.settings import Settings
from pygent_lc.state import StateStore, open_store

STATE_URL_ENV = "PYGENT_STATE_URL"
"""The environment variable naming the shared state store (``redis://host:6379/0``)."""

_stores: dict[str | None, StateStore] = {}
_lock = threading.Lock()


def configured_state_url(
    settings: Settings | None = None, env_file: str | os.PathLike[str] | None = None
) -> str | None:
    """The state store's URL, or ``None`` for state kept in this process only.

    ``settings.state_url`` once :class:`Settings` has that field; until then
    ``$PYGENT_STATE_URL``, else its line in ``env_file`` (the command line
    passes ``./.env``). A blank value means none.
    """
    value = getattr(settings, "state_url", None) if settings is not None else None
    if value is None:
        value = os.environ.get(STATE_URL_ENV)
    if value is None and env_file is not None and Path(env_file).is_file():
        value = dotenv_values(env_file).get(STATE_URL_ENV)
    if value is None or not str(value).strip():
        return None
    return str(value).strip()


def process_store(url: str | None) -> StateStore:
    """This process's store for ``url`` (``None``: in memory), opened on first use.

    Raises :class:`~pygent_lc.errors.ConfigurationError` for a URL
    :func:`~pygent_lc.state.open_store` does not take.
    """
    key = url or None
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = open_store(key)
        return store


__all__ = ["STATE_URL_ENV", "configured_state_url", "process_store"]
