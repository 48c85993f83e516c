"""The engine over scripted backends: results, concurrency, cache, failures, DFS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pygent_lc.errors import (
    AllProvidersFailedError,
    ConfigurationError,
    InvalidInputError,
    ProviderUnavailableError,
    RateLimitError,
)
from pygent_lc.tot import GenericTask, ToTConfig, ToTEngine, ToTResult, observe
from pygent_lc.tot.caller import gather_or_cancel
from pygent_lc.tot.search import SearchContext
from tests.tot.conftest import prompt_kind


def _config(**overrides: Any) -> ToTConfig:
    base = {
        "n_generate_sample": 1,
        "n_evaluate_sample": 2,
        "n_select_sample": 2,
        "max_depth": 3,
    }
    base.update(overrides)
    return ToTConfig(**base)


async def test_bfs_finds_the_best_final_answer(scripted, ladder):
    backend = scripted(ladder)
    result = await ToTEngine(_config(), backend).solve("What is the answer?")
    assert isinstance(result, ToTResult)
    assert result.solved
    assert result.best is not None
    assert result.best.text == "a.a.a"
    assert result.best.path == ["step a", "step a.a", "Final answer: a.a.a"]
    assert result.best.final
    assert result.best.correct is None
    assert result.best.value == pytest.approx(0.9)
    # root + 3 + (2 x 3) + (2 x 3) nodes; each level: 1 or 2 proposals, 2 values per child
    assert result.stats.nodes == 1 + 3 + 6 + 6
    assert result.stats.llm_calls == backend.calls == (1 + 6) + (2 + 12) + (2 + 12)
    assert result.stats.generation_calls == 5
    assert result.stats.evaluation_calls == 30
    assert result.stats.depth_reached == 3
    assert result.stats.budget_exhausted is None
    assert result.stats.usage is None
    root = result.tree.root
    assert root.text == "What is the answer?"
    assert root.selected


async def test_every_node_is_recorded_with_flags(scripted, ladder):
    result = await ToTEngine(_config(), scripted(ladder)).solve("q")
    level1 = [n for n in result.tree.nodes if n.depth == 1]
    assert [n.text for n in level1] == ["step a", "step b", "step c"]
    assert [n.selected for n in level1] == [True, True, False]
    assert [n.pruned for n in level1] == [False, False, True]
    assert all(n.parent == 0 for n in level1)
    assert level1[0].scores == [0.9, 0.9]
    assert level1[0].children  # expanded
    assert not level1[2].children  # pruned, never expanded


async def test_wall_time_is_near_the_critical_path(scripted, ladder):
    """The wall-time benchmark's setting (propose/value/bfs, 3/2/3, depth 3) at 250 ms a
    call: long enough that a loaded machine's scheduling delays stay inside the bound."""
    latency = 0.25
    config = ToTConfig(
        generation_strategy="propose",
        evaluation_method="value",
        search_method="bfs",
        n_generate_sample=3,
        n_evaluate_sample=2,
        n_select_sample=3,
        max_depth=3,
        max_concurrency=64,  # never binding here: the bound is tested separately
    )
    backend = scripted(ladder, latency_s=latency)
    result = await ToTEngine(config, backend).solve("q")
    levels = result.stats.depth_reached
    critical_path = levels * (latency + latency)
    sequential = backend.calls * latency
    assert levels == 3
    assert result.stats.wall_time_s <= 1.5 * critical_path
    assert result.stats.wall_time_s < sequential / 5
    # calls and cache hits are reported (3 identical proposals per state merged)
    assert result.stats.llm_calls == backend.calls
    assert result.stats.samples_saved > 0
    assert result.stats.cache_hits == 0
    assert result.stats.duplicates_merged == 2 * (1 + 3 + 3) * 3


