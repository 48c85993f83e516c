"""Live progress of a reasoning solve: level, calls, tokens, cost, elapsed time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from pygent_lc.backend import LLMBackend, UsageTotals


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
    """Counts the calls of ``inner`` into a :class:`SolveProgress`, and as the search's
    observer (:mod:`pygent_lc.tot.observe`) each level it enters. Otherwise
    transparent: samples in one request, cost bounds and the cache prefix are ``inner``'s.
    """

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
