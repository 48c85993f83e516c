"""What a search returns: every state it made, its solutions, best path and cost, and the
tree drawn for people (Mermaid)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pygent_lc.backend import UsageTotals
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.tasks.base import Task


class ThoughtNode(BaseModel):
    """One state (the thoughts from the root, id 0: the problem) and what became of it."""

    id: int
    parent: int | None
    depth: int
    text: str
    scores: list[float] = Field(default_factory=list)  # per sample (votes: 1.0 for one won)
    value: float | None = None  # what the search ranks by; None: never evaluated
    selected: bool = False  # kept in the BFS beam, or visited by DFS
    pruned: bool = False  # not kept in the beam, or valued below the DFS threshold
    final: bool = False  # the task says this state is a complete answer
    correct: bool | None = None  # the task's checker on a final state; None: it has none
    cached: bool = False  # its value came from the value cache or an identical vote
    duplicates: int = 0  # identical thoughts of the level merged into this node
    error: str | None = None  # why a call for it failed (generation errors: on the parent)
    children: list[int] = Field(default_factory=list)


class ThoughtTree(BaseModel):
    nodes: list[ThoughtNode] = Field(default_factory=list)

    @property
    def root(self) -> ThoughtNode:
        return self.nodes[0]

    def add_child(self, parent: ThoughtNode, text: str) -> ThoughtNode:
        node = ThoughtNode(id=len(self.nodes), parent=parent.id, depth=parent.depth + 1, text=text)
        self.nodes.append(node)
        parent.children.append(node.id)
        return node

    def get(self, node_id: int) -> ThoughtNode:
        return self.nodes[node_id]

    def path(self, node: ThoughtNode) -> list[str]:  # the root's problem not included
        return [self.nodes[i].text for i in self.path_ids(node)[1:]]

    def __len__(self) -> int:
        return len(self.nodes)

    def path_ids(self, node: ThoughtNode) -> list[int]:
        ids = [node.id]
        while (parent := self.nodes[ids[-1]].parent) is not None:
            ids.append(parent)
        return ids[::-1]


_LABEL_LIMIT = 60
# Characters Mermaid would read as syntax inside a quoted label, as entity codes.
_MERMAID_ESCAPES = {'"': "#quot;", "<": "#lt;", ">": "#gt;"} | {
    ch: f"#{ord(ch)};" for ch in "#`[]{}|"
}


def _label(node: ThoughtNode) -> str:
    text = " ".join(node.text.split())
    if len(text) > _LABEL_LIMIT:
        text = text[: _LABEL_LIMIT - 1] + "…"
    value = None if node.value is None else f"v={node.value:.3g}"
    error = None if node.error is None else "error"
    notes = ", ".join(note for note in (value, error) if note)
    return "".join(_MERMAID_ESCAPES.get(ch, ch) for ch in text) + (f" ({notes})" if notes else "")


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
    lines = ["flowchart TD", *(f'    n{node.id}["{_label(node)}"]' for node in tree.nodes)]
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
    lines += [f"    class n{n.id} {kind}" for n in tree.nodes if (kind := node_kind(n))]
    return "\n".join(lines) + "\n"


class ToTPath(BaseModel):
    """One state as an answer: the task's answer text and the thoughts down to it."""

    node_id: int
    text: str
    path: list[str]
    value: float | None
    final: bool
    correct: bool | None  # the task checker's verdict; None: the task has no checker

    @classmethod
    def of(cls, node: ThoughtNode, tree: ThoughtTree, task: Task, problem: str) -> ToTPath:
        steps = tree.path(node)
        fields = node.model_dump(include={"value", "final", "correct"})
        return cls(node_id=node.id, text=task.answer(problem, steps), path=steps, **fields)


class ToTStats(BaseModel):
    llm_calls: int = 0  # calls sent to the backend, failed ones included
    generation_calls: int = 0
    evaluation_calls: int = 0
    failed_calls: int = 0
    cache_hits: int = 0  # states valued from the value cache, votes from an identical one
    samples_saved: int = 0  # value samples adaptive sampling did not ask
    duplicates_merged: int = 0
    invalid_pruned: int = 0  # proposed thoughts the task's check_step rejected
    proposals_reused: int = 0  # states whose next steps came from the value cache
    nodes: int = 0
    depth_reached: int = 0
    peak_in_flight: int = 0
    # As the backend reports it (or None): a retried or fallen-back call counts twice.
    usage: UsageTotals | None = None
    wall_time_s: float = 0.0
    budget_exhausted: str | None = None  # why a budget ended the search early


class ToTResult(BaseModel):
    problem: str
    task: str
    # Final states the search kept and the checker did not reject: verified first, by value.
    solutions: list[ToTPath] = Field(default_factory=list)
    best: ToTPath | None = None  # the first solution, else the best state found so far
    tree: ThoughtTree
    stats: ToTStats
    config: ToTConfig

    @property
    def solved(self) -> bool:
        return bool(self.solutions)

    def to_json(self, *, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    def tree_json(self, *, indent: int | None = 2) -> str:
        return self.tree.model_dump_json(indent=indent)

    def to_mermaid(self) -> str:  # the best path drawn in bold
        highlight = self.tree.path_ids(self.tree.get(self.best.node_id)) if self.best else None
        return tree_to_mermaid(self.tree, highlight=highlight)

    @classmethod
    def of(
        cls, tree: ThoughtTree, task: Task, problem: str, stats: ToTStats, config: ToTConfig
    ) -> ToTResult:
        """The result of a search that left ``tree``: without a solution, the best state
        is the most valued one (deeper wins ties) the checker has not rejected."""
        kept = [n for n in tree.nodes if n.final and n.selected and n.correct is not False]
        kept.sort(key=lambda n: (n.correct is True, n.value or 0.0), reverse=True)
        valued = [n for n in tree.nodes[1:] if n.value is not None and n.correct is not False]
        most_valued = max(valued, key=lambda n: (n.value or 0.0, n.depth), default=None)
        best = kept[0] if kept else most_valued
        return cls(
            problem=problem,
            task=task.name,
            solutions=[ToTPath.of(n, tree, task, problem) for n in kept],
            best=None if best is None else ToTPath.of(best, tree, task, problem),
            tree=tree,
            stats=stats,
            config=config,
        )