async def test_max_concurrency_bounds_calls_in_flight(scripted, ladder):
    backend = scripted(ladder, latency_s=0.005)
    config = _config(n_generate_sample=3, n_select_sample=3, max_concurrency=2)
    result = await ToTEngine(config, backend).solve("q")
    assert backend.peak_in_flight == 2
    assert result.stats.peak_in_flight == 2


async def test_duplicate_thoughts_of_a_parent_are_merged(scripted):
    def reply(prompt: str) -> str:
        if "Possible next steps:" in prompt:
            return "same idea\nsame idea\nother idea"
        return "Score: 5"

    backend = scripted(reply, latency_s=0.01)
    # repeats inside one completion are dropped by the parser; the second
    # propose call's thoughts are merged into the first call's nodes
    config = _config(n_generate_sample=2, n_select_sample=1, max_depth=1)
    result = await ToTEngine(config, backend).solve("q")
    texts = [n.text for n in result.tree.nodes[1:]]
    assert texts == ["same idea", "other idea"]
    assert result.tree.nodes[1].duplicates == 1
    assert result.stats.duplicates_merged == 2
    assert result.stats.evaluation_calls == 4


async def test_an_identical_vote_prompt_is_asked_once_per_search(scripted, ladder):
    class OneVotePrompt(GenericTask):
        def vote_prompt(self, problem: str, candidates: Any) -> str:
            return "Which is best? End with 'The best choice is N'."

    config = _config(search_method="dfs", evaluation_method="vote", n_evaluate_sample=2)
    backend = scripted(ladder)
    result = await ToTEngine(config, backend, task=OneVotePrompt()).solve("q")
    assert result.best is not None
    assert result.best.path == ["step a", "step a.a", "Final answer: a.a.a"]
    assert result.stats.evaluation_calls == 2  # the first level's two votes, then none
    assert result.stats.cache_hits == 2  # the two deeper levels
    assert [kind for kind in map(prompt_kind, backend.prompts)].count("vote") == 2


async def test_temperatures_and_max_tokens_are_sent(scripted, ladder):
    backend = scripted(ladder)
    config = _config(temperature=0.9, evaluation_temperature=0.3, max_tokens=77, max_depth=1)
    await ToTEngine(config, backend).solve("q")
    gen, *evals = backend.kwargs
    assert gen == {"temperature": 0.9, "max_tokens": 77}
    assert all(k == {"temperature": 0.3, "max_tokens": 77} for k in evals)


async def test_sample_generation_and_vote_evaluation(scripted, ladder):
    config = _config(
        generation_strategy="sample",
        evaluation_method="vote",
        n_generate_sample=2,
        n_evaluate_sample=3,
        max_depth=2,
    )
    backend = scripted(ladder)
    result = await ToTEngine(config, backend).solve("q")
    level1 = [n for n in result.tree.nodes if n.depth == 1]
    # two samples of the deterministic ladder give one thought: a vote of one is free
    assert [n.text for n in level1] == ["step a"]
    assert level1[0].value == 1.0
    assert result.stats.evaluation_calls == 0


async def test_vote_shares_are_values(scripted):
    def reply(prompt: str) -> str:
        if "Possible next steps:" in prompt:
            return "first\nsecond\nthird"
        return "The best choice is 2"

    config = _config(evaluation_method="vote", n_evaluate_sample=3, max_depth=1)
    result = await ToTEngine(config, scripted(reply)).solve("q")
    values = {n.text: n.value for n in result.tree.nodes[1:]}
    assert values == {"first": 0.0, "second": 1.0, "third": 0.0}
    assert result.best is not None
    assert result.best.text == "second"
    assert result.stats.evaluation_calls == 3


async def test_sampled_selection_is_seeded(scripted, ladder):
    config = _config(selection="sample", seed=7, n_select_sample=1)
    first = await ToTEngine(config, scripted(ladder)).solve("q")
    second = await ToTEngine(config, scripted(ladder)).solve("q")
    assert first.best is not None
    assert second.best is not None
    assert first.best.path == second.best.path


# --- failures -------------------------------------------------------------------


