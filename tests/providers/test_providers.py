"""``pygent_lc.providers``: the public names."""

from __future__ import annotations

import pygent_lc
import pygent_lc.errors
import pygent_lc.providers


def test_providers_all() -> None:
    for name in ("openrouter_model", "ollama_model", "local_model", "check_ollama_model"):
        assert name in pygent_lc.providers.__all__


def test_every_public_name_resolves_on_first_use() -> None:
    """The package loads its names lazily; each one is there when asked for."""
    for name in pygent_lc.providers.__all__:
        assert getattr(pygent_lc.providers, name).__name__ == name
