"""Live progress of a reasoning solve: level, calls, tokens, cost, elapsed time.

The engine has no progress hooks, and needs none: :class:`ProgressTask`
wraps the task and sees which level each generation prompt is for, and
:class:`ProgressBackend` wraps the backend and sees every call and its cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pygent_lc.backend import LLMBackend, UsageTotals
from pygent_lc.tot.tasks.base import Task


@dataclass
class SolveProgress:
    """Where a solve is; ``on_change`` is called after every change."""

    max_depth: int
    level: int = 0
    calls: int = 0
    """Calls started, those in flight included."""
    in_flight: int = 0
    usage: UsageTotals = field(default_factory=UsageTotals)
    """Failures, tokens and cost so far, as the backend reports them."""
    started: float = field(default_factory=time.perf_counter)
    on_change: Callable[[SolveProgress], None] | None = None

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def line(self) -> str:
        """One line for a terminal status display."""
        return (
            f"level {self.level}/{self.max_depth} · {self.calls} calls"
            f"{f' ({self.in_flight} running)' if self.in_flight else ''} · "
            f"{self.usage.total_tokens} tokens · ${self.usage.cost_usd:.4f} · "
            f"{self.elapsed_s:.1f}s"
        )


class ProgressBackend(LLMBackend):
    """Counts the calls of ``inner`` into a :class:`SolveProgress`; otherwise transparent."""

    def __init__(self, inner: LLMBackend, progress: SolveProgress) -> None:
        self.inner = inner
        self.progress = progress
        self._start = inner.usage_totals()

    async def generate(self, prompt: str, **kwargs: Any) -> str:
        progress = self.progress
        progress.calls += 1
        progress.in_flight += 1
        progress.notify()
        try:
            return await self.inner.generate(prompt, **kwargs)
        finally:
            progress.in_flight -= 1
            self._update_usage()
            progress.notify()

    def usage_totals(self) -> UsageTotals | None:
        return self.inner.usage_totals()

    def _update_usage(self) -> None:
        now = self.inner.usage_totals()
        if now is None or self._start is None:
            return
        self.progress.usage = now - self._start


class ProgressTask:
    """``inner`` unchanged, except that each generation prompt reports its level."""

    def __init__(self, inner: Task, progress: SolveProgress) -> None:
        self.inner = inner
        self.progress = progress
        self.name = inner.name
        self.default_depth = inner.default_depth
        self.value_version = inner.value_version
        self.value_range = inner.value_range

    def _at_level(self, steps: Sequence[str]) -> None:
        level = len(steps) + 1
        if level != self.progress.level:
            self.progress.level = level
            self.progress.notify()

    def validate_problem(self, problem: str) -> str:
        return self.inner.validate_problem(problem)

    def propose_prompt(self, problem: str, steps: Sequence[str]) -> str:
        self._at_level(steps)
        return self.inner.propose_prompt(problem, steps)

    def parse_proposals(self, output: str, problem: str, steps: Sequence[str]) -> list[str]:
        return self.inner.parse_proposals(output, problem, steps)

    def sample_prompt(self, problem: str, steps: Sequence[str]) -> str:
        self._at_level(steps)
        return self.inner.sample_prompt(problem, steps)

    def sample_stop(self, problem: str, steps: Sequence[str]) -> list[str] | None:
        return self.inner.sample_stop(problem, steps)

    def parse_sample(self, output: str, problem: str, steps: Sequence[str]) -> str | None:
        return self.inner.parse_sample(output, problem, steps)

    def static_value(self, problem: str, steps: Sequence[str]) -> float | None:
        return self.inner.static_value(problem, steps)

    def value_prompt(self, problem: str, steps: Sequence[str]) -> str:
        return self.inner.value_prompt(problem, steps)

    def parse_value(self, output: str) -> float:
        return self.inner.parse_value(output)

    def aggregate_values(self, scores: Sequence[float]) -> float:
        return self.inner.aggregate_values(scores)

    def samples_agree(
        self, problem: str, steps: Sequence[str], outputs: Sequence[str], scores: Sequence[float]
    ) -> bool:
        return self.inner.samples_agree(problem, steps, outputs, scores)

    def vote_prompt(self, problem: str, candidates: Sequence[Sequence[str]]) -> str:
        return self.inner.vote_prompt(problem, candidates)

    def parse_vote(self, output: str, n_candidates: int) -> int | None:
        return self.inner.parse_vote(output, n_candidates)

    def state_key(self, problem: str, steps: Sequence[str]) -> str:
        return self.inner.state_key(problem, steps)

    def can_expand(self, problem: str, steps: Sequence[str]) -> bool:
        return self.inner.can_expand(problem, steps)

    def is_final(self, problem: str, steps: Sequence[str]) -> bool:
        return self.inner.is_final(problem, steps)

    def check_answer(self, problem: str, steps: Sequence[str]) -> bool | None:
        return self.inner.check_answer(problem, steps)

    def answer(self, problem: str, steps: Sequence[str]) -> str:
        return self.inner.answer(problem, steps)


__all__ = ["ProgressBackend", "ProgressTask", "SolveProgress"]
