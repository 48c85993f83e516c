"""Free-form reasoning, the task the reasoning agents think with: a state is final when
its last thought starts with ``Final answer:``; values are on a 0-1 scale."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pygent_lc.errors import ConfigurationError, InvalidInputError
from pygent_lc.tot.tasks.base import (
    SplitPrompt,
    TaskDefaults,
    last_line_label,
    prompt_version,
    strip_bullet,
    unique_lines,
)
from pygent_lc.validation import MAX_PROMPT_CHARS

FINAL_PREFIX = "Final answer:"
_FINAL = re.compile(r"^\s*final answer\s*:\s*", re.IGNORECASE)
_SCORE = re.compile(r"(?:score|rating)\s*[:=]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")
_WORDS = {"sure": 1.0, "likely": 0.5, "impossible": 0.0}
# Every prompt states the problem first: the part all calls of a search share.
_PROBLEM = "Problem:\n{problem}\n\n"
_VALUE_PROMPT = (
    "Partial reasoning:\n{steps}\n\n"
    "How likely is this reasoning to lead to a correct answer? Think briefly, then "
    "end with a line 'Score: N' where N is from 1 (hopeless) to 10 (certainly right).\n"
)
# Bump the suffix when the reading of value answers changes.
_VALUE_VERSION = prompt_version(_PROBLEM, _VALUE_PROMPT, "score-or-last-word/1")
#: Two samples this close (on the 0-1 scale) agree.
AGREEMENT = 0.1


def _with_problem(problem: str, rest: str) -> SplitPrompt:
    return SplitPrompt(_PROBLEM.format(problem=problem), rest)


def _format_steps(steps: Sequence[str]) -> str:
    if not steps:
        return "(no steps yet)"
    return "\n".join(f"{i}. {step}" for i, step in enumerate(steps, start=1))


class GenericTask(TaskDefaults):
    name = "generic"
    default_depth = 3
    value_version = _VALUE_VERSION
    value_range = (0.0, 1.0)

    def __init__(self, *, n_proposals: int = 3, max_problem_chars: int = MAX_PROMPT_CHARS) -> None:
        if n_proposals < 1:
            raise ConfigurationError("n_proposals must be at least 1", field="n_proposals")
        self.n_proposals = n_proposals
        self.max_problem_chars = max_problem_chars

    @property
    def propose_version(self) -> str:
        shape = self.propose_prompt("{problem}", ["{step}"]) + self.sample_prompt("{problem}", [])
        return prompt_version(shape, "lines/1")

    def validate_problem(self, problem: str) -> str:
        text = problem.strip()
        if not text:
            raise InvalidInputError("the problem is empty")
        if len(text) > self.max_problem_chars:
            raise InvalidInputError(
                f"the problem has {len(text)} characters, more than {self.max_problem_chars}"
            )
        return text

    def propose_prompt(self, problem: str, steps: Sequence[str]) -> str:
        return _with_problem(
            problem,
            f"Reasoning so far:\n{_format_steps(steps)}\n\n"
            f"Propose up to {self.n_proposals} different possible next steps, one per line, "
            "each a single short sentence. If a step gives the final answer, start it with "
            f"'{FINAL_PREFIX}'.\nPossible next steps:\n",
        )

    def parse_proposals(self, output: str, problem: str, steps: Sequence[str]) -> list[str]:
        lines = [line for line in unique_lines(output) if not line.endswith("next steps:")]
        return lines[: self.n_proposals]

    def sample_prompt(self, problem: str, steps: Sequence[str]) -> str:
        return _with_problem(
            problem,
            f"Reasoning so far:\n{_format_steps(steps)}\n\n"
            "Write the single next step of the reasoning in one short paragraph. If it gives "
            f"the final answer, start it with '{FINAL_PREFIX}'.\nNext step:\n",
        )

    def sample_stop(self, problem: str, steps: Sequence[str]) -> list[str] | None:
        return None

    def parse_sample(self, output: str, problem: str, steps: Sequence[str]) -> str | None:
        text = " ".join(strip_bullet(line) for line in output.strip().splitlines())
        return " ".join(text.split()) or None

    def static_value(self, problem: str, steps: Sequence[str]) -> float | None:
        return None

    def value_prompt(self, problem: str, steps: Sequence[str]) -> str:
        return _with_problem(problem, _VALUE_PROMPT.format(steps=_format_steps(steps)))

    def parse_value(self, output: str) -> float:
        """A 1-10 score read as 0.1-1.0; else the last line's sure/likely/impossible
        (whole word) as 1/0.5/0; else the last number; else 0."""
        scores = _SCORE.findall(output)
        label = None if scores else last_line_label(output, _WORDS)
        if label is not None:
            return _WORDS[label]
        numbers = scores or _NUMBER.findall(output)
        return min(1.0, max(0.0, float(numbers[-1]) / 10.0)) if numbers else 0.0

    def samples_agree(
        self, problem: str, steps: Sequence[str], outputs: Sequence[str], scores: Sequence[float]
    ) -> bool:
        return len(scores) >= 2 and max(scores) - min(scores) <= AGREEMENT

    def vote_prompt(self, problem: str, candidates: Sequence[Sequence[str]]) -> str:
        choices = "\n\n".join(
            f"Choice {i}:\n{_format_steps(steps)}" for i, steps in enumerate(candidates, start=1)
        )
        return _with_problem(
            problem,
            "Here are several partial solutions. Analyse each briefly, then decide which one "
            "is most promising and end with 'The best choice is N'.\n\n"
            f"{choices}\n",
        )

    def state_key(self, problem: str, steps: Sequence[str]) -> str:
        return "\n".join(" ".join(part.casefold().split()) for part in (problem, *steps))

    def can_expand(self, problem: str, steps: Sequence[str]) -> bool:
        return True

    def is_final(self, problem: str, steps: Sequence[str]) -> bool:
        return bool(steps) and _FINAL.match(steps[-1]) is not None

    def check_answer(self, problem: str, steps: Sequence[str]) -> bool | None:
        return None

    def answer(self, problem: str, steps: Sequence[str]) -> str:
        return (_FINAL.sub("", steps[-1], count=1).strip() or steps[-1]) if steps else ""
