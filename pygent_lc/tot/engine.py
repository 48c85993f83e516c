"""``ToTEngine``: one search per ``solve``, and a LangChain ``Runnable`` too."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import random
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from langchain_core.runnables import Runnable, RunnableConfig

from pygent_lc.backend import LLMBackend
from pygent_lc.errors import ConfigurationError, InvalidInputError
from pygent_lc.tot.calls import LLMCaller, PromptCache
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.evaluator import StateEvaluator
from pygent_lc.tot.generator import ThoughtGenerator
from pygent_lc.tot.node import ThoughtTree
from pygent_lc.tot.result import ToTResult, ToTStats, best_so_far, collect_solutions
from pygent_lc.tot.search import SearchContext, bfs, dfs
from pygent_lc.tot.tasks.base import Task
from pygent_lc.tot.tasks.generic import GenericTask

ToTInput = str | Mapping[str, Any]
"""A problem string, or a mapping with a ``"problem"`` key (LCEL-friendly)."""

_T = TypeVar("_T")


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion from sync code, even under a running event loop.

    Inside a running loop (a notebook, an async web handler) the coroutine
    runs on a fresh loop in a worker thread, with the caller's context
    variables, so LangChain callbacks still reach their run.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, coro).result()


def _problem_of(value: object) -> str:
    if isinstance(value, Mapping):
        if "problem" not in value:
            raise InvalidInputError("the input mapping has no 'problem' key")
        value = value["problem"]
    if not isinstance(value, str):
        raise InvalidInputError(f"the problem must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidInputError("the problem is empty")
    return value


class ToTEngine(Runnable[ToTInput, ToTResult]):
    """Tree-of-Thought search over an :class:`~pygent_lc.backend.LLMBackend`.

    ``await engine.solve(problem, task=...)`` runs one search and returns a
    :class:`ToTResult`. As a ``Runnable`` the engine takes a problem string
    (or ``{"problem": ...}``) and composes in LCEL, e.g.
    ``prompt_to_problem | engine``.
    """

    def __init__(
        self,
        config: ToTConfig | None = None,
        backend: LLMBackend | None = None,
        *,
        task: Task | None = None,
        name: str | None = None,
    ) -> None:
        if backend is None:
            raise ConfigurationError("ToTEngine needs an LLMBackend", field="backend")
        if not isinstance(backend, LLMBackend):
            raise ConfigurationError(
                f"backend must be an LLMBackend, not {type(backend).__name__}", field="backend"
            )
        self.config = config if config is not None else ToTConfig()
        self.backend = backend
        self.task: Task = task if task is not None else GenericTask()
        self.name = name or "ToTEngine"

    # the PyGent API -------------------------------------------------------
    async def solve(self, problem: str, task: Task | None = None) -> ToTResult:
        """Search for a solution of ``problem``.

        Raises ``InvalidInputError`` for an empty or malformed problem,
        ``ConfigurationError`` when ``max_cost_usd`` is set but the backend
        reports no cost, and the provider error when every call of a level
        fails. A spent budget is not an error: see ``stats.budget_exhausted``.
        """
        task = task if task is not None else self.task
        problem = task.validate_problem(_problem_of(problem))
        config = self.config
        if config.max_cost_usd is not None and self.backend.usage_totals() is None:
            raise ConfigurationError(
                "max_cost_usd is set but the backend does not report usage (usage_totals)",
                field="max_cost_usd",
            )
        started = time.perf_counter()
        caller = LLMCaller(self.backend, config)
        tree = ThoughtTree.with_root(problem)
        generator = ThoughtGenerator(task, config, caller)
        cache = PromptCache()
        ctx = SearchContext(
            problem=problem,
            task=task,
            config=config,
            tree=tree,
            caller=caller,
            generator=generator,
            evaluator=StateEvaluator(task, config, caller, cache),
            rng=random.Random(config.seed),
        )
        try:
            await (bfs(ctx) if config.search_method == "bfs" else dfs(ctx))
        finally:
            await cache.aclose()
        solutions = collect_solutions(tree, task, problem)
        counters = caller.counters
        usage = caller.usage()
        stats = ToTStats(
            llm_calls=counters.llm_calls,
            generation_calls=counters.generation_calls,
            evaluation_calls=counters.evaluation_calls,
            failed_calls=counters.failed_calls,
            cache_hits=counters.cache_hits,
            duplicates_merged=generator.duplicates_merged,
            nodes=len(tree),
            depth_reached=max(node.depth for node in tree.nodes),
            peak_in_flight=counters.peak_in_flight,
            input_tokens=None if usage is None else usage.input_tokens,
            output_tokens=None if usage is None else usage.output_tokens,
            cost_usd=None if usage is None else usage.cost_usd,
            wall_time_s=time.perf_counter() - started,
            budget_exhausted=caller.exhausted,
        )
        return ToTResult(
            problem=problem,
            task=task.name,
            solutions=solutions,
            best=solutions[0] if solutions else best_so_far(tree, task, problem),
            tree=tree,
            stats=stats,
            config=config,
        )

    def solve_sync(self, problem: str, task: Task | None = None) -> ToTResult:
        """``solve`` for sync code (works under a running event loop too)."""
        return run_sync(self.solve(problem, task))

    # the Runnable API -----------------------------------------------------
    async def _ainvoke_input(self, value: ToTInput) -> ToTResult:
        return await self.solve(_problem_of(value))

    def _invoke_input(self, value: ToTInput) -> ToTResult:
        return run_sync(self.solve(_problem_of(value)))

    def invoke(
        self, input: ToTInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ToTResult:
        return self._call_with_config(self._invoke_input, input, config, run_type="chain")

    async def ainvoke(
        self, input: ToTInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ToTResult:
        return await self._acall_with_config(self._ainvoke_input, input, config, run_type="chain")
