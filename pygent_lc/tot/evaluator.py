"""``StateEvaluator``: values (or votes) for a whole level, asked all at once."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pygent_lc.tot.calls import (
    CallFailure,
    LLMCaller,
    SampledOutputs,
    gather_or_cancel,
    sample_prompt,
)
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.node import ThoughtNode, ThoughtTree
from pygent_lc.tot.tasks.base import BatchValueTask, Task
from pygent_lc.tot.value_store import MemoryValueStore, StoredValue, ValueStore

# Adaptive sampling: when more value samples cannot change a greedy beam, stop
# asking. A state's final value (the mean of up to ``n`` samples) lies in an
# interval, from all further samples scoring the task's lowest to all scoring its
# highest. A state whose interval puts it in the beam whatever the others score is
# surely in; one that at least ``beam`` states surely outrank is surely out. Once
# every state is one or the other, and the best is known to be final or not (the
# search stops on a final best), further samples change nothing. Ties rank by
# creation order, as the selection's stable sort does.


@dataclass(frozen=True)
class Candidate:
    """One state of a level as the beam sees it."""

    order: int
    """Creation order: breaks ties, earlier first."""
    low: float
    high: float
    final: bool
    open: bool
    """More samples may still be asked for it."""
    valued: bool = True
    """It has a value already (at least one sample, or a static value)."""


def value_interval(
    scores: Sequence[float], n: int, value_range: tuple[float, float], *, settled: bool
) -> tuple[float, float]:
    """Where the mean of a state's samples can still end, given ``scores`` of up to ``n``."""
    lowest, highest = value_range
    k = len(scores)
    if k == 0:
        return (lowest, highest) if not settled else (lowest, lowest)
    total = math.fsum(scores)
    if settled or k >= n:
        return total / k, total / k
    missing = n - k
    return (total + missing * lowest) / n, (total + missing * highest) / n


def _may_outrank(a: Candidate, b: Candidate) -> bool:
    """``a`` can end above ``b`` in the stable, descending sort."""
    return a.high > b.low or (a.high == b.low and a.order < b.order)


def _surely_outranks(a: Candidate, b: Candidate) -> bool:
    return a.low > b.high or (a.low == b.high and a.order < b.order)


def to_sample(candidates: Sequence[Candidate], beam: int, *, need_top: bool = False) -> list[int]:
    """The ``order`` of the open candidates whose next samples could change the beam.

    ``need_top``: which candidate is best must be known too (it is the answer),
    and it must have a value: a candidate that may be best and has none is asked.
    """
    undecided: set[int] = set()
    for c in candidates:
        others = [o for o in candidates if o is not c]
        surely_in = sum(_may_outrank(o, c) for o in others) < beam
        surely_out = sum(_surely_outranks(o, c) for o in others) >= beam
        if not (surely_in or surely_out):
            undecided.add(c.order)
    # The search stops when the best state is final: whether it is must be known.
    could_top = [c for c in candidates if not any(_surely_outranks(o, c) for o in candidates)]
    if len({c.final for c in could_top}) > 1 or (need_top and len(could_top) > 1):
        undecided.update(c.order for c in could_top)
    if need_top:
        undecided.update(c.order for c in could_top if not c.valued)
    return [c.order for c in candidates if c.order in undecided and c.open]


def _describe(errors: Sequence[CallFailure], asked: int) -> str | None:
    if not errors:
        return None
    first = errors[0]
    return f"evaluation failed ({len(errors)} of {asked} samples): {type(first).__name__}: {first}"


@dataclass
class _Pending:
    """One state waiting for value samples during one ``evaluate``."""

    node: ThoughtNode
    steps: list[str]
    key: str
    prompt: str
    scores: list[float] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    """Completions asked in this search (stored scores come without them)."""
    settled: bool = False
    stopped: bool = False
    """A sample was refused (a budget is spent): no more are asked in this search."""
    asked: int = 0
    errors: list[CallFailure] = field(default_factory=list)


