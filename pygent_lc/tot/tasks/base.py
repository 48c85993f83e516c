"""The ``Task`` protocol, what the engine needs to know about a kind of problem, and the
text helpers tasks share (prompts with a static prefix, readers of replies).

A state is the problem plus the path of thoughts taken so far (``steps``). The engine
owns the search and the calls; the task owns the prompts, the reading of replies, and
when a state is an answer. A prompt may be a :class:`SplitPrompt` (still a ``str``)
marking the start that is fixed across calls, for providers to cache.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Task(Protocol):
    """Prompts and parsers for one kind of problem."""

    name: str
    default_depth: int
    """Thought steps a search takes when the caller does not set ``max_depth``."""
    value_version: str
    """Changes with the value prompt or its reading: stored values are kept per version."""
    value_range: tuple[float, float]
    """The lowest and highest score of one value sample."""

    def validate_problem(self, problem: str) -> str:
        """The normalised problem; raise ``InvalidInputError`` when unusable."""

    def propose_prompt(self, problem: str, steps: Sequence[str]) -> str:
        """A prompt asking for several possible next steps, one per line."""

    def parse_proposals(self, output: str, problem: str, steps: Sequence[str]) -> list[str]: ...

    def sample_prompt(self, problem: str, steps: Sequence[str]) -> str:
        """A prompt asking for one next step."""

    def sample_stop(self, problem: str, steps: Sequence[str]) -> list[str] | None: ...

    def parse_sample(self, output: str, problem: str, steps: Sequence[str]) -> str | None: ...

    def static_value(self, problem: str, steps: Sequence[str]) -> float | None:
        """A value known without asking the model (a dead end, say), else ``None``."""

    def value_prompt(self, problem: str, steps: Sequence[str]) -> str: ...

    def parse_value(self, output: str) -> float: ...

    def aggregate_values(self, scores: Sequence[float]) -> float:
        """Combine a state's sample scores, whatever their order or count (a budget or
        adaptive sampling leaves fewer): a mean, not a sum."""

    def samples_agree(
        self, problem: str, steps: Sequence[str], outputs: Sequence[str], scores: Sequence[float]
    ) -> bool:
        """Whether the samples so far settle the state's value (no more are asked);
        ``outputs`` are the completions behind ``scores`` (none for stored scores)."""

    def vote_prompt(self, problem: str, candidates: Sequence[Sequence[str]]) -> str:
        """A prompt asking which of ``candidates`` (numbered from 1) is most promising."""

    def parse_vote(self, output: str, n_candidates: int) -> int | None:
        """The 0-based index voted for, or ``None``."""

    def state_key(self, problem: str, steps: Sequence[str]) -> str:
        """The canonical key of a state: states with one key are merged within a level
        and share stored values, so it holds all the state's value and future depend on,
        and nothing else (Game of 24: the numbers left)."""

    def can_expand(self, problem: str, steps: Sequence[str]) -> bool:
        """Whether a non-final state can still lead anywhere."""

    def is_final(self, problem: str, steps: Sequence[str]) -> bool: ...

    def check_answer(self, problem: str, steps: Sequence[str]) -> bool | None:
        """Verify a final state: ``True``/``False``, or ``None`` when it cannot tell."""

    def answer(self, problem: str, steps: Sequence[str]) -> str:
        """The answer text of a state (the last thought when nothing better exists)."""


@runtime_checkable
class VerifyingTask(Task, Protocol):
    """A task that checks by program: its answers are checked, not judged; a proposed
    step ``check_step`` rejects is pruned before any value call
    (``ToTStats.invalid_pruned``); and, unless ``ToTConfig.stop_on_verified`` is
    ``False``, the search ends at the first verified answer."""

    verifies_answers: bool

    def check_step(self, problem: str, steps: Sequence[str]) -> bool | None:
        """Whether the last of ``steps`` (not an answer) follows from the state before
        it by the task's rules; ``None`` when the program cannot tell."""

    def program_answer(self, problem: str, steps: Sequence[str]) -> str | None:
        """The final thought after ``steps`` when a program can write it (Game of 24:
        the expression of checked steps that leave 24): no model is asked for it."""


