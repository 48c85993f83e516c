"""``ChatAgent``: history, parameters, streams and failures, on fakes and on the loopback
Ollama.
"""

from __future__ import annotations

import pytest

from pygent_lc.agents import AgentFactory, ChatAgent
from pygent_lc.errors import (
    InvalidInputError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
)
from pygent_lc.testing import ScriptedChatModel
from tests.agents.fakes import settings_for
from tests.loopback_server import LoopbackServer


async def test_chat_agent_remembers_the_conversation_and_sends_parameters() -> None:
    model = ScriptedChatModel(provider="fake", outcomes=["Hi Ada.", "Your name is Ada."])
    agent = ChatAgent(model, system_prompt="Be terse.", max_tokens=16, temperature=0.1)
    assert await agent.process("I am Ada.") == "Hi Ada."
    assert await agent.process("Who am I?") == "Your name is Ada."
    assert [m.text for m in agent.history] == [
        "I am Ada.",
        "Hi Ada.",
        "Who am I?",
        "Your name is Ada.",
    ]
    assert model.calls[-1]["max_tokens"] == 16
    assert model.calls[-1]["temperature"] == 0.1
    assert agent.usage.totals().calls == 2
    agent.reset()
    assert agent.history == []


async def test_chat_agent_streams_and_keeps_partial_text_on_failure() -> None:
    model = ScriptedChatModel(
        provider="fake",
        outcomes=[
            "one two three",
            ("half a", RateLimitError("slow down", provider="fake")),
        ],
    )
    agent = ChatAgent(model)
    assert [piece async for piece in agent.stream("count")] == ["one", " two", " three"]
    with pytest.raises(StreamInterruptedError) as caught:
        async for _ in agent.stream("again"):
            pass
    assert caught.value.partial_text == "half a"
    assert len(agent.history) == 2  # the broken exchange is not remembered


async def test_chat_agent_rejects_empty_replies_and_prompts() -> None:
    agent = ChatAgent(ScriptedChatModel(provider="fake", outcomes=["  "]))
    with pytest.raises(ProviderUnavailableError, match="no text"):
        await agent.process("hello")
    with pytest.raises(InvalidInputError):
        await agent.process("   ")


# --- on the loopback server ---------------------------------------------------


@pytest.mark.live_local
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
