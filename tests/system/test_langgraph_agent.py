"""A LangGraph ReAct agent (``langgraph.prebuilt.create_react_agent``) with one tool,
on the default chain (``build_chat_model(Settings())``): with no OpenRouter key and
no Ollama server, the embedded SmolLM2-135M answers, and calls the tool.

The tool loop itself is checked offline, call by call, in
``tests/providers/test_local.py``; this is the smoke run on the real model. The
135M model calls the tool for most questions that need it, not all, and does
not reliably answer from its result rather than call again; so each run is
checked for form (every call a valid call of the tool, each result fed back,
the last message text) and the tool must have been used in one of three runs.
"""

from __future__ import annotations

import logging
import warnings

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from pygent_lc import ProviderSkippedWarning, Settings, build_chat_model
from pygent_lc.chain import fallback_notices
from tests.helpers import closed_port

pytestmark = pytest.mark.live_local


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny and 21 degrees in {city}"


CITIES = ("Paris", "Berlin", "Tokyo")


def test_a_react_agent_on_the_default_chain_uses_its_tool_on_local(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from langgraph.prebuilt import create_react_agent

    # No key (OpenRouter is skipped), and Ollama where nothing listens: the chain
    # falls back to local.
    monkeypatch.setenv("OLLAMA_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("OLLAMA_MODEL", "llama3.2")
    with pytest.warns(ProviderSkippedWarning, match="openrouter"):
        model = build_chat_model(Settings())
    with warnings.catch_warnings():
        # langgraph 1.x: "create_react_agent has moved to langchain.agents"
        warnings.simplefilter("ignore", DeprecationWarning)
        # Greedy decoding; even so the model now and then answers without the tool. A tool
        # call is served whole within one deadline, so a reply the model repeats itself in
        # is cut well short of it on a loaded machine (a call and an answer need ~40 tokens).
        agent = create_react_agent(model.bind(temperature=0, max_tokens=256), [get_weather])
    fallback_notices.reset()
    runs = []
    try:
        with caplog.at_level(logging.WARNING, logger="pygent_lc.fallbacks"):
            for city in CITIES:
                question = {"messages": [("user", f"What is the weather in {city}?")]}
                runs.append(agent.invoke(question, {"recursion_limit": 6})["messages"])
    finally:
        fallback_notices.reset()
        model.close()
    used_the_tool = 0
    for messages in runs:
        calls = [call for m in messages if isinstance(m, AIMessage) for call in m.tool_calls]
        assert all(call["name"] == "get_weather" and call["args"].get("city") for call in calls)
        ran = [m.content for m in messages if isinstance(m, ToolMessage)]
        assert ran == [f"sunny and 21 degrees in {call['args']['city']}" for call in calls]
        final = messages[-1]
        assert isinstance(final, AIMessage) and final.tool_calls == []
        assert isinstance(final.content, str) and final.content.strip()
        used_the_tool += bool(calls)
    assert used_the_tool, "the model called the tool for none of the cities"
    # Each kind of fallback once: the same again within a minute is not logged again
    # (after a few refused calls Ollama's circuit opens: another reason).
    fallbacks = [r.getMessage() for r in caplog.records if r.name == "pygent_lc.fallbacks"]
    assert fallbacks[0] == "fell back: ollama failed (connection refused); local answered"
    assert len(fallbacks) == len(set(fallbacks))