def _unavailable(message: str = "upstream 503") -> ProviderUnavailableError:
    return ProviderUnavailableError(message, provider="fake", model="m", status_code=503)


async def test_one_failing_value_call_is_recorded_and_the_rest_go_on(scripted, ladder):
    def fail(prompt: str, index: int) -> BaseException | None:
        return _unavailable() if "Score: N" in prompt and "1. step b" in prompt else None

    config = _config(max_depth=1, n_select_sample=3)
    result = await ToTEngine(config, scripted(ladder, fail=fail)).solve("q")
    nodes = {n.text: n for n in result.tree.nodes[1:]}
    assert nodes["step b"].value is None
    assert "ProviderUnavailableError" in (nodes["step b"].error or "")
    assert "upstream 503" in (nodes["step b"].error or "")
    assert nodes["step a"].value == pytest.approx(0.9)
    assert nodes["step a"].error is None
    assert nodes["step c"].value == pytest.approx(0.3)
    assert result.stats.failed_calls == 2
    assert result.best is not None
    assert result.best.text == "step a"


async def test_one_failing_sample_keeps_the_others(scripted, ladder):
    failed: list[str] = []

    def fail(prompt: str, index: int) -> BaseException | None:
        if "Score: N" in prompt and not failed:
            failed.append(prompt)  # the first value sample of the first state
            return _unavailable()
        return None

    result = await ToTEngine(_config(max_depth=1), scripted(ladder, fail=fail)).solve("q")
    node = result.tree.nodes[1]
    assert node.scores == [pytest.approx(0.9)]
    assert node.value == pytest.approx(0.9)
    assert node.error is not None
    assert "1 of 2 samples" in node.error


async def test_one_failing_generation_is_recorded_on_its_parent(scripted, ladder):
    def fail(prompt: str, index: int) -> BaseException | None:
        failing = "Possible next steps:" in prompt and "1. step a\n" in prompt
        return _unavailable() if failing else None

    result = await ToTEngine(_config(), scripted(ladder, fail=fail)).solve("q")
    step_a = next(n for n in result.tree.nodes if n.text == "step a")
    assert step_a.error is not None
    assert step_a.error.startswith("generation failed")
    assert step_a.children == []
    assert result.solved  # step b's subtree still reaches answers
    assert result.best is not None
    assert result.best.path[0] == "step b"


async def test_every_call_of_a_level_failing_raises_the_provider_error(scripted, ladder):
    def fail(prompt: str, index: int) -> BaseException | None:
        return RateLimitError("slow down", provider="fake", retry_after=3.0)

    with pytest.raises(RateLimitError) as caught:
        await ToTEngine(_config(), scripted(ladder, fail=fail)).solve("q")
    assert caught.value.retry_after == 3.0


async def test_every_evaluation_failing_raises(scripted, ladder):
    def fail(prompt: str, index: int) -> BaseException | None:
        return _unavailable("evaluator down") if "Score: N" in prompt else None

    with pytest.raises(ProviderUnavailableError, match="evaluator down"):
        await ToTEngine(_config(), scripted(ladder, fail=fail)).solve("q")


async def test_all_providers_failed_counts_as_a_failed_call(scripted, ladder):
    err = AllProvidersFailedError({"a": _unavailable(), "b": _unavailable()})

    def fail(prompt: str, index: int) -> BaseException | None:
        if "Score: N" in prompt and "1. step c" in prompt:
            return err
        return None

    result = await ToTEngine(_config(max_depth=1), scripted(ladder, fail=fail)).solve("q")
    step_c = next(n for n in result.tree.nodes if n.text == "step c")
    assert "AllProvidersFailedError" in (step_c.error or "")

    with pytest.raises(AllProvidersFailedError):
        await ToTEngine(_config(), scripted(ladder, fail=lambda p, i: err)).solve("q")


