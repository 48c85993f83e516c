"""A scripted Game-of-24 "model" for tests and benchmarks: offline and deterministic.

:class:`ScriptedGame24Backend` answers the prompts of
:class:`~pygent_lc.tot.Game24Task` by doing the arithmetic on the numbers in
the prompt: it proposes real steps (those that keep 24 reachable first, like a
strong model), values states exactly (sure / impossible), writes the answer
expression from the steps taken, and judges answers with the safe checker. It
needs no network and can add latency and report simulated usage, so the
engine's concurrency, caching and budgets can be measured offline.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache

from pygent_lc.testing import ScriptedBackend
from pygent_lc.tot import check_24

__all__ = [
    "ScriptedGame24Backend",
    "approx_tokens",
    "checks_24",
    "propose_steps",
    "reachable",
    "scripted_game24_reply",
    "solve24",
]

_TARGET = Fraction(24)
_STEP = re.compile(r"^\s*(\S+)\s+([-+*/])\s+(\S+)\s*=\s*(\S+)")
_OPS: dict[str, Callable[[Fraction, Fraction], Fraction]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


def _fmt(value: Fraction) -> str:
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


def _parse_numbers(text: str) -> list[Fraction] | None:
    try:
        return [Fraction(token) for token in text.split()]
    except (ValueError, ZeroDivisionError):
        return None


def _combinations(a: Fraction, b: Fraction) -> list[tuple[Fraction, str, Fraction, Fraction]]:
    """The steps a model would write for a pair: larger first, no negatives."""
    big, small = (a, b) if a >= b else (b, a)
    steps = [
        (big, "+", small, big + small),
        (big, "*", small, big * small),
        (big, "-", small, big - small),
    ]
    if small != 0:
        steps.append((big, "/", small, big / small))
    if big != 0 and small != big:
        steps.append((small, "/", big, small / big))
    return steps


@lru_cache(maxsize=65_536)
def _reachable(values: tuple[Fraction, ...]) -> bool:
    if len(values) == 1:
        return values[0] == _TARGET
    for i, j in itertools.combinations(range(len(values)), 2):
        rest = [v for k, v in enumerate(values) if k not in (i, j)]
        for _, _, _, result in _combinations(values[i], values[j]):
            if _reachable(tuple(sorted([*rest, result]))):
                return True
    return False


def reachable(numbers: Sequence[Fraction | int]) -> bool:
    """Whether 24 can be made from ``numbers`` with + - * / (exact fractions)."""
    return _reachable(tuple(sorted(Fraction(n) for n in numbers)))


def solve24(numbers: Sequence[Fraction | int]) -> str | None:
    """An expression making 24 from ``numbers``, or ``None``."""
    pool = [(Fraction(n), _fmt(Fraction(n))) for n in numbers]

    def search(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == _TARGET else None
        for i, j in itertools.combinations(range(len(items)), 2):
            rest = [item for k, item in enumerate(items) if k not in (i, j)]
            (a, ea), (b, eb) = items[i], items[j]
            for x, op, y, result in _combinations(a, b):
                ex, ey = (ea, eb) if (x == a and y == b) else (eb, ea)
                found = search([*rest, (result, f"({ex} {op} {ey})")])
                if found is not None:
                    return found
        return None

    expression = search(pool)
    return None if expression is None else _strip_outer(expression)


def _strip_outer(expression: str) -> str:
    if not (expression.startswith("(") and expression.endswith(")")):
        return expression
    depth = 0
    for index, char in enumerate(expression):
        depth += (char == "(") - (char == ")")
        if depth == 0 and index < len(expression) - 1:
            return expression  # the outer parentheses do not enclose everything
    return expression[1:-1]


def propose_steps(
    numbers: Sequence[Fraction], *, limit: int = 8, solvable_first: bool = True
) -> list[str]:
    """Up to ``limit`` next-step lines ``a op b = c (left: ...)`` for ``numbers``."""
    ranked: list[tuple[bool, str]] = []
    seen: set[str] = set()
    for i, j in itertools.combinations(range(len(numbers)), 2):
        rest = [v for k, v in enumerate(numbers) if k not in (i, j)]
        for x, op, y, result in _combinations(numbers[i], numbers[j]):
            left = sorted([*rest, result])
            line = (
                f"{_fmt(x)} {op} {_fmt(y)} = {_fmt(result)} "
                f"(left: {' '.join(_fmt(v) for v in left)})"
            )
            if line in seen:
                continue
            seen.add(line)
            ranked.append((solvable_first and not reachable(left), line))
    ranked.sort(key=lambda item: item[0])  # stable: enumeration order within each group
    return [line for _, line in ranked[:limit]]


def _answer_from_steps(numbers: Sequence[Fraction], steps: Sequence[str]) -> str | None:
    """Replay the steps on the puzzle's numbers, building the expression as it goes."""
    pool = [(value, _fmt(value)) for value in numbers]
    for line in steps:
        match = _STEP.match(line)
        if match is None:
            return None
        operands = _parse_numbers(f"{match[1]} {match[3]}")
        if operands is None:
            return None
        exprs: list[str] = []
        for operand in operands:
            index = next((k for k, (value, _) in enumerate(pool) if value == operand), None)
            if index is None:
                return None
            exprs.append(pool.pop(index)[1])
        op = match[2]
        if op == "/" and operands[1] == 0:
            return None
        pool.append((_OPS[op](operands[0], operands[1]), f"({exprs[0]} {op} {exprs[1]})"))
    if len(pool) != 1 or pool[0][0] != _TARGET:
        return None
    return _strip_outer(pool[0][1])


