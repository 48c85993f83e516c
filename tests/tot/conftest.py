"""Scripted reasoners for the ToT tests: replies to the generic task's prompts.

The ``scripted`` fixture is :class:`pygent_lc.testing.ScriptedBackend`; the
replies here give it something to say.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from pygent_lc.testing import ScriptedBackend

Reply = Callable[[str], str]

_SECTION = re.compile(r"(?:Reasoning so far|Partial reasoning):\n(.*?)\n\n", re.DOTALL)


def steps_in(prompt: str) -> list[str]:
    """The reasoning steps shown in a GenericTask prompt."""
    match = _SECTION.search(prompt)
    if match is None or match.group(1).strip() == "(no steps yet)":
        return []
    return [re.sub(r"^\d+\.\s*", "", line).strip() for line in match.group(1).splitlines()]


def prompt_kind(prompt: str) -> str:
    if "Possible next steps:" in prompt:
        return "propose"
    if "Next step:" in prompt:
        return "sample"
    if "Score: N" in prompt:
        return "value"
    if "The best choice is N" in prompt:
        return "vote"
    return "other"


def ladder_reply(prompt: str) -> str:
    """A generic reasoner: three ideas per state (a, b, c), valued 9, 6 and 3.

    Thoughts name their path (``"a.b"``) so every state is distinct; at the
    third step the ideas are final answers.
    """
    kind = prompt_kind(prompt)
    steps = steps_in(prompt)
    if kind in ("propose", "sample"):
        prefix = steps[-1].split()[-1] + "." if steps else ""
        depth = len(steps) + 1
        lines = []
        for letter in "abc":
            label = f"{prefix}{letter}"
            lines.append(f"Final answer: {label}" if depth >= 3 else f"step {label}")
        return "\n".join(lines) if kind == "propose" else lines[0]
    if kind == "value":
        last = steps[-1].split()[-1] if steps else ""
        score = {"a": 9, "b": 6, "c": 3}.get(last[-1:], 1)
        return f"Looks reasonable.\nScore: {score}"
    if kind == "vote":
        return "Choice 1 is the most promising. The best choice is 1"
    return "I do not know."


@pytest.fixture
def scripted() -> type[ScriptedBackend]:
    return ScriptedBackend


@pytest.fixture
def ladder() -> Reply:
    return ladder_reply


def make_tree_reply(children: dict[str, list[str]], scores: dict[str, int]) -> Reply:
    """A reasoner over a fixed tree: ``children[last_step]`` and ``scores[step]`` (1-10).

    The root's children are under ``""``; unknown states propose nothing useful.
    """

    def reply(prompt: str) -> str:
        kind = prompt_kind(prompt)
        steps = steps_in(prompt)
        last = steps[-1] if steps else ""
        if kind == "propose":
            return "\n".join(children.get(last, ["(stuck)"]))
        if kind == "value":
            return f"Score: {scores.get(last, 1)}"
        return "I do not know."

    return reply


@pytest.fixture
def tree_reply() -> Callable[[dict[str, list[str]], dict[str, int]], Reply]:
    return make_tree_reply
