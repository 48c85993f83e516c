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

import hashlib
import itertools
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

from pygent_lc.testing import ScriptedBackend
from pygent_lc.tot import check_24

__all__ = [
    "ImperfectGame24Backend",
    "ImperfectGame24Model",
    "ImperfectRates",
    "ScriptedGame24Backend",
    "Tally",
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


def _batch_inputs(prompt: str) -> list[tuple[str, list[Fraction] | None]]:
    """The numbered inputs of a batch value prompt: (label, numbers)."""
    body = prompt.rsplit("Inputs:", 1)[-1].rsplit("Answers:", 1)[0]
    inputs = []
    for line in body.splitlines():
        label, _, numbers = line.strip().partition(". ")
        if label.isdigit():
            inputs.append((label, _parse_numbers(numbers)))
    return inputs


def _batch_line(label: str, numbers: Sequence[Fraction], verdict: str, proof: str | None) -> str:
    shown = " ".join(_fmt(n) for n in numbers)
    if verdict == "sure":
        return f"{label}. {shown}: {proof} = 24 sure"
    if verdict == "likely":
        return f"{label}. {shown}: within a reasonable range likely"
    return f"{label}. {shown}: cannot reach 24 impossible"


def _reply_value_batch(prompt: str) -> str:
    lines = []
    for label, numbers in _batch_inputs(prompt):
        if not numbers:
            continue
        expression = solve24(numbers)
        verdict = "sure" if expression is not None else "impossible"
        lines.append(_batch_line(label, numbers, verdict, expression))
    return "\n".join(lines) or "I cannot read the inputs."


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
    if stripped.endswith("Answers:"):
        return _reply_value_batch(prompt)
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
        honours_n: bool = False,
    ) -> None:
        super().__init__(
            honours_n=honours_n,
            model_id="scripted-game24" + ("" if solvable_first else "-unordered"),
            latency_s=latency_s,
            price_per_1k_tokens=(
                (input_price_per_1k, output_price_per_1k) if track_usage else None
            ),
        )
        self.solvable_first = solvable_first
        self.tally = Tally()
        """Requests and tokens by kind of prompt and level."""

    def reply(self, prompt: str) -> str:
        return scripted_game24_reply(prompt, solvable_first=self.solvable_first)

    async def generate(self, prompt: str, **kwargs: Any) -> str:
        output = await super().generate(prompt, **kwargs)
        self.tally.add(prompt, [output])
        return output

    async def generate_samples(self, prompt: str, n: int, **kwargs: Any) -> list[str]:
        if not self.honours_n or n <= 1:
            return [await self.generate(prompt, **kwargs)]
        outputs = await super().generate_samples(prompt, n, **kwargs)
        self.tally.add(prompt, outputs)
        return outputs

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)


@dataclass(frozen=True)
class ImperfectRates:
    """How often the imperfect model errs; each draw is independent."""

    bad_step: float = 0.2
    """A proposed step is corrupted: wrong arithmetic, a number not available,
    or a wrong ``(left: ...)`` list (one third each)."""
    ranking: float = 0.6
    """How strongly proposals that keep 24 reachable come first: 0 is a random
    order, 1 is the perfect model's order (8 proposals are listed)."""
    value_noise: float = 0.3
    """A value label is not the true one (sure for reachable numbers,
    impossible for the others): ``likely`` two times in three, else the opposite."""
    wrong_answer: float = 0.15
    """The chain-of-thought answer line has a wrong operator (a path whose steps
    do not replay writes a wrong answer anyway)."""
    wrong_judgment: float = 0.1
    """The last-step judgment says the opposite of the truth."""


