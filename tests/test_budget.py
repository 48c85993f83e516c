"""CostBudget: reservations for calls in flight, limits, bad configuration."""

from __future__ import annotations

import pytest

from pygent_lc.budget import CostBudget
from pygent_lc.errors import BudgetExceededError, ConfigurationError


def test_calls_in_flight_reserve_their_estimate() -> None:
    budget = CostBudget(1.0, spent=lambda: 0.0, estimator=lambda prompt, max_tokens: 0.4)
    with (
        budget.reserve("a", None),
        budget.reserve("b", None),
        pytest.raises(BudgetExceededError, match="in flight"),
        budget.reserve("c", None),
    ):
        pass
    with budget.reserve("d", None):  # released again once the calls finished
        pass


def test_without_estimator_stops_once_spend_reaches_the_limit() -> None:
    spent = [0.0]
    budget = CostBudget(0.5, spent=lambda: spent[0])
    with budget.reserve("a", None):
        spent[0] = 0.5
    with pytest.raises(BudgetExceededError), budget.reserve("b", None):
        pass


@pytest.mark.parametrize("limit", [-1.0, float("nan"), float("inf")])
def test_bad_limits_are_configuration_errors(limit: float) -> None:
    with pytest.raises(ConfigurationError):
        CostBudget(limit, spent=lambda: 0.0)
