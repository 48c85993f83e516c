"""Game of 24: the task, the data, the scripted solver, and end-to-end searches."""

from __future__ import annotations

import itertools
from collections import Counter
from fractions import Fraction

import pytest

from benchmarks.game24_model import (
    ScriptedGame24Backend,
    propose_steps,
    reachable,
    scripted_game24_reply,
    solve24,
)
from benchmarks.game24_replay import (
    PAPER_TEST_RANGE,
    PUZZLES_CSV,
    load_game24_puzzles,
    paper_bfs_llm_calls,
)
from pygent_lc.errors import InvalidInputError
from pygent_lc.tot import Game24Task, ToTConfig, ToTEngine, check_24
from pygent_lc.tot.tasks.game24 import current_numbers

PUZZLES = load_game24_puzzles()
PAPER_SETTINGS = {"n_generate_sample": 1, "n_evaluate_sample": 3, "max_depth": Game24Task.STEPS}


# --- data ---------------------------------------------------------------------------


def test_the_papers_puzzles_and_their_source():
    assert len(PUZZLES) == 1362
    assert PUZZLES[0] == "1 1 4 6"
    start, end = PAPER_TEST_RANGE
    assert (start, end) == (900, 1000)
    assert PUZZLES[900] == "4 5 6 10"
    assert all(len(p.split()) == 4 for p in PUZZLES)
    readme = (PUZZLES_CSV.parent / "README.md").read_text("utf-8")
    assert "Yao" in readme
    assert "princeton-nlp/tree-of-thought-llm" in readme
    assert "MIT" in readme


# --- the task -----------------------------------------------------------------------


def test_validate_problem():
    task = Game24Task()
    assert task.validate_problem(" 4  9, 10 13 ") == "4 9 10 13"
    for bad in ["", "1 2 3", "1 2 3 4 5", "a b c d", "1 2 3 -4", "1 2 3 4.5"]:
        with pytest.raises(InvalidInputError):
            task.validate_problem(bad)


def test_prompts_follow_the_state():
    task = Game24Task()
    p = "4 9 10 13"
    assert current_numbers(p, []) == "4 9 10 13"
    steps = ["13 - 9 = 4 (left: 4 4 10)"]
    assert current_numbers(p, steps) == "4 4 10"
    assert task.propose_prompt(p, steps).endswith("Input: 4 4 10\nPossible next steps:\n")
    assert task.value_prompt(p, steps).endswith("\n4 4 10\n")
    done = [*steps, "10 - 4 = 6 (left: 4 6)", "4 * 6 = 24 (left: 24)"]
    cot = task.propose_prompt(p, done)
    assert cot.endswith("Input: 4 9 10 13\nSteps:\n" + "\n".join(done) + "\n")
    final = [*done, "Answer: (13 - 9) * (10 - 4) = 24"]
    assert task.is_final(p, final)
    assert task.check_answer(p, final) is True
    assert task.answer(p, final) == "(13 - 9) * (10 - 4) = 24"
    assert task.value_prompt(p, final).endswith(
        "Input: 4 9 10 13\nAnswer: (13 - 9) * (10 - 4) = 24\nJudge:"
    )


def test_parsing_keeps_only_well_formed_lines():
    task = Game24Task()
    output = (
        "Possible next steps:\n4 + 9 = 13 (left: 10 13 13)\n"
        "let me think\n\n9 - 4 = 5 (left: 5 10 13)"
    )
    assert task.parse_proposals(output, "4 9 10 13", []) == [
        "4 + 9 = 13 (left: 10 13 13)",
        "9 - 4 = 5 (left: 5 10 13)",
    ]
    at_answer = ["a (left: 24)"]
    assert task.parse_proposals("Steps: x\nAnswer: 4 * 6 = 24", "4 6 1 1", at_answer) == [
        "Answer: 4 * 6 = 24"
    ]
    assert task.parse_value("4 + 4 = 8\nlikely") == 1.0
    assert task.parse_value("sure") == 20.0
    assert task.parse_value("impossible") == 0.001
    assert task.parse_value("no idea") == 0.0
    # the mean: states valued from fewer samples rank fairly
    assert task.aggregate_values([20.0, 1.0, 0.001]) == pytest.approx(21.001 / 3)


