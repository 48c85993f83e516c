"""The public names the package promises (agents and notebooks are written against them),
pinned.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

from langchain_core.language_models import BaseChatModel

import pygent_lc
import pygent_lc.errors
import pygent_lc.providers


def test_top_level_all() -> None:
    assert set(pygent_lc.__all__) == {
        "LLMBackend",
        "LangChainBackend",
        "LocalChatModel",
        "OllamaChatModel",
        "OpenRouterChatModel",
        "ProviderChain",
        "ProviderSkippedWarning",
        "Settings",
        "UsageSummary",
        "UsageTotals",
        "UsageTracker",
        "__version__",
        "build_chat_model",
        "errors",
    }
    for name in pygent_lc.__all__:
        assert getattr(pygent_lc, name) is not None


def test_the_names_a_langchain_user_reaches_for_first() -> None:
    chain = pygent_lc.build_chat_model("ollama:llama3.2")
    assert isinstance(chain, pygent_lc.ProviderChain)
    assert isinstance(getattr(chain.providers[0], "bound", None), pygent_lc.OllamaChatModel)
    assert issubclass(pygent_lc.OpenRouterChatModel, BaseChatModel)
    assert issubclass(pygent_lc.LocalChatModel, BaseChatModel)
    assert pygent_lc.__version__ == version("pygent-lc")


def test_the_limits_a_user_builds_are_importable_from_the_limits_package() -> None:
    import pygent_lc.limits as limits

    for name in ("CostBudget", "CircuitBreaker", "RateLimit", "UsageTracker", "Hold"):
        assert name in limits.__all__
        assert isinstance(getattr(limits, name), type)


def test_importing_the_package_does_not_import_langchain_or_the_sdks() -> None:
    """The CLI's ``--help`` and a plain ``import pygent_lc`` stay fast: the public
    names load on first use."""
    code = (
        "import sys, pygent_lc\n"
        "heavy = [m for m in ('langchain_core', 'openai', 'ollama', 'httpx') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
        "pygent_lc.Settings\n"
        "print('pygent_lc.settings' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["", "True"]


def _package_modules() -> dict[str, Path]:
    root = Path(pygent_lc.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports_of(name: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """The package's own modules that ``name`` imports anywhere in its file: at the top,
    inside functions and under ``TYPE_CHECKING`` alike."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            for alias in node.names:  # ``from package import module`` imports that module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {module for module in found if module in modules and module != name}


def test_every_module_imports_and_the_import_graph_has_no_cycle() -> None:
    modules = _package_modules()
    for name in modules:
        if not name.endswith("__main__"):
            importlib.import_module(name)
    graph = {name: _imports_of(name, path, modules) for name, path in modules.items()}
    cycles = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycles.append(" -> ".join([*path[path.index(name) :], name]))
            return
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert cycles == []


def test_the_cycle_check_sees_a_cycle(tmp_path: Path) -> None:
    """The graph above would show a cycle made of a local and a type-only import."""
    (tmp_path / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n"
    )
    modules = {"pkg.a": tmp_path / "a.py", "pkg.b": tmp_path / "b.py"}
    assert _imports_of("pkg.a", modules["pkg.a"], modules) == {"pkg.b"}
    assert _imports_of("pkg.b", modules["pkg.b"], modules) == {"pkg.a"}
