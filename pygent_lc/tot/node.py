"""The search tree: every state the engine created, kept for inspection and export."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ThoughtNode(BaseModel):
    """One state of the search: the thought that led to it and what became of it.

    The root (``id`` 0, ``depth`` 0) holds the problem; every other node holds
    one thought, and its state is the path of thoughts from the root.
    """

    id: int
    parent: int | None
    depth: int
    text: str
    scores: list[float] = Field(default_factory=list)
    """Per-sample scores of the value or vote calls (votes: 1.0 for a vote won)."""
    value: float | None = None
    """The combined score the search ranks by; ``None`` when never evaluated."""
    selected: bool = False
    """Kept in the BFS beam, or visited by DFS."""
    pruned: bool = False
    """Dropped: not kept in the beam, or valued below the DFS threshold."""
    final: bool = False
    """The task says this state is a complete answer."""
    correct: bool | None = None
    """The task's checker verdict on a final state; ``None`` when it has none."""
    cached: bool = False
    """Its value came from the evaluation cache or a shared in-flight call."""
    duplicates: int = 0
    """Identical thoughts of the same parent merged into this node."""
    error: str | None = None
    """Why a call for this node failed (generation errors sit on the parent)."""
    children: list[int] = Field(default_factory=list)


class ThoughtTree(BaseModel):
    """All nodes of one search, indexed by ``id``."""

    nodes: list[ThoughtNode] = Field(default_factory=list)

    @classmethod
    def with_root(cls, problem: str) -> ThoughtTree:
        tree = cls()
        tree.nodes.append(ThoughtNode(id=0, parent=None, depth=0, text=problem))
        return tree

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

    def path(self, node: ThoughtNode) -> list[str]:
        """The thoughts from the root (excluded) down to ``node``."""
        return [self.nodes[i].text for i in self.path_ids(node)[1:]]

    def path_ids(self, node: ThoughtNode) -> list[int]:
        """Node ids from the root down to ``node``, both included."""
        ids = [node.id]
        while (parent := self.nodes[ids[-1]].parent) is not None:
            ids.append(parent)
        return ids[::-1]

    def __len__(self) -> int:
        return len(self.nodes)
