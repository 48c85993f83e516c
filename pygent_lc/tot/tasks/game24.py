"""Game of 24, as in the Tree of Thoughts paper.

A state is the puzzle plus up to four lines: three steps of the form
``a op b = c (left: ...)`` and a final ``Answer: <expression> = 24``. The
answer is verified by :func:`check_24` (``ast`` + fractions, never ``eval``).
The 1,362 puzzles ship in ``data/game24.csv`` (see ``data/README.md``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from importlib import resources

from pygent_lc.errors import InvalidInputError
from pygent_lc.tot.tasks._text import parse_vote, unique_lines
from pygent_lc.tot.tasks.arithmetic import (
    UnsafeExpressionError,
    check_24,
    evaluate_arithmetic,
    parse_numbers,
)
from pygent_lc.tot.tasks.game24_prompts import (
    COT_PROMPT,
    PROPOSE_PROMPT,
    VALUE_LAST_STEP_PROMPT,
    VALUE_PROMPT,
    VOTE_PROMPT,
)

__all__ = [
    "PAPER_TEST_RANGE",
    "Game24Task",
    "UnsafeExpressionError",
    "check_24",
    "current_numbers",
    "evaluate_arithmetic",
    "load_game24_puzzles",
]

#: The paper's test puzzles: 0-based rows 900-999 of ``game24.csv``.
PAPER_TEST_RANGE = (900, 1000)

# The paper's value map, per sample: values of a state are summed over samples.
VALUE_MAP = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}

_STEP = re.compile(r"=.*\(\s*left:\s*[^)]*\)", re.IGNORECASE)
_ANSWER = re.compile(r"^\s*answer\s*:\s*", re.IGNORECASE)


def load_game24_puzzles() -> list[str]:
    """The 1,362 puzzles (``"1 1 4 6"``, ...) in the paper's order (by solve rate)."""
    text = resources.files("pygent_lc.tot.tasks").joinpath("data/game24.csv").read_text("utf-8")
    rows = csv.DictReader(io.StringIO(text))
    return [row["Puzzles"].strip() for row in rows]


def current_numbers(problem: str, steps: Sequence[str]) -> str:
    """The numbers still to combine: the last step's ``(left: ...)``, or the puzzle."""
    if not steps:
        return " ".join(problem.split())
    last = steps[-1].strip()
    left = last.split("left:")[-1].split(")")[0]
    return " ".join(left.split())


class Game24Task:
    """Combine four numbers with + - * / into 24, one pair per step."""

    name = "game24"
    #: Three arithmetic steps and the answer line; use as ``max_depth``.
    STEPS = 4

    def validate_problem(self, problem: str) -> str:
        try:
            numbers = parse_numbers(problem)
        except ValueError as exc:
            raise InvalidInputError(
                f"a Game of 24 puzzle is four whole numbers, got {problem!r}"
            ) from exc
        if len(numbers) != 4 or any(n > 1000 for n in numbers):
            raise InvalidInputError(
                f"a Game of 24 puzzle is four whole numbers up to 1000, got {problem!r}"
            )
        return " ".join(str(n) for n in numbers)

    # generation -----------------------------------------------------------
    def _answer_step(self, problem: str, steps: Sequence[str]) -> bool:
        return bool(steps) and current_numbers(problem, steps) == "24"

    def _cot(self, problem: str, steps: Sequence[str]) -> str:
        body = "".join(step + "\n" for step in steps)
        return COT_PROMPT.format(input=problem) + "Steps:\n" + body

    def propose_prompt(self, problem: str, steps: Sequence[str]) -> str:
        # As in the paper: once 24 is left, "proposing" is writing the answer.
        if self._answer_step(problem, steps):
            return self._cot(problem, steps)
        return PROPOSE_PROMPT.format(input=current_numbers(problem, steps))

    def parse_proposals(self, output: str, problem: str, steps: Sequence[str]) -> list[str]:
        lines = unique_lines(output)
        if self._answer_step(problem, steps):
            return [line for line in lines if _ANSWER.match(line)]
        return [line for line in lines if _STEP.search(line) and not _ANSWER.match(line)]

    def sample_prompt(self, problem: str, steps: Sequence[str]) -> str:
        return self._cot(problem, steps)

    def sample_stop(self, problem: str, steps: Sequence[str]) -> list[str] | None:
        return ["\n"]

    def parse_sample(self, output: str, problem: str, steps: Sequence[str]) -> str | None:
        lines = unique_lines(output)
        return lines[0] if lines else None

    # evaluation -----------------------------------------------------------
    def static_value(self, problem: str, steps: Sequence[str]) -> float | None:
        # The paper values a full-length path without an answer 0 (after
        # asking the model anyway); we skip the call.
        if len(steps) >= self.STEPS and not self.is_final(problem, steps):
            return 0.0
        return None

    def value_prompt(self, problem: str, steps: Sequence[str]) -> str:
        if self.is_final(problem, steps):
            answer = _ANSWER.sub("", steps[-1], count=1).strip()
            return VALUE_LAST_STEP_PROMPT.format(input=problem, answer=answer)
        return VALUE_PROMPT.format(input=current_numbers(problem, steps))

    def parse_value(self, output: str) -> float:
        lines = [line.strip().lower() for line in output.splitlines() if line.strip()]
        if not lines:
            return 0.0
        last = lines[-1]
        for word in ("impossible", "likely", "sure"):
            if word in last:
                return VALUE_MAP[word]
        return 0.0

    def aggregate_values(self, scores: Sequence[float]) -> float:
        return float(sum(scores))

    def vote_prompt(self, problem: str, candidates: Sequence[Sequence[str]]) -> str:
        choices = "\n".join(
            f"Choice {i}:\n" + "\n".join(steps) for i, steps in enumerate(candidates, start=1)
        )
        return VOTE_PROMPT.format(input=problem, choices=choices)

    def parse_vote(self, output: str, n_candidates: int) -> int | None:
        return parse_vote(output, n_candidates)

    # states ---------------------------------------------------------------
    def can_expand(self, problem: str, steps: Sequence[str]) -> bool:
        if len(steps) >= self.STEPS or self.is_final(problem, steps):
            return False
        left = current_numbers(problem, steps).split()
        # One number left that is not 24: nothing more to combine.
        return not (len(left) == 1 and left[0] != "24")

    def is_final(self, problem: str, steps: Sequence[str]) -> bool:
        return bool(steps) and _ANSWER.match(steps[-1]) is not None

    def check_answer(self, problem: str, steps: Sequence[str]) -> bool | None:
        if not self.is_final(problem, steps):
            return False
        return check_24(steps[-1], problem)

    def answer(self, problem: str, steps: Sequence[str]) -> str:
        if not steps:
            return ""
        return _ANSWER.sub("", steps[-1], count=1).strip()
