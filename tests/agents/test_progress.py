"""Live progress of a reasoning solve: levels, calls and spend; the value cache under it."""

from __future__ import annotations

import pytest

from benchmarks.game24_model import ScriptedGame24Backend
from pygent_lc.agents import SolveProgress
from pygent_lc.agents.reasoning import ProgressBackend
from pygent_lc.testing import ScriptedChatModel, count_words
from pygent_lc.tot import Game24Task, ToTConfig, ToTEngine
from tests.agents.fakes import reasoning_agent

PUZZLE = "4 9 10 13"


async def test_progress_reports_levels_and_spend() -> None:
    def reply(prompt: str) -> str:
        return "Keep going." if "Possible next steps:" in prompt else "Score: 5"

    agent = reasoning_agent(reply, max_depth=3, n_select_sample=1)
    model = agent.backend.runnable
    assert isinstance(model, ScriptedChatModel)
    snapshots: list[SolveProgress] = []
    result = await agent.solve(
        "Think.", on_progress=lambda p: snapshots.append(SolveProgress(**vars(p)))
    )
    assert not result.solved
    levels = [s.level for s in snapshots]
    assert list(dict.fromkeys(levels)) == [1, 2, 3]
    assert levels == sorted(levels)  # BFS goes down one level at a time
    last = snapshots[-1]
    # 3 proposals and 1 value: a level's only state needs no value until the
    # last level, where the best state is the answer
    assert (last.calls, last.in_flight) == (4, 0)
    assert last.usage.cost_usd == pytest.approx(0.004)
    # the model counts each request's words: the prompt is its only message
    assert last.usage.input_tokens == sum(count_words(prompt) for prompt in model.prompts)
    assert last.usage.output_tokens == 3 * count_words("Keep going.") + count_words("Score: 5")
    assert "level 3/3 · 4 calls" in last.line()


async def test_state_values_outlive_a_solve_with_progress_too() -> None:
    agent = reasoning_agent(max_depth=2, n_select_sample=1)
    model = agent.backend.runnable
    assert isinstance(model, ScriptedChatModel)
    await agent.solve("What is 2 + 2?", on_progress=lambda p: None)
    valued_first = [p for p in model.prompts if "Possible next steps:" not in p]
    model.prompts.clear()
    await agent.solve("What is 2 + 2?", on_progress=lambda p: None)
    valued_again = [p for p in model.prompts if "Possible next steps:" not in p]
    assert valued_first and valued_again == []  # every state's value came from the cache


async def test_the_progress_line_keeps_what_the_backend_offers() -> None:
    # The CLI's solve shows progress through ProgressBackend: samples must still go
    # as one request, budgeted calls keep their bound, the cache prefix still goes.
    config = ToTConfig(adaptive_sampling=False, value_cache=None)
    plain = ScriptedGame24Backend(track_usage=True, honours_n=True)
    shown = ScriptedGame24Backend(track_usage=True, honours_n=True)
    watched = ProgressBackend(shown, SolveProgress(max_depth=config.max_depth))
    first = await ToTEngine(config, plain, task=Game24Task()).solve(PUZZLE)
    second = await ToTEngine(config, watched, task=Game24Task()).solve(PUZZLE)
    assert shown.prompts == plain.prompts and shown.kwargs == plain.kwargs
    assert first.stats.evaluation_calls == second.stats.evaluation_calls
    assert watched.accepts_cache_prefix == shown.accepts_cache_prefix
    assert watched.cost_bound("q", 10) == shown.cost_bound("q", 10)
