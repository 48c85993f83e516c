"""The Tree-of-Thought engine: ``ToTEngine(config, backend).solve(problem, task=...)``."""

from pygent_lc.tot.config import CLOUD_MAX_CONCURRENCY, LOCAL_MAX_CONCURRENCY, ToTConfig
from pygent_lc.tot.engine import ToTEngine, ToTInput
from pygent_lc.tot.result import ThoughtNode, ThoughtTree, ToTPath, ToTResult, ToTStats
from pygent_lc.tot.search import bfs, dfs
from pygent_lc.tot.stages import StateEvaluator, ThoughtGenerator
from pygent_lc.tot.tasks import Game24Task, GenericTask, Task, UnsafeExpressionError, check_24

__all__ = [
    "CLOUD_MAX_CONCURRENCY",
    "LOCAL_MAX_CONCURRENCY",
    "Game24Task",
    "GenericTask",
    "StateEvaluator",
    "Task",
    "ThoughtGenerator",
    "ThoughtNode",
    "ThoughtTree",
    "ToTConfig",
    "ToTEngine",
    "ToTInput",
    "ToTPath",
    "ToTResult",
    "ToTStats",
    "UnsafeExpressionError",
    "bfs",
    "check_24",
    "dfs",
]
