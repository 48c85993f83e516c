"""The Tree of Thoughts paper's Game-of-24 setup: its puzzles, its test split, its BFS.

:func:`load_game24_puzzles` reads the paper's 1,362 puzzles
(``benchmarks/data/game24.csv``, see ``data/README.md``); its test split is
:data:`PAPER_TEST_RANGE`.

:func:`paper_bfs_llm_calls` replays the paper's BFS (``methods/bfs.py`` of
princeton-nlp/tree-of-thought-llm: calls one after another, value cache keyed
by prompt, duplicates in a step valued 0) against the scripted model of
:mod:`benchmarks.game24_model` and counts its calls, for a like-for-like
comparison with the engine.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.game24_model import Tally, approx_tokens, checks_24, scripted_game24_reply
from pygent_lc.tot import Game24Task
from pygent_lc.tot.tasks.game24 import (
    COT_PROMPT,
    PROPOSE_PROMPT,
    VALUE_LAST_STEP_PROMPT,
    VALUE_PROMPT,
)

__all__ = [
    "PAPER_TEST_RANGE",
    "PUZZLES_CSV",
    "PaperBFSRun",
    "load_game24_puzzles",
    "paper_bfs_llm_calls",
]

PUZZLES_CSV = Path(__file__).resolve().parent / "data" / "game24.csv"

#: The paper's test puzzles: 0-based rows 900-999 of ``game24.csv``.
PAPER_TEST_RANGE = (900, 1000)


def load_game24_puzzles() -> list[str]:
    """The 1,362 puzzles (``"1 1 4 6"``, ...) in the paper's order (by solve rate)."""
    with PUZZLES_CSV.open(encoding="utf-8", newline="") as file:
        return [row["Puzzles"].strip() for row in csv.DictReader(file)]


@dataclass(frozen=True)
class PaperBFSRun:
    """What the paper's BFS did on one puzzle."""

    llm_calls: int
    """Completions asked: each of the ``n`` value samples counts as one."""
    outputs: list[str]
    solved: bool
    requests: int = 0
    """API requests as the paper sent them: the ``n`` value samples of a prompt
    are one request (``n=3``), proposals one each."""
    input_tokens: int = 0
    """Prompt tokens, once per request (~4 characters a token, as the scripted model)."""
    output_tokens: int = 0
    """Completion tokens of every sample."""

    def cost_usd(self, input_per_1k: float = 0.03, output_per_1k: float = 0.06) -> float:
        """At GPT-4's prices per 1k tokens (the paper's), unless given."""
        return self.input_tokens * input_per_1k / 1000 + self.output_tokens * output_per_1k / 1000


def _paper_current_numbers(y: str) -> str:
    last_line = y.strip().split("\n")[-1]
    return last_line.split("left: ")[-1].split(")")[0]


def _paper_propose_prompt(x: str, y: str) -> str:
    current = _paper_current_numbers(y if y else x)
    if current == "24":
        return COT_PROMPT.format(input=x) + "Steps:\n" + y
    return PROPOSE_PROMPT.format(input=current)


def _paper_value_prompt(x: str, y: str) -> str:
    last_line = y.strip().split("\n")[-1]
    if "left: " not in last_line:
        answer = last_line.lower().replace("answer: ", "")
        return VALUE_LAST_STEP_PROMPT.format(input=x, answer=answer)
    return VALUE_PROMPT.format(input=_paper_current_numbers(y))


def _paper_unwrap(y: str, outputs: Sequence[str]) -> float:
    if len(y.strip().split("\n")) == 4 and "answer" not in y.lower():
        return 0.0
    names = [output.split("\n")[-1] for output in outputs]
    value_map = {"impossible": 0.001, "likely": 1.0, "sure": 20.0}
    return sum(value * names.count(name) for name, value in value_map.items())


def paper_bfs_llm_calls(
    problem: str,
    reply: Callable[[str], str] = scripted_game24_reply,
    *,
    n_evaluate_sample: int = 3,
    n_select_sample: int = 5,
    steps: int = Game24Task.STEPS,
    value_cache: dict[str, float] | None = None,
    tally: Tally | None = None,
) -> PaperBFSRun:
    """Run the paper's Game-of-24 BFS (propose, value, greedy) and count its LLM calls.

    Per step: one propose call per state in the beam; for each new state, its
    value prompt is asked ``n_evaluate_sample`` times unless that prompt is in
    the value cache; a state repeated within the step is valued 0 without a
    call. ``value_cache`` is the paper's ``task.value_cache``: pass one dict
    for a whole run of puzzles to replay its ``run.py``, which keeps it across
    puzzles; by default it lives for this puzzle only. The paper asks its
    ``n`` samples in one API request: ``llm_calls`` counts each sample as the
    engine counts calls, ``requests`` and the tokens count them as the paper
    sent them. ``tally`` counts them by kind of prompt and level.
    """
    calls = 0
    requests = 0
    input_tokens = 0
    output_tokens = 0
    cache: dict[str, float] = {} if value_cache is None else value_cache

    def ask(prompt: str, n: int) -> list[str]:
        nonlocal requests, input_tokens, output_tokens
        outputs = [reply(prompt) for _ in range(n)]
        requests += 1
        input_tokens += approx_tokens(prompt)
        output_tokens += sum(approx_tokens(output) for output in outputs)
        if tally is not None:
            tally.add(prompt, outputs)
        return outputs

    ys = [""]
    for _ in range(steps):
        new_ys: list[str] = []
        for y in ys:
            calls += 1
            proposals = ask(_paper_propose_prompt(problem, y), 1)[0].split("\n")
            new_ys.extend(y + proposal + "\n" for proposal in proposals)
        values: list[float] = []
        seen: set[str] = set()
        for y in new_ys:
            if y in seen:
                values.append(0.0)
                continue
            seen.add(y)
            prompt = _paper_value_prompt(problem, y)
            if prompt not in cache:
                outputs = ask(prompt, n_evaluate_sample)
                calls += n_evaluate_sample
                cache[prompt] = _paper_unwrap(y, outputs)
            values.append(cache[prompt])
        order = sorted(range(len(new_ys)), key=lambda i: values[i], reverse=True)
        ys = [new_ys[i] for i in order[:n_select_sample]]
    outputs = [y.strip().split("\n")[-1] for y in ys]
    return PaperBFSRun(
        llm_calls=calls,
        outputs=outputs,
        solved=any(checks_24(output, problem) for output in outputs),
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