def test_dead_ends_are_not_expanded_and_full_paths_need_an_answer():
    task = Game24Task()
    p = "1 1 1 1"
    assert not task.can_expand(p, ["a (left: 1 1 2)", "b (left: 2 2)", "c (left: 4)"])
    assert task.can_expand(p, ["a (left: 1 1 2)", "b (left: 2 2)", "c (left: 24)"])
    four = ["a (left: 1 1 2)", "b (left: 2 2)", "c (left: 24)", "d (left: 24)"]
    assert task.static_value(p, four) == 0.0
    assert task.static_value(p, four[:1]) is None
    wrong = ["x", "y", "z", "Answer: 1 + 1 + 1 + 1 = 24"]
    assert task.is_final(p, wrong)
    assert task.check_answer(p, wrong) is False


# --- the scripted solver ------------------------------------------------------------


def test_scripted_proposals_are_real_arithmetic():
    numbers = [Fraction(n) for n in (4, 9, 10, 13)]
    lines = propose_steps(numbers, limit=100)
    assert len(lines) > 8
    for line in lines:
        expr, rest = line.split(" = ")
        a, op, b = expr.split()
        result, left = rest.split(" (left: ")
        a_, b_, r_ = Fraction(a), Fraction(b), Fraction(result)
        assert {"+": a_ + b_, "-": a_ - b_, "*": a_ * b_, "/": a_ / b_ if b_ else None}[op] == r_
        remaining = Counter(numbers)
        remaining[a_] -= 1
        remaining[b_] -= 1
        remaining[r_] += 1
        assert +remaining == Counter(Fraction(t) for t in left.rstrip(")").split())
    assert reachable(list(numbers))
    assert not reachable([1, 1, 1, 1])
    # a strong model's ordering: steps that keep 24 reachable come first
    first = propose_steps(numbers)[0]
    assert reachable([Fraction(t) for t in first.split("left: ")[1].rstrip(")").split()])


@pytest.mark.parametrize("puzzle", PUZZLES[900:920])
def test_scripted_solver_finds_a_checked_expression(puzzle):
    expression = solve24([int(n) for n in puzzle.split()])
    assert expression is not None
    assert check_24(expression, puzzle)


def test_scripted_replies_cover_every_prompt_kind():
    task = Game24Task()
    p = "4 9 10 13"
    assert scripted_game24_reply(task.value_prompt(p, [])).endswith("sure")
    assert scripted_game24_reply(task.value_prompt("1 1 1 1", [])).endswith("impossible")
    steps = ["13 - 9 = 4 (left: 4 4 10)", "10 - 4 = 6 (left: 4 6)", "6 * 4 = 24 (left: 24)"]
    answer = scripted_game24_reply(task.propose_prompt(p, steps))
    assert answer.startswith("Answer: ")
    assert check_24(answer, p)
    assert scripted_game24_reply(task.value_prompt(p, [*steps, answer])) == "sure"
    assert scripted_game24_reply(task.value_prompt(p, [*steps, "Answer: 4 * 6 = 24"])) == (
        "impossible"
    )
    vote = scripted_game24_reply(task.vote_prompt(p, [["9 + 4 = 13 (left: 10 13 13)"], steps[:1]]))
    assert vote == "The best choice is 2"
    assert scripted_game24_reply(task.sample_prompt(p, [])).endswith(")")


# --- end to end -----------------------------------------------------------------------

TEST_PUZZLES = PUZZLES[900:920]


