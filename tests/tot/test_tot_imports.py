"""The public names of pygent_lc.tot, pinned."""

from __future__ import annotations

import pygent_lc.tot as tot
import pygent_lc.tot.tasks as tasks

EXPECTED_ALL = [
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

EXPECTED_TASKS_ALL = [
    "Game24Task",
    "GenericTask",
    "SplitPrompt",
    "Task",
    "UnsafeExpressionError",
    "check_24",
    "evaluate_arithmetic",
    "split_template",
]


def test_all_is_pinned():
    assert sorted(tot.__all__) == sorted(EXPECTED_ALL)
    assert sorted(tasks.__all__) == sorted(EXPECTED_TASKS_ALL)
    for name in tot.__all__:
        assert getattr(tot, name) is not None


def test_tasks_satisfy_the_protocol():
    assert isinstance(tot.GenericTask(), tot.Task)
    assert isinstance(tot.Game24Task(), tot.Task)
