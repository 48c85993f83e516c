"""The error tree: what each error is a kind of, pickling across processes, and
AllProvidersFailedError as an ExceptionGroup."""

from __future__ import annotations

import pickle

import pytest

import pygent_lc
import pygent_lc.agents
import pygent_lc.errors
import pygent_lc.providers
from pygent_lc.agents import AgentError
from pygent_lc.errors import (
    AllProvidersFailedError,
    ConfigurationError,
    ContextLengthError,
    ProviderUnavailableError,
    PygentError,
    RateLimitError,
    StreamInterruptedError,
)
from pygent_lc.limits.breaker import CircuitOpenError


def all_failed() -> AllProvidersFailedError:
    return AllProvidersFailedError(
        {
            "1:openrouter": RateLimitError("slow down", provider="openrouter", retry_after=3.0),
            "2:ollama": ProviderUnavailableError("503", provider="ollama", status_code=503),
        }
    )


@pytest.mark.parametrize(
    "error",
    [
        ConfigurationError("bad value", field="request_timeout"),
        ContextLengthError("too long", provider="local", model="m", status_code=400),
        RateLimitError("slow down", provider="openrouter", model="m", retry_after=2.5),
        StreamInterruptedError("cut", partial_text="half a", provider="ollama"),
        CircuitOpenError("open", provider="openrouter", retryable=False, retry_after=9.0),
        all_failed(),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_pickle_with_their_attributes(error: PygentError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert {k: v for k, v in vars(copy).items() if k != "errors"} == {
        k: v for k, v in vars(error).items() if k != "errors"
    }


def test_all_failed_is_an_exception_group_of_each_providers_error() -> None:
    error = all_failed()
    assert isinstance(error, ExceptionGroup) and isinstance(error, PygentError)
    assert list(error.exceptions) == list(error.errors.values())
    assert str(error) == (
        "all 2 providers failed: RateLimitError: openrouter: slow down; "
        "ProviderUnavailableError: ollama [503]: 503"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert list(copy.errors) == ["1:openrouter", "2:ollama"]
    assert copy.errors["1:openrouter"].retry_after == 3.0


def test_except_star_picks_one_kind_out_of_the_group() -> None:
    caught: list[BaseException] = []
    try:
        raise all_failed()
    except* RateLimitError as group:
        caught.extend(group.exceptions)
    except* ProviderUnavailableError:
        pass
    assert [type(e) for e in caught] == [RateLimitError]


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


def test_every_error_a_provider_reported_says_where_and_its_status_alike() -> None:
    overflow = ContextLengthError("too long", provider="local", model="m", status_code=400)
    assert str(overflow) == "local/m [400]: too long"
    assert str(RateLimitError("slow down", provider="openrouter")) == "openrouter: slow down"
