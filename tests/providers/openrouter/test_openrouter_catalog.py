"""OpenRouter's catalog, key status, generation stats and the free-model limiter, on the
loopback server.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pygent_lc import Settings
from pygent_lc.errors import AuthenticationError, ConfigurationError, ModelNotFoundError
from pygent_lc.providers import openrouter_model
from pygent_lc.providers.openrouter.catalog import (
    find_openrouter_model,
    generation_stats,
    key_status,
    list_openrouter_models,
    openrouter_health,
)
from tests.helpers import CANARY_KEY, secret_holders
from tests.loopback_server import LoopbackServer

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


def test_a_model_not_in_the_catalog_is_named_with_the_closest_ids(
    loopback: LoopbackServer,
) -> None:
    """One lookup serves the doctor, ``find_openrouter_model`` and an agent's check."""
    settings = settings_for(loopback, openrouter_model="openai/gpt-4o-mni")
    with pytest.raises(ModelNotFoundError, match="did you mean openai/gpt-4o-mini") as caught:
        find_openrouter_model(settings)
    assert caught.value.model == "openai/gpt-4o-mni"
    assert caught.value.status_code == 404
    assert "is not in OpenRouter's catalog" in openrouter_health(settings).detail


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


def test_a_refused_key_is_reachable_from_no_error(loopback: LoopbackServer) -> None:
    """The raw HTTP error keeps its request, the key in its headers: the typed error
    neither chains it nor has it as its context."""
    strict = LoopbackServer(api_key="sk-or-v1-the-right-one").start()
    try:
        settings = settings_for(strict, openrouter_api_key=CANARY_KEY)
        for check in (key_status, lambda s: generation_stats(s, "gen-1")):
            with pytest.raises(AuthenticationError) as caught:
                check(settings)
            assert secret_holders(caught.value, CANARY_KEY) == []
    finally:
        strict.stop()


HOSTILE_BODIES: dict[str, object] = {
    "/models": {
        "data": [
            {"id": "a/nan", "pricing": {"prompt": "NaN", "completion": "inf", "request": "x"}},
            {"id": "a/list", "pricing": ["0.1"], "context_length": "big"},
            {"id": "a/nested", "pricing": {"prompt": {"usd": 1}, "completion": [2]}},
            {"id": "a/huge", "pricing": {"prompt": 10**400, "completion": "1e305"}},
            "not an entry",
            {"id": "a/ok", "pricing": {"prompt": "0.000001", "completion": "0.000002"}},
        ]
    },
    "/key": {"data": {"label": ["x"], "usage": 10**400, "limit": "NaN", "limit_remaining": {}}},
    "/generation": {"data": {"total_cost": "-inf", "latency": "x", "native_tokens_prompt": "9"}},
}


class _HostileCatalog(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(HOSTILE_BODIES.get(self.path.split("?")[0], {"data": "nothing"}))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_a_catalog_with_junk_figures_gives_finite_figures_or_none() -> None:
    """Prices, usage and costs that are not finite numbers (NaN, inf, text, lists, too large
    for a float) are unknown, never a raw ``ValueError`` or a NaN that would reach a budget."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileCatalog)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        settings = Settings(openrouter_api_key="sk-or-v1-junk", openrouter_base_url=url)
        models = {m.id: m for m in list_openrouter_models(settings, refresh=True)}
        assert sorted(models) == ["a/huge", "a/list", "a/nan", "a/nested", "a/ok"]
        for info in models.values():
            figures = (info.prompt_price, info.completion_price, info.request_price)
            assert all(math.isfinite(f) and f >= 0 for f in figures), info
            assert info.context_length is None or isinstance(info.context_length, int)
        assert models["a/ok"].prompt_price == pytest.approx(1.0)
        status = key_status(settings)
        assert (status.usage, status.limit, status.limit_remaining) == (0.0, None, None)
        assert status.label is None
        stats = generation_stats(settings, "gen-1")
        assert (stats.total_cost, stats.latency_ms, stats.native_tokens_prompt) == (0.0, None, None)
    finally:
        server.shutdown()
        server.server_close()
