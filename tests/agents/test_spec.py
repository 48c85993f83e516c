"""``custom_config``: read and checked by ``parse_spec`` before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from pygent_lc.agents import AgentError
from pygent_lc.agents.spec import parse_spec


@pytest.mark.parametrize(
    ("agent_type", "config", "field"),
    [
        ("planner", {}, "agent_type"),
        (None, {}, "agent_type"),
        ("reasoning", {"provider": "anthropic"}, "provider"),
        ("reasoning", {"provider": "local", "fallbacks": ["gemini"]}, "fallbacks"),
        ("reasoning", {"provider": "local", "fallbacks": ["local"]}, "fallbacks"),
        ("reasoning", {"model_name": "llama3.2"}, "model_name"),  # auto has no one model
        ("reasoning", {"temprature": 0.2}, "temprature"),
        ("reasoning", {"task": "chess"}, "task"),
        ("reasoning", {"check_model": "yes"}, "check_model"),
        ("chat", {"max_depth": 3}, "max_depth"),  # a ToT setting on a chat agent
        ("chat", {"task": "game24"}, "task"),
        ("chat", {"tot": {"max_depth": 3}}, "tot"),  # fields of AgentSpec, not keys
        ("chat", {"agent_type": "reasoning"}, "agent_type"),
        ("reasoning", {"fallbacks": 5}, "fallbacks"),
        ("reasoning", {"openrouter_api_key": " "}, "openrouter_api_key"),
        ("reasoning", {"provider": "ollama", "system_prompt": 3}, "system_prompt"),
    ],
)
def test_bad_requests_raise_agent_error_naming_the_field(
    agent_type: Any, config: dict[str, Any], field: str
) -> None:
    with pytest.raises(AgentError) as caught:
        parse_spec(agent_type, config)
    assert type(caught.value) is AgentError
    assert caught.value.field == field


def test_spec_reads_every_documented_key() -> None:
    spec = parse_spec(
        "Reasoning",
        {
            "provider": "Ollama",
            "model_name": "llama3.2",
            "ollama_url": "http://127.0.0.1:1",
            "openrouter_api_key": "sk-or-v1-secret-value",
            "fallbacks": "openrouter, local",
            "task": "game24",
            "max_depth": 2,
        },
    )
    assert (spec.agent_type, spec.provider, spec.task) == ("reasoning", "ollama", "game24")
    assert spec.fallbacks == ("openrouter", "local")
    assert spec.tot == {"max_depth": 2}
    assert "sk-or-v1-secret-value" not in repr(spec)


def test_messages_name_the_key_and_the_choices() -> None:
    with pytest.raises(
        AgentError, match="unknown agent type 'planner'; choose from reasoning, chat"
    ):
        parse_spec("planner", {})
    with pytest.raises(
        AgentError, match=r"custom_config task: unknown task 'chess'; choose from generic, game24"
    ):
        parse_spec("reasoning", {"task": "chess"})
    with pytest.raises(AgentError, match="unknown custom_config key 'max_depth' for a chat agent"):
        parse_spec("chat", {"max_depth": 3, "temperature": 0.5})
    with pytest.raises(AgentError, match="custom_config check_model: must be true or false"):
        parse_spec("reasoning", {"check_model": 1})


def test_chat_spec_keeps_only_its_generation_settings() -> None:
    spec = parse_spec(" Chat ", {"temperature": 0.3, "fallbacks": None, "provider": " AUTO "})
    assert (spec.agent_type, spec.provider, spec.fallbacks) == ("chat", "auto", ())
    assert spec.tot == {"temperature": 0.3}
