"""``diagnose`` (``pygent-lc doctor``): no network without configuration; each provider
against the loopback server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pygent_lc import Settings
from pygent_lc.cli.commands import diagnose, first_configured
from tests.agents.fakes import KEY, game24_responder, settings_for
from tests.helpers import closed_port
from tests.loopback_server import LoopbackServer


def test_doctor_without_configuration_touches_no_network() -> None:
    report = {h.provider: h for h in diagnose(Settings(), ["openrouter", "ollama"])}
    assert report["openrouter"].status == "not configured"
    assert "OPENROUTER_API_KEY" in report["openrouter"].detail
    assert report["ollama"].status == "not configured"


# --- on the loopback server ---------------------------------------------------


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(
        ollama_models=["llama3.2:latest", "qwen2.5:0.5b"], responder=game24_responder, api_key=KEY
    ) as live:
        yield live


@pytest.mark.live_local
def test_doctor_reports_each_provider(server: LoopbackServer) -> None:
    report = {h.provider: h for h in diagnose(settings_for(server))}
    assert report["openrouter"].status == "ok"
    assert "key valid" in report["openrouter"].detail
    assert report["openrouter"].latency_ms is not None
    assert report["ollama"].status == "ok"
    assert report["ollama"].model == "llama3.2:latest"
    wrong_key = diagnose(settings_for(server, openrouter_api_key="sk-or-v1-wrong"), ["openrouter"])
    assert wrong_key[0].status == "problem"
    assert "AuthenticationError" in wrong_key[0].detail
    assert "sk-or-v1-wrong" not in wrong_key[0].detail


@pytest.mark.live_local
def test_first_configured_is_the_chains_first_provider_that_is_set_up(
    server: LoopbackServer,
) -> None:
    """``pygent-lc models``' default: OpenRouter needs a key, Ollama a server that answers."""
    down = f"http://127.0.0.1:{closed_port()}"
    assert first_configured(settings_for(server)) == "openrouter"
    assert first_configured(settings_for(server, openrouter_api_key=None)) == "ollama"
    assert first_configured(settings_for(server, openrouter_api_key="")) == "ollama"
    nothing = settings_for(server, openrouter_api_key=None, ollama_base_url=down)
    assert first_configured(nothing) == "local"
    ollama_first = settings_for(server, providers=["ollama", "openrouter"])
    assert first_configured(ollama_first) == "ollama"
    assert first_configured(ollama_first.updated(ollama_base_url=down)) == "openrouter"
    several_hosts = settings_for(server, openrouter_api_key=None).updated(
        ollama_base_url=f"{down},{server.ollama_base_url}"
    )
    assert first_configured(several_hosts) == "ollama"
    assert first_configured(settings_for(server, providers=["local", "openrouter"])) == "local"
