"""OpenRouter's catalog, key status, generation stats, cost budgets and the free-model limiter."""

from __future__ import annotations

import pytest
from loopback_server import LoopbackServer

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.budget import estimator_from_prices
from pygent_lc.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    ModelNotFoundError,
)
from pygent_lc.openrouter_catalog import (
    find_openrouter_model,
    generation_stats,
    key_status,
    list_openrouter_models,
)
from pygent_lc.providers import openrouter_model

pytestmark = pytest.mark.live_local


def settings_for(server: LoopbackServer, **values: object) -> Settings:
    defaults: dict[str, object] = {
        "openrouter_api_key": "sk-or-v1-catalog-test",
        "openrouter_base_url": server.openrouter_base_url,
        "openrouter_model": "openai/gpt-4o-mini",
    }
    return Settings(**{**defaults, **values})


def test_catalog_prices_per_million_and_ttl_cache(loopback: LoopbackServer) -> None:
    settings = settings_for(loopback)
    models = {m.id: m for m in list_openrouter_models(settings, refresh=True)}
    mini = models["openai/gpt-4o-mini"]
    assert (mini.prompt_price, mini.completion_price) == pytest.approx((0.15, 0.6))
    assert mini.context_length == 128000
    assert models["meta-llama/llama-3.3-70b-instruct:free"].is_free
    assert not mini.is_free
    assert mini.estimate_cost(1_000_000, 1_000_000) == pytest.approx(0.75)
    requests_before = len(loopback.all_requests())
    list_openrouter_models(settings)  # served from the cache
    assert len(loopback.all_requests()) == requests_before
    assert find_openrouter_model(settings).id == "openai/gpt-4o-mini"
    with pytest.raises(ModelNotFoundError, match="pygent-lc models"):
        find_openrouter_model(settings, "openai/gpt-99")


def test_key_status_and_generation_stats(loopback: LoopbackServer) -> None:
    settings = settings_for(loopback)
    reply = openrouter_model(settings).invoke("one two three")
    status = key_status(settings)
    assert status.usage == pytest.approx(reply.response_metadata["cost"])
    assert status.is_free_tier is False
    stats = generation_stats(settings, reply.response_metadata["generation_id"])
    assert stats.total_cost == pytest.approx(reply.response_metadata["cost"])
    assert stats.model == "openai/gpt-4o-mini"
    with pytest.raises(ConfigurationError):
        generation_stats(settings, "not-a-generation")


def test_key_status_needs_a_valid_key(loopback: LoopbackServer) -> None:
    with pytest.raises(ConfigurationError, match="OPENROUTER_API_KEY"):
        key_status(Settings(openrouter_base_url=loopback.openrouter_base_url))
    strict = LoopbackServer(api_key="sk-or-v1-the-right-one").start()
    try:
        with pytest.raises(AuthenticationError):
            key_status(settings_for(strict))
    finally:
        strict.stop()


async def test_cost_budget_stops_calls_before_they_pass_it(loopback: LoopbackServer) -> None:
    settings = settings_for(loopback)
    price = find_openrouter_model(settings)  # $0.15 / $0.60 per million tokens
    backend = LangChainBackend(
        build_chat_model(settings, ["openrouter"]),
        max_cost_usd=1e-4,
        cost_estimator=estimator_from_prices(price),
    )
    # estimate per call: 4 prompt tokens + up to 100 output tokens at list price = $6.06e-5;
    # the loopback bills $1.1e-5 per call. Call n+1 runs while n * 1.1e-5 + 6.06e-5 <= 1e-4.
    calls = 0
    with pytest.raises(BudgetExceededError, match="would be passed"):
        for _ in range(10):
            await backend.generate("one two three", max_tokens=100)
            calls += 1
    assert calls == 4
    assert loopback.request_count("openrouter") == 4


async def test_spend_limit_without_estimates_uses_tracked_cost(loopback: LoopbackServer) -> None:
    backend = LangChainBackend(
        build_chat_model(settings_for(loopback), ["openrouter"]), max_cost_usd=1.5e-5
    )
    await backend.generate("one two three")  # bills 1.1e-5
    await backend.generate("one two three")  # 2.2e-5 now: the next one is refused
    with pytest.raises(BudgetExceededError):
        await backend.generate("one two three")
    assert loopback.request_count("openrouter") == 2