@runtime_checkable
class BatchValueTask(Task, Protocol):
    """A task that values several states in one prompt (``ToTConfig.value_batch``)."""

    value_batch_version: str

    def value_batch_prompt(self, problem: str, states: Sequence[Sequence[str]]) -> str: ...

    def parse_value_batch(self, output: str, count: int) -> list[float]:
        """A score for each of ``count`` states (the lowest for one not answered)."""


# The optional parts of a task, read where a task may not have them.
def has_verifier(task: Task) -> bool:
    return bool(getattr(task, "verifies_answers", False))


def children_checked(task: Task, problem: str, steps: Sequence[str]) -> bool:
    """Whether every state one step after ``steps`` gets its value from the task's
    program (``static_value``): expanding the state checks what valuing it estimates."""
    check = getattr(task, "children_checked", None)
    return bool(check(problem, steps)) if callable(check) else False


def propose_version(task: Task) -> str | None:
    """Changes with the propose and sample prompts and their reading; without one, the
    next steps found from a state are never reused (``reuse_proposals``)."""
    version = getattr(task, "propose_version", None)
    return version if isinstance(version, str) else None


def program_answer(task: Task, problem: str, steps: Sequence[str]) -> str | None:
    return task.program_answer(problem, steps) if isinstance(task, VerifyingTask) else None


def check_step(task: Task, problem: str, steps: Sequence[str]) -> bool | None:
    return task.check_step(problem, steps) if isinstance(task, VerifyingTask) else None


class SplitPrompt(str):
    """The text ``static + dynamic``, a plain ``str`` everywhere, remembering ``static``:
    the start that is byte-identical on every call of a search (few-shot examples, the
    problem), which the engine hands to backends that can have it cached. String
    operations return plain ``str``: build the prompt last."""

    static: str

    def __new__(cls, static: str, dynamic: str) -> SplitPrompt:
        prompt = super().__new__(cls, static + dynamic)
        prompt.static = static
        return prompt

    @property
    def dynamic(self) -> str:
        return str(self)[len(self.static) :]


def prompt_version(*parts: str) -> str:
    """A short hash of prompts and a tag for how replies are read: stored values and
    proposals are kept per version, so a new prompt never reuses old ones."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def static_prefix(prompt: str) -> str:
    """The cacheable start of ``prompt`` (``""`` for a plain string)."""
    return prompt.static if isinstance(prompt, SplitPrompt) else ""


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


def parse_vote(output: str, n_candidates: int) -> int | None:
    """The 0-based index of the last vote in ``output``, or ``None`` if there is no valid one."""
    found = _VOTE.findall(output)
    if not found:
        return None
    index = int(found[-1]) - 1
    return index if 0 <= index < n_candidates else None


def strip_bullet(line: str) -> str:
    """``"2. foo"``, ``"- foo"`` or ``"Step 2: foo"`` -> ``"foo"``."""
    return _BULLET.sub("", line, count=1).strip()


def unique_lines(text: str) -> list[str]:
    """Non-empty, de-bulleted, distinct lines of ``text`` in order."""
    return list(dict.fromkeys(line for raw in text.splitlines() if (line := strip_bullet(raw))))


_WORD = re.compile(r"[a-z]+")
_NEGATIONS = frozenset({"not", "no", "never", "hardly", "barely"})


def last_line_label(output: str, labels: Iterable[str]) -> str | None:
    """The label the completion ends with, read as the paper reads it: the last word of
    the last non-empty line, whole ("unlikely" is not "likely") and not negated ("not
    sure" is not "sure"); markdown and punctuation around it are ignored."""
    lines = [line for line in output.strip().lower().splitlines() if line.strip()]
    if not lines:
        return None
    words: list[str] = _WORD.findall(lines[-1])
    if not words or words[-1] not in set(labels):
        return None
    if len(words) > 1 and words[-2] in _NEGATIONS:
        return None
    return words[-1]


def normalise_text(text: str) -> str:
    """Case-folded, with runs of whitespace made one space: for comparing free text."""
    return " ".join(text.casefold().split())
