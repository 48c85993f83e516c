"""Budgets end the search cleanly, with the best state so far and the reason."""

from __future__ import annotations

from typing import Any

import pytest

from pygent_lc import LangChainBackend
from pygent_lc.errors import BudgetExceededError, ConfigurationError
from pygent_lc.limits.budget import CostBudget
from pygent_lc.testing import ScriptedBackend
from pygent_lc.tot import ToTConfig, ToTEngine
from tests.billed_model import BilledModel


def _config(**overrides: Any) -> ToTConfig:
    base = {"n_evaluate_sample": 2, "n_select_sample": 2, "max_depth": 3}
    base.update(overrides)
    return ToTConfig(**base)


async def test_max_llm_calls_stops_with_best_so_far(scripted, ladder):
    backend = scripted(ladder)
    result = await ToTEngine(_config(max_llm_calls=5), backend).solve("q")
    assert backend.calls == result.stats.llm_calls == 5
    assert result.stats.budget_exhausted is not None
    assert result.stats.budget_exhausted.startswith("max_llm_calls")
    assert not result.solved
    # 1 generation + 4 value samples, asked a round at a time: one for each
    # state, then the budget's last call for the leader
    valued = [n for n in result.tree.nodes[1:] if n.value is not None]
    assert [n.text for n in valued] == ["step a", "step b", "step c"]
    assert [len(n.scores) for n in valued] == [2, 1, 1]
    assert result.best is not None
    assert result.best.text == "step a"
    assert result.best.final is False


async def test_max_llm_calls_large_enough_changes_nothing(scripted, ladder):
    result = await ToTEngine(_config(max_llm_calls=1000), scripted(ladder)).solve("q")
    assert result.stats.budget_exhausted is None
    assert result.solved


async def test_max_cost_usd_stops_the_search(scripted, ladder):
    backend = scripted(ladder, cost_per_call=0.01)
    config = _config(max_cost_usd=0.035, max_concurrency=1)
    result = await ToTEngine(config, backend).solve("q")
    assert result.stats.budget_exhausted is not None
    assert result.stats.budget_exhausted.startswith("max_cost_usd")
    assert backend.calls == 4  # the 5th would start with $0.04 >= $0.035 spent
    usage = backend.usage_totals()
    assert usage is not None and usage.input_tokens > 0
    assert result.stats.usage == usage
    assert usage.calls == 4 and usage.cost_usd == pytest.approx(0.04)
    assert result.best is not None


async def test_cost_is_measured_as_a_difference_of_snapshots(scripted, ladder):
    backend = scripted(ladder, cost_per_call=0.001)
    engine = ToTEngine(_config(max_depth=1), backend)
    first = await engine.solve("q")
    second = await engine.solve("q")
    assert first.stats.usage is not None
    assert second.stats.usage is not None
    assert first.stats.usage.cost_usd == pytest.approx(0.001 * first.stats.llm_calls)
    # not the running total (the second solve reuses the first one's values)
    assert second.stats.usage.cost_usd == pytest.approx(0.001 * second.stats.llm_calls)
    assert 0 < second.stats.llm_calls < first.stats.llm_calls


async def test_max_cost_without_usage_reporting_is_a_configuration_error(scripted, ladder):
    backend = scripted(ladder)  # reports no usage
    with pytest.raises(ConfigurationError) as caught:
        await ToTEngine(_config(max_cost_usd=1.0), backend).solve("q")
    assert caught.value.field == "max_cost_usd"
    assert backend.calls == 0


async def test_backend_budget_error_ends_the_search_cleanly(scripted, ladder):
    def fail(prompt: str, index: int) -> BaseException | None:
        return BudgetExceededError("daily cap reached") if index >= 3 else None

    result = await ToTEngine(_config(), scripted(ladder, fail=fail)).solve("q")
    assert result.stats.budget_exhausted is not None
    assert "daily cap reached" in result.stats.budget_exhausted
    assert result.stats.failed_calls == 0
    assert result.best is not None


class BoundedBackend(ScriptedBackend):
    """A scripted backend whose calls cost exactly ``cost_per_call``, and say so."""

    def cost_bound(self, prompt: str, max_tokens: int | None) -> float | None:
        return self.cost_per_call


