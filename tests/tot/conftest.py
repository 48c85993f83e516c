"""Fake backends for the ToT tests: scripted, offline, optionally slow or failing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from pygent_lc.backend import LLMBackend, UsageTotals

Reply = Callable[[str], str]
Failure = Callable[[str, int], Exception | None]

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


class ScriptedBackend(LLMBackend):
    """An ``LLMBackend`` whose completions come from ``reply(prompt)``.

    ``latency_s`` is slept per call; ``fail(prompt, call_index)`` may return an
    exception to raise instead; ``cost_per_call`` (when set) makes
    ``usage_totals`` report 10 input and 5 output tokens and that cost per call.
    """

    def __init__(
        self,
        reply: Reply,
        *,
        latency_s: float = 0.0,
        fail: Failure | None = None,
        cost_per_call: float | None = None,
    ) -> None:
        self.reply = reply
        self.latency_s = latency_s
        self.fail = fail
        self.cost_per_call = cost_per_call
        self.prompts: list[str] = []
        self.kwargs: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._totals = UsageTotals()

    @property
    def calls(self) -> int:
        return len(self.prompts)

    async def generate(self, prompt: str, **kwargs: Any) -> str:
        index = len(self.prompts)
        self.prompts.append(prompt)
        self.kwargs.append(kwargs)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            error = self.fail(prompt, index) if self.fail else None
            if error is not None:
                self._totals += UsageTotals(calls=1, failures=1)
                raise error
            output = self.reply(prompt)
        finally:
            self.in_flight -= 1
        self._totals += UsageTotals(
            calls=1, input_tokens=10, output_tokens=5, cost_usd=self.cost_per_call or 0.0
        )
        return output

    def usage_totals(self) -> UsageTotals | None:
        return self._totals if self.cost_per_call is not None else None


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
