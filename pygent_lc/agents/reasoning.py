"""``ReasoningAgent``: a PyGent reasoning agent that thinks with the Tree-of-Thought engine."""

from __future__ import annotations

from collections.abc import Callable

from pygent_lc.agents.progress import ProgressBackend, SolveProgress
from pygent_lc.closing import Closable
from pygent_lc.errors import NoAnswerError
from pygent_lc.langchain_backend import ChatRunnable, LangChainBackend
from pygent_lc.limits.usage import UsageTracker
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.engine import ToTEngine, run_sync
from pygent_lc.tot.result import ToTResult
from pygent_lc.tot.tasks.base import Task
from pygent_lc.tot.tasks.generic import GenericTask

ProgressCallback = Callable[[SolveProgress], None]


class ReasoningAgent(Closable):
    """Answers by searching a tree of thoughts over a provider chain.

    ``solve`` returns the whole :class:`ToTResult`; ``process`` just the answer
    text, as PyGent's agents do. :attr:`usage` totals every call of every solve.
    """

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
        """The chain's providers, in fallback order."""
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
        """Search for an answer to ``problem``; ``on_progress`` sees level, calls and cost."""
        engine = self.engine
        if on_progress is not None:
            progress = SolveProgress(max_depth=self.config.max_depth, on_change=on_progress)
            watched = ProgressBackend(self.backend, progress)
            engine = ToTEngine(
                self.config,
                watched,
                task=self.task,
                name=self.name,
                # the same values, under the same model name: they outlive one solve
                value_store=self.engine.value_store,
                model_id=self.engine.model_id,
                observer=watched,
            )
        self.last_result = await engine.solve(problem)
        return self.last_result

    def solve_sync(self, problem: str, *, on_progress: ProgressCallback | None = None) -> ToTResult:
        """``solve`` for sync code (works under a running event loop too)."""
        return run_sync(self.solve(problem, on_progress=on_progress))

    def close(self) -> None:
        """Release the chain's pooled connections (and an embedded server it started)."""
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
