"""The public names the package promises (agents and notebooks are written against them),
pinned.
"""

from __future__ import annotations

import subprocess
import sys

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


def test_importing_the_package_does_not_import_langchain_or_the_sdks() -> None:
    """The CLI's ``--help`` and a plain ``import pygent_lc`` stay fast: the public
    names load on first use."""
    code = (
        "import sys, pygent_lc\n"
        "heavy = [m for m in ('langchain_core', 'openai', 'ollama', 'httpx') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
        "pygent_lc.Settings\n"
        "print('pygent_lc.settings' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["", "True"]
