"""The public names the package promises (agents and notebooks are written against them), pinned."""

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


def test_providers_all() -> None:
    for name in ("openrouter_model", "ollama_model", "local_model", "check_ollama_model"):
        assert name in pygent_lc.providers.__all__


def test_error_tree() -> None:
    e = pygent_lc.errors
    for cls in (
        e.AuthenticationError,
        e.InsufficientCreditsError,
        e.ContentRefusedError,
        e.ModelNotFoundError,
        e.RateLimitError,
        e.ProviderUnavailableError,
        e.StreamInterruptedError,
    ):
        assert issubclass(cls, e.ProviderError)
    for cls in (e.ConfigurationError, e.ProviderError, e.AllProvidersFailedError):
        assert issubclass(cls, e.PygentError)
    assert issubclass(e.ConfigurationError, ValueError)
    assert issubclass(e.InvalidInputError, ValueError)
