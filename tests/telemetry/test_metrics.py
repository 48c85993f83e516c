"""The instruments: GenAI duration and token histograms, cost, failures and the breaker
gauge, read with the SDK's in-memory metric reader.
"""

from __future__ import annotations

import pytest

from pygent_lc.telemetry import names
from tests.loopback_server import Fault, LoopbackServer
from tests.telemetry.recording import PROMPT, Telemetry, chain_backend


@pytest.mark.live_local
async def test_metrics_have_the_conventions_names_and_units(
    otel: Telemetry, loop_server: LoopbackServer
) -> None:
    loop_server.script("ollama", [Fault.status(503)])
    await chain_backend(loop_server, breaker_failures=3).generate(PROMPT)
    metrics = otel.metrics()

    duration = metrics[names.OPERATION_DURATION]
    assert duration.unit == "s"
    points = list(duration.data.data_points)
    by_error = {p.attributes.get(names.ERROR_TYPE): p for p in points}
    assert set(by_error) == {"ProviderUnavailableError", None}
    assert by_error[None].attributes[names.PROVIDER_NAME] == "openrouter"
    assert by_error[None].attributes[names.RESPONSE_MODEL] == "openai/gpt-4o-mini"

    tokens = metrics[names.TOKEN_USAGE]
    assert tokens.unit == "{token}"
    types = {p.attributes[names.TOKEN_TYPE]: p for p in tokens.data.data_points}
    assert set(types) == {"input", "output"}
    assert all(p.sum > 0 and p.count == 1 for p in types.values())

    cost = metrics[names.COST]
    assert cost.unit == "USD"
    (spent,) = cost.data.data_points
    assert spent.value > 0
    assert spent.attributes == {
        names.PROVIDER_NAME: "openrouter",
        names.REQUEST_MODEL: "openai/gpt-4o-mini",
    }

    (failure,) = metrics[names.FAILURES].data.data_points
    assert failure.value == 1
    assert failure.attributes[names.ERROR_TYPE] == "ProviderUnavailableError"
    assert failure.attributes[names.PROVIDER_NAME] == "ollama"

    states = {
        p.attributes[names.PROVIDER_NAME]: p.value
        for p in metrics[names.BREAKER_STATE].data.data_points
    }
    assert states["ollama"] == names.BREAKER_STATES["closed"]  # one failure of three
    assert states["openrouter"] == names.BREAKER_STATES["closed"]


@pytest.mark.live_local
async def test_breaker_gauge_reports_an_open_circuit(
    otel: Telemetry, loop_server: LoopbackServer
) -> None:
    loop_server.script("ollama", [Fault.status(503)])
    await chain_backend(loop_server, breaker_failures=1, breaker_cooldown=60).generate(PROMPT)
    states = {
        (p.attributes[names.PROVIDER_NAME], p.attributes.get(names.REQUEST_MODEL)): p.value
        for p in otel.metrics()[names.BREAKER_STATE].data.data_points
    }
    assert states[("ollama", "llama3.2")] == names.BREAKER_STATES["open"]
