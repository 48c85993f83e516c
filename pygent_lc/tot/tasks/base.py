"""The ``Task`` protocol: what the engine needs to know about a kind of problem.

A state is the problem plus the path of thoughts taken so far (``steps``). The engine
owns the search and the calls; the task owns the prompts, the reading of replies, and
when a state is an answer. A prompt may be a :class:`~pygent_lc.tot.tasks.prompt.SplitPrompt`
(still a ``str``) marking the start that is fixed across calls, for providers to cache.
"""

from __future__ import annotations

from collections.abc import Sequence
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
