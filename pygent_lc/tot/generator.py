"""``ThoughtGenerator``: the next thoughts of a whole level, asked all at once."""

from __future__ import annotations

from collections.abc import Sequence

from pygent_lc.tot.calls import (
    CALL_FAILURES,
    BudgetExhausted,
    CallFailure,
    LLMCaller,
    gather_or_cancel,
)
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.node import ThoughtNode, ThoughtTree
from pygent_lc.tot.tasks.base import Task, check_step, program_answer

_Outcome = list[str] | CallFailure | None  # thoughts, a failure, or refused by budget


class ThoughtGenerator:
    """Expands states into child states with ``propose`` or ``sample`` prompts.

    Every call of a level (``n_generate_sample`` per parent) is started
    together; the semaphore of the :class:`LLMCaller` bounds how many run at
    once. Children are added in a fixed order (parent, then call, then line),
    so a run is reproducible whatever order the calls finish in. Children of
    the level that are the same state (equal ``Task.state_key``: the same
    thought twice, or, in Game of 24, two paths leaving the same numbers) are
    one node, the first found; ``duplicates`` counts the copies merged into
    it. The paper keeps textual copies and values them 0; merging frees their
    beam slots for different states. A failed call is recorded on its
    parent's ``error``. A thought the task rejects by program
    (``VerifyingTask.check_step``: wrong arithmetic, numbers not available...)
    is kept in the tree, pruned, before any value call, and counted in
    ``invalid_pruned``.
    """

    def __init__(self, task: Task, config: ToTConfig, caller: LLMCaller) -> None:
        self.task = task
        self.config = config
        self.caller = caller
        self.duplicates_merged = 0
        self.invalid_pruned = 0

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
        try:
            output = await self.caller.call(
                prompt, kind="generation", temperature=self.config.temperature, stop=stop
            )
        except BudgetExhausted:
            return None
        except CALL_FAILURES as exc:
            return exc  # type: ignore[return-value]
        if propose:
            return self.task.parse_proposals(output, problem, steps)
        thought = self.task.parse_sample(output, problem, steps)
        return [] if thought is None else [thought]

    async def expand(
        self, tree: ThoughtTree, problem: str, parents: Sequence[ThoughtNode]
    ) -> list[ThoughtNode]:
        """The new children of ``parents`` (in a deterministic order)."""
        jobs = [
            (parent, tree.path(parent))
            for parent in parents
            for _ in range(self.config.n_generate_sample)
        ]
        outcomes = await gather_or_cancel(*(self._one(problem, steps) for _, steps in jobs))
        children: list[ThoughtNode] = []
        by_key: dict[str, ThoughtNode] = {}
        for (parent, steps), outcome in zip(jobs, outcomes, strict=True):
            if outcome is None:
                continue
            if not isinstance(outcome, list):
                message = f"generation failed: {type(outcome).__name__}: {outcome}"
                parent.error = message if parent.error is None else f"{parent.error}; {message}"
                continue
            for thought in outcome:
                if check_step(self.task, problem, [*steps, thought]) is False:
                    rejected = tree.add_child(parent, thought)
                    rejected.pruned = True
                    rejected.error = "rejected by the task's step check"
                    self.invalid_pruned += 1
                    continue
                key = self.task.state_key(problem, [*steps, thought])
                existing = by_key.get(key)
                if existing is not None:
                    existing.duplicates += 1
                    self.duplicates_merged += 1
                    continue
                child = tree.add_child(parent, thought)
                by_key[key] = child
                children.append(child)
        return children
