"""``StateEvaluator``: values (or votes) for a whole level, asked all at once."""

from __future__ import annotations

from collections.abc import Sequence

from pygent_lc.tot.calls import (
    LLMCaller,
    PromptCache,
    SampledOutputs,
    gather_or_cancel,
    sample_prompt,
)
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.node import ThoughtNode, ThoughtTree
from pygent_lc.tot.tasks.base import Task


def _describe(result: SampledOutputs) -> str | None:
    if not result.errors:
        return None
    first = result.errors[0]
    return (
        f"evaluation failed ({len(result.errors)} of "
        f"{len(result.errors) + len(result.outputs) + result.refused} samples): "
        f"{type(first).__name__}: {first}"
    )


class StateEvaluator:
    """Scores new states so the search can rank them.

    ``value``: each state's value prompt is asked ``n_evaluate_sample`` times
    and the task combines the per-sample scores (the paper sums them).
    Identical prompts are asked once per search, even while the first ask is
    still in flight (Game of 24's value prompt only shows the numbers left,
    so different paths often share it). ``vote``: one prompt shows all the
    candidates, ``n_evaluate_sample`` votes are asked, and a state's value is
    its share of the votes. States the task can value without the model
    (``static_value``) cost no call.
    """

    def __init__(
        self,
        task: Task,
        config: ToTConfig,
        caller: LLMCaller,
        cache: PromptCache | None = None,
    ) -> None:
        self.task = task
        self.config = config
        self.caller = caller
        self.cache = cache if cache is not None else PromptCache()

    async def _ask(self, prompt: str) -> tuple[SampledOutputs, bool]:
        async def produce() -> SampledOutputs:
            return await sample_prompt(
                self.caller,
                prompt,
                self.config.n_evaluate_sample,
                kind="evaluation",
                temperature=self.config.evaluation_temperature,
            )

        result, hit = await self.cache.get(prompt, produce)
        if hit:
            self.caller.counters.cache_hits += 1
        return result, hit

    async def evaluate(self, tree: ThoughtTree, problem: str, nodes: Sequence[ThoughtNode]) -> None:
        """Set ``value``, ``scores``, ``final`` and ``correct`` on ``nodes``."""
        pending: list[tuple[ThoughtNode, list[str]]] = []
        for node in nodes:
            steps = tree.path(node)
            node.final = self.task.is_final(problem, steps)
            if node.final:
                node.correct = self.task.check_answer(problem, steps)
            static = self.task.static_value(problem, steps)
            if static is not None:
                node.value = static
            else:
                pending.append((node, steps))
        if not pending:
            return
        if self.config.evaluation_method == "value":
            await gather_or_cancel(*(self._value(problem, node, steps) for node, steps in pending))
        else:
            await self._vote(problem, pending)

    async def _value(self, problem: str, node: ThoughtNode, steps: list[str]) -> None:
        result, hit = await self._ask(self.task.value_prompt(problem, steps))
        node.cached = hit
        node.error = _describe(result)
        if result.outputs:
            node.scores = [self.task.parse_value(output) for output in result.outputs]
            node.value = self.task.aggregate_values(node.scores)

    async def _vote(self, problem: str, pending: list[tuple[ThoughtNode, list[str]]]) -> None:
        if len(pending) == 1:
            # A vote with one candidate is decided before it is asked.
            pending[0][0].value = 1.0
            return
        prompt = self.task.vote_prompt(problem, [steps for _, steps in pending])
        result, hit = await self._ask(prompt)
        error = _describe(result)
        choices = [self.task.parse_vote(output, len(pending)) for output in result.outputs]
        for index, (node, _) in enumerate(pending):
            node.cached = hit
            node.error = error
            if result.outputs:
                node.scores = [1.0 if choice == index else 0.0 for choice in choices]
                node.value = sum(node.scores) / len(node.scores)
