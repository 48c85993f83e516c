"""The ``Task`` protocol: what the engine needs to know about a kind of problem.

A state is the problem plus the path of thoughts taken so far (``steps``).
The engine owns the search and the LLM calls; the task owns the prompts, how
to read the model's answers, and when a state is a finished answer.

A prompt method may return a :class:`~pygent_lc.tot.tasks.prompt.SplitPrompt`
(still a ``str``) to say which start of the prompt is fixed across calls;
the engine then lets backends that can ask the provider to cache it.
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
    """Changes whenever the value prompt or how its answers are read changes:
    stored values are kept per version, so a new prompt never reuses old ones."""

    value_range: tuple[float, float]
    """The lowest and highest score one value sample can get."""

    def validate_problem(self, problem: str) -> str:
        """The normalised problem; raise ``InvalidInputError`` when unusable."""

    def propose_prompt(self, problem: str, steps: Sequence[str]) -> str:
        """A prompt asking for several possible next steps, one per line."""

    def parse_proposals(self, output: str, problem: str, steps: Sequence[str]) -> list[str]:
        """The next-step thoughts found in a propose completion."""

    def sample_prompt(self, problem: str, steps: Sequence[str]) -> str:
        """A prompt asking for one next step."""

    def sample_stop(self, problem: str, steps: Sequence[str]) -> list[str] | None:
        """Stop sequences of a sample call, if any."""

    def parse_sample(self, output: str, problem: str, steps: Sequence[str]) -> str | None:
        """The thought in a sample completion, or ``None`` if there is none."""

    def static_value(self, problem: str, steps: Sequence[str]) -> float | None:
        """A value known without asking the model (a dead end, say), else ``None``."""

    def value_prompt(self, problem: str, steps: Sequence[str]) -> str:
        """A prompt asking how promising this state is. Identical prompts are cached."""

    def parse_value(self, output: str) -> float:
        """The score of one value completion."""

    def aggregate_values(self, scores: Sequence[float]) -> float:
        """Combine the per-sample scores of one state, whatever their order or count
        (a budget hit or adaptive sampling leaves fewer): a mean, not a sum."""

    def samples_agree(
        self, problem: str, steps: Sequence[str], outputs: Sequence[str], scores: Sequence[float]
    ) -> bool:
        """Whether the value samples so far settle the state's value (no more are asked).
        ``outputs`` are the completions behind ``scores`` (none for stored scores)."""

    def vote_prompt(self, problem: str, candidates: Sequence[Sequence[str]]) -> str:
        """A prompt asking which of ``candidates`` (numbered from 1) is most promising."""

    def parse_vote(self, output: str, n_candidates: int) -> int | None:
        """The 0-based index the completion voted for, or ``None``."""

    def state_key(self, problem: str, steps: Sequence[str]) -> str:
        """The canonical key of a state: states with one key are merged within a level
        and share stored values, so it holds everything the state's value and future
        depend on, and nothing else (Game of 24: the numbers left; free text: the
        normalised problem and steps)."""

    def can_expand(self, problem: str, steps: Sequence[str]) -> bool:
        """Whether a non-final state can still lead anywhere."""

    def is_final(self, problem: str, steps: Sequence[str]) -> bool:
        """Whether the state is a complete answer."""

    def check_answer(self, problem: str, steps: Sequence[str]) -> bool | None:
        """Verify a final state: ``True``/``False``, or ``None`` when it cannot tell."""

    def answer(self, problem: str, steps: Sequence[str]) -> str:
        """The answer text of a state (the last thought when nothing better exists)."""


@runtime_checkable
class VerifyingTask(Task, Protocol):
    """A :class:`Task` that checks answers and steps by program, without the model.

    A task that implements these (Game of 24 does; code with tests or math with
    a checker could) gets its final answers checked instead of judged
    (``check_answer`` says ``True``/``False``), its proposals checked before any
    value call (a step ``check_step`` rejects is pruned and counted in
    ``ToTStats.invalid_pruned``), and, unless ``ToTConfig.stop_on_verified``
    is ``False``, its search ends as soon as a verified answer exists.
    """

    verifies_answers: bool
    """``check_answer`` is a program's verdict (never ``None`` for a final state)."""

    def check_step(self, problem: str, steps: Sequence[str]) -> bool | None:
        """Whether the last of ``steps`` (not a final answer) follows from the state
        before it by the task's rules; ``None`` when the program cannot tell."""

    def program_answer(self, problem: str, steps: Sequence[str]) -> str | None:
        """The final thought after ``steps``, when a program can write it from them
        (Game of 24: the expression of checked steps that leave 24), else ``None``.
        The engine then asks no model for it."""


@runtime_checkable
class BatchValueTask(Task, Protocol):
    """A :class:`Task` that can value several states in one prompt
    (``ToTConfig.value_batch``): a level's siblings in one call instead of one each."""

    value_batch_version: str
    """Like ``value_version``, for the batch prompt and its reading."""

    def value_batch_prompt(self, problem: str, states: Sequence[Sequence[str]]) -> str:
        """A prompt asking for the value of each of ``states``, in order."""

    def parse_value_batch(self, output: str, count: int) -> list[float]:
        """The score of each of the ``count`` states of a batch completion (the
        task's lowest for a state it does not answer)."""


# The optional parts of a task, read where a task may not have them.
def has_verifier(task: Task) -> bool:
    return bool(getattr(task, "verifies_answers", False))


def children_checked(task: Task, problem: str, steps: Sequence[str]) -> bool:
    """Whether every state one step after ``steps`` gets its value from the task's
    program (``static_value``): expanding the state checks what valuing it estimates."""
    check = getattr(task, "children_checked", None)
    return bool(check(problem, steps)) if callable(check) else False


def propose_version(task: Task) -> str | None:
    """Changes with the task's propose and sample prompts and their reading; without
    one, the next steps found from a state are never reused (``reuse_proposals``)."""
    version = getattr(task, "propose_version", None)
    return version if isinstance(version, str) else None


def program_answer(task: Task, problem: str, steps: Sequence[str]) -> str | None:
    return task.program_answer(problem, steps) if isinstance(task, VerifyingTask) else None


def check_step(task: Task, problem: str, steps: Sequence[str]) -> bool | None:
    return task.check_step(problem, steps) if isinstance(task, VerifyingTask) else None
