"""The retry policy, on scripted models (no sockets): which errors are retried, how many
attempts, and ``Retry-After``.
"""

from __future__ import annotations

import time

import pytest

from pygent_lc import Settings
from pygent_lc.build import with_provider_policy
from pygent_lc.errors import AuthenticationError, ProviderUnavailableError, RateLimitError
from pygent_lc.testing import ScriptedChatModel

FAST = Settings(max_retries=2, retry_initial_wait=0.0, retry_max_wait=0.05)


def unavailable(provider: str = "a") -> ProviderUnavailableError:
    return ProviderUnavailableError("503", provider=provider, status_code=503)


async def test_retryable_error_is_retried_then_succeeds() -> None:
    model = ScriptedChatModel(outcomes=[unavailable(), unavailable(), "fine"])
    reply = await with_provider_policy(model, FAST, breaker=False).ainvoke("hi")
    assert reply.content == "fine"
    assert len(model.calls) == 3


async def test_attempts_stop_at_max_retries_plus_one() -> None:
    model = ScriptedChatModel(outcomes=[unavailable()] * 5)
    with pytest.raises(ProviderUnavailableError):
        await with_provider_policy(model, FAST, breaker=False).ainvoke("hi")
    assert len(model.calls) == FAST.max_retries + 1


async def test_non_retryable_error_is_not_retried() -> None:
    model = ScriptedChatModel(
        outcomes=[AuthenticationError("bad key", provider="a", status_code=401)]
    )
    with pytest.raises(AuthenticationError):
        await with_provider_policy(model, FAST, breaker=False).ainvoke("hi")
    assert len(model.calls) == 1


async def test_retry_after_is_honoured_up_to_the_cap_and_a_longer_one_is_not_waited_for() -> None:
    settings = Settings(max_retries=1, retry_initial_wait=0.0, retry_max_wait=0.3)
    model = ScriptedChatModel(
        outcomes=[RateLimitError("slow down", provider="a", status_code=429, retry_after=0.2), "ok"]
    )
    started = time.perf_counter()
    await with_provider_policy(model, settings, breaker=False).ainvoke("hi")
    assert 0.2 <= time.perf_counter() - started < 1.0

    too_long = ScriptedChatModel(
        outcomes=[
            RateLimitError("slow down", provider="a", status_code=429, retry_after=3600),
            "ok",
        ]
    )
    started = time.perf_counter()
    with pytest.raises(RateLimitError) as raised:
        await with_provider_policy(too_long, settings, breaker=False).ainvoke("hi")
    assert time.perf_counter() - started < 0.2
    assert raised.value.retry_after == 3600
    assert len(too_long.calls) == 1  # no retry: the fallback answers instead