@pytest.mark.parametrize("beam", [5, 1])
async def test_engine_solves_puzzles_with_no_more_calls_than_the_paper(beam):
    config = ToTConfig(n_select_sample=beam, **PAPER_SETTINGS)
    total_engine = total_paper = 0
    for puzzle in TEST_PUZZLES:
        backend = ScriptedGame24Backend()
        result = await ToTEngine(config, backend, task=Game24Task()).solve(puzzle)
        paper = paper_bfs_llm_calls(puzzle, n_evaluate_sample=3, n_select_sample=beam)
        assert result.solved, puzzle
        assert result.best is not None
        assert result.best.correct is True
        assert check_24(result.best.text, puzzle)
        assert result.stats.llm_calls == backend.calls
        assert result.stats.llm_calls <= paper.llm_calls, puzzle
        assert paper.solved
        total_engine += result.stats.llm_calls
        total_paper += paper.llm_calls
    assert total_engine <= total_paper


async def test_paper_call_count_is_what_its_algorithm_issues():
    """Hand count for one puzzle with b=1: each step one propose + 3 per new value prompt."""
    puzzle = "4 9 10 13"
    prompts: list[str] = []

    def reply(prompt: str) -> str:
        prompts.append(prompt)
        return scripted_game24_reply(prompt)

    run = paper_bfs_llm_calls(puzzle, reply, n_evaluate_sample=3, n_select_sample=1)
    assert run.llm_calls == len(prompts)
    propose = [p for p in prompts if p.rstrip().endswith("Possible next steps:")]
    assert len(propose) == 3  # steps 1-3; step 4's "propose" is the answer prompt
    values = Counter(p for p in prompts if "sure/likely/impossible" in p or "Judge:" in p)
    assert set(values.values()) == {3}  # every distinct value prompt asked 3 times, once
    assert run.solved


async def test_value_cache_hits_on_game24(scripted):
    config = ToTConfig(**PAPER_SETTINGS)
    engine = ToTEngine(config, ScriptedGame24Backend(), task=Game24Task())
    first = await engine.solve("4 9 10 13")
    # the same numbers in another order: every state is met again, by its key
    result = await engine.solve("13 10 9 4")
    assert result.stats.cache_hits > 0
    assert result.stats.evaluation_calls < first.stats.evaluation_calls
    cached = [n for n in result.tree.nodes if n.cached]
    assert len(cached) == result.stats.cache_hits


async def test_wall_time_on_game24_is_near_the_critical_path():
    latency = 0.25  # long enough that a loaded machine's scheduling delays fit the bound
    config = ToTConfig(
        n_generate_sample=3,
        n_evaluate_sample=2,
        n_select_sample=3,
        max_depth=3,
        max_concurrency=64,
    )
    backend = ScriptedGame24Backend(latency_s=latency)
    result = await ToTEngine(config, backend, task=Game24Task()).solve("4 9 10 13")
    critical_path = 3 * (latency + latency)
    assert result.stats.depth_reached == 3
    assert result.stats.wall_time_s <= 1.5 * critical_path
    assert result.stats.wall_time_s < backend.calls * latency / 5
    assert result.stats.duplicates_merged > 0


async def test_usage_is_reported_when_the_backend_tracks_it():
    config = ToTConfig(**PAPER_SETTINGS)
    backend = ScriptedGame24Backend(track_usage=True)
    result = await ToTEngine(config, backend, task=Game24Task()).solve("4 9 10 13")
    usage = backend.usage_totals()
    assert usage is not None
    assert result.stats.usage == usage
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0


@pytest.mark.parametrize(
    "settings",
    [
        {"search_method": "dfs", "value_threshold": 1.0, "n_select_sample": 3},
        {"evaluation_method": "vote", "n_select_sample": 3},
        {"generation_strategy": "sample", "n_generate_sample": 2, "n_select_sample": 3},
    ],
    ids=["dfs", "vote", "sample"],
)
async def test_other_search_settings_solve_too(settings):
    config = ToTConfig(**{**PAPER_SETTINGS, **settings})
    for puzzle in PUZZLES[900:905]:
        result = await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(puzzle)
        assert result.solved, (settings, puzzle)
        assert result.best is not None
        assert check_24(result.best.text, puzzle)


def test_every_paper_test_puzzle_is_solvable_by_the_reference_solver():
    start, end = PAPER_TEST_RANGE
    for puzzle in itertools.islice(PUZZLES, start, end):
        assert reachable([int(n) for n in puzzle.split()]), puzzle
