"""The factory's network checks and agents on each provider, against the loopback server.

The loopback server speaks OpenRouter's and Ollama's APIs; its responder
here plays the Game of 24 (``scripted_game24_reply``), so a reasoning agent
really solves a puzzle through the real provider classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from helpers import closed_port, loopback_settings
from loopback_server import Fault, LoopbackServer
from loopback_server.answers import last_user_text

from benchmarks.game24_model import scripted_game24_reply
from pygent_lc import Settings
from pygent_lc.agents import AgentFactory, ChatAgent, ReasoningAgent
from pygent_lc.cli.doctor import diagnose
from pygent_lc.errors import ModelNotFoundError, ProviderUnavailableError
from pygent_lc.tot import check_24

pytestmark = pytest.mark.live_local

KEY = "sk-or-v1-agents-loopback-key"


def game24_responder(protocol: str, body: Mapping[str, Any]) -> str:
    return scripted_game24_reply(last_user_text(body))


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(
        ollama_models=["llama3.2:latest", "qwen2.5:0.5b"], responder=game24_responder, api_key=KEY
    ) as live:
        yield live


def settings_for(server: LoopbackServer, **changes: Any) -> Settings:
    """The shared loopback settings with this server's key and no retries."""
    values: dict[str, Any] = {
        "openrouter_api_key": KEY,
        "retry_initial_wait": 0.0,
        "retry_max_wait": 0.0,
        "max_retries": 0,
    }
    return loopback_settings(server, **{**values, **changes})


async def test_ollama_down_is_provider_unavailable(server: LoopbackServer) -> None:
    factory = AgentFactory(settings_for(server))
    with pytest.raises(ProviderUnavailableError, match="did not answer") as caught:
        await factory.create_agent(
            "reasoning",
            custom_config={"provider": "ollama", "ollama_url": f"http://127.0.0.1:{closed_port()}"},
        )
    assert type(caught.value) is ProviderUnavailableError
    assert "ollama serve" in str(caught.value)


async def test_ollama_without_the_model_lists_the_installed_ones(server: LoopbackServer) -> None:
    factory = AgentFactory(settings_for(server))
    with pytest.raises(ModelNotFoundError) as caught:
        await factory.create_agent(
            "reasoning", custom_config={"provider": "ollama", "model_name": "mistral"}
        )
    assert type(caught.value) is ModelNotFoundError
    assert "llama3.2:latest, qwen2.5:0.5b" in str(caught.value)
    assert "ollama pull mistral" in str(caught.value)
    assert [r.path for r in server.all_requests()] == ["/api/tags"]  # checked, not chatted


async def test_openrouter_model_is_checked_in_the_catalog_when_asked(
    server: LoopbackServer,
) -> None:
    factory = AgentFactory(settings_for(server))
    with pytest.raises(ModelNotFoundError, match="did you mean openai/gpt-4o-mini") as caught:
        await factory.create_agent(
            "chat",
            custom_config={
                "provider": "openrouter",
                "model_name": "openai/gpt-4o-mni",
                "check_model": True,
            },
        )
    assert type(caught.value) is ModelNotFoundError
    agent = await factory.create_agent(
        "chat", custom_config={"provider": "openrouter", "check_model": True}
    )
    assert isinstance(agent, ChatAgent)
    # The catalog is asked once (then cached), and never without check_model.
    await factory.create_agent("chat", custom_config={"provider": "openrouter"})
    assert [r.path for r in server.all_requests()] == ["/api/v1/models"]


@pytest.mark.parametrize("provider", ["openrouter", "ollama"])
async def test_reasoning_agent_solves_game24_on_each_provider(
    server: LoopbackServer, provider: str
) -> None:
    factory = AgentFactory(settings_for(server))
    agent = await factory.create_agent(
        "reasoning", custom_config={"provider": provider, "task": "game24", "n_select_sample": 2}
    )
    assert isinstance(agent, ReasoningAgent)
    result = await agent.solve("4 9 10 13")
    assert result.solved
    assert result.best is not None and result.best.correct is True
    assert check_24(await agent.process("1 1 4 6"), "1 1 4 6")
    [entry] = agent.usage.summary().values()
    assert entry.provider == provider
    assert entry.usage.calls == server.request_count(provider)  # type: ignore[arg-type]
    if provider == "openrouter":
        assert entry.usage.cost_usd > 0  # OpenRouter's usage.cost, summed
    else:
        assert entry.usage.cost_usd == 0


async def test_reasoning_agent_falls_back_when_openrouter_is_down(server: LoopbackServer) -> None:
    server.script("openrouter", [Fault.status(503)] * 200)
    factory = AgentFactory(settings_for(server))
    agent = await factory.create_agent(
        "reasoning",
        custom_config={
            "provider": "openrouter",
            "fallbacks": ["ollama"],
            "task": "game24",
            "n_select_sample": 1,
        },
    )
    result = await agent.solve("4 9 10 13")
    assert result.solved
    served = {key[0]: entry for key, entry in agent.usage.summary().items()}
    assert served["ollama"].usage.calls == result.stats.llm_calls
    assert served["openrouter"].usage.failures == served["openrouter"].usage.calls > 0


async def test_chat_agent_streams_from_ollama(server: LoopbackServer) -> None:
    server.responder = lambda protocol, body: f"{protocol} says hello"
    agent = await AgentFactory(settings_for(server)).create_agent(
        "chat", custom_config={"provider": "ollama", "max_tokens": 8}
    )
    assert isinstance(agent, ChatAgent)
    assert "".join([piece async for piece in agent.stream("hi")]) == "ollama says hello"
    [request] = server.requests("ollama")
    assert request.json["options"]["num_predict"] == 8
    assert request.json["messages"][0]["role"] == "system"


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
