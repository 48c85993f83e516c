"""The retry policy and the fallback chain, on scripted models (no sockets)."""

from __future__ import annotations

import time

import pytest

from pygent_lc import Settings
from pygent_lc.chain import with_provider_policy
from pygent_lc.errors import (
    AllProvidersFailedError,
    AuthenticationError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
)
from pygent_lc.fallbacks import ProviderChain
from pygent_lc.testing import ScriptedChatModel

FAST = Settings(max_retries=2, retry_initial_wait=0.0, retry_max_wait=0.05)


def unavailable(provider: str = "a") -> ProviderUnavailableError:
    return ProviderUnavailableError("503", provider=provider, status_code=503)


def chain(*models: ScriptedChatModel, settings: Settings = FAST) -> ProviderChain:
    retried = [with_provider_policy(m, settings, breaker=False) for m in models]
    return ProviderChain(providers=list(retried))


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


def test_sync_invoke_uses_the_same_policy() -> None:
    model = ScriptedChatModel(outcomes=[unavailable(), "fine"])
    assert with_provider_policy(model, FAST, breaker=False).invoke("hi").content == "fine"
    assert len(model.calls) == 2


async def test_fallback_runs_after_primary_retries_are_used_up() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[unavailable()] * 3)
    backup = ScriptedChatModel(provider="b", outcomes=["from b"])
    assert (await chain(primary, backup).ainvoke("hi")).content == "from b"
    assert (len(primary.calls), len(backup.calls)) == (3, 1)


async def test_non_retryable_primary_falls_back_at_once() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[AuthenticationError("x", provider="a")])
    backup = ScriptedChatModel(provider="b", outcomes=["from b"])
    assert (await chain(primary, backup).ainvoke("hi")).content == "from b"
    assert len(primary.calls) == 1


async def test_all_failed_carries_every_providers_error() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[AuthenticationError("x", provider="a")])
    backup = ScriptedChatModel(provider="b", outcomes=[unavailable("b")] * 3)
    with pytest.raises(AllProvidersFailedError) as caught:
        await chain(primary, backup).ainvoke("hi")
    errors = list(caught.value.errors.values())
    assert [type(e) for e in errors] == [AuthenticationError, ProviderUnavailableError]
    assert [e.provider for e in errors] == ["a", "b"]


def test_all_failed_in_sync_invoke() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[AuthenticationError("x", provider="a")])
    backup = ScriptedChatModel(provider="b", outcomes=[AuthenticationError("y", provider="b")])
    with pytest.raises(AllProvidersFailedError):
        chain(primary, backup).invoke("hi")


async def test_non_provider_errors_do_not_fall_back() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[RuntimeError("a bug")])
    backup = ScriptedChatModel(provider="b", outcomes=["from b"])
    with pytest.raises(RuntimeError):
        await chain(primary, backup).ainvoke("hi")
    assert backup.calls == []


async def test_stream_failing_before_first_chunk_is_retried_then_falls_back() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[("", unavailable())] * 3)
    backup = ScriptedChatModel(provider="b", outcomes=["streamed from b"])
    chunks = [c.content async for c in chain(primary, backup).astream("hi")]
    assert "".join(chunks) == "streamed from b"
    assert len(primary.calls) == 3


async def test_stream_failing_after_text_is_not_retried_nor_fallen_back() -> None:
    broken = StreamInterruptedError("cut", partial_text="one two", provider="a")
    primary = ScriptedChatModel(provider="a", outcomes=[("one two", broken)])
    backup = ScriptedChatModel(provider="b", outcomes=["from b"])
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError):
        async for chunk in chain(primary, backup).astream("hi"):
            seen.append(str(chunk.content))
    assert "".join(seen) == "one two"
    assert (len(primary.calls), backup.calls) == (1, [])


def test_sync_stream_falls_back() -> None:
    primary = ScriptedChatModel(
        provider="a", outcomes=[("", AuthenticationError("x", provider="a"))]
    )
    backup = ScriptedChatModel(provider="b", outcomes=["b streams"])
    assert "".join(str(c.content) for c in chain(primary, backup).stream("hi")) == "b streams"


async def test_batch_reports_all_failed_per_input() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[AuthenticationError("x", provider="a")] * 2)
    backup = ScriptedChatModel(
        provider="b", outcomes=["ok", AuthenticationError("y", provider="b")]
    )
    results = await chain(primary, backup).abatch(["one", "two"], return_exceptions=True)
    kinds = sorted(type(r).__name__ for r in results)
    assert kinds == ["AIMessage", "AllProvidersFailedError"]


async def test_fallback_that_breaks_mid_stream_raises_its_own_error() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[("", unavailable("a"))] * 3)
    broken = StreamInterruptedError("cut", partial_text="one", provider="b")
    backup = ScriptedChatModel(provider="b", outcomes=[("one", broken)])
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        async for chunk in chain(primary, backup).astream("hi"):
            seen.append(str(chunk.content))
    assert caught.value.provider == "b"
    assert seen == ["one"]
