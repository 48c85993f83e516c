"""``pygent_lc.providers``: the public names."""

from __future__ import annotations

import pygent_lc
import pygent_lc.errors
import pygent_lc.providers


def test_providers_all() -> None:
    for name in ("openrouter_model", "ollama_model", "local_model", "check_ollama_model"):
        assert name in pygent_lc.providers.__all__