async def test_unexpected_exceptions_are_not_swallowed(scripted, ladder):
    def fail(prompt: str, index: int) -> BaseException | None:
        return KeyError("bug")

    with pytest.raises(KeyError):
        await ToTEngine(_config(), scripted(ladder, fail=fail)).solve("q")


# --- input ------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["", "   \n\t"])
async def test_empty_problem_is_invalid_input(scripted, ladder, problem):
    backend = scripted(ladder)
    with pytest.raises(InvalidInputError):
        await ToTEngine(_config(), backend).solve(problem)
    assert backend.calls == 0


async def test_non_string_problem_is_invalid_input(scripted, ladder):
    with pytest.raises(InvalidInputError):
        await ToTEngine(_config(), scripted(ladder)).solve(42)  # type: ignore[arg-type]


def test_engine_needs_a_backend():
    with pytest.raises(ConfigurationError):
        ToTEngine(_config(), None)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError):
        ToTEngine(_config(), object())  # type: ignore[call-overload]


async def test_task_given_at_construction_or_per_call(scripted, ladder):
    engine = ToTEngine(_config(max_depth=1), scripted(ladder), task=GenericTask(n_proposals=2))
    result = await engine.solve("q")
    assert len(result.tree.nodes) == 3
    result = await engine.solve("q", task=GenericTask(n_proposals=1))
    assert len(result.tree.nodes) == 2


# --- DFS ----------------------------------------------------------------------------


async def test_dfs_prunes_below_threshold_and_backtracks(scripted, tree_reply):
    children = {
        "": ["go left", "go right", "give up"],
        "go left": ["dead end one", "dead end two"],
        "go right": ["Final answer: 42"],
    }
    scores = {
        "go left": 9,
        "go right": 7,
        "give up": 2,
        "dead end one": 3,
        "dead end two": 1,
        "Final answer: 42": 9,
    }
    backend = scripted(tree_reply(children, scores))
    config = ToTConfig(
        search_method="dfs", value_threshold=0.5, n_evaluate_sample=1, n_select_sample=3
    )
    result = await ToTEngine(config, backend).solve("Which way?")
    nodes = {n.text: n for n in result.tree.nodes[1:]}
    assert nodes["give up"].pruned
    assert not nodes["give up"].children
    assert nodes["go left"].selected
    assert nodes["go left"].children
    assert nodes["dead end one"].pruned
    assert nodes["dead end two"].pruned
    assert nodes["go right"].selected
    assert nodes["Final answer: 42"].selected
    assert nodes["Final answer: 42"].final
    assert result.solved
    assert result.best is not None
    assert result.best.text == "42"
    assert result.best.path == ["go right", "Final answer: 42"]
    # expansion order: root, then the best child, then (backtracking) the next
    proposals = [p for p in backend.prompts if "Possible next steps:" in p]
    assert len(proposals) == 3
    assert "1. go left" in proposals[1]
    assert "1. go right" in proposals[2]


async def test_dfs_explores_at_most_n_select_sample_children(scripted, tree_reply):
    children = {"": ["one", "two", "three"]}
    scores = {"one": 9, "two": 8, "three": 7}
    config = ToTConfig(search_method="dfs", n_evaluate_sample=1, n_select_sample=2, max_depth=2)
    backend = scripted(tree_reply(children, scores))
    result = await ToTEngine(config, backend).solve("q")
    nodes = {n.text: n for n in result.tree.nodes[1:] if n.depth == 1}
    assert nodes["one"].selected
    assert nodes["two"].selected
    assert nodes["three"].pruned
    assert not result.solved
    assert result.best is not None
    assert result.best.final is False


async def test_cancelling_a_search_cancels_its_calls(scripted, ladder):
    backend = scripted(ladder, latency_s=0.05)
    config = _config(n_generate_sample=3, n_select_sample=3, max_concurrency=64)
    task = asyncio.ensure_future(ToTEngine(config, backend).solve("q"))
    await asyncio.sleep(0.075)  # inside the first evaluation phase
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    calls_at_cancel = backend.calls
    await asyncio.sleep(0.15)
    assert backend.in_flight == 0
    assert backend.calls == calls_at_cancel


