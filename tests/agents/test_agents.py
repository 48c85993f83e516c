"""``pygent_lc.agents``: the public names."""

from __future__ import annotations

import pygent_lc.agents


def test_agents_all() -> None:
    assert set(pygent_lc.agents.__all__) == {
        "AGENT_TYPES",
        "PROVIDER_CHOICES",
        "TASK_NAMES",
        "Agent",
        "AgentError",
        "AgentFactory",
        "ChatAgent",
        "NoAnswerError",
        "ReasoningAgent",
        "SolveProgress",
    }
    for name in pygent_lc.agents.__all__:
        assert getattr(pygent_lc.agents, name) is not None
