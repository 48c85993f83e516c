"""The notebooks run top to bottom on the embedded model, so they cannot rot (nbclient).

They run on whatever chain ``Settings()`` configures; the test environment has
no ``OPENROUTER_*`` / ``OLLAMA_*`` / ``PYGENT_*`` variables (see conftest), so
here that is the embedded SmolLM2-135M (live_local). Each notebook gets a fresh
kernel importing this checkout's ``pygent_lc``; every cell must run without
error within ``CELL_TIMEOUT_S``. The model is tiny, so the checks are about
structure (a picture, a table, typed errors), never about right answers.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_quickstart", "02_tree_of_thought", "03_game24_benchmark"]
#: Per cell. On an idle 2-core machine the slowest cell (03's three capped puzzles)
#: takes about 10 s and all three notebooks about 25 s; CPU contention (another
#: llama.cpp server, say) can make each call 10-50 times slower.
CELL_TIMEOUT_S = 180
#: Per notebook, kernel start and the embedded server's start included.
NOTEBOOK_TIMEOUT_S = 360


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel inherits this environment: conftest has cleared the provider
    variables (so the embedded model is chosen); put this checkout first on its path."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), path])))


def execute(name: str) -> list[dict[str, Any]]:
    """Run ``name`` in a fresh kernel (cwd: notebooks/) and return every output."""
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbclient.NotebookClient(
        book,
        timeout=CELL_TIMEOUT_S,
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


def sources() -> dict[str, str]:
    """The code of each notebook and of the helper module, by file name."""
    code = {
        f"{name}.ipynb": "\n".join(
            cell.source
            for cell in nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells
            if cell.cell_type == "code"
        )
        for name in NAMES
    }
    code["nbsupport.py"] = (NOTEBOOKS / "nbsupport.py").read_text("utf-8")
    return code


def test_the_notebooks_are_the_documented_three() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", sorted(sources()))
def test_notebooks_use_only_the_installed_library(name: str) -> None:
    """What a user has: pygent_lc and matplotlib, no test doubles, no path hacks."""
    code = sources()[name]
    assert "sys.path" not in code
    imported = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", code, flags=re.MULTILINE)
    forbidden = {"tests", "benchmarks", "loopback_server"}
    assert not [module for module in imported if module.split(".")[0] in forbidden]
    assert "Scripted" not in code and "scripted_" not in code


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_have_no_outputs(name: str) -> None:
    book = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text("utf-8"))
    for cell in book["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.live_local
@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.usefixtures("kernel_env")
def test_quickstart_runs_on_the_embedded_model() -> None:
    shown = text_of(execute("01_quickstart"))
    assert "OpenRouter key set: False" in shown
    assert "ConfigurationError - invalid setting ollama_base_url" in shown
    assert "skipped: provider 'openrouter' skipped" in shown
    assert "chain: local" in shown
    assert re.search(r"^local\s+SmolLM2-135M\S*\s+calls=2 failures=0", shown, re.MULTILINE)
    assert "InvalidInputError (a PygentError: True) - temperature" in shown
    assert shown.count("InvalidInputError (a PygentError: True)") == 3
    assert shown.rstrip().endswith("closed")


@pytest.mark.live_local
@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.usefixtures("kernel_env")
def test_tree_of_thought_draws_the_tree() -> None:
    outputs = execute("02_tree_of_thought")
    shown = text_of(outputs)
    assert "| providers: ['local'] | depth 2 | beam 1" in shown
    assert re.search(r"levels seen: \[1(, 2)?\]", shown)
    assert re.search(r"^\d+ calls \(1 generation|^\d+ calls \(2 generation", shown, re.MULTILINE)
    assert "```mermaid\nflowchart TD" in shown
    assert "'stats'" in shown and "'tree'" in shown
    [picture] = images(outputs)
    assert len(picture) > 2_000  # a real PNG, base64


@pytest.mark.live_local
@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.usefixtures("kernel_env")
def test_game24_notebook_has_a_table_and_a_plot() -> None:
    outputs = execute("03_game24_benchmark")
    shown = text_of(outputs)
    assert "providers: ['local']" in shown
    assert "call cap per puzzle: 4" in shown
    assert "| puzzle | solved | calls | tokens |" in shown
    table = shown.split("| puzzle | solved |")[1].split("**")[0]
    assert len([line for line in table.strip().splitlines() if line.startswith("|")]) == 4
    assert re.search(r"\*\*\d of 3 solved\*\* on local", shown)
    [plot] = images(outputs)
    assert len(plot) > 2_000
