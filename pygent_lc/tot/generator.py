"""``ThoughtGenerator``: the next thoughts of a whole level, asked all at once."""

from __future__ import annotations

from collections.abc import Sequence

from pygent_lc.tot.caller import CallFailure, LLMCaller, gather_or_cancel
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.node import ThoughtNode, ThoughtTree
from pygent_lc.tot.tasks.base import Task, check_step, children_checked, program_answer
from pygent_lc.tot.value_store import ChildrenStore, StoredChildren, ValueStore

_Outcome = list[str] | CallFailure | None  # thoughts, a failure, or refused by budget


class ThoughtGenerator:
    """Expands states into child states with ``propose`` or ``sample`` prompts.

    Every call of a level (``n_generate_sample`` per parent) starts together,
    bounded by the :class:`LLMCaller`. Children are added in a fixed order
    (parent, call, line), so a run is reproducible whatever order calls finish
    in. Children of the level that are one state (equal ``Task.state_key``) are
    one node, the first found (the paper keeps copies and values them 0; merging
    frees their beam slots). A failed call is recorded on its parent's
    ``error``; a thought the task's program rejects (``check_step``) is kept in
    the tree, pruned, before any value call.

    With a ``store`` and a ``namespace`` (the model, the task and its
    ``propose_version``), the thoughts found from a state that hold and lead
    somewhere are kept there once every call of the state succeeded
    (``ToTConfig.reuse_proposals``); a later expansion of a state with the same
    key takes them with no call, unless the step check rejects one from it.
    """

    def __init__(
        self,
        task: Task,
        config: ToTConfig,
        caller: LLMCaller,
        *,
        store: ValueStore | None = None,
        namespace: str = "",
    ) -> None:
        self.task = task
        self.config = config
        self.caller = caller
        self.store = store if isinstance(store, ChildrenStore) else None
        self.namespace = namespace
        self.duplicates_merged = 0
        self.invalid_pruned = 0
        self.proposals_reused = 0

    def _reuse_key(self, problem: str, steps: Sequence[str]) -> str | None:
        """Where the next steps of this state are kept, or ``None`` when they are not."""
        mode = self.config.reuse_proposals
        if self.store is None or not self.namespace or mode == "none":
            return None
        if mode == "checked" and not children_checked(self.task, problem, steps):
            return None
        if program_answer(self.task, problem, steps) is not None:
            return None  # written by program: nothing to keep
        return f"{self.namespace}\x1f{self.task.state_key(problem, steps)}"

    def _stored(self, problem: str, steps: Sequence[str], key: str | None) -> list[str] | None:
        if key is None or self.store is None:
            return None
        stored = self.store.get_children(key)
        if stored is None:
            return None
        thoughts = list(stored.thoughts)
        if any(check_step(self.task, problem, [*steps, t]) is False for t in thoughts):
            return None  # not next steps of this state (another program's row): ask
        return thoughts

    def _leads_somewhere(self, problem: str, path: Sequence[str]) -> bool:
        return self.task.is_final(problem, path) or self.task.can_expand(problem, path)

    async def _one(self, problem: str, steps: Sequence[str]) -> _Outcome:
        written = program_answer(self.task, problem, steps)
        if written is not None:
            return [written]  # the task writes this step: no call
        propose = self.config.generation_strategy == "propose"
        if propose:
            prompt = self.task.propose_prompt(problem, steps)
            stop = None
        else:
            prompt = self.task.sample_prompt(problem, steps)
            stop = self.task.sample_stop(problem, steps)
        output = await self.caller.outcome(
            prompt, kind="generation", temperature=self.config.temperature, stop=stop
        )
        if not isinstance(output, str):
            return output  # a failure, or refused by the budget
        if propose:
            return self.task.parse_proposals(output, problem, steps)
        thought = self.task.parse_sample(output, problem, steps)
        return [] if thought is None else [thought]

    async def _outcomes(
        self, problem: str, steps: Sequence[str], stored: list[str] | None
    ) -> list[_Outcome]:
        """The stored next steps of a state, else its ``n_generate_sample`` calls' outcomes."""
        if stored is not None:
            return [stored]
        n = self.config.n_generate_sample
        return await gather_or_cancel(*(self._one(problem, steps) for _ in range(n)))

    async def expand(
        self, tree: ThoughtTree, problem: str, parents: Sequence[ThoughtNode]
    ) -> list[ThoughtNode]:
        """The new children of ``parents`` (in a deterministic order)."""
        plans: list[tuple[ThoughtNode, list[str], str | None, list[str] | None]] = []
        for parent in parents:
            steps = tree.path(parent)
            key = self._reuse_key(problem, steps)
            plans.append((parent, steps, key, self._stored(problem, steps, key)))
        outcomes = await gather_or_cancel(
            *(self._outcomes(problem, steps, stored) for _, steps, _, stored in plans)
        )
        children: list[ThoughtNode] = []
        by_key: dict[str, ThoughtNode] = {}
        for (parent, steps, key, stored), found in zip(plans, outcomes, strict=True):
            if stored is not None:
                self.proposals_reused += 1
            kept: dict[str, str] = {}  # this state's next steps worth keeping, by key
            for outcome in found:
                if outcome is None:
                    continue
                if not isinstance(outcome, list):
                    message = f"generation failed: {type(outcome).__name__}: {outcome}"
                    parent.error = message if parent.error is None else f"{parent.error}; {message}"
                    continue
                for thought in outcome:
                    path = [*steps, thought]
                    if check_step(self.task, problem, path) is False:
                        rejected = tree.add_child(parent, thought)
                        rejected.pruned = True
                        rejected.error = "rejected by the task's step check"
                        self.invalid_pruned += 1
                        continue
                    child_key = self.task.state_key(problem, path)
                    if key is not None and self._leads_somewhere(problem, path):
                        kept.setdefault(child_key, thought)
                    existing = by_key.get(child_key)
                    if existing is not None:
                        existing.duplicates += 1
                        self.duplicates_merged += 1
                        continue
                    child = tree.add_child(parent, thought)
                    by_key[child_key] = child
                    children.append(child)
            if key is not None and stored is None and all(isinstance(o, list) for o in found):
                assert self.store is not None
                self.store.put_children(key, StoredChildren(tuple(kept.values())))
        return children
