"""The instruments: GenAI duration and token histograms, cost, failures and the breaker
gauge, read with the SDK's in-memory metric reader.
"""

from __future__ import annotations

import pytest

from pygent_lc.testing import ScriptedChatModel
from tests.loopback_server import Fault, LoopbackServer
from tests.telemetry.recording import PROMPT, Telemetry, chain_backend


@pytest.mark.live_local
async def test_metrics_have_the_conventions_names_and_units(
    otel: Telemetry, loop_server: LoopbackServer
) -> None:
    loop_server.script("ollama", [Fault.status(503)])
    await chain_backend(loop_server, breaker_failures=3).generate(PROMPT)
    metrics = otel.metrics()

    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    points = list(duration.data.data_points)
    by_error = {p.attributes.get("error.type"): p for p in points}
    assert set(by_error) == {"ProviderUnavailableError", None}
    assert by_error[None].attributes["gen_ai.provider.name"] == "openrouter"
    assert by_error[None].attributes["gen_ai.response.model"] == "openai/gpt-4o-mini"
    # the conventions' advisory buckets: 0.01 s doubling, and 1 token times 4
    assert by_error[None].explicit_bounds[:3] == (0.01, 0.02, 0.04)
    assert by_error[None].explicit_bounds[-1] == 81.92

    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    types = {p.attributes["gen_ai.token.type"]: p for p in tokens.data.data_points}
    assert set(types) == {"input", "output"}
    assert all(p.sum > 0 and p.count == 1 for p in types.values())
    assert types["input"].explicit_bounds[-1] == 4**13

    cost = metrics["pygent.client.cost"]
    assert cost.unit == "USD"
    (spent,) = cost.data.data_points
    assert spent.value > 0
    assert spent.attributes == {
        "gen_ai.provider.name": "openrouter",
        "gen_ai.request.model": "openai/gpt-4o-mini",
    }

    (failure,) = metrics["pygent.client.failures"].data.data_points
    assert failure.value == 1
    assert failure.attributes["error.type"] == "ProviderUnavailableError"
    assert failure.attributes["gen_ai.provider.name"] == "ollama"

    states = {
        p.attributes["gen_ai.provider.name"]: p.value
        for p in metrics["pygent.breaker.state"].data.data_points
    }
    assert states["ollama"] == 0  # closed: one failure of three
    assert states["openrouter"] == 0


@pytest.mark.live_local
async def test_breaker_gauge_reports_an_open_circuit(
    otel: Telemetry, loop_server: LoopbackServer
) -> None:
    loop_server.script("ollama", [Fault.status(503)])
    await chain_backend(loop_server, breaker_failures=1, breaker_cooldown=60).generate(PROMPT)
    states = {
        (p.attributes["gen_ai.provider.name"], p.attributes.get("gen_ai.request.model")): p.value
        for p in otel.metrics()["pygent.breaker.state"].data.data_points
    }
    assert states[("ollama", "llama3.2")] == 2  # open


@pytest.mark.parametrize("reported", [float("nan"), -1.0, float("inf"), 5_000.0])
def test_an_implausible_cost_is_no_spend_on_the_span_or_the_counter(
    otel: Telemetry, reported: float
) -> None:
    # As in the usage accounting (usage.message_usage): a provider fault, never spend.
    model = ScriptedChatModel(provider="fake", outcomes=["a", "b"], cost_per_call=[reported, 0.002])
    model.invoke("first")
    model.invoke("second")
    first, second = otel.chats()
    assert "pygent.cost_usd" not in first.attributes
    assert second.attributes["pygent.cost_usd"] == 0.002
    (spent,) = otel.metrics()["pygent.client.cost"].data.data_points
    assert spent.value == 0.002
