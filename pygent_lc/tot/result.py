"""What a search returns: solutions, the best path, the whole tree, and its cost."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pygent_lc.backend import UsageTotals
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.export import tree_to_json, tree_to_mermaid
from pygent_lc.tot.node import ThoughtNode, ThoughtTree
from pygent_lc.tot.tasks.base import Task


class ToTPath(BaseModel):
    """One state as an answer: its text and the thoughts that led to it."""

    node_id: int
    text: str
    """The task's answer text for the state (e.g. the Game-of-24 expression)."""
    path: list[str]
    """The thoughts from the problem down to the state."""
    value: float | None
    final: bool
    correct: bool | None
    """The task checker's verdict; ``None`` when the task has no checker."""

    @classmethod
    def of(cls, node: ThoughtNode, tree: ThoughtTree, task: Task, problem: str) -> ToTPath:
        steps = tree.path(node)
        return cls(
            node_id=node.id,
            text=task.answer(problem, steps),
            path=steps,
            value=node.value,
            final=node.final,
            correct=node.correct,
        )


class ToTStats(BaseModel):
    """The cost of one search."""

    llm_calls: int = 0
    """Calls the search sent to the backend (failed ones included)."""
    generation_calls: int = 0
    evaluation_calls: int = 0
    failed_calls: int = 0
    cache_hits: int = 0
    """States valued from the value cache (this or an earlier search) without a call,
    and votes answered by an identical vote prompt."""
    samples_saved: int = 0
    """Value samples not asked because the state's samples agreed, or because no
    further sample could change the beam (adaptive sampling)."""
    duplicates_merged: int = 0
    invalid_pruned: int = 0
    """Proposed thoughts the task rejected by program (``check_step``) before any value call."""
    proposals_reused: int = 0
    """States whose next steps came from the value cache (found by an earlier
    expansion of the same state: ``ToTConfig.reuse_proposals``) without a call."""
    nodes: int = 0
    depth_reached: int = 0
    peak_in_flight: int = 0
    usage: UsageTotals | None = None
    """What the backend reported for the search's calls (requests, failures, tokens,
    cached tokens, cost after the prompt-cache discount, the discount), or ``None``
    when the backend does not report usage. Its ``calls`` count requests, so a call
    the backend retried or passed to a fallback counts more than once there."""
    wall_time_s: float = 0.0
    budget_exhausted: str | None = None
    """Why the search stopped early on a budget, or ``None``."""


class ToTResult(BaseModel):
    """The outcome of ``ToTEngine.solve``."""

    problem: str
    task: str
    solutions: list[ToTPath] = Field(default_factory=list)
    """Final states the search kept and the task's checker did not reject,
    verified ones first, then by value."""
    best: ToTPath | None = None
    """The first solution, else the best state found so far (``final`` False)."""
    tree: ThoughtTree
    stats: ToTStats
    config: ToTConfig

    @property
    def solved(self) -> bool:
        return bool(self.solutions)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The whole result, tree included, as JSON."""
        return self.model_dump_json(indent=indent)

    def tree_json(self, *, indent: int | None = 2) -> str:
        return tree_to_json(self.tree, indent=indent)

    def to_mermaid(self) -> str:
        """A Mermaid flowchart of the tree with the best path drawn in bold."""
        highlight = self.tree.path_ids(self.tree.get(self.best.node_id)) if self.best else None
        return tree_to_mermaid(self.tree, highlight=highlight)


def collect_solutions(tree: ThoughtTree, task: Task, problem: str) -> list[ToTPath]:
    nodes = [n for n in tree.nodes if n.final and n.selected and n.correct is not False]
    nodes.sort(key=lambda n: (n.correct is True, n.value or 0.0), reverse=True)
    return [ToTPath.of(n, tree, task, problem) for n in nodes]


def best_so_far(tree: ThoughtTree, task: Task, problem: str) -> ToTPath | None:
    """The most valued state (deeper wins ties) that the checker has not rejected."""
    nodes = [
        n
        for n in tree.nodes
        if n.parent is not None and n.value is not None and n.correct is not False
    ]
    if not nodes:
        return None
    best = max(nodes, key=lambda n: (n.value or 0.0, n.depth))
    return ToTPath.of(best, tree, task, problem)
