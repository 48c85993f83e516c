"""``ReasoningAgent``: a PyGent reasoning agent that thinks with the Tree-of-Thought engine,
and its live progress (level, calls, tokens, cost, elapsed time)."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from pygent_lc.backend import LLMBackend, UsageTotals
from pygent_lc.closing import Closable
from pygent_lc.errors import NoAnswerError
from pygent_lc.langchain_backend import ChatRunnable, LangChainBackend
from pygent_lc.limits.usage import UsageTracker
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.engine import ToTEngine, run_sync
from pygent_lc.tot.result import ToTResult
from pygent_lc.tot.tasks.base import Task
from pygent_lc.tot.tasks.generic import GenericTask


@dataclass
class SolveProgress:
    """Where a solve is; ``on_change`` is called after every change. ``calls`` counts
    those in flight; ``usage`` is the backend's failures, tokens and cost so far."""

    max_depth: int
    level: int = 0
    calls: int = 0
    in_flight: int = 0
    usage: UsageTotals = field(default_factory=UsageTotals)
    started: float = field(default_factory=time.perf_counter)
    on_change: Callable[[SolveProgress], None] | None = None

    def notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def line(self) -> str:
        return (
            f"level {self.level}/{self.max_depth} · {self.calls} calls"
            f"{f' ({self.in_flight} running)' if self.in_flight else ''} · "
            f"{self.usage.total_tokens} tokens · ${self.usage.cost_usd:.4f} · "
            f"{time.perf_counter() - self.started:.1f}s"
        )


class ProgressBackend(LLMBackend):
    """Counts ``inner``'s calls into a :class:`SolveProgress` and, as the search's
    observer, each level it enters; otherwise transparent."""

    def __init__(self, inner: LLMBackend, progress: SolveProgress) -> None:
        self.inner = inner
        self.progress = progress
        self.accepts_cache_prefix = inner.accepts_cache_prefix
        self._start = inner.usage_totals()

    async def generate(self, prompt: str, **kwargs: Any) -> str:
        async with self._counted():
            return await self.inner.generate(prompt, **kwargs)

    async def generate_samples(self, prompt: str, n: int, **kwargs: Any) -> list[str]:
        async with self._counted():
            return await self.inner.generate_samples(prompt, n, **kwargs)

    @asynccontextmanager
    async def _counted(self) -> AsyncIterator[None]:
        progress = self.progress
        progress.calls += 1
        progress.in_flight += 1
        progress.notify()
        try:
            yield
        finally:
            progress.in_flight -= 1
            now = self.inner.usage_totals()
            if now is not None and self._start is not None:
                progress.usage = now - self._start
            progress.notify()

    def usage_totals(self) -> UsageTotals | None:
        return self.inner.usage_totals()

    def cost_bound(self, prompt: str, max_tokens: int | None) -> float | None:
        return self.inner.cost_bound(prompt, max_tokens)

    def solving(self, ctx: object) -> AbstractContextManager[object]:
        return nullcontext()

    @contextmanager
    def level(self, ctx: object, depth: int) -> Iterator[object]:
        if depth != self.progress.level:
            self.progress.level = depth
            self.progress.notify()
        yield None


ProgressCallback = Callable[[SolveProgress], None]


class ReasoningAgent(Closable):
    """Answers by a Tree-of-Thought search: ``solve`` gives the :class:`ToTResult`,
    ``process`` the answer text; :attr:`usage` totals every call of every solve."""

    agent_type = "reasoning"

    def __init__(
        self,
        chain: ChatRunnable,
        *,
        name: str = "reasoning",
        config: ToTConfig | None = None,
        task: Task | None = None,
        providers: list[str] | None = None,
    ) -> None:
        self.name = name
        self.providers = list(providers or [])
        self.backend = LangChainBackend(chain)
        self.task: Task = task if task is not None else GenericTask()
        config = config if config is not None else ToTConfig()
        # The task's own depth unless the caller set one (Game of 24: 4 steps).
        self.config = config.updated(max_depth=config.depth_for(self.task.default_depth))
        self.engine = ToTEngine(self.config, self.backend, task=self.task, name=name)
        self.last_result: ToTResult | None = None

    @property
    def usage(self) -> UsageTracker:
        return self.backend.usage

    async def solve(
        self, problem: str, *, on_progress: ProgressCallback | None = None
    ) -> ToTResult:
        """``on_progress`` sees the level, calls and cost as they change."""
        engine = self.engine
        if on_progress is not None:
            progress = SolveProgress(max_depth=self.config.max_depth, on_change=on_progress)
            # The same engine (values and model name outlive one solve), watched.
            engine = copy.copy(self.engine)
            engine.backend = engine.observer = ProgressBackend(self.backend, progress)
        self.last_result = await engine.solve(problem)
        return self.last_result

    def solve_sync(self, problem: str, *, on_progress: ProgressCallback | None = None) -> ToTResult:
        """``solve`` for sync code (works under a running event loop too)."""
        return run_sync(self.solve(problem, on_progress=on_progress))

    def close(self) -> None:
        self.backend.close()

    async def aclose(self) -> None:
        await self.backend.aclose()

    async def process(self, message: str) -> str:
        """The answer to ``message``: the best solution, else the best partial state."""
        result = await self.solve(message)
        if result.best is None:
            why = result.stats.budget_exhausted or "no thought could be valued"
            raise NoAnswerError(f"the search found nothing to answer with ({why})")
        return result.best.text
