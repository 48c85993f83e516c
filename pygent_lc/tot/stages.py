"""The two stages of a level, asked all at once: ``ThoughtGenerator`` (the next thoughts)
and ``StateEvaluator`` (values or votes). Adaptive sampling stops once more samples cannot
change a greedy beam (ARCHITECTURE.md: the path of one ToT solve)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pygent_lc.tot.caller import CallFailure, LLMCaller, SampledOutputs, failed, gather_or_cancel
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.result import ThoughtNode, ThoughtTree
from pygent_lc.tot.tasks.base import BatchValueTask, Task, VerifyingTask, children_checked
from pygent_lc.tot.value_store import (
    ChildrenStore,
    MemoryValueStore,
    StoredChildren,
    StoredValue,
    ValueStore,
)


@dataclass(eq=False)
class Stage:
    """What the generator and the evaluator share; ``namespace``: their key prefix in the
    value cache (model, task, prompts)."""

    task: Task
    config: ToTConfig
    caller: LLMCaller
    store: ValueStore = field(default_factory=MemoryValueStore)
    namespace: str = ""

    def key(self, problem: str, steps: Sequence[str]) -> str:
        return f"{self.namespace}\x1f{self.task.state_key(problem, steps)}"


_Outcome = list[str] | CallFailure | None  # thoughts, a failure, or refused by budget


class ThoughtGenerator(Stage):
    """Children in a fixed order (parent, call, line); one state (``state_key``) is one node,
    the first found (the paper keeps copies: merging frees slots); ``check_step`` rejects pruned."""

    def _written(self, problem: str, steps: Sequence[str]) -> str | None:
        task = self.task
        return task.program_answer(problem, steps) if isinstance(task, VerifyingTask) else None

    def _rejected(self, problem: str, path: Sequence[str]) -> bool:
        return isinstance(self.task, VerifyingTask) and self.task.check_step(problem, path) is False

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
        thoughts = None if stored is None else list(stored.thoughts)
        if thoughts is None or any(self._rejected(problem, [*steps, t]) for t in thoughts):
            return None  # none, or not next steps of this state (another program's row): ask
        return thoughts

    async def _one(self, problem: str, steps: Sequence[str]) -> _Outcome:
        written = self._written(problem, steps)
        if written is not None:
            return [written]  # the task writes this step: no call
        task, propose = self.task, self.config.generation_strategy == "propose"
        prompt = (task.propose_prompt if propose else task.sample_prompt)(problem, steps)
        stop = None if propose else task.sample_stop(problem, steps)
        output = await self.caller.outcome(prompt, "generation", stop)
        if not isinstance(output, str):
            return output  # a failure, or refused by the budget
        if propose:
            return task.parse_proposals(output, problem, steps)
        thought = task.parse_sample(output, problem, steps)
        return [] if thought is None else [thought]

    async def expand(
        self, tree: ThoughtTree, problem: str, parents: Sequence[ThoughtNode]
    ) -> list[ThoughtNode]:
        plans: list[tuple[ThoughtNode, list[str], str | None, list[str] | None]] = []
        for parent in parents:
            steps = tree.path(parent)
            key = self._reuse_key(problem, steps)
            plans.append((parent, steps, key, self._stored(problem, steps, key)))
        calls = range(self.config.n_generate_sample)
        outcomes = await gather_or_cancel(
            *(
                gather_or_cancel(*(self._one(problem, steps) for _ in calls))
                for _, steps, _, stored in plans
                if stored is None
            )
        )
        children: list[ThoughtNode] = []
        by_key: dict[str, ThoughtNode] = {}
        for parent, steps, key, stored in plans:
            if stored is not None:
                self.caller.counters.proposals_reused += 1
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
                        self.caller.counters.invalid_pruned += 1
                        continue
                    child_key = self.task.state_key(problem, path)
                    if key is not None and (
                        self.task.is_final(problem, path) or self.task.can_expand(problem, path)
                    ):
                        kept.setdefault(child_key, thought)
                    existing = by_key.get(child_key)
                    if existing is not None:
                        existing.duplicates += 1
                        self.caller.counters.duplicates_merged += 1
                        continue
                    child = tree.add_child(parent, thought)
                    by_key[child_key] = child
                    children.append(child)
            if key is not None and stored is None and all(isinstance(o, list) for o in found):
                assert isinstance(self.store, ChildrenStore)
                self.store.put_children(key, StoredChildren(tuple(kept.values())))
        return children


@dataclass(frozen=True)
class Candidate:
    order: int  # creation order: breaks ties, earlier first
    low: float
    high: float
    final: bool
    open: bool  # more samples may still be asked for it
    valued: bool = True  # at least one sample, or a static value


def value_interval(
    scores: Sequence[float], n: int, value_range: tuple[float, float], *, settled: bool
) -> tuple[float, float]:
    """Where the mean of a state's samples can still end, given ``scores`` of up to ``n``."""
    lowest, highest = value_range
    k, total = len(scores), math.fsum(scores)
    if k == 0:
        return (lowest, lowest if settled else highest)
    if settled or k >= n:
        return total / k, total / k
    return (total + (n - k) * lowest) / n, (total + (n - k) * highest) / n