@pytest.mark.parametrize("limit", [0.055, 0.1, 0.2])
async def test_concurrent_calls_with_a_bound_never_pass_max_cost_usd(ladder, limit):
    # Each level's calls run at once (up to 8); a check of the spend before
    # each call would let them all start on the same spend and overshoot.
    # A value request asks its 2 samples in one request (n) and holds 2 bounds
    # ($0.02), so the smallest limit lets two such requests overlap.
    cost = 0.01
    backend = BoundedBackend(ladder, latency_s=0.01, cost_per_call=cost)
    config = _config(max_cost_usd=limit, max_concurrency=8, adaptive_sampling=False)
    result = await ToTEngine(config, backend).solve("q")
    assert result.stats.budget_exhausted is not None
    assert result.stats.budget_exhausted.startswith("max_cost_usd")
    assert backend.peak_in_flight > 1  # the calls did run concurrently
    assert result.stats.usage is not None
    assert result.stats.usage.cost_usd <= limit + 1e-9
    assert backend.in_flight == 0


@pytest.mark.parametrize("limit", [0.035, 0.1])
async def test_calls_without_a_bound_run_one_at_a_time(scripted, ladder, limit):
    cost = 0.01
    backend = scripted(ladder, latency_s=0.01, cost_per_call=cost)
    config = _config(max_cost_usd=limit, max_concurrency=8, adaptive_sampling=False)
    result = await ToTEngine(config, backend).solve("q")
    assert result.stats.budget_exhausted is not None
    assert backend.peak_in_flight == 1
    assert result.stats.usage is not None
    assert result.stats.usage.cost_usd <= limit + cost + 1e-9


async def test_a_cheap_first_call_does_not_let_a_level_of_dear_calls_pass_the_limit(ladder):
    # The first call costs $0.0001, every later one $0.004; levels ask up to 8 at once.
    model = BilledModel(costs=[0.0001, 0.004], delay_s=0.01, reply=ladder)
    backend = LangChainBackend(model)
    config = _config(max_cost_usd=0.01, max_concurrency=8, adaptive_sampling=False)
    result = await ToTEngine(config, backend).solve("q")
    assert result.stats.budget_exhausted is not None
    assert result.stats.usage is not None
    assert result.stats.usage.cost_usd <= 0.01 + 0.004 + 1e-12


@pytest.mark.parametrize("bad", [float("nan"), float("-inf"), -1e308, float("inf"), 1e308])
async def test_an_implausible_cost_neither_stops_nor_frees_the_search(ladder, bad):
    model = BilledModel(costs=[0.01, bad, 0.01], delay_s=0.0, reply=ladder)
    backend = LangChainBackend(model)
    config = _config(max_cost_usd=0.035, max_concurrency=1)
    result = await ToTEngine(config, backend).solve("q")
    assert result.stats.budget_exhausted is not None
    assert result.stats.budget_exhausted.startswith("max_cost_usd")
    usage = result.stats.usage
    assert usage is not None
    # $0.01, the fault, then $0.01 a call until $0.04 >= $0.035
    assert (usage.calls, usage.cost_faults) == (5, 1)
    assert usage.cost_usd == pytest.approx(0.04)


async def test_a_request_for_n_samples_holds_n_completions_of_max_cost_usd():
    """One request carrying n samples is one call; its hold on ``max_cost_usd`` is n times
    the backend's bound for one completion, so it never passes the limit."""
    from pygent_lc.tot.caller import BudgetExhausted, LLMCaller

    class Bounded(ScriptedBackend):
        def cost_bound(self, prompt: str, max_tokens: int | None) -> float | None:
            return 0.004

    backend = Bounded(honours_n=True, cost_per_call=0.001)
    caller = LLMCaller(backend, _config(max_cost_usd=0.01))
    with pytest.raises(BudgetExhausted, match="max_cost_usd"):
        await caller.call_samples("value?", 3, "evaluation")
    assert backend.calls == 0
    fresh = LLMCaller(backend, _config(max_cost_usd=0.01))
    assert len(await fresh.call_samples("value?", 2, "evaluation")) == 2
    assert backend.calls == fresh.counters.llm_calls == 1


async def test_the_backends_budget_bounds_every_search_over_it(ladder):
    # One budget, given once to the backend: searches end cleanly when it is spent,
    # and a later search finds it spent too (a limit across searches).
    budget = CostBudget(0.035)
    model = BilledModel(costs=[0.01], delay_s=0.0, reply=ladder)
    engine = ToTEngine(
        _config(max_concurrency=8, adaptive_sampling=False),
        LangChainBackend(model, budget=budget),
    )
    first = await engine.solve("q")
    assert first.stats.budget_exhausted is not None
    assert first.stats.budget_exhausted.startswith("backend budget")
    assert first.best is not None
    # calls of unknown cost one at a time: $0.01 a call until $0.04 >= $0.035
    assert len(model.calls) == 4
    second = await engine.solve("q again")
    assert second.stats.budget_exhausted is not None
    assert second.stats.budget_exhausted.startswith("backend budget")
    assert len(model.calls) == 4  # no request: the budget was spent already
    assert budget.status().spent_usd == pytest.approx(0.04)
