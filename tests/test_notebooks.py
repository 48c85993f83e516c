"""The notebooks run top to bottom, offline, so they cannot rot (executed with nbclient).

They use the loopback server (so: live_local) and a fresh Jupyter kernel each;
every cell must run without error, and each notebook must show what it is for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = pytest.mark.live_local

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(name: str) -> list[dict[str, Any]]:
    """Run ``name`` in a fresh kernel (cwd: notebooks/) and return every output."""
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbclient.NotebookClient(
        book,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    return [output for cell in book.cells if cell.cell_type == "code" for output in cell.outputs]


def text_of(outputs: list[dict[str, Any]]) -> str:
    parts = [o.get("text", "") for o in outputs]
    parts += [o.get("data", {}).get("text/markdown", "") for o in outputs]
    parts += [o.get("data", {}).get("text/plain", "") for o in outputs]
    return "\n".join(parts)


def images(outputs: list[dict[str, Any]]) -> list[str]:
    return [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]


def test_the_notebooks_are_the_documented_three() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == [
        "01_quickstart",
        "02_tree_of_thought",
        "03_game24_benchmark",
    ]


def test_quickstart_shows_fallback_usage_and_cost() -> None:
    shown = text_of(execute("01_quickstart"))
    assert "echo: What is the capital of France?" in shown
    assert "ConfigurationError - invalid setting ollama_base_url" in shown
    assert "openrouter  openai/gpt-4o-mini" in shown
    assert "ollama      llama3.2" in shown  # served the call OpenRouter failed
    assert "sk-or-v1-notebook-demo" not in shown


def test_tree_of_thought_draws_the_tree() -> None:
    outputs = execute("02_tree_of_thought")
    shown = text_of(outputs)
    assert "solved: True" in shown
    assert "levels seen: [1, 2, 3, 4]" in shown
    assert "```mermaid\nflowchart TD" in shown
    [picture] = images(outputs)
    assert len(picture) > 10_000  # a real PNG, base64


def test_benchmark_has_a_table_and_a_plot() -> None:
    outputs = execute("03_game24_benchmark")
    shown = text_of(outputs)
    assert "| beam | success | calls/puzzle |" in shown
    assert len(shown.split("paper BFS calls/puzzle")[1].strip().splitlines()) >= 4
    [plot] = images(outputs)
    assert len(plot) > 10_000
