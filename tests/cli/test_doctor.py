"""``diagnose`` (``pygent-lc doctor``): no network without configuration; each provider
against the loopback server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pygent_lc import Settings
from pygent_lc.cli.doctor import diagnose
from tests.agents.fakes import KEY, game24_responder, settings_for
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
