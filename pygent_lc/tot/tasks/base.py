"""The ``Task`` protocol (prompts, the reading of replies, when a state, the problem plus
the thoughts so far, is an answer) and the text helpers tasks share."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Task(Protocol):
    name: str
    default_depth: int  # thought steps when the caller does not set max_depth
    value_version: str  # changes with the value prompt or its reading (values are per version)
    value_range: tuple[float, float]  # the lowest and highest score of one value sample

    def validate_problem(self, problem: str) -> str: ...  # else InvalidInputError
    def propose_prompt(self, problem: str, steps: Sequence[str]) -> str: ...  # a step a line
    def parse_proposals(self, output: str, problem: str, steps: Sequence[str]) -> list[str]: ...
    def sample_prompt(self, problem: str, steps: Sequence[str]) -> str: ...  # one next step
    def sample_stop(self, problem: str, steps: Sequence[str]) -> list[str] | None: ...
    def parse_sample(self, output: str, problem: str, steps: Sequence[str]) -> str | None: ...
    def value_prompt(self, problem: str, steps: Sequence[str]) -> str: ...
    def parse_value(self, output: str) -> float: ...
    def vote_prompt(self, problem: str, candidates: Sequence[Sequence[str]]) -> str: ...
    def parse_vote(self, output: str, n_candidates: int) -> int | None: ...  # 0-based
    def can_expand(self, problem: str, steps: Sequence[str]) -> bool: ...  # if not final
    def is_final(self, problem: str, steps: Sequence[str]) -> bool: ...
    def answer(self, problem: str, steps: Sequence[str]) -> str: ...
    def check_answer(self, problem: str, steps: Sequence[str]) -> bool | None: ...  # None: unsure
    # A value known without asking the model (a dead end, say), else None.
    def static_value(self, problem: str, steps: Sequence[str]) -> float | None: ...
    # The scores combined whatever their order or count (samples may be fewer): a mean.
    def aggregate_values(self, scores: Sequence[float]) -> float: ...
    # Whether the samples settle the value; ``outputs``: behind ``scores`` (none if stored).
    def samples_agree(
        self, problem: str, steps: Sequence[str], outputs: Sequence[str], scores: Sequence[float]
    ) -> bool: ...
    # All a state's value and future depend on (24: the numbers left): merged, cached by.
    def state_key(self, problem: str, steps: Sequence[str]) -> str: ...


@runtime_checkable
class VerifyingTask(Task, Protocol):
    """Checked by program: a step ``check_step`` rejects is pruned before any value call; the
    first verified answer ends the search (``stop_on_verified``); ``program_answer`` writes
    the final thought when a program can (24: the steps' expression), asking no model."""

    verifies_answers: bool

    def check_step(self, problem: str, steps: Sequence[str]) -> bool | None: ...
    def program_answer(self, problem: str, steps: Sequence[str]) -> str | None: ...


@runtime_checkable
class BatchValueTask(Task, Protocol):
    """A task that values several states in one prompt (``ToTConfig.value_batch``);
    ``parse_value_batch`` gives the lowest score to a state not answered."""

    value_batch_version: str

    def value_batch_prompt(self, problem: str, states: Sequence[Sequence[str]]) -> str: ...
    def parse_value_batch(self, output: str, count: int) -> list[float]: ...


class TaskDefaults:
    """What both of our tasks share: the paper's vote reading and the mean of the scores."""

    def parse_vote(self, output: str, n_candidates: int) -> int | None:
        found = _VOTE.findall(output)  # the last vote counts
        index = int(found[-1]) - 1 if found else -1
        return index if 0 <= index < n_candidates else None

    def aggregate_values(self, scores: Sequence[float]) -> float:
        # fsum is exact, so the mean does not depend on the order of the samples.
        return math.fsum(scores) / len(scores) if scores else 0.0


def children_checked(task: Task, problem: str, steps: Sequence[str]) -> bool:
    """Whether every state one step after ``steps`` gets its value from the task's
    program (``static_value``): expanding the state checks what valuing it estimates."""
    check = getattr(task, "children_checked", None)  # an optional part of a task
    return bool(check(problem, steps)) if callable(check) else False


class SplitPrompt(str):
    """A plain ``str`` that remembers its ``static`` start, byte-identical on every call of
    a search, for backends to cache. String operations return plain ``str``: build it last."""

    static: str

    def __new__(cls, static: str, dynamic: str) -> SplitPrompt:
        prompt = super().__new__(cls, static + dynamic)
        prompt.static = static
        return prompt

    @property
    def dynamic(self) -> str:
        return str(self)[len(self.static) :]


def prompt_version(*parts: str) -> str:
    """A short hash of prompts and a tag for how replies are read."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def split_template(template: str, **values: object) -> SplitPrompt:
    """``template.format(**values)``, split before the line of the first brace: the
    lines before it hold no field, so they are the static prefix."""
    brace = template.find("{")
    if brace < 0:
        return SplitPrompt(template.format(**values), "")
    cut = template.rfind("\n", 0, brace) + 1
    return SplitPrompt(template[:cut], template[cut:].format(**values))


# A list marker is only a marker when whitespace follows it: "1.5 + 2" keeps its "1.".
_BULLET = re.compile(r"^\s*(?:[-*•]+|\(?\d{1,3}[.):]|step\s*\d+\s*[:.)-])\s+", re.IGNORECASE)
# "The best choice is 2" (the paper's wording) or "the best candidate/option is #2".
_VOTE = re.compile(r"best (?:choice|candidate|option) is\s*#?\s*(\d+)", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")
_NEGATIONS = frozenset({"not", "no", "never", "hardly", "barely"})


def strip_bullet(line: str) -> str:
    """``"2. foo"``, ``"- foo"`` or ``"Step 2: foo"`` -> ``"foo"``."""
    return _BULLET.sub("", line, count=1).strip()


def unique_lines(text: str) -> list[str]:
    """Non-empty, de-bulleted, distinct lines of ``text`` in order."""
    return list(dict.fromkeys(line for raw in text.splitlines() if (line := strip_bullet(raw))))


def last_line_label(output: str, labels: Iterable[str]) -> str | None:
    """The last word of the last non-empty line if it is one of ``labels``, as the paper
    reads it: whole ("unlikely" is not "likely") and not negated ("not sure")."""
    lines = [line for line in output.strip().lower().splitlines() if line.strip()]
    words: list[str] = _WORD.findall(lines[-1]) if lines else []
    if not words or words[-1] not in set(labels):
        return None
    if len(words) > 1 and words[-2] in _NEGATIONS:
        return None
    return words[-1]