def _may_outrank(a: Candidate, b: Candidate) -> bool:
    return a.high > b.low or (a.high == b.low and a.order < b.order)


def _surely_outranks(a: Candidate, b: Candidate) -> bool:
    return a.low > b.high or (a.low == b.high and a.order < b.order)


def to_sample(candidates: Sequence[Candidate], beam: int, *, need_top: bool = False) -> list[int]:
    """The ``order`` of the open candidates whose next samples could change the beam;
    ``need_top``: which is best (the answer) must be known too, and have a value."""
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


@dataclass
class _Pending:  # one state waiting for value samples during one evaluate()
    node: ThoughtNode
    steps: list[str]
    key: str
    scores: list[float] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # asked now (stored scores have none)
    errors: list[CallFailure] = field(default_factory=list)
    settled: bool = False
    stopped: bool = False  # a sample was refused (a budget is spent): ask no more

    @property
    def asked(self) -> int:
        return len(self.outputs) + len(self.errors)


@dataclass(eq=False)
class StateEvaluator(Stage):
    """Scores new states: up to ``n_evaluate_sample`` value samples each (cached by state
    key; adaptive: in rounds), or their share of one prompt's votes."""

    # States left unvalued (no sample could change the beam); complete votes by prompt.
    skipped: set[int] = field(default_factory=set, init=False)
    votes: dict[str, SampledOutputs] = field(default_factory=dict, init=False)

    async def evaluate(self, tree: ThoughtTree, problem: str, nodes: Sequence[ThoughtNode]) -> None:
        """Set ``value``, ``scores``, ``final`` and ``correct`` on ``nodes`` (with a beam,
        ``value`` stays None where no sample could change which states it keeps)."""
        pending: list[_Pending] = []
        fixed: list[ThoughtNode] = []
        for node in nodes:
            steps = tree.path(node)
            node.final = self.task.is_final(problem, steps)
            if node.final:
                node.correct = self.task.check_answer(problem, steps)
            node.value = self.task.static_value(problem, steps)
            if node.value is not None:
                fixed.append(node)
            else:
                pending.append(_Pending(node, steps, self.key(problem, steps)))
        if len(pending) == 1 and self.config.evaluation_method == "vote":
            pending[0].node.value = 1.0  # a vote with one candidate is decided before it is asked
        elif pending and self.config.evaluation_method == "vote":
            await self._vote(problem, pending)
        elif pending:
            await self._values(problem, pending, fixed)

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
        task = self.task
        while wanted := self._wanted(problem, pending, fixed):
            # Where a request may answer n samples, one asks them all: rounds save nothing.
            rounds = self.config.adaptive_sampling and self.caller.n_support.honoured is False
            asks: list[tuple[str, list[_Pending], Callable[[str], list[float]]]]
            if self.config.value_batch and isinstance(task, BatchValueTask):
                # Siblings (one parent's new states) share one prompt per sample.
                groups: dict[int | None, list[_Pending]] = {}
                for item in wanted:
                    groups.setdefault(item.node.parent, []).append(item)
                asks = [
                    (
                        task.value_batch_prompt(problem, [item.steps for item in group]),
                        group,
                        functools.partial(task.parse_value_batch, count=len(group)),
                    )
                    for group in groups.values()
                ]
            else:
                asks = [
                    (task.value_prompt(problem, item.steps), [item], self._parse_one)
                    for item in wanted
                ]
            await gather_or_cancel(
                *(
                    self._ask(
                        prompt, items, 1 if rounds else max(map(self._remaining, items)), parse
                    )
                    for prompt, items, parse in asks
                )
            )
            for item in wanted:
                self._settle(problem, item)
        for item in pending:
            self._finish(item)

    def _open(self, item: _Pending) -> bool:
        # A failed sample uses up its turn: a state gets n asks at most.
        return not (item.settled or item.stopped or self._remaining(item) <= 0)

    def _remaining(self, item: _Pending) -> int:
        return self.config.n_evaluate_sample - len(item.scores) - len(item.errors)

    def _wanted(
        self, problem: str, pending: list[_Pending], fixed: list[ThoughtNode]
    ) -> list[_Pending]:
        open_items = [item for item in pending if self._open(item)]
        config = self.config
        greedy_bfs = config.search_method == "bfs" and config.selection == "greedy"
        if not open_items or not config.adaptive_sampling or not greedy_bfs:
            return open_items
        n = self.config.n_evaluate_sample
        value_range = self.task.value_range
        candidates: list[Candidate] = []
        for item in pending:
            is_open = self._open(item)
            if item.scores or is_open:  # else: no value and none to come
                low, high = value_interval(item.scores, n, value_range, settled=not is_open)
                node = item.node
                candidates.append(
                    Candidate(node.id, low, high, node.final, is_open, bool(item.scores))
                )
        for node in fixed:
            value = node.value if node.value is not None else value_range[0]
            candidates.append(Candidate(node.id, value, value, node.final, open=False))
        # No state of the level goes further: the best is the answer, and must be known.
        last = all(
            item.node.final
            or item.node.depth >= self.config.max_depth
            or not self.task.can_expand(problem, item.steps)
            for item in pending
        )
        chosen = set(to_sample(candidates, config.n_select_sample, need_top=last))
        return [item for item in open_items if item.node.id in chosen]

    async def _ask(
        self, prompt: str, items: list[_Pending], count: int, parse: Callable[[str], list[float]]
    ) -> None:
        """``count`` samples of ``prompt``, which values ``items`` (one score each per output)."""
        result = await self.caller.samples(
            prompt, count, "evaluation", fill=not self.config.adaptive_sampling
        )
        for output in result.outputs:
            for item, score in zip(items, parse(output), strict=True):
                if self._remaining(item) > 0:
                    item.outputs.append(output)
                    item.scores.append(score)
        for item in items:
            item.errors.extend(result.errors)
            item.stopped = item.stopped or result.refused > 0

    def _settle(self, problem: str, item: _Pending) -> None:
        if len(item.scores) >= self.config.n_evaluate_sample:
            item.settled = True
        elif self.config.adaptive_sampling and item.scores:
            # Stored scores have no completions; the new ones line up with the tail.
            tail = item.scores[len(item.scores) - len(item.outputs) :]
            item.settled = self.task.samples_agree(
                problem, item.steps, item.outputs, tail
            ) or self.task.samples_agree(problem, item.steps, [], item.scores)

    def _finish(self, item: _Pending) -> None:
        node = item.node
        node.error = failed("evaluation", item.errors, item.asked)
        if not item.scores:
            if not item.stopped and not item.errors:
                self.caller.counters.samples_saved += self.config.n_evaluate_sample
                self.skipped.add(node.id)
            return
        node.scores = list(item.scores)
        node.value = self.task.aggregate_values(node.scores)
        if item.asked == 0:
            self.caller.counters.cache_hits += 1  # scores came from the store
            return
        if not item.stopped:
            self.caller.counters.samples_saved += max(self._remaining(item), 0)
        self.store.put(item.key, StoredValue(tuple(item.scores), settled=item.settled))

    async def _vote(self, problem: str, pending: list[_Pending]) -> None:
        prompt = self.task.vote_prompt(problem, [item.steps for item in pending])
        result = self.votes.get(prompt)
        hit = result is not None
        if result is None:
            result = await self.caller.samples(prompt, self.config.n_evaluate_sample, "evaluation")
            if result.outputs and not result.errors and not result.refused:
                self.votes[prompt] = result
        else:
            self.caller.counters.cache_hits += 1
        asked = len(result.outputs) + len(result.errors) + result.refused
        error = failed("evaluation", result.errors, asked)
        choices = [self.task.parse_vote(output, len(pending)) for output in result.outputs]
        for index, item in enumerate(pending):
            item.node.cached, item.node.error = hit, error
            if result.outputs:
                item.node.scores = [1.0 if choice == index else 0.0 for choice in choices]
                item.node.value = sum(item.node.scores) / len(item.node.scores)

    def _parse_one(self, output: str) -> list[float]:
        return [self.task.parse_value(output)]
