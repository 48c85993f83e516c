"""Rate limits: parsing, and the provider policy keeping them (scripted models, no sockets)."""

from __future__ import annotations

import asyncio
import time

import pytest

from pygent_lc import Settings, build_chat_model
from pygent_lc.build import with_provider_policy
from pygent_lc.chain import ProviderChain
from pygent_lc.errors import ConfigurationError, RateLimitError
from pygent_lc.limits.rate import LocalRateLimitError, RateLimit, parse_rate_limits
from pygent_lc.policy import ProviderPolicy
from pygent_lc.testing import ScriptedChatModel

FAST = {"max_retries": 0, "retry_initial_wait": 0.0}


def limited(model: ScriptedChatModel, rate: str, **settings: object) -> ProviderPolicy:
    return with_provider_policy(
        model, Settings(rate_limits=f"{model.provider}={rate}", **{**FAST, **settings})
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("openrouter=120/min", {"openrouter": RateLimit(120, 60.0)}),
        (
            " ollama = 10/s , local=5/10s",
            {"ollama": RateLimit(10, 1.0), "local": RateLimit(5, 10.0)},
        ),
        (
            "openrouter=1000/hour,ollama=3/d",
            {"openrouter": RateLimit(1000, 3600.0), "ollama": RateLimit(3, 86400.0)},
        ),
    ],
)
def test_parse(text: str, expected: dict[str, RateLimit]) -> None:
    assert parse_rate_limits(text) == expected


@pytest.mark.parametrize(
    "text", ["openrouter", "openrouter=0/s", "openrouter=5/week", "=5/s", "x=1/0s"]
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected|at least 1"):
        parse_rate_limits(text)


def test_settings_name_the_setting_and_known_providers() -> None:
    with pytest.raises(ConfigurationError, match=r"rate_limits.*unknown provider 'nope'"):
        Settings(rate_limits="nope=3/s")
    assert Settings(rate_limits="Ollama=3/s").rate_limits == {"ollama": RateLimit(3, 1.0)}


async def test_raise_mode_refuses_past_the_limit_without_a_request() -> None:
    model = ScriptedChatModel(provider="ollama")
    policy = limited(model, "3/min", rate_limit_mode="raise")
    for _ in range(3):
        assert (await policy.ainvoke("hi")).content
    with pytest.raises(LocalRateLimitError, match="slot frees in") as caught:
        await policy.ainvoke("hi")
    assert isinstance(caught.value, RateLimitError)
    assert caught.value.retry_after is not None and 59 < caught.value.retry_after <= 60
    with pytest.raises(LocalRateLimitError):
        policy.invoke("hi")
    assert len(model.prompts) == 3
    assert policy.circuit is not None
    assert (policy.circuit.state, policy.circuit.status().failures) == ("closed", 0)


async def test_wait_mode_spaces_requests_out() -> None:
    model = ScriptedChatModel(provider="ollama")
    policy = limited(model, "2/0.3s")
    started = time.perf_counter()
    await asyncio.gather(*(policy.ainvoke("hi") for _ in range(6)))
    assert time.perf_counter() - started >= 0.6  # 6 calls, 2 per 0.3 s window
    assert len(model.prompts) == 6
    started = time.perf_counter()
    for _ in range(3):
        policy.invoke("hi")  # sync callers wait too
    assert time.perf_counter() - started >= 0.25


async def test_a_wait_past_the_deadline_fails_at_once() -> None:
    policy = limited(ScriptedChatModel(provider="ollama"), "1/min", request_timeout=5)
    await policy.ainvoke("hi")
    started = time.perf_counter()
    with pytest.raises(LocalRateLimitError):
        await policy.ainvoke("hi")
    assert time.perf_counter() - started < 0.5


async def test_retries_take_slots_of_their_own() -> None:
    down = RateLimitError("busy", provider="ollama", retry_after=0.0)
    model = ScriptedChatModel(provider="ollama", outcomes=[down, down, "fine"])
    policy = limited(model, "2/min", rate_limit_mode="raise", max_retries=2)
    with pytest.raises(LocalRateLimitError):
        await policy.ainvoke("hi")  # the third attempt has no slot left
    assert len(model.prompts) == 2


async def test_the_chain_falls_back_when_the_primary_is_at_its_limit() -> None:
    primary, backup = ScriptedChatModel(provider="openrouter"), ScriptedChatModel(provider="ollama")
    settings = Settings(rate_limits="openrouter=1/min", rate_limit_mode="raise", **FAST)
    chain = ProviderChain(
        providers=[with_provider_policy(primary, settings), with_provider_policy(backup, settings)]
    )
    await chain.ainvoke("one")
    await chain.ainvoke("two")
    assert (len(primary.prompts), len(backup.prompts)) == (1, 1)


def test_free_models_get_the_built_in_limit_per_key() -> None:
    settings = Settings(openrouter_api_key="sk-or-v1-a", openrouter_model="x/y:free")
    (policy,) = build_chat_model(settings, ["openrouter"]).providers
    assert isinstance(policy, ProviderPolicy) and policy.rate is not None
    assert (policy.rate.limit, policy.rate.period_s) == (20, 60.0)
    assert "sk-or" not in policy.rate.key
    other_key = Settings(openrouter_api_key="sk-or-v1-b", openrouter_model="z/w:free")
    (other,) = build_chat_model(other_key, ["openrouter"]).providers
    assert isinstance(other, ProviderPolicy) and other.rate is not None
    assert other.rate.key != policy.rate.key
    stricter = settings.updated(rate_limits="openrouter=5/min")
    (strict,) = build_chat_model(stricter, ["openrouter"]).providers
    assert isinstance(strict, ProviderPolicy) and strict.rate is not None
    assert strict.rate.limit == 5
    paid = settings.updated(openrouter_model="x/y")
    (unlimited,) = build_chat_model(paid, ["openrouter"]).providers
    assert isinstance(unlimited, ProviderPolicy) and unlimited.rate is None
