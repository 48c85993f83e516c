"""The exception tree: what each error is a kind of."""

from __future__ import annotations

import pygent_lc
import pygent_lc.agents
import pygent_lc.errors
import pygent_lc.providers
from pygent_lc.agents import AgentError
from pygent_lc.errors import ConfigurationError


def test_error_tree() -> None:
    e = pygent_lc.errors
    cls: type[Exception]
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


def test_agent_error_is_a_configuration_error() -> None:
    assert issubclass(AgentError, ConfigurationError)
    assert issubclass(AgentError, ValueError)