class StateEvaluator:
    """Scores new states so the search can rank them.

    ``value``: each state gets up to ``n_evaluate_sample`` value samples and
    the task combines them (a mean, so states valued from fewer samples rank
    fairly). Values are kept in a :class:`ValueStore` under the task's state
    key, so a state met again, in this search or a later one, costs nothing.
    With ``adaptive_sampling`` samples are asked in rounds of one per state,
    and a state gets no more once the task says its samples agree, or once
    (greedy BFS) no further sample could change which states the beam keeps
    (see :mod:`pygent_lc.tot.sampling`). ``vote``: one prompt shows all the
    candidates, ``n_evaluate_sample`` votes are asked, and a state's value is
    its share of the votes. States the task can value without the model
    (``static_value``) cost no call.
    """

    def __init__(
        self,
        task: Task,
        config: ToTConfig,
        caller: LLMCaller,
        *,
        store: ValueStore | None = None,
        namespace: str = "",
        beam: int | None = None,
    ) -> None:
        self.task = task
        self.config = config
        self.caller = caller
        self._votes: dict[str, SampledOutputs] = {}
        """Complete vote results by prompt: an identical vote prompt is asked once a search."""
        self.store: ValueStore = store if store is not None else MemoryValueStore()
        self.namespace = namespace
        self.beam = beam
        """Greedy BFS beam width: enables stopping once the beam is decided."""
        self.samples_saved = 0
        self.skipped: set[int] = set()
        """Ids of states left unvalued because no sample could change the beam."""

    async def evaluate(self, tree: ThoughtTree, problem: str, nodes: Sequence[ThoughtNode]) -> None:
        """Set ``value``, ``scores``, ``final`` and ``correct`` on ``nodes``.

        With a beam set, a state may be left without a value (``value`` None)
        when no sample of it could change which states the beam keeps.
        """
        pending: list[_Pending] = []
        fixed: list[ThoughtNode] = []
        for node in nodes:
            steps = tree.path(node)
            node.final = self.task.is_final(problem, steps)
            if node.final:
                node.correct = self.task.check_answer(problem, steps)
            static = self.task.static_value(problem, steps)
            if static is not None:
                node.value = static
                fixed.append(node)
            elif self.config.evaluation_method == "value":
                key = f"{self.namespace}\x1f{self.task.state_key(problem, steps)}"
                pending.append(_Pending(node, steps, key, self.task.value_prompt(problem, steps)))
            else:
                pending.append(_Pending(node, steps, "", ""))
        if not pending:
            return
        if self.config.evaluation_method == "value":
            await self._values(problem, pending, fixed)
        else:
            await self._vote(problem, [(p.node, p.steps) for p in pending])

    # values ---------------------------------------------------------------
    async def _values(
        self, problem: str, pending: list[_Pending], fixed: list[ThoughtNode]
    ) -> None:
        n = self.config.n_evaluate_sample
        for item in pending:
            stored = self.store.get(item.key)
            if stored is not None and stored.scores:
                item.scores = list(stored.scores)
                item.settled = stored.settled or len(item.scores) >= n
                item.node.cached = True
        while True:
            wanted = self._wanted(problem, pending, fixed)
            if not wanted:
                break
            adaptive = self.config.adaptive_sampling
            # Where the model answers n samples in one request, one request asks
            # them all: the prompt is paid once, so rounds of one save nothing.
            together = self.caller.n_support.worth_asking
            if self.config.value_batch and isinstance(self.task, BatchValueTask):
                # Siblings (one parent's new states) share one prompt per sample.
                groups: dict[int | None, list[_Pending]] = {}
                for item in wanted:
                    groups.setdefault(item.node.parent, []).append(item)
                await gather_or_cancel(
                    *(
                        self._ask_batch(
                            problem,
                            self.task,
                            group,
                            max(map(self._remaining, group)) if together or not adaptive else 1,
                        )
                        for group in groups.values()
                    )
                )
            else:
                await gather_or_cancel(
                    *(
                        self._ask(item, self._remaining(item) if together or not adaptive else 1)
                        for item in wanted
                    )
                )
            for item in wanted:
                self._settle(problem, item)
        for item in pending:
            self._finish(item)

    def _open(self, item: _Pending) -> bool:
        # A failed sample uses up its turn: a state gets n asks at most.
        full = len(item.scores) + len(item.errors) >= self.config.n_evaluate_sample
        return not (item.settled or item.stopped or full)

    def _wanted(
        self, problem: str, pending: list[_Pending], fixed: list[ThoughtNode]
    ) -> list[_Pending]:
        open_items = [item for item in pending if self._open(item)]
        if not open_items or not self.config.adaptive_sampling or self.beam is None:
            return open_items
        n = self.config.n_evaluate_sample
        value_range = self.task.value_range
        candidates: list[Candidate] = []
        for item in pending:
            if not item.scores and not self._open(item):
                continue  # no value and none to come: not a candidate
            low, high = value_interval(item.scores, n, value_range, settled=not self._open(item))
            candidates.append(
                Candidate(
                    item.node.id,
                    low,
                    high,
                    item.node.final,
                    open=self._open(item),
                    valued=bool(item.scores),
                )
            )
        for node in fixed:
            value = node.value if node.value is not None else value_range[0]
            candidates.append(Candidate(node.id, value, value, node.final, open=False, valued=True))
        # When no state of the level is expanded further, the best one is the
        # answer: which one it is must be known, not just the beam.
        last = all(
            item.node.final
            or item.node.depth >= self.config.max_depth
            or not self.task.can_expand(problem, item.steps)
            for item in pending
        )
        chosen = set(to_sample(candidates, self.beam, need_top=last))
        return [item for item in open_items if item.node.id in chosen]

    def _remaining(self, item: _Pending) -> int:
        return self.config.n_evaluate_sample - len(item.scores) - len(item.errors)

    async def _ask(self, item: _Pending, count: int) -> None:
        result: SampledOutputs = await sample_prompt(
            self.caller,
            item.prompt,
            count,
            kind="evaluation",
            temperature=self.config.evaluation_temperature,
            fill=not self.config.adaptive_sampling,
        )
        item.asked += len(result.outputs) + len(result.errors)
        item.outputs.extend(result.outputs)
        item.scores.extend(self.task.parse_value(output) for output in result.outputs)
        item.errors.extend(result.errors)
        if result.refused:
            item.stopped = True

    async def _ask_batch(
        self, problem: str, task: BatchValueTask, items: list[_Pending], count: int
    ) -> None:
        prompt = task.value_batch_prompt(problem, [item.steps for item in items])
        result = await sample_prompt(
            self.caller,
            prompt,
            count,
            kind="evaluation",
            temperature=self.config.evaluation_temperature,
            fill=not self.config.adaptive_sampling,
        )
        for output in result.outputs:
            scores = task.parse_value_batch(output, len(items))
            for item, score in zip(items, scores, strict=True):
                if self._remaining(item) > 0:
                    item.asked += 1
                    item.outputs.append(output)
                    item.scores.append(score)
        for item in items:
            item.asked += len(result.errors)
            item.errors.extend(result.errors)
            if result.refused:
                item.stopped = True

    def _settle(self, problem: str, item: _Pending) -> None:
        n = self.config.n_evaluate_sample
        if len(item.scores) >= n:
            item.settled = True
        elif self.config.adaptive_sampling and item.scores:
            # Stored scores have no completions; the new ones line up with the tail.
            tail = item.scores[len(item.scores) - len(item.outputs) :]
            item.settled = self.task.samples_agree(
                problem, item.steps, item.outputs, tail
            ) or self.task.samples_agree(problem, item.steps, [], item.scores)

    def _finish(self, item: _Pending) -> None:
        node = item.node
        n_full = self.config.n_evaluate_sample
        node.error = _describe(item.errors, item.asked)
        if item.asked == 0 and node.cached:
            self.caller.counters.cache_hits += 1
            node.scores = list(item.scores)
            node.value = self.task.aggregate_values(node.scores)
            return
        if not item.scores:
            if not item.stopped and not item.errors:
                self.samples_saved += self.config.n_evaluate_sample
                self.skipped.add(node.id)
            return
        node.scores = list(item.scores)
        node.value = self.task.aggregate_values(node.scores)
        unasked = self.config.n_evaluate_sample - len(item.scores) - len(item.errors)
        if not item.stopped and unasked > 0:
            self.samples_saved += unasked
        if item.asked:
            self.store.put(
                item.key,
                StoredValue(tuple(item.scores), settled=item.settled or len(item.scores) >= n_full),
            )

    # votes ----------------------------------------------------------------
    async def _vote(self, problem: str, pending: list[tuple[ThoughtNode, list[str]]]) -> None:
        if len(pending) == 1:
            # A vote with one candidate is decided before it is asked.
            pending[0][0].value = 1.0
            return
        prompt = self.task.vote_prompt(problem, [steps for _, steps in pending])

        result = self._votes.get(prompt)
        hit = result is not None
        if result is None:
            result = await sample_prompt(
                self.caller,
                prompt,
                self.config.n_evaluate_sample,
                kind="evaluation",
                temperature=self.config.evaluation_temperature,
            )
            if result.complete:
                self._votes[prompt] = result
        else:
            self.caller.counters.cache_hits += 1
        asked = len(result.errors) + len(result.outputs) + result.refused
        error = _describe(result.errors, asked)
        choices = [self.task.parse_vote(output, len(pending)) for output in result.outputs]
        for index, (node, _) in enumerate(pending):
            node.cached = hit
            node.error = error
            if result.outputs:
                node.scores = [1.0 if choice == index else 0.0 for choice in choices]
                node.value = sum(node.scores) / len(node.scores)
