"""``ThoughtGenerator``: the next thoughts of a whole level."""

from __future__ import annotations

from collections.abc import Sequence

from pygent_lc.tot.caller import CallFailure, Stage, failed, gather_or_cancel
from pygent_lc.tot.result import ThoughtNode, ThoughtTree
from pygent_lc.tot.tasks.base import VerifyingTask, children_checked
from pygent_lc.tot.value_store import ChildrenStore, StoredChildren

_Outcome = list[str] | CallFailure | None  # thoughts, a failure, or refused by budget


class ThoughtGenerator(Stage):
    """Expands states with ``propose`` or ``sample`` prompts, a level's calls at once.
    Children are added in a fixed order (parent, call, line), whatever order calls finish
    in; children that are one state (equal ``state_key``) are one node, the first found
    (the paper keeps copies and values them 0: merging frees beam slots). A thought
    ``check_step`` rejects is kept, pruned. With a ``namespace``, the next steps of a
    state whose calls all succeeded are kept in ``store`` (``reuse_proposals``)."""

    def _written(self, problem: str, steps: Sequence[str]) -> str | None:
        task = self.task
        return task.program_answer(problem, steps) if isinstance(task, VerifyingTask) else None

    def _rejected(self, problem: str, path: Sequence[str]) -> bool:
        task = self.task
        return isinstance(task, VerifyingTask) and task.check_step(problem, path) is False

    def _reuse_key(self, problem: str, steps: Sequence[str]) -> str | None:
        mode = self.config.reuse_proposals
        if not isinstance(self.store, ChildrenStore) or not self.namespace or mode == "none":
            return None
        if mode == "checked" and not children_checked(self.task, problem, steps):
            return None
        if self._written(problem, steps) is not None:
            return None  # written by program: nothing to keep
        return self.key(problem, steps)

    def _stored(self, problem: str, steps: Sequence[str], key: str | None) -> list[str] | None:
        if key is None or not isinstance(self.store, ChildrenStore):
            return None
        stored = self.store.get_children(key)
        if stored is None:
            return None
        thoughts = list(stored.thoughts)
        if any(self._rejected(problem, [*steps, t]) for t in thoughts):
            return None  # not next steps of this state (another program's row): ask
        return thoughts

    async def _one(self, problem: str, steps: Sequence[str]) -> _Outcome:
        written = self._written(problem, steps)
        if written is not None:
            return [written]  # the task writes this step: no call
        propose = self.config.generation_strategy == "propose"
        if propose:
            prompt = self.task.propose_prompt(problem, steps)
            stop = None
        else:
            prompt = self.task.sample_prompt(problem, steps)
            stop = self.task.sample_stop(problem, steps)
        output = await self.caller.outcome(prompt, "generation", stop)
        if not isinstance(output, str):
            return output  # a failure, or refused by the budget
        if propose:
            return self.task.parse_proposals(output, problem, steps)
        thought = self.task.parse_sample(output, problem, steps)
        return [] if thought is None else [thought]

    async def _outcomes(self, problem: str, steps: Sequence[str]) -> list[_Outcome]:
        n = self.config.n_generate_sample
        return await gather_or_cancel(*(self._one(problem, steps) for _ in range(n)))

    async def expand(
        self, tree: ThoughtTree, problem: str, parents: Sequence[ThoughtNode]
    ) -> list[ThoughtNode]:
        plans: list[tuple[ThoughtNode, list[str], str | None, list[str] | None]] = []
        for parent in parents:
            steps = tree.path(parent)
            key = self._reuse_key(problem, steps)
            plans.append((parent, steps, key, self._stored(problem, steps, key)))
        outcomes = await gather_or_cancel(
            *(self._outcomes(problem, steps) for _, steps, _, stored in plans if stored is None)
        )
        children: list[ThoughtNode] = []
        by_key: dict[str, ThoughtNode] = {}
        for parent, steps, key, stored in plans:
            if stored is not None:
                self.counters.proposals_reused += 1
            found = [stored] if stored is not None else outcomes.pop(0)
            kept: dict[str, str] = {}  # this state's next steps worth keeping, by key
            for outcome in found:
                if outcome is not None and not isinstance(outcome, list):
                    message = failed("generation", [outcome])
                    parent.error = message if parent.error is None else f"{parent.error}; {message}"
                for thought in outcome if isinstance(outcome, list) else ():
                    path = [*steps, thought]
                    if self._rejected(problem, path):
                        rejected = tree.add_child(parent, thought)
                        rejected.pruned = True
                        rejected.error = "rejected by the task's step check"
                        self.counters.invalid_pruned += 1
                        continue
                    child_key = self.task.state_key(problem, path)
                    if key is not None and (
                        self.task.is_final(problem, path) or self.task.can_expand(problem, path)
                    ):
                        kept.setdefault(child_key, thought)
                    existing = by_key.get(child_key)
                    if existing is not None:
                        existing.duplicates += 1
                        self.counters.duplicates_merged += 1
                        continue
                    child = tree.add_child(parent, thought)
                    by_key[child_key] = child
                    children.append(child)
            if key is not None and stored is None and all(isinstance(o, list) for o in found):
                assert isinstance(self.store, ChildrenStore)
                self.store.put_children(key, StoredChildren(tuple(kept.values())))
        return children
