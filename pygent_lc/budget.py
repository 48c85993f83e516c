"""Spending limits checked before each call, with estimates from catalog prices."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from pygent_lc.errors import BudgetExceededError, ConfigurationError

# (prompt, max_tokens) -> estimated USD of the call
CostEstimator = Callable[[str, int | None], float]

CHARS_PER_TOKEN = 4  # a common rule of thumb for English text; only an estimate
DEFAULT_OUTPUT_TOKENS = 256


class PricedModel(Protocol):
    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float: ...


def estimator_from_prices(
    model: PricedModel, default_output_tokens: int = DEFAULT_OUTPUT_TOKENS
) -> CostEstimator:
    """Estimate a call from list prices: prompt length in tokens, output up to ``max_tokens``."""

    def estimate(prompt: str, max_tokens: int | None) -> float:
        input_tokens = math.ceil(len(prompt) / CHARS_PER_TOKEN)
        return model.estimate_cost(input_tokens, max_tokens or default_output_tokens)

    return estimate


class CostBudget:
    """Refuses a call once tracked spend plus the calls in flight would pass ``max_cost_usd``.

    Each call reserves its estimate until it finishes, so concurrent calls
    cannot all pass the check against the same spend. Without an estimator a
    call costs nothing in advance: calls stop once the spend reaches the limit.
    """

    def __init__(
        self,
        max_cost_usd: float,
        spent: Callable[[], float],
        estimator: CostEstimator | None = None,
    ) -> None:
        if not math.isfinite(max_cost_usd) or max_cost_usd < 0:
            raise ConfigurationError(
                f"max_cost_usd must be >= 0, got {max_cost_usd}", field="max_cost_usd"
            )
        self.max_cost_usd = max_cost_usd
        self._spent = spent
        self._estimator = estimator
        self._reserved = 0.0
        self._lock = threading.Lock()

    @contextmanager
    def reserve(self, prompt: str, max_tokens: int | None) -> Iterator[None]:
        """Hold the call's estimate for its duration, or raise ``BudgetExceededError``."""
        estimate = self._estimator(prompt, max_tokens) if self._estimator else 0.0
        with self._lock:
            spent = self._spent()
            committed = spent + self._reserved
            if committed + estimate > self.max_cost_usd or committed >= self.max_cost_usd:
                raise BudgetExceededError(
                    f"cost budget ${self.max_cost_usd:.4f} would be passed: spent "
                    f"${spent:.4f}, in flight ${self._reserved:.4f}, next call ~${estimate:.4f}"
                )
            self._reserved += estimate
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= estimate