def _last_line_with(prompt: str, prefix: str) -> str | None:
    lines = [line for line in prompt.splitlines() if line.startswith(prefix)]
    return lines[-1][len(prefix) :].strip() if lines else None


def _reply_cot(prompt: str) -> str:
    puzzle = _last_line_with(prompt, "Input:")
    numbers = _parse_numbers(puzzle or "")
    if not numbers:
        return "I cannot read the puzzle."
    tail = prompt.rsplit("Steps:", 1)[-1]
    steps = [line for line in tail.splitlines() if line.strip()]
    left = _parse_numbers(steps[-1].split("left:")[-1].split(")")[0]) if steps else numbers
    if left is not None and len(left) == 1:
        answer = _answer_from_steps(numbers, steps)
        return f"Answer: {answer} = 24" if answer else "Answer: no solution on this path"
    next_steps = propose_steps(left or numbers, limit=1)
    return next_steps[0] if next_steps else "No further steps."


def _reply_value(prompt: str) -> str:
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    numbers = _parse_numbers(lines[-1]) if lines else None
    if not numbers:
        return "I cannot read the numbers.\nimpossible"
    expression = solve24(numbers)
    if expression is not None:
        return f"{expression} = 24\nsure"
    return f"{' '.join(_fmt(n) for n in numbers)} cannot reach 24\nimpossible"


def approx_tokens(text: str) -> int:
    """Tokens of a prompt or completion, at about 4 characters a token."""
    return max(1, len(text) // 4)


def checks_24(answer: str, puzzle: str) -> bool:
    """Whether ``answer`` makes 24 from ``puzzle``; an unreadable puzzle is ``False``."""
    try:
        return check_24(answer, puzzle)
    except ValueError:  # the puzzle line itself is unreadable
        return False


def _reply_judge(prompt: str) -> str:
    puzzle = _last_line_with(prompt, "Input:") or ""
    answer = _last_line_with(prompt, "Answer:") or ""
    return "sure" if checks_24(answer, puzzle) else "impossible"


def _reply_vote(prompt: str) -> str:
    match = re.search(r"^Input: (.*)$", prompt, flags=re.MULTILINE)
    puzzle = match.group(1).strip() if match else ""
    chunks = re.split(r"^Choice (\d+):\s*$", prompt, flags=re.MULTILINE)
    for label, body in zip(chunks[1::2], chunks[2::2], strict=False):
        steps = [line for line in body.splitlines() if line.strip()]
        if not steps:
            continue
        last = steps[-1]
        if last.lower().startswith("answer:"):
            if checks_24(last, puzzle):
                return f"The best choice is {label}"
            continue
        left = _parse_numbers(last.split("left:")[-1].split(")")[0])
        if left and reachable(left):
            return f"The best choice is {label}"
    return "The best choice is 1"


def scripted_game24_reply(prompt: str, *, solvable_first: bool = True) -> str:
    """The scripted model's completion of one Game-of-24 prompt."""
    stripped = prompt.rstrip()
    if stripped.endswith("Judge:"):
        return _reply_judge(prompt)
    if stripped.endswith("Possible next steps:"):
        numbers = _parse_numbers(_last_line_with(prompt, "Input:") or "")
        if not numbers:
            return "No possible next steps."
        steps = propose_steps(numbers, solvable_first=solvable_first)
        return "\n".join(steps) if steps else "No possible next steps."
    if stripped.startswith("Evaluate if given numbers can reach 24"):
        return _reply_value(prompt)
    if "The best choice is" in prompt:
        return _reply_vote(prompt)
    if "Steps:" in prompt:
        return _reply_cot(prompt)
    return "I can only play the Game of 24."


class ScriptedGame24Backend(ScriptedBackend):
    """An offline, deterministic :class:`~pygent_lc.backend.LLMBackend` that plays the Game of 24.

    ``model_id`` names it for value caches. ``latency_s`` is slept per call (to
    measure concurrency); ``track_usage`` makes :meth:`usage_totals` report
    ~4-characters-per-token counts priced at GPT-4's $0.03 / $0.06 per 1k
    tokens, the paper's prices.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        track_usage: bool = False,
        solvable_first: bool = True,
        input_price_per_1k: float = 0.03,
        output_price_per_1k: float = 0.06,
    ) -> None:
        super().__init__(
            model_id="scripted-game24" + ("" if solvable_first else "-unordered"),
            latency_s=latency_s,
            price_per_1k_tokens=(
                (input_price_per_1k, output_price_per_1k) if track_usage else None
            ),
        )
        self.solvable_first = solvable_first

    def reply(self, prompt: str) -> str:
        return scripted_game24_reply(prompt, solvable_first=self.solvable_first)

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)
