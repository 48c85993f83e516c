"""Live-local tier: real solves on the embedded llama.cpp model (SmolLM2-135M).

The model is tiny and weak: these tests check the structure of what comes
back (a tree, calls, usage from the local provider), not whether it is right.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pygent_lc.agents import AgentFactory, ReasoningAgent

pytestmark = pytest.mark.live_local


async def test_reasoning_agent_solves_on_the_local_model() -> None:
    agent = await AgentFactory().create_agent(
        "reasoning",
        custom_config={
            "provider": "local",
            "max_depth": 1,
            "n_select_sample": 1,
            "n_evaluate_sample": 1,
            "max_tokens": 16,
            "temperature": 0.0,
        },
    )
    assert isinstance(agent, ReasoningAgent)
    result = await agent.solve("What is 2 + 2?")
    stats = result.stats
    assert stats.generation_calls == 1
    assert stats.evaluation_calls == len(result.tree.nodes) - 1 >= 1  # one value call a child
    assert stats.failed_calls == 0
    assert result.best is not None and result.best.text.strip()
    assert result.best.path == [result.best.path[0]]  # depth 1: one thought below the problem
    [entry] = agent.usage.summary().values()
    assert entry.provider == "local"
    assert entry.usage.calls == stats.llm_calls
    assert 0 < entry.usage.output_tokens <= 16 * stats.llm_calls
    assert result.to_mermaid().startswith("flowchart TD")


def test_cli_solve_on_a_fresh_machine_answers_from_the_local_model() -> None:
    """The README's first command, with a smaller search: no key, no Ollama."""
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("pygent-lc")),
            "solve",
            "Name three primary colours.",
            "--depth",
            "1",
            "--breadth",
            "1",
            "--max-tokens",
            "16",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),  # conftest removed every OPENROUTER_/OLLAMA_/PYGENT_ variable
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["providers"] == ["local"]  # openrouter and ollama skipped: not configured
    assert data["served_by"] == [f"local/{data['usage'][0]['model']}"]
    assert data["answer"].strip()
    assert data["stats"]["llm_calls"] == 1 + data["stats"]["evaluation_calls"]
    assert "served by local/" in proc.stderr
