"""Tree export: JSON for tools, Mermaid for people."""

from __future__ import annotations

import json

from pygent_lc.tot.node import ThoughtNode, ThoughtTree

_LABEL_LIMIT = 60
# Characters Mermaid would read as syntax inside a quoted label, as entity codes.
_MERMAID_ESCAPES = {'"': "#quot;", "<": "#lt;", ">": "#gt;"} | {
    ch: f"#{ord(ch)};" for ch in "#`[]{}|"
}


def tree_to_json(tree: ThoughtTree, *, indent: int | None = 2) -> str:
    return json.dumps(tree.model_dump(mode="json"), indent=indent, ensure_ascii=False)


def _label(node: ThoughtNode) -> str:
    text = " ".join(node.text.split())
    if len(text) > _LABEL_LIMIT:
        text = text[: _LABEL_LIMIT - 1] + "…"
    text = "".join(_MERMAID_ESCAPES.get(ch, ch) for ch in text)
    notes = []
    if node.value is not None:
        notes.append(f"v={node.value:.3g}")
    if node.error is not None:
        notes.append("error")
    suffix = f" ({', '.join(notes)})" if notes else ""
    return text + suffix


def node_kind(node: ThoughtNode) -> str | None:
    """How a drawing should mark the node: error, solution, selected, pruned, or nothing."""
    if node.error is not None:
        return "error"
    if node.final and node.correct is not False and node.selected:
        return "solution"
    if node.selected:
        return "selected"
    if node.pruned:
        return "pruned"
    return None


def tree_to_mermaid(tree: ThoughtTree, *, highlight: list[int] | None = None) -> str:
    """A ``flowchart TD`` of the tree; ``highlight`` (node ids) draws a path in bold."""
    on_path = set(highlight or [])
    lines = ["flowchart TD"]
    for node in tree.nodes:
        lines.append(f'    n{node.id}["{_label(node)}"]')
    for node in tree.nodes:
        if node.parent is not None:
            arrow = "==>" if node.id in on_path and node.parent in on_path else "-->"
            lines.append(f"    n{node.parent} {arrow} n{node.id}")
    lines += [
        "    classDef selected fill:#dbeafe,stroke:#1d4ed8",
        "    classDef solution fill:#dcfce7,stroke:#15803d,stroke-width:2px",
        "    classDef pruned fill:#f3f4f6,stroke:#9ca3af,color:#6b7280",
        "    classDef error fill:#fee2e2,stroke:#b91c1c",
    ]
    for node in tree.nodes:
        css = node_kind(node)
        if css is not None:
            lines.append(f"    class n{node.id} {css}")
    return "\n".join(lines) + "\n"
