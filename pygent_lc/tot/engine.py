"""``ToTEngine``: one search per ``solve``, and a LangChain ``Runnable`` too."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, TypedDict, Unpack, overload

from langchain_core.runnables import Runnable, RunnableConfig

from pygent_lc.backend import LLMBackend
from pygent_lc.errors import ConfigurationError, InvalidInputError
from pygent_lc.tot import observe
from pygent_lc.tot.calls import LLMCaller, PromptCache, SamplesSupport
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.evaluator import StateEvaluator
from pygent_lc.tot.generator import ThoughtGenerator
from pygent_lc.tot.model_id import model_identity
from pygent_lc.tot.node import ThoughtTree
from pygent_lc.tot.result import ToTResult, ToTStats, best_so_far, collect_solutions
from pygent_lc.tot.search import SearchContext, bfs, dfs
from pygent_lc.tot.shared_values import open_value_store
from pygent_lc.tot.sync import run_sync as run_sync
from pygent_lc.tot.tasks.base import BatchValueTask, Task, propose_version
from pygent_lc.tot.tasks.generic import GenericTask
from pygent_lc.tot.value_store import MemoryValueStore, ValueStore

ToTInput = str | Mapping[str, Any]
"""A problem string, or a mapping with a ``"problem"`` key (LCEL-friendly)."""


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


class _EngineOptions(TypedDict, total=False):
    """The keyword options of :class:`ToTEngine`, besides ``backend``."""

    task: Task | None
    name: str | None
    model_id: str | None
    value_store: ValueStore | None
    observer: observe.SearchObserver | None


class ToTEngine(Runnable[ToTInput, ToTResult]):
    """Tree-of-Thought search over an :class:`~pygent_lc.backend.LLMBackend`.

    ``await engine.solve(problem, task=...)`` runs one search and returns a
    :class:`ToTResult`. As a ``Runnable`` the engine takes a problem string
    (or ``{"problem": ...}``) and composes in LCEL, e.g.
    ``prompt_to_problem | engine``. In a notebook, ``await engine.solve(...)``
    in the cell; ``solve_sync`` would block the notebook's event loop.

    State values are kept across solves in the store ``config.value_cache``
    names (or ``value_store``, to share one between engines), per model:
    ``model_id``, else the model name the backend reports. A file store needs
    a model name, so that another model never reads its values.

    ``observer`` (a :class:`~pygent_lc.tot.observe.SearchObserver`) watches
    each search and each of its levels, e.g. to show progress.
    """

    @overload
    def __init__(
        self, config: ToTConfig | None, backend: LLMBackend, **options: Unpack[_EngineOptions]
    ) -> None: ...

    @overload
    def __init__(
        self,
        config: ToTConfig | None = None,
        *,
        backend: LLMBackend,
        **options: Unpack[_EngineOptions],
    ) -> None: ...

    def __init__(
        self,
        config: ToTConfig | None = None,
        backend: LLMBackend | None = None,
        *,
        task: Task | None = None,
        name: str | None = None,
        model_id: str | None = None,
        value_store: ValueStore | None = None,
        observer: observe.SearchObserver | None = None,
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
        self.observer = observer
        """Watches each search of this engine (each level: a progress display)."""
        self.value_store: ValueStore | None = (
            value_store
            if value_store is not None
            else open_value_store(self.config.value_cache, self.config.value_cache_size)
        )
        found = model_id or model_identity(backend)
        if (
            found is None
            and self.value_store is not None
            and not isinstance(self.value_store, MemoryValueStore)
        ):
            raise ConfigurationError(
                "a shared value cache needs to know the model: pass ToTEngine(model_id=...)",
                field="model_id",
            )
        # Unnamed models get a name of their own: values are then only shared
        # by this backend object, never across models.
        self.model_id = found or f"{type(backend).__qualname__}@{id(backend):x}"
        self.samples_support = SamplesSupport()
        """Whether the model answers ``n`` samples in one request: found out by the
        first request with ``n > 1`` and remembered for every later solve."""

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
        depth = config.depth_for(task.default_depth)
        if depth != config.max_depth:
            config = config.updated(max_depth=depth)
        if config.max_cost_usd is not None and self.backend.usage_totals() is None:
            raise ConfigurationError(
                "max_cost_usd is set but the backend does not report usage (usage_totals)",
                field="max_cost_usd",
            )
        version = task.value_version
        if config.value_batch:
            if not isinstance(task, BatchValueTask):
                raise ConfigurationError(
                    f"value_batch is set but the task {task.name!r} cannot value states in "
                    "batches (BatchValueTask)",
                    field="value_batch",
                )
            version = f"batch:{task.value_batch_version}"
        started = time.perf_counter()
        caller = LLMCaller(self.backend, config, self.samples_support)
        tree = ThoughtTree.with_root(problem)
        store = self.value_store if self.value_store is not None else MemoryValueStore()
        proposals = propose_version(task)
        generator = ThoughtGenerator(
            task,
            config,
            caller,
            store=store,
            namespace=""
            if proposals is None
            else f"{self.model_id}|{task.name}|{config.generation_strategy}:{proposals}"
            f"|x{config.n_generate_sample}",
        )
        cache = PromptCache()
        greedy_bfs = config.search_method == "bfs" and config.selection == "greedy"
        evaluator = StateEvaluator(
            task,
            config,
            caller,
            cache,
            store=store,
            namespace=f"{self.model_id}|{task.name}|{version}",
            beam=config.n_select_sample if greedy_bfs else None,
        )
        ctx = SearchContext(
            problem=problem,
            task=task,
            config=config,
            tree=tree,
            caller=caller,
            generator=generator,
            evaluator=evaluator,
            rng=random.Random(config.seed),
            observer=self.observer,
        )
        with observe.solving(ctx):
            try:
                await (bfs(ctx) if config.search_method == "bfs" else dfs(ctx))
            finally:
                await cache.aclose()
        solutions = collect_solutions(tree, task, problem)
        stats = ToTStats(
            **asdict(caller.counters),
            samples_saved=evaluator.samples_saved,
            duplicates_merged=generator.duplicates_merged,
            invalid_pruned=generator.invalid_pruned,
            proposals_reused=generator.proposals_reused,
            nodes=len(tree),
            depth_reached=max(node.depth for node in tree.nodes),
            usage=caller.usage(),
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
        """``solve`` for sync code. Ctrl-C cancels the calls in flight and returns at once.

        Under a running event loop it works but blocks that loop (and warns);
        use ``await engine.solve(...)`` there.
        """
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
