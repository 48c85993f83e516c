"""Equivalent states merge; value samples stop once they agree or cannot change the beam."""

from __future__ import annotations

from benchmarks.game24_model import ScriptedGame24Backend
from pygent_lc.tot import Game24Task, ToTConfig, ToTEngine
from pygent_lc.tot.stages import Candidate, to_sample, value_interval

PUZZLE = "4 9 10 13"


def _c(order: int, low: float, high: float, *, final: bool = False, open: bool = True) -> Candidate:
    return Candidate(order, low, high, final, open=open)


def test_value_interval_spans_what_the_missing_samples_can_do():
    assert value_interval([], 3, (0.0, 20.0), settled=False) == (0.0, 20.0)
    low, high = value_interval([20.0], 3, (0.0, 20.0), settled=False)
    assert (low, high) == (20.0 / 3, 20.0)
    assert value_interval([20.0], 3, (0.0, 20.0), settled=True) == (20.0, 20.0)


def test_no_sample_is_wanted_when_the_beam_takes_every_state():
    candidates = [_c(1, 0.0, 1.0), _c(2, 0.0, 1.0)]
    assert to_sample(candidates, beam=2) == []
    # ... unless the best state is the answer: then it must be known and valued
    assert sorted(to_sample(candidates, beam=2, need_top=True)) == [1, 2]


def test_only_the_states_on_the_beam_edge_are_sampled():
    candidates = [
        _c(1, 15.0, 15.0, open=False),  # settled high: surely in
        _c(2, 0.0, 20.0),  # could go either way
        _c(3, 0.0, 4.0),  # beaten by 1 and by 4 whatever it scores: surely out
        _c(4, 10.0, 12.0),
    ]
    assert to_sample(candidates, beam=2) == [2, 4]


def test_whether_a_final_state_tops_the_beam_must_be_known():
    candidates = [_c(1, 0.0, 1.0, final=True), _c(2, 0.5, 0.5, open=False)]
    assert to_sample(candidates, beam=5) == [1]


def test_samples_agree_as_the_task_defines():
    task = Game24Task()
    steps = ["13 - 9 = 4 (left: 4 4 10)"]
    assert task.samples_agree(PUZZLE, steps, ["(10 - 4) * 4 = 24\nsure"], [20.0])
    # a "sure" whose expression does not check out is just a vote
    assert not task.samples_agree(PUZZLE, steps, ["10 + 4 = 24\nsure"], [20.0])
    assert task.samples_agree(PUZZLE, steps, [], [0.001, 0.001])
    assert not task.samples_agree(PUZZLE, steps, [], [0.001, 1.0])


async def test_adaptive_sampling_saves_samples_and_finds_the_same_answer():
    full = await ToTEngine(
        ToTConfig(adaptive_sampling=False, value_cache=None),
        ScriptedGame24Backend(),
        task=Game24Task(),
    ).solve(PUZZLE)
    adaptive = await ToTEngine(
        ToTConfig(value_cache=None), ScriptedGame24Backend(), task=Game24Task()
    ).solve(PUZZLE)
    assert full.solved and adaptive.solved
    assert full.stats.samples_saved == 0
    assert adaptive.stats.samples_saved > 0
    assert adaptive.stats.evaluation_calls < full.stats.evaluation_calls
    # every state valued with all samples asked when not adaptive
    valued = [n for n in full.tree.nodes if n.scores]
    assert all(len(n.scores) == 3 for n in valued)


async def test_paths_to_the_same_numbers_are_one_state():
    result = await ToTEngine(ToTConfig(), ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLE)
    task = Game24Task()
    assert result.stats.duplicates_merged > 0
    by_level: dict[int, list[str]] = {}
    for node in result.tree.nodes[1:]:
        by_level.setdefault(node.depth, []).append(task.state_key(PUZZLE, result.tree.path(node)))
    for keys in by_level.values():
        assert len(keys) == len(set(keys))
    assert sum(n.duplicates for n in result.tree.nodes) == result.stats.duplicates_merged
