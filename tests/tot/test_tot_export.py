"""ToTResult exports: JSON (whole result and tree) and Mermaid."""

from __future__ import annotations

import json

from pygent_lc.testing import ScriptedBackend
from pygent_lc.tot import ThoughtTree, ToTConfig, ToTEngine, ToTResult
from pygent_lc.tot.result import tree_to_mermaid
from tests.tot.conftest import Reply


async def _result(scripted: type[ScriptedBackend], ladder: Reply) -> ToTResult:
    config = ToTConfig(n_evaluate_sample=2, n_select_sample=2, max_depth=2)
    return await ToTEngine(config, scripted(ladder)).solve('Say "hi" <now> [please] #1')


async def test_json_export_round_trips(scripted, ladder):
    result = await _result(scripted, ladder)
    data = json.loads(result.to_json())
    assert data["problem"] == result.problem
    assert data["stats"]["llm_calls"] == result.stats.llm_calls
    assert data["config"]["max_depth"] == 2
    nodes = data["tree"]["nodes"]
    assert len(nodes) == result.stats.nodes
    first = nodes[1]
    for key in ("id", "text", "depth", "parent", "scores", "value", "selected", "pruned", "error"):
        assert key in first
    assert ToTResult.model_validate_json(result.to_json()) == result


async def test_tree_json_export(scripted, ladder):
    result = await _result(scripted, ladder)
    tree = ThoughtTree.model_validate_json(result.tree_json())
    assert tree == result.tree
    assert tree.path(tree.nodes[-1])[0].startswith("step")


async def test_mermaid_export(scripted, ladder):
    result = await _result(scripted, ladder)
    chart = result.to_mermaid()
    lines = chart.splitlines()
    assert lines[0] == "flowchart TD"
    for node in result.tree.nodes:
        assert any(line.strip().startswith(f"n{node.id}[") for line in lines)
        if node.parent is not None:
            assert any(
                f"n{node.parent} -->" in line or f"n{node.parent} ==>" in line for line in lines
            )
    # the problem's quotes and brackets are escaped, not Mermaid syntax
    root_line = next(line for line in lines if line.strip().startswith("n0["))
    assert '"hi"' not in root_line
    assert "#quot;hi#quot;" in root_line
    assert "#lt;now#gt;" in root_line
    assert "#91;please#93;" in root_line
    assert root_line.count('"') == 2
    # the best path is drawn bold, pruned nodes get their class
    assert "n0 ==> n1" in chart
    assert any(line.strip().startswith("class ") and "pruned" in line for line in lines)
    assert "classDef solution" in chart


async def test_mermaid_marks_errors_and_truncates_long_text(scripted):
    from pygent_lc.errors import ProviderUnavailableError

    long_thought = "x" * 200

    def reply(prompt: str) -> str:
        return long_thought if "Possible next steps:" in prompt else "Score: 5"

    def fail(prompt: str, index: int) -> ProviderUnavailableError | None:
        if index == 2:
            return ProviderUnavailableError("down", provider="fake")
        return None

    config = ToTConfig(n_evaluate_sample=2, max_depth=1, adaptive_sampling=False)
    result = await ToTEngine(config, scripted(reply, fail=fail)).solve("q")
    chart = tree_to_mermaid(result.tree)
    node_line = next(line for line in chart.splitlines() if line.strip().startswith("n1["))
    assert "…" in node_line
    assert len(node_line) < 120
    assert "class n1 error" in chart
