"""``ToTEngine``: one search per ``solve``, and a LangChain ``Runnable`` too."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import random
import threading
import time
import warnings
from collections.abc import Coroutine, Mapping
from typing import Any, TypedDict, TypeVar, Unpack, overload

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig

from pygent_lc.backend import LLMBackend
from pygent_lc.closing import runnable_parts
from pygent_lc.errors import ConfigurationError, InvalidInputError
from pygent_lc.tot import observe
from pygent_lc.tot.caller import LLMCaller, SamplesSupport
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.result import ThoughtNode, ThoughtTree, ToTResult
from pygent_lc.tot.search import SearchContext, bfs, dfs
from pygent_lc.tot.stages import StateEvaluator, ThoughtGenerator
from pygent_lc.tot.tasks.base import BatchValueTask, Task
from pygent_lc.tot.tasks.generic import GenericTask
from pygent_lc.tot.value_store import MemoryValueStore, ValueStore, open_value_store

_T = TypeVar("_T")

ToTInput = str | Mapping[str, Any]  # a problem, or {"problem": ...} (LCEL-friendly)


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


CANCEL_GRACE_S = 0.5  # how long an interrupted search gets to cancel its calls
_POLL_S = 0.05


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """``coro`` run by ``asyncio.run``, or under a running loop (a notebook) in a daemon
    thread with the caller's context; Ctrl-C or the caller's cancellation cancels it."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    warnings.warn(
        "a sync solve under a running event loop blocks that loop until it ends; "
        "use 'await engine.solve(...)' there",
        RuntimeWarning,
        stacklevel=3,
    )
    caller = asyncio.current_task(running)
    loop = asyncio.new_event_loop()
    task = loop.create_task(coro, context=contextvars.copy_context())
    done: concurrent.futures.Future[_T] = concurrent.futures.Future()

    def work() -> None:
        try:
            done.set_result(loop.run_until_complete(task))
        except BaseException as exc:  # delivered to the waiting thread
            done.set_exception(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    threading.Thread(target=work, name="pygent-tot-solve", daemon=True).start()
    try:
        while True:
            try:
                return done.result(timeout=_POLL_S)
            except concurrent.futures.TimeoutError:
                if caller is not None and caller.cancelling():
                    raise asyncio.CancelledError() from None
    except BaseException:
        if not done.done():
            # RuntimeError: the loop has just closed, nothing is left to cancel.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
            concurrent.futures.wait([done], timeout=CANCEL_GRACE_S)
        raise


def _own_name(obj: object) -> str | None:
    names = (getattr(obj, name, None) for name in ("model_id", "model_name", "model"))
    return next((name for name in names if isinstance(name, str) and name), None)


def model_identity(backend: object) -> str | None:
    """The model (or ``a>b`` chain of models, in the order tried) behind ``backend``: the
    name it gives itself, else those of the chat models it wraps."""
    if (own := _own_name(backend)) is not None:
        return own
    parts = runnable_parts(backend)
    names = (_own_name(part) for part in parts if isinstance(part, BaseChatModel))
    return ">".join(dict.fromkeys(name for name in names if name)) or None


class _EngineOptions(TypedDict, total=False):
    task: Task | None
    name: str | None
    model_id: str | None
    value_store: ValueStore | None
    observer: observe.SearchObserver | None


class ToTEngine(Runnable[ToTInput, ToTResult]):
    """As a ``Runnable`` it takes a problem (or ``{"problem": ...}``). Values outlive a solve in
    ``config.value_cache`` (or ``value_store``) per model: ``model_id``, else the backend's."""

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
        if not isinstance(backend, LLMBackend):
            got = "none" if backend is None else type(backend).__name__
            raise ConfigurationError(f"ToTEngine needs an LLMBackend, got {got}", field="backend")
        self.config = config if config is not None else ToTConfig()
        self.backend = backend
        self.task: Task = task if task is not None else GenericTask()
        self.name = name or "ToTEngine"
        self.observer = observer
        if value_store is None:  # an empty store is falsy: no "or"
            value_store = open_value_store(self.config.value_cache, self.config.value_cache_size)
        self.value_store = value_store
        found = model_id or model_identity(backend)
        shared = value_store is not None and not isinstance(value_store, MemoryValueStore)
        if found is None and shared:
            raise ConfigurationError(
                "a shared value cache needs to know the model: pass ToTEngine(model_id=...)",
                field="model_id",
            )
        # Unnamed models: values shared by this backend object only, never across models.
        self.model_id = found or f"{type(backend).__qualname__}@{id(backend):x}"
        self.samples_support = SamplesSupport()  # learnt once, for every later solve

    async def solve(self, problem: ToTInput, task: Task | None = None) -> ToTResult:
        """Search for a solution of ``problem``; a spent budget is no error
        (``stats.budget_exhausted``), a level whose every call failed raises its error."""
        task = task if task is not None else self.task
        problem = task.validate_problem(_problem_of(problem))
        config = self.config
        if (depth := config.depth_for(task.default_depth)) != config.max_depth:
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
        store = self.value_store if self.value_store is not None else MemoryValueStore()
        prefix = f"{self.model_id}|{task.name}|"
        # Kept proposals are per task prompts, strategy and samples; none without a version.
        proposals = getattr(task, "propose_version", None)
        strategy = f"{config.generation_strategy}:{proposals}|x{config.n_generate_sample}"
        generated = prefix + strategy if isinstance(proposals, str) else ""
        ctx = SearchContext(
            problem,
            task,
            config,
            ThoughtTree(nodes=[ThoughtNode(id=0, parent=None, depth=0, text=problem)]),
            caller,
            ThoughtGenerator(task, config, caller, store, generated),
            StateEvaluator(task, config, caller, store, prefix + version),
            random.Random(config.seed),
            self.observer,
        )
        with observe.watching(ctx):
            await (bfs(ctx) if config.search_method == "bfs" else dfs(ctx))
        stats = caller.counters
        stats.nodes = len(ctx.tree)
        stats.depth_reached = max(node.depth for node in ctx.tree.nodes)
        stats.usage = caller.usage()
        stats.wall_time_s = time.perf_counter() - started
        stats.budget_exhausted = caller.exhausted
        return ToTResult.of(ctx.tree, task, problem, stats, config)

    def solve_sync(self, problem: ToTInput, task: Task | None = None) -> ToTResult:
        """``solve`` for sync code (Ctrl-C cancels the calls); under a running loop: warns."""
        return run_sync(self.solve(problem, task))

    def invoke(
        self, input: ToTInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ToTResult:
        return self._call_with_config(self.solve_sync, input, config, run_type="chain")

    async def ainvoke(
        self, input: ToTInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ToTResult:
        return await self._acall_with_config(self.solve, input, config, run_type="chain")
