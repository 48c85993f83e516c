"""BFS with a beam and DFS with pruning, level by level: all generations, then all
evaluations, each phase's calls at once; a phase whose every call failed raises."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pygent_lc.tot import observe
from pygent_lc.tot.caller import LLMCaller
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.result import ThoughtNode, ThoughtTree
from pygent_lc.tot.stages import StateEvaluator, ThoughtGenerator
from pygent_lc.tot.tasks.base import Task, children_checked


@dataclass
class SearchContext:
    """Everything one search needs; the results are left in ``tree``."""

    problem: str
    task: Task
    config: ToTConfig
    tree: ThoughtTree
    caller: LLMCaller
    generator: ThoughtGenerator
    evaluator: StateEvaluator
    rng: random.Random
    observer: observe.SearchObserver | None = None  # this search's own, besides the global one

    def checked_by_expanding(self, node: ThoughtNode) -> bool:
        """BFS with ``expand_checked``: expand ``node`` unvalued, beside the beam."""
        setting = self.config.expand_checked
        # With value_batch, one prompt values a parent's states: cheaper, so the default.
        if setting is False or (setting is None and self.config.value_batch):
            return False
        path = self.tree.path(node)
        return self.expandable(node) and children_checked(self.task, self.problem, path)

    def expandable(self, node: ThoughtNode) -> bool:
        return (
            not node.final
            and node.depth < self.config.max_depth
            and self.task.can_expand(self.problem, self.tree.path(node))
        )


async def expand_and_evaluate(
    ctx: SearchContext, parents: Sequence[ThoughtNode], *, unvalued: set[int] | None = None
) -> list[ThoughtNode]:
    """The live children of ``parents``, valued (dead ends pruned unvalued); with
    ``stop_on_verified``, only the verified answers once there is one: no call for the rest."""
    with ctx.caller.phase():
        children = await ctx.generator.expand(ctx.tree, ctx.problem, parents)
    task, problem = ctx.task, ctx.problem
    verified: list[ThoughtNode] = []  # answers the task's program checks
    for child in children:
        steps = ctx.tree.path(child)
        final = task.is_final(problem, steps)
        child.pruned = not final and not task.can_expand(problem, steps)  # a dead end
        if final and task.check_answer(problem, steps) is True:
            verified.append(child)
    live = [child for child in children if not child.pruned]
    if (stop_on_verified := ctx.config.stop_on_verified) is None:
        stop_on_verified = bool(getattr(task, "verifies_answers", False))
    if stop_on_verified and verified:
        # Valued by the program's verdict: the best a state can be, no call.
        for child in live:
            child.pruned = child not in verified
        for child in verified:
            child.final, child.correct = True, True
            child.value = task.value_range[1]
        return verified
    to_value = live
    if unvalued is not None:
        # Expanded next instead of valued (``expand_checked``): their ids go back.
        unvalued.update(child.id for child in live if ctx.checked_by_expanding(child))
        to_value = [child for child in live if child.id not in unvalued]
    if to_value:
        with ctx.caller.phase():
            await ctx.evaluator.evaluate(ctx.tree, ctx.problem, to_value)
    return live


def _by_value(nodes: Sequence[ThoughtNode]) -> list[ThoughtNode]:
    # Stable (ties: creation order, as the paper); unvalued states last (the beam took them).
    return sorted(nodes, key=lambda n: (n.value is not None, n.value or 0.0), reverse=True)


def select(
    candidates: Sequence[ThoughtNode], k: int, method: str, rng: random.Random
) -> list[ThoughtNode]:
    """``greedy``: the ``k`` best. ``sample``: ``k`` drawn without replacement, by value."""
    if method == "greedy" or len(candidates) <= k:
        return _by_value(candidates)[:k]
    pool = list(candidates)
    chosen: list[ThoughtNode] = []
    while pool and len(chosen) < k:
        weights = [max(n.value or 0.0, 0.0) for n in pool]
        if sum(weights) <= 0.0:
            weights = [1.0] * len(pool)
        pick = rng.choices(range(len(pool)), weights=weights)[0]
        chosen.append(pool.pop(pick))
    return _by_value(chosen)


async def bfs(ctx: SearchContext) -> None:
    """Keep ``n_select_sample`` states a level, up to ``max_depth``; end early when the
    beam is empty, its best state is a solution the task does not reject, or on a budget."""
    frontier = [ctx.tree.root]
    ctx.tree.root.selected = True
    while frontier and ctx.caller.exhausted is None:
        with observe.watching(ctx, frontier[0].depth + 1):
            checked: set[int] = set()
            children = await expand_and_evaluate(ctx, frontier, unvalued=checked)
            # Candidates: valued, or left unvalued on purpose (not failed or refused).
            skipped = ctx.evaluator.skipped
            valued = [
                c
                for c in children
                if c.id not in checked and (c.value is not None or c.id in skipped)
            ]
            # States whose next step is checked by program all go on, beside the beam.
            expanded = [c for c in children if c.id in checked]
            if not valued and not expanded:
                break
            chosen = select(valued, ctx.config.n_select_sample, ctx.config.selection, ctx.rng)
            chosen += expanded
            chosen_ids = {n.id for n in chosen}
            for child in [*valued, *expanded]:
                child.selected = child.id in chosen_ids
                child.pruned = not child.selected
        best = chosen[0]
        if best.final and best.correct is not False:
            break
        frontier = [n for n in chosen if ctx.expandable(n)]


async def dfs(ctx: SearchContext, node: ThoughtNode | None = None) -> bool:
    """Depth-first from ``node`` (the root): best child first (``n_select_sample`` at most),
    prune below ``value_threshold``, backtrack; stop at the first final state not rejected."""
    if node is None:
        node = ctx.tree.root
        node.selected = True
    if ctx.caller.exhausted is not None or not ctx.expandable(node):
        return False
    with observe.watching(ctx, node.depth + 1):
        children = await expand_and_evaluate(ctx, [node])
        ranked = _by_value([c for c in children if c.value is not None])
        # Prune at evaluation time: below the threshold, or beyond the breadth limit.
        keep = [c for c in ranked if (c.value or 0.0) >= ctx.config.value_threshold]
        keep = keep[: ctx.config.n_select_sample]
        for child in ranked:
            child.pruned = child not in keep
    for child in keep:
        if ctx.caller.exhausted is not None and not child.final:
            continue  # out of budget: only answers already in hand can still count
        child.selected = True
        if child.correct is not False if child.final else await dfs(ctx, child):
            return True
    return False
