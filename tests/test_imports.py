"""The public names the package promises (agents and notebooks are written against them),
pinned.
"""

from __future__ import annotations

import pygent_lc
import pygent_lc.errors
import pygent_lc.providers


def test_top_level_all() -> None:
    assert set(pygent_lc.__all__) == {
        "LLMBackend",
        "LangChainBackend",
        "ProviderSkippedWarning",
        "Settings",
        "UsageSummary",
        "UsageTotals",
        "UsageTracker",
        "build_chat_model",
        "errors",
    }
    for name in pygent_lc.__all__:
        assert getattr(pygent_lc, name) is not None
