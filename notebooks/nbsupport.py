"""Pictures of thought trees for the notebooks: ``draw_tree`` (matplotlib) and ``mermaid``.

Only ``pygent_lc`` and matplotlib: the notebooks run on the chain you have
configured (OpenRouter, Ollama or the embedded local model), nothing else.
"""

from __future__ import annotations

import textwrap
from typing import Any

from pygent_lc.tot import ToTResult
from pygent_lc.tot.result import node_kind

__all__ = ["draw_tree", "mermaid"]

_COLOURS = {
    "solution": ("#dcfce7", "#15803d"),
    "selected": ("#dbeafe", "#1d4ed8"),
    "pruned": ("#f3f4f6", "#9ca3af"),
    "error": ("#fee2e2", "#b91c1c"),
    None: ("#ffffff", "#6b7280"),
}


def mermaid(result: ToTResult) -> Any:
    """The tree as Mermaid, rendered by JupyterLab >= 4.1, VS Code and GitHub."""
    from IPython.display import Markdown

    return Markdown(f"```mermaid\n{result.to_mermaid()}```")  # type: ignore[no-untyped-call]


def _layout(result: ToTResult) -> dict[int, tuple[float, float]]:
    """Leaves side by side in search order, each parent centred over its children."""
    tree = result.tree
    children: dict[int, list[int]] = {node.id: [] for node in tree.nodes}
    for node in tree.nodes:
        if node.parent is not None:
            children[node.parent].append(node.id)
    positions: dict[int, tuple[float, float]] = {}
    next_x = 0.0

    def place(node_id: int, depth: int) -> float:
        nonlocal next_x
        kids = children[node_id]
        if kids:
            xs = [place(kid, depth + 1) for kid in kids]
            x = (xs[0] + xs[-1]) / 2
        else:
            x, next_x = next_x, next_x + 1.0
        positions[node_id] = (x, -float(depth))
        return x

    place(tree.root.id, 0)
    return positions


def draw_tree(result: ToTResult, *, label_width: int = 16, ax: Any = None) -> Any:
    """A matplotlib picture of the search tree: kept states blue, the answer green.

    Pruned states are drawn as small grey dots without text, so wide trees
    stay readable; the best path is drawn in bold.
    """
    import matplotlib.pyplot as plt

    positions = _layout(result)
    nodes = {node.id: node for node in result.tree.nodes}
    leaves = sum(
        1
        for node in result.tree.nodes
        if not any(other.parent == node.id for other in result.tree.nodes)
    )
    depth = max(node.depth for node in result.tree.nodes)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(2.0 + 1.3 * leaves, 18), 1.6 + 1.5 * depth))
    best_path = (
        set(result.tree.path_ids(result.tree.get(result.best.node_id))) if result.best else set()
    )
    for node in nodes.values():
        if node.parent is None:
            continue
        (x0, y0), (x1, y1) = positions[node.parent], positions[node.id]
        bold = node.id in best_path and node.parent in best_path
        ax.plot(
            [x0, x1],
            [y0, y1],
            color="#15803d" if bold else "#cbd5e1",
            linewidth=2.5 if bold else 0.8,
            zorder=1,
        )
    for node in nodes.values():
        x, y = positions[node.id]
        kind = node_kind(node)
        fill, edge = _COLOURS[kind]
        if kind == "pruned":
            ax.scatter([x], [y], s=30, color=edge, zorder=2)
            continue
        text = node.text if node.parent is not None else f"problem: {node.text}"
        label = textwrap.fill(textwrap.shorten(text, 60, placeholder="..."), label_width)
        if node.value is not None:
            label += f"\nv={node.value:.3g}"
        ax.text(
            x,
            y,
            label,
            ha="center",
            va="center",
            fontsize=7,
            zorder=3,
            bbox={"boxstyle": "round,pad=0.3", "facecolor": fill, "edgecolor": edge},
        )
    ax.margins(x=0.12, y=0.3)  # room for the boxes at the edges
    ax.set_axis_off()
    ax.set_title(
        f"{result.task}: {textwrap.shorten(result.problem, 50, placeholder='...')}  "
        f"({len(nodes)} states, {'solved' if result.solved else 'not solved'})",
        fontsize=10,
    )
    return ax
