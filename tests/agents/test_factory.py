"""``AgentFactory``: agent types, names, and the settings each agent gets (no sockets);
its checks of each provider an agent names: its configuration (no sockets), then what
only its server can tell (the loopback server).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pygent_lc import Settings
from pygent_lc.agents import AgentError, AgentFactory, ChatAgent, ReasoningAgent
from pygent_lc.errors import ModelNotFoundError, ProviderUnavailableError
from pygent_lc.tot.tasks.game24 import Game24Task
from tests.agents.fakes import settings_for
from tests.helpers import closed_port
from tests.loopback_server import LoopbackServer


async def test_unknown_type_and_provider_fail_before_any_agent_exists() -> None:
    factory = AgentFactory(Settings())
    with pytest.raises(AgentError, match="unknown agent type 'planner'"):
        await factory.create_agent("planner")
    with pytest.raises(AgentError, match="unknown provider 'anthropic'"):
        await factory.create_agent("reasoning", custom_config={"provider": "anthropic"})
    assert factory.agents == {}


async def test_bad_tot_and_chat_settings_are_agent_errors() -> None:
    settings = Settings(openrouter_api_key="sk-or-v1-x", providers=["openrouter"])
    factory = AgentFactory(settings)
    with pytest.raises(AgentError, match="max_depth") as caught:
        await factory.create_agent("reasoning", custom_config={"max_depth": 0})
    assert type(caught.value) is AgentError
    with pytest.raises(AgentError, match="temperature"):
        await factory.create_agent("chat", custom_config={"temperature": 9})
    with pytest.raises(AgentError, match="ollama_url"):
        await factory.create_agent("chat", custom_config={"ollama_url": "localhost:11434"})


async def test_factory_names_agents_and_refuses_duplicates() -> None:
    factory = AgentFactory(Settings(openrouter_api_key="sk-or-v1-x", providers=["openrouter"]))
    first = await factory.create_agent("reasoning")
    named = await factory.create_agent("chat", name="helper")
    assert isinstance(first, ReasoningAgent)
    assert isinstance(named, ChatAgent)
    assert first.name == "reasoning-1"
    assert factory.get_agent("helper") is named
    assert first.providers == ["openrouter"]
    assert first.config.max_concurrency == 8  # a cloud provider's concurrency
    with pytest.raises(AgentError, match="already exists"):
        await factory.create_agent("chat", name="helper")
    factory.remove_agent("helper")
    with pytest.raises(AgentError, match="no agent named"):
        factory.get_agent("helper")


async def test_game24_agent_gets_four_steps_and_local_concurrency() -> None:
    factory = AgentFactory(Settings(ollama_model="llama3.2", providers=["ollama"]))
    agent = await factory.create_agent("reasoning", custom_config={"task": "game24"})
    assert isinstance(agent, ReasoningAgent)
    assert isinstance(agent.task, Game24Task)
    assert agent.config.max_depth == Game24Task.STEPS
    assert agent.config.max_concurrency == 2


async def test_a_value_cache_the_engine_cannot_open_is_an_agent_error(tmp_path: Path) -> None:
    (tmp_path / "notes.sqlite").write_text("not a database")
    factory = AgentFactory(Settings(ollama_model="llama3.2", providers=["ollama"]))
    with pytest.raises(AgentError, match="value cache") as caught:
        await factory.create_agent(
            "reasoning", custom_config={"value_cache": str(tmp_path / "notes.sqlite")}
        )
    assert caught.value.field == "value_cache"
    assert factory.agents == {}


# --- the checks of each provider ---------------------------------------------


async def test_openrouter_without_a_key_is_an_agent_error() -> None:
    with pytest.raises(AgentError, match="OPENROUTER_API_KEY") as caught:
        await AgentFactory(Settings()).create_agent(
            "reasoning", custom_config={"provider": "openrouter"}
        )
    assert type(caught.value) is AgentError
    assert caught.value.field == "openrouter_api_key"


async def test_ollama_without_a_model_is_an_agent_error() -> None:
    with pytest.raises(AgentError, match="OLLAMA_MODEL") as caught:
        await AgentFactory(Settings()).create_agent("chat", custom_config={"provider": "ollama"})
    assert type(caught.value) is AgentError


async def test_auto_with_nothing_usable_lists_every_reason() -> None:
    settings = Settings(providers=["openrouter", "ollama"])
    with pytest.raises(AgentError, match="no provider is usable") as caught:
        await AgentFactory(settings).create_agent("reasoning")
    assert "OPENROUTER_API_KEY" in str(caught.value)
    assert "OLLAMA_MODEL" in str(caught.value)


# --- on the loopback server ---------------------------------------------------


@pytest.mark.live_local
async def test_ollama_down_is_provider_unavailable(server: LoopbackServer) -> None:
    factory = AgentFactory(settings_for(server))
    with pytest.raises(ProviderUnavailableError, match="did not answer") as caught:
        await factory.create_agent(
            "reasoning",
            custom_config={"provider": "ollama", "ollama_url": f"http://127.0.0.1:{closed_port()}"},
        )
    assert type(caught.value) is ProviderUnavailableError
    assert "ollama serve" in str(caught.value)


@pytest.mark.live_local
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


@pytest.mark.live_local
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
