"""The engine's contract at its edges: depth, labels, order, budgets, typing."""

from __future__ import annotations

import asyncio
import itertools
import random
import typing
from typing import Any

import pytest

from benchmarks.game24_model import ScriptedGame24Backend, scripted_game24_reply
from pygent_lc.backend import LLMBackend, UsageTotals
from pygent_lc.tot import Game24Task, GenericTask, ToTConfig, ToTEngine

# --- the depth comes from the task -------------------------------------------------------


async def test_default_config_searches_game24_to_its_own_depth_and_solves():
    result = await ToTEngine(ToTConfig(), ScriptedGame24Backend(), task=Game24Task()).solve(
        "4 9 10 13"
    )
    assert result.config.max_depth == Game24Task.STEPS
    assert result.solved
    assert result.best is not None and result.best.correct is True


async def test_a_depth_the_caller_sets_is_kept(scripted, ladder):
    config = ToTConfig(max_depth=3)
    result = await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve("4 9 10 13")
    assert result.config.max_depth == 3
    assert result.stats.depth_reached == 3
    assert not result.solved  # three steps leave 24, but the answer line is a fourth
    generic = await ToTEngine(ToTConfig(), scripted(ladder)).solve("q")
    assert generic.config.max_depth == GenericTask.default_depth
    assert config.updated(n_select_sample=2).depth_for(4) == 3  # still set after a copy
    assert ToTConfig().updated(n_select_sample=2).depth_for(4) == 4  # still unset


# --- value labels as the paper reads them ------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("not sure", 0.0),
        ("10 14: 10 + 14 = 24\nI am not sure", 0.0),
        ("unlikely", 0.0),
        ("4 + 4 = 8\nlikely", 1.0),
        ("likely.", 1.0),
        ("**Sure**", 20.0),
        ("sure\nimpossible", 0.001),  # the last line counts
        ("impossible\nbut maybe sure of nothing", 0.0),
        ("surely", 0.0),
        ("", 0.0),
    ],
)
def test_game24_value_label_is_the_last_lines_whole_word(output: str, expected: float) -> None:
    assert Game24Task().parse_value(output) == expected


def test_generic_value_words_are_whole_words_too():
    task = GenericTask()
    assert task.parse_value("this path is unlikely") == 0.0
    assert task.parse_value("This is likely") == 0.5
    assert task.parse_value("not sure") == 0.0
    assert task.parse_value("Score: 8") == pytest.approx(0.8)


# --- order-independent values, reproducible searches -------------------------------------


@pytest.mark.parametrize("task", [Game24Task(), GenericTask()])
def test_aggregation_does_not_depend_on_sample_order(task: Any) -> None:
    scores = [0.001, 1.0, 0.001, 20.0, 0.1, 0.7]
    values = {task.aggregate_values(list(p)) for p in itertools.permutations(scores)}
    assert len(values) == 1


def test_a_state_valued_from_fewer_samples_ranks_on_its_mean():
    task = Game24Task()
    one_sure = task.aggregate_values([20.0])
    two_sure_one_likely = task.aggregate_values([20.0, 20.0, 1.0])
    three_likely = task.aggregate_values([1.0, 1.0, 1.0])
    assert one_sure > two_sure_one_likely > three_likely  # a sum would rank 41 > 20


class _ShuffledGame24(ScriptedGame24Backend):
    """The scripted model with noisy labels and a random latency per call.

    A state's label noise depends only on its prompt and on how many times
    that prompt was asked, so two runs see the same answers, but in a
    different completion order.
    """

    def __init__(self, order_seed: int) -> None:
        super().__init__()
        self._latency = random.Random(order_seed)
        self._asked: dict[str, int] = {}

    def reply(self, prompt: str) -> str:
        text = scripted_game24_reply(prompt)
        count = self._asked.get(prompt, 0)
        self._asked[prompt] = count + 1
        if text.endswith("\nsure") and random.Random(f"{prompt}{count}").random() < 0.4:
            return text.rsplit("\n", 1)[0].split("=")[0] + "\nlikely"
        return text

    async def generate(self, prompt: str, **kwargs: Any) -> str:
        await asyncio.sleep(self._latency.random() * 0.004)
        return await super().generate(prompt, **kwargs)


@pytest.mark.parametrize("selection", ["greedy", "sample"])
async def test_a_seeded_search_is_reproducible_whatever_order_calls_finish(selection: str) -> None:
    config = ToTConfig(seed=7, selection=selection, value_cache=None)
    runs = []
    for order_seed in range(3):
        result = await ToTEngine(config, _ShuffledGame24(order_seed), task=Game24Task()).solve(
            "4 9 10 13"
        )
        runs.append(
            (
                result.stats.llm_calls,
                [(n.text, n.value, n.selected) for n in result.tree.nodes],
            )
        )
    assert runs[0] == runs[1] == runs[2]


# --- the cost budget holds under concurrency ---------------------------------------------


class _PricedBackend(LLMBackend):
    """The scripted Game-of-24 model at $0.001 a call, 20 ms each."""

    def __init__(self) -> None:
        self.calls = 0
        self.in_flight = 0
        self.peak = 0
        self.cost = 0.0

    async def generate(self, prompt: str, **kwargs: Any) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            self.calls += 1
            self.cost += 0.001
            return scripted_game24_reply(prompt)
        finally:
            self.in_flight -= 1

    def usage_totals(self) -> UsageTotals | None:
        return UsageTotals(calls=self.calls, cost_usd=self.cost)

    def cost_bound(self, prompt: str, max_tokens: int | None) -> float | None:
        return 0.001  # every call costs exactly that


async def test_max_cost_usd_is_never_passed_by_bounded_calls_under_concurrency():
    backend = _PricedBackend()
    config = ToTConfig(max_cost_usd=0.005, max_concurrency=8, value_cache=None)
    result = await ToTEngine(config, backend, task=Game24Task()).solve("4 9 10 13")
    assert result.stats.budget_exhausted is not None
    assert result.stats.budget_exhausted.startswith("max_cost_usd")
    assert result.stats.usage is not None
    assert result.stats.usage.cost_usd <= 0.005 + 1e-9
    assert backend.peak > 1  # the calls did run concurrently: each one's bound is known
    assert backend.in_flight == 0


# --- the backend is required, and typed so -----------------------------------------------


def test_the_backend_is_typed_as_required():
    overloads = typing.get_overloads(ToTEngine.__init__)
    assert overloads
    for overload in overloads:
        hints = typing.get_type_hints(overload)
        assert hints["backend"] is LLMBackend


async def test_dead_states_are_neither_proposed_from_nor_valued():
    backend = ScriptedGame24Backend()
    result = await ToTEngine(ToTConfig(), backend, task=Game24Task()).solve("4 9 10 13")
    task = Game24Task()
    dead = [
        n
        for n in result.tree.nodes[1:]
        if not task.can_expand("4 9 10 13", result.tree.path(n))
        and not task.is_final("4 9 10 13", result.tree.path(n))
    ]
    for node in dead:
        assert node.children == []
        assert node.value is None and node.pruned and not node.selected
    proposed_from = [p for p in backend.prompts if p.rstrip().endswith("Possible next steps:")]
    # "Input: a b ..." of every propose prompt: never a single number left
    assert all(len(p.splitlines()[-2].split()) >= 3 for p in proposed_from)
