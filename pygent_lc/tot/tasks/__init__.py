"""Tasks of the Tree-of-Thought engine: the ``Task`` protocol and two implementations."""

from pygent_lc.tot.tasks.arithmetic import UnsafeExpressionError, check_24, evaluate_arithmetic
from pygent_lc.tot.tasks.base import Task
from pygent_lc.tot.tasks.game24 import Game24Task
from pygent_lc.tot.tasks.generic import GenericTask
from pygent_lc.tot.tasks.prompt import SplitPrompt, split_template

__all__ = [
    "Game24Task",
    "GenericTask",
    "SplitPrompt",
    "Task",
    "UnsafeExpressionError",
    "check_24",
    "evaluate_arithmetic",
    "split_template",
]
