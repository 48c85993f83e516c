"""Tasks of the Tree-of-Thought engine: the ``Task`` protocol and two implementations."""

from pygent_lc.tot.tasks.arithmetic import UnsafeExpressionError, check_24, evaluate_arithmetic
from pygent_lc.tot.tasks.base import SplitPrompt, Task, split_template
from pygent_lc.tot.tasks.game24 import Game24Task
from pygent_lc.tot.tasks.generic import GenericTask

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
