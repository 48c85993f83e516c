"""Issue 22: answers and steps checked by program, samples in one request, batched values."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from benchmarks.game24_model import (
    ImperfectGame24Backend,
    ImperfectGame24Model,
    ScriptedGame24Backend,
    scripted_game24_reply,
)
from benchmarks.game24_replay import paper_bfs_llm_calls
from pygent_lc.errors import ConfigurationError
from pygent_lc.testing import ScriptedBackend
from pygent_lc.tot import Game24Task, GenericTask, ToTConfig, ToTEngine
from pygent_lc.tot.tasks.base import BatchValueTask, VerifyingTask

PUZZLE = "4 9 10 13"


# steps checked by program ---------------------------------------------------
@pytest.mark.parametrize(
    ("step", "valid"),
    [
        ("13 - 9 = 4 (left: 4 4 10)", True),
        ("10 / 4 = 2.5 (left: 2.5 9 13)", True),
        ("10 / 4 = 5/2 (left: 9 13 5/2)", True),
        ("12 + 26 = 44 (left: 12 44 12)", False),  # the example: not in the state
        ("13 - 9 = 5 (left: 4 5 10)", False),  # wrong arithmetic
        ("13 - 9 = 4 (left: 4 4 11)", False),  # wrong left list
        ("13 - 9 = 4 (left: 4 10)", False),  # a number dropped
        ("13 - 9 - 4 = 0 (left: 0 10)", False),  # three numbers in one step
        ("4 / 0 = 0 (left: 0 9 10 13)", False),
    ],
)
def test_game24_checks_a_step_by_program(step, valid):
    assert Game24Task().check_step(PUZZLE, [step]) is valid


def test_game24_checks_a_later_step_against_the_state_before_it():
    task = Game24Task()
    first = "10 / 4 = 2.5 (left: 2.5 9 13)"
    assert task.check_step(PUZZLE, [first, "13 - 9 = 4 (left: 5/2 4)"]) is True
    assert task.check_step(PUZZLE, [first, "13 - 10 = 3 (left: 2.5 3 9)"]) is False
    assert task.check_step(PUZZLE, [first, "Answer: 24"]) is None  # answers are not steps


def _proposes(lines: Sequence[str]) -> ScriptedGame24Backend:
    """The scripted model, but the first proposal of the puzzle is ``lines``."""

    def reply(prompt: str) -> str:
        if prompt.rstrip().endswith("Possible next steps:") and f"Input: {PUZZLE}\n" in prompt:
            return "\n".join(lines)
        return scripted_game24_reply(prompt)

    return ScriptedBackend(reply, model_id="proposes")  # type: ignore[return-value]


async def test_an_invalid_proposal_is_pruned_before_any_value_call_and_counted():
    backend = _proposes(["12 + 26 = 44 (left: 12 44 12)", "13 - 9 = 4 (left: 4 4 10)"])
    # States with two numbers left valued as the paper does, so value prompts are asked.
    config = ToTConfig(expand_checked=False)
    result = await ToTEngine(config, backend, task=Game24Task()).solve(PUZZLE)
    assert result.stats.invalid_pruned == 1
    rejected = [n for n in result.tree.nodes if n.text.startswith("12 + 26")]
    assert len(rejected) == 1
    assert rejected[0].pruned and rejected[0].value is None and rejected[0].error
    # no value prompt ever asked about the numbers the invalid step claims
    value_prompts = [p for p in backend.prompts if p.startswith("Evaluate")]
    assert value_prompts
    assert not any(p.rstrip().endswith("12 12 44") for p in value_prompts)
    assert result.best is not None and result.best.correct is True


# answers checked and written by program --------------------------------------
async def test_game24_answers_are_written_by_program_not_asked():
    backend = ScriptedGame24Backend()
    result = await ToTEngine(ToTConfig(), backend, task=Game24Task()).solve(PUZZLE)
    assert result.best is not None and result.best.correct is True
    assert not any("Steps:" in p for p in backend.prompts)  # no answer-writing call
    assert not any(p.rstrip().endswith("Judge:") for p in backend.prompts)


def test_program_answer_only_from_steps_that_leave_24():
    task = Game24Task()
    steps = ["13 - 9 = 4 (left: 4 4 10)", "10 - 4 = 6 (left: 4 6)", "6 * 4 = 24 (left: 24)"]
    answer = task.program_answer(PUZZLE, steps)
    assert answer is not None and task.check_answer(PUZZLE, [*steps, answer]) is True
    assert task.program_answer(PUZZLE, steps[:2]) is None
    wrong = [*steps[:2], "6 * 4 = 24 (left: 24)"]
    wrong[1] = "10 - 4 = 7 (left: 4 7)"  # a step that does not hold
    assert task.program_answer(PUZZLE, wrong) is None


class _CheckedAnswers(GenericTask):
    """The generic task with a program checker: the answer is 42."""

    verifies_answers = True

    def check_step(self, problem: str, steps: Sequence[str]) -> bool | None:
        return None

    def program_answer(self, problem: str, steps: Sequence[str]) -> str | None:
        return None

    def check_answer(self, problem: str, steps: Sequence[str]) -> bool | None:
        return self.is_final(problem, steps) and steps[-1].endswith("42")


def _answer_or_step(prompt: str) -> str:
    if "Possible next steps:" in prompt:
        return "Final answer: 42\nstep x"
    return "Score: 5"


@pytest.mark.parametrize(("setting", "value_calls"), [(None, 0), (True, 0), (False, 2)])
async def test_a_verified_answer_ends_the_search_without_valuing_its_level(setting, value_calls):
    assert isinstance(_CheckedAnswers(), VerifyingTask)
    backend = ScriptedBackend(_answer_or_step)
    config = ToTConfig(n_evaluate_sample=1, stop_on_verified=setting)
    result = await ToTEngine(config, backend, task=_CheckedAnswers()).solve("q")
    assert result.best is not None and result.best.correct is True
    assert result.stats.evaluation_calls == value_calls


async def test_the_generic_task_has_no_verifier_so_its_level_is_valued():
    backend = ScriptedBackend(_answer_or_step)
    config = ToTConfig(n_evaluate_sample=1)
    result = await ToTEngine(config, backend, task=GenericTask()).solve("q")
    assert not isinstance(GenericTask(), VerifyingTask)
    assert result.stats.evaluation_calls >= 1


# n samples in one request -----------------------------------------------------
def _value_requests(backend: ScriptedBackend) -> list[dict[str, object]]:
    return [k for p, k in zip(backend.prompts, backend.kwargs, strict=True) if "Evaluate" in p]


async def test_samples_go_as_one_request_where_the_model_answers_n():
    config = ToTConfig(adaptive_sampling=False, value_cache=None)
    one_each = ScriptedGame24Backend(track_usage=True)
    together = ScriptedGame24Backend(track_usage=True, honours_n=True)
    first = await ToTEngine(config, one_each, task=Game24Task()).solve(PUZZLE)
    engine = ToTEngine(config, together, task=Game24Task())
    second = await engine.solve(PUZZLE)
    assert engine.samples_support.honoured is True
    assert [k.get("n") for k in _value_requests(together)] == [3] * len(_value_requests(together))
    # the same samples, a third of the value requests, the prompt paid once a state
    assert first.best is not None and second.best is not None
    assert first.best.text == second.best.text
    assert 3 * second.stats.evaluation_calls == first.stats.evaluation_calls
    assert first.stats.usage is not None and second.stats.usage is not None
    assert second.stats.usage.output_tokens == first.stats.usage.output_tokens
    assert second.stats.usage.input_tokens < first.stats.usage.input_tokens
    assert second.stats.usage.calls == second.stats.llm_calls


async def test_a_model_that_ignores_n_is_asked_once_then_one_request_a_sample():
    backend = ScriptedGame24Backend(track_usage=True)
    engine = ToTEngine(ToTConfig(adaptive_sampling=False), backend, task=Game24Task())
    result = await engine.solve(PUZZLE)
    assert engine.samples_support.honoured is False
    assert result.best is not None and result.best.correct is True
    # every sample answered, and the usage counts every request the backend saw
    assert result.stats.usage is not None
    assert result.stats.usage.calls == backend.calls == result.stats.llm_calls
    await engine.solve("1 1 4 6")  # remembered: no request with n > 1 in a later solve
    later = backend.kwargs[result.stats.llm_calls :]
    assert later and all("n" not in k for k in later)


# values in batches --------------------------------------------------------------
async def test_value_batch_asks_one_prompt_per_parent_and_finds_the_answer():
    backend = ScriptedGame24Backend()
    config = ToTConfig(value_batch=True, value_cache=None)
    result = await ToTEngine(config, backend, task=Game24Task()).solve(PUZZLE)
    assert isinstance(Game24Task(), BatchValueTask)
    assert result.best is not None and result.best.correct is True
    batch = [p for p in backend.prompts if p.rstrip().endswith("Answers:")]
    assert batch and not any(p.startswith("Evaluate") and p not in batch for p in backend.prompts)
    # one prompt per parent and sample round: fewer prompts than states valued
    valued = [n for n in result.tree.nodes if n.scores and not n.cached]
    assert len(batch) < len(valued)


def test_parse_value_batch_reads_numbered_lines_and_scores_missing_ones_zero():
    scores = Game24Task().parse_value_batch("2. 4 6: 4 * 6 = 24 sure\n1. 9 9: likely\n", 3)
    assert scores == [1.0, 20.0, 0.0]


async def test_value_batch_needs_a_task_that_batches():
    engine = ToTEngine(ToTConfig(value_batch=True), ScriptedBackend(), task=GenericTask())
    with pytest.raises(ConfigurationError) as info:
        await engine.solve("q")
    assert info.value.field == "value_batch"
    with pytest.raises(ConfigurationError):
        ToTConfig(value_batch=True, evaluation_method="vote")


# the imperfect model ---------------------------------------------------------------
def test_the_imperfect_model_is_seeded_and_the_same_for_the_paper_and_the_engine():
    a, b, c = ImperfectGame24Model(7), ImperfectGame24Model(7), ImperfectGame24Model(8)
    propose = Game24Task().propose_prompt(PUZZLE, [])
    assert [a(propose) for _ in range(5)] == [b(propose) for _ in range(5)]
    assert [c(propose) for _ in range(5)] != [ImperfectGame24Model(7)(propose) for _ in range(5)]
    # it errs: some proposals do not hold, over many asks
    task = Game24Task()
    model = ImperfectGame24Model(1)
    lines = [line for _ in range(20) for line in model(propose).splitlines()]
    checks = [task.check_step(PUZZLE, [line]) for line in lines]
    assert False in checks and True in checks


async def test_engine_and_paper_on_the_same_imperfect_model_beat_the_paper_in_tokens():
    puzzles = ["4 9 10 13", "1 1 4 6", "2 5 8 11", "3 3 8 8", "1 4 8 8", "5 5 5 9"]
    engine = ToTEngine(
        ToTConfig(seed=0), ImperfectGame24Backend(seed=3, track_usage=True), task=Game24Task()
    )
    tokens = solved = 0
    for puzzle in puzzles:
        result = await engine.solve(puzzle)
        assert result.stats.usage is not None
        tokens += result.stats.usage.total_tokens
        solved += bool(result.best and result.best.correct)
    shared: dict[str, float] = {}
    model = ImperfectGame24Model(3)
    paper = [paper_bfs_llm_calls(p, model, value_cache=shared) for p in puzzles]
    paper_tokens = sum(r.input_tokens + r.output_tokens for r in paper)
    assert solved >= sum(r.solved for r in paper) - 1
    assert tokens < paper_tokens


# states whose next step is checked by program are expanded, not valued --------------
def _two_left_value_prompts(prompts: list[str]) -> list[str]:
    """Value prompts about a state with two numbers left (its last line: ``Input: a b``)."""
    asked = [p for p in prompts if p.startswith("Evaluate")]
    return [p for p in asked if len(p.rstrip().splitlines()[-1].split()) == 2]


async def test_states_with_two_numbers_left_are_expanded_instead_of_valued():
    backend = ScriptedGame24Backend()
    config = ToTConfig(n_select_sample=2)
    result = await ToTEngine(config, backend, task=Game24Task()).solve(PUZZLE)
    assert result.best is not None and result.best.correct is True
    assert not _two_left_value_prompts(backend.prompts)
    two_left = [n for n in result.tree.nodes if n.depth == 2 and not n.pruned]
    assert len(two_left) > config.n_select_sample  # all go on, beside the beam
    assert all(n.value is None and n.selected for n in two_left)

    paper = ScriptedGame24Backend()
    off = ToTConfig(n_select_sample=2, expand_checked=False)
    result = await ToTEngine(off, paper, task=Game24Task()).solve(PUZZLE)
    assert result.best is not None and result.best.correct is True
    assert _two_left_value_prompts(paper.prompts)  # the paper's way: valued, then the beam


async def test_with_value_batch_such_states_are_valued_by_default():
    """A parent's states valued in one prompt cost less than a generation call each."""
    backend = ScriptedGame24Backend()
    config = ToTConfig(n_select_sample=2, value_batch=True)
    result = await ToTEngine(config, backend, task=Game24Task()).solve(PUZZLE)
    two_left = [n for n in result.tree.nodes if n.depth == 2 and n.value is not None]
    assert two_left
    assert len([n for n in two_left if n.selected]) <= config.n_select_sample