class ImperfectGame24Model:
    """A seeded imperfect Game-of-24 "model": the scripted arithmetic, with errors.

    Reply ``k`` to a given prompt is drawn from a generator seeded by
    ``(seed, k, prompt)``, so two instances with one seed answer the same
    prompts the same way whatever else they were asked, and in whatever order
    (the paper's BFS replay and the engine see the same model). Rates are
    :class:`ImperfectRates`.
    """

    def __init__(self, seed: int = 0, rates: ImperfectRates | None = None) -> None:
        self.seed = seed
        self.rates = rates or ImperfectRates()
        self._asked: dict[str, int] = {}

    def _rng(self, prompt: str) -> random.Random:
        k = self._asked.get(prompt, 0)
        self._asked[prompt] = k + 1
        digest = hashlib.sha256(f"{self.seed}|{k}|{prompt}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def __call__(self, prompt: str) -> str:
        rng = self._rng(prompt)
        stripped = prompt.rstrip()
        if stripped.endswith("Judge:"):
            verdict = _reply_judge(prompt)
            if rng.random() < self.rates.wrong_judgment:
                verdict = "impossible" if verdict == "sure" else "sure"
            return verdict
        if stripped.endswith("Possible next steps:"):
            numbers = _parse_numbers(_last_line_with(prompt, "Input:") or "")
            if not numbers:
                return "No possible next steps."
            return "\n".join(self._propose(numbers, rng)) or "No possible next steps."
        if stripped.endswith("Answers:"):
            lines = []
            for label, numbers in _batch_inputs(prompt):
                if numbers:
                    verdict, proof = self._verdict(numbers, rng)
                    lines.append(_batch_line(label, numbers, verdict, proof))
            return "\n".join(lines) or "I cannot read the inputs."
        if stripped.startswith("Evaluate if given numbers can reach 24"):
            return self._value(prompt, rng)
        if "Steps:" in prompt and "Input:" in prompt:
            return self._cot(prompt, rng)
        return scripted_game24_reply(prompt)

    def _propose(self, numbers: Sequence[Fraction], rng: random.Random) -> list[str]:
        lines = propose_steps(numbers, limit=10_000)
        scored = []
        for line in lines:
            left = _parse_numbers(line.split("left:")[-1].split(")")[0]) or []
            bonus = self.rates.ranking if reachable(left) else 0.0
            scored.append((rng.random() * (1 - self.rates.ranking) + bonus, line))
        scored.sort(key=lambda item: item[0], reverse=True)
        chosen = [line for _, line in scored[:8]]
        return [
            self._corrupt(line, numbers, rng) if rng.random() < self.rates.bad_step else line
            for line in chosen
        ]

    @staticmethod
    def _corrupt(line: str, numbers: Sequence[Fraction], rng: random.Random) -> str:
        match = _STEP.match(line)
        if match is None:
            return line
        a, op, b = Fraction(match[1]), match[2], Fraction(match[3])
        rest = list(numbers)
        for used in (a, b):
            if used in rest:
                rest.remove(used)
        kind = rng.randrange(3)
        if kind == 0:  # wrong arithmetic, carried into the left list
            result = _OPS[op](a, b) + rng.choice([-2, -1, 1, 2])
        elif kind == 1:  # a number that is not available
            a = a + rng.randint(1, 13)
            result = _OPS[op](a, b)
        else:  # the right step, a wrong left list
            result = _OPS[op](a, b)
            left = sorted([*rest, result])
            left[rng.randrange(len(left))] += rng.choice([-3, -1, 1, 3])
            shown = " ".join(_fmt(v) for v in sorted(left))
            return f"{_fmt(a)} {op} {_fmt(b)} = {_fmt(result)} (left: {shown})"
        shown = " ".join(_fmt(v) for v in sorted([*rest, result]))
        return f"{_fmt(a)} {op} {_fmt(b)} = {_fmt(result)} (left: {shown})"

    def _verdict(self, numbers: Sequence[Fraction], rng: random.Random) -> tuple[str, str]:
        """A value label for ``numbers``, noisy, and the expression a "sure" shows."""
        expression = solve24(numbers)
        label = "sure" if expression is not None else "impossible"
        if rng.random() < self.rates.value_noise:
            other = "impossible" if label == "sure" else "sure"
            label = "likely" if rng.random() < 2 / 3 else other
        proof = expression if expression is not None else " + ".join(_fmt(n) for n in numbers)
        return label, proof

    def _value(self, prompt: str, rng: random.Random) -> str:
        lines = [line.strip() for line in prompt.splitlines() if line.strip()]
        numbers = _parse_numbers(lines[-1]) if lines else None
        if not numbers:
            return "I cannot read the numbers.\nimpossible"
        label, proof = self._verdict(numbers, rng)
        shown = " ".join(_fmt(n) for n in numbers)
        if label == "sure":
            return f"{proof} = 24\nsure"
        if label == "likely":
            return "I cannot obtain 24 now, but numbers are within a reasonable range\nlikely"
        return f"{shown} cannot reach 24\nimpossible"

    def _cot(self, prompt: str, rng: random.Random) -> str:
        reply = _reply_cot(prompt)
        if not reply.startswith("Answer:"):
            return reply
        puzzle = _last_line_with(prompt, "Input:") or ""
        if "no solution" in reply:  # steps that do not replay: a wrong answer all the same
            return "Answer: " + " + ".join(puzzle.split()) + " = 24"
        if rng.random() < self.rates.wrong_answer:
            ops = [i for i, char in enumerate(reply) if char in "+-*/"]
            if ops:
                i = rng.choice(ops)
                swap = rng.choice([c for c in "+-*/" if c != reply[i]])
                return reply[:i] + swap + reply[i + 1 :]
        return reply


class ImperfectGame24Backend(ScriptedGame24Backend):
    """:class:`ScriptedGame24Backend` answering as an :class:`ImperfectGame24Model`."""

    def __init__(
        self, *, seed: int = 0, rates: ImperfectRates | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self.model_id = f"imperfect-game24-{seed}"
        self.model = ImperfectGame24Model(seed, rates)

    def reply(self, prompt: str) -> str:
        return self.model(prompt)


class Tally:
    """Requests, input and output tokens (~4 characters a token) by (kind, level)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], list[int]] = {}

    def add(self, prompt: str, outputs: Sequence[str]) -> None:
        entry = self.counts.setdefault(prompt_kind_level(prompt), [0, 0, 0])
        entry[0] += 1
        entry[1] += approx_tokens(prompt)
        entry[2] += sum(approx_tokens(output) for output in outputs)


def prompt_kind_level(prompt: str) -> tuple[str, int]:
    """What a Game-of-24 prompt asks (propose, value, answer, judge, batch value)
    and at which level of the search (1 = the first step)."""
    stripped = prompt.rstrip()
    if stripped.endswith("Judge:"):
        return "judge", 4
    if stripped.endswith("Possible next steps:"):
        numbers = (_last_line_with(prompt, "Input:") or "").split()
        return "propose", 5 - len(numbers)
    if stripped.endswith("Answers:"):
        inputs = _batch_inputs(prompt)
        first = inputs[0][1] if inputs else None
        return "value batch", 4 - len(first or [])
    if stripped.startswith("Evaluate if given numbers can reach 24"):
        lines = [line for line in prompt.splitlines() if line.strip()]
        return "value", 4 - len(lines[-1].split())
    if "Steps:" in prompt:
        return "answer", 4
    return "other", 0
