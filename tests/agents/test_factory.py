"""``AgentFactory``: agent types, names, and the settings each agent gets (no sockets)."""

from __future__ import annotations

import pytest

from pygent_lc import Settings
from pygent_lc.agents import AgentError, AgentFactory, ChatAgent, ReasoningAgent
from pygent_lc.tot.tasks.game24 import Game24Task


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
