"""Tasks of the Tree-of-Thought engine: the ``Task`` protocol and two implementations."""

from pygent_lc.tot.tasks.arithmetic import UnsafeExpressionError, check_24, evaluate_arithmetic
from pygent_lc.tot.tasks.base import Task
from pygent_lc.tot.tasks.game24 import PAPER_TEST_RANGE, Game24Task, load_game24_puzzles
from pygent_lc.tot.tasks.generic import GenericTask
from pygent_lc.tot.tasks.prompt import SplitPrompt, split_template

__all__ = [
    "PAPER_TEST_RANGE",
    "Game24Task",
    "GenericTask",
    "SplitPrompt",
    "Task",
    "UnsafeExpressionError",
    "check_24",
    "evaluate_arithmetic",
    "load_game24_puzzles",
    "split_template",
]