async def test_a_bug_in_one_call_stops_the_others(scripted, ladder):
    def fail(prompt: str, index: int) -> BaseException | None:
        return KeyError("bug") if "1. step a" in prompt else None

    backend = scripted(ladder, latency_s=0.02, fail=fail)
    with pytest.raises(KeyError):
        await ToTEngine(_config(max_concurrency=1), backend).solve("q")
    calls = backend.calls
    await asyncio.sleep(0.1)
    assert backend.calls == calls
    assert backend.in_flight == 0


async def test_gather_or_cancel_raises_the_first_error_itself_and_cancels_the_rest():
    cancelled: list[int] = []

    async def slow(index: int) -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(index)
            raise
        return "never"

    async def fail() -> str:
        await asyncio.sleep(0)
        raise RateLimitError("slow down", provider="fake") from KeyError("the cause")

    with pytest.raises(RateLimitError, match="slow down") as caught:  # not an ExceptionGroup
        await gather_or_cancel(slow(1), fail(), slow(2))
    assert isinstance(caught.value.__cause__, KeyError)
    assert sorted(cancelled) == [1, 2]
    assert await gather_or_cancel(asyncio.sleep(0.01, "a"), asyncio.sleep(0, "b")) == ["a", "b"]


class _LevelLog:
    """A search observer writing down what it sees, as ``(who, event, depth)``."""

    def __init__(self, who: str, log: list[tuple[str, str, int]]) -> None:
        self.who = who
        self.log = log

    @contextmanager
    def solving(self, ctx: SearchContext) -> Iterator[None]:
        self.log.append((self.who, "solve", 0))
        yield
        self.log.append((self.who, "solved", 0))

    @contextmanager
    def level(self, ctx: SearchContext, depth: int) -> Iterator[None]:
        self.log.append((self.who, "level", depth))
        yield


async def test_an_engine_observer_sees_each_level_beside_the_global_one(scripted, ladder):
    log: list[tuple[str, str, int]] = []
    engine = ToTEngine(_config(), scripted(ladder), observer=_LevelLog("own", log))
    await engine.solve("q")
    assert [entry for entry in log if entry[0] == "own"] == [
        ("own", "solve", 0),
        ("own", "level", 1),
        ("own", "level", 2),
        ("own", "level", 3),
        ("own", "solved", 0),
    ]
    log.clear()
    observe.set_observer(_LevelLog("global", log))
    try:
        await engine.solve("q")
    finally:
        observe.set_observer(None)
    assert log[:3] == [("global", "solve", 0), ("own", "solve", 0), ("global", "level", 1)]
    assert log[-2:] == [("own", "solved", 0), ("global", "solved", 0)]
    await ToTEngine(_config(), scripted(ladder)).solve("q")  # no observer: nothing to see
    assert len(log) == 10


@pytest.mark.parametrize("through", ["backend", "chat model"])
async def test_a_reply_with_surrogates_is_not_blamed_on_the_caller(scripted, ladder, through):
    """A thought with half a pair, or a pair as two code points, goes on in later
    prompts as encodable text; the caller's problem was fine."""
    from pygent_lc.langchain_backend import LangChainBackend
    from pygent_lc.testing import ScriptedChatModel

    def reply(prompt: str) -> str:
        text: str = ladder(prompt)
        if prompt_kind(prompt) in ("propose", "sample"):
            return text.replace("step ", "step \ud800\ud83d\ude00 ")
        return text

    backend = (
        scripted(reply)
        if through == "backend"
        else LangChainBackend(ScriptedChatModel(reply=reply))
    )
    result = await ToTEngine(_config(), backend).solve("What is the answer?")
    assert result.solved
    assert result.best is not None
    assert result.best.path[0] == "step \ufffd\U0001f600 a"
    for node in result.tree.nodes:
        node.text.encode("utf-8")
