"""Game of 24, as in the Tree of Thoughts paper: three steps ``a op b = c (left: ...)``
and ``Answer: <expression> = 24``, checked by :func:`check_24` (never ``eval``). The
prompts have the shapes of the paper's (Yao et al. 2023, princeton-nlp/tree-of-thought-llm,
MIT) with our own worked examples; each starts with its fixed part, for providers to cache."""

from __future__ import annotations

import operator
import re
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from pygent_lc.errors import InvalidInputError
from pygent_lc.tot.tasks.arithmetic import check_24, parse_numbers
from pygent_lc.tot.tasks.base import (
    SplitPrompt,
    TaskDefaults,
    last_line_label,
    prompt_version,
    split_template,
    unique_lines,
)

COT_PROMPT = """\
Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Each step, you are only \
allowed to choose two of the remaining numbers to obtain a new number.
Input: 3 5 6 9
Steps:
5 + 3 = 8 (left: 6 8 9)
9 - 6 = 3 (left: 3 8)
8 * 3 = 24 (left: 24)
Answer: (5 + 3) * (9 - 6) = 24
Input: 1 5 6 12
Steps:
6 - 5 = 1 (left: 1 1 12)
1 + 1 = 2 (left: 2 12)
12 * 2 = 24 (left: 24)
Answer: 12 * ((6 - 5) + 1) = 24
Input: 1 2 3 4
Steps:
1 + 2 = 3 (left: 3 3 4)
3 + 3 = 6 (left: 4 6)
6 * 4 = 24 (left: 24)
Answer: ((1 + 2) + 3) * 4 = 24
Input: {input}
"""

PROPOSE_PROMPT = """\
Input: 1 5 6 12
Possible next steps:
1 + 5 = 6 (left: 6 6 12)
12 / 6 = 2 (left: 1 2 5)
5 * 6 = 30 (left: 1 12 30)
12 - 5 = 7 (left: 1 6 7)
6 - 1 = 5 (left: 5 5 12)
12 + 1 = 13 (left: 5 6 13)
5 - 1 = 4 (left: 4 6 12)
12 * 1 = 12 (left: 5 6 12)
Input: {input}
Possible next steps:
"""

VALUE_PROMPT = """\
Evaluate if given numbers can reach 24 (sure/likely/impossible)
12 12
12 + 12 = 24
sure
2 9
2 + 9 = 11
9 - 2 = 7
2 * 9 = 18
9 / 2 = 4.5
impossible
2 6 6
2 + 6 + 6 = 14
(6 - 2) * 6 = 4 * 6 = 24
sure
1 4 6
1 * 4 * 6 = 4 * 6 = 24
sure
4 7 9
4 + 7 + 9 = 20
9 * 4 - 7 = 36 - 7 = 29
(9 - 7) * 4 = 2 * 4 = 8
I cannot obtain 24 now, but numbers are within a reasonable range
likely
10 11 13
10 + 11 + 13 = 34
(13 - 11) * 10 = 20
10 11 13 are all too big
impossible
1 1 3
1 + 1 + 3 = 5
(1 + 1) * 3 = 6
1 1 3 are all too small
impossible
{input}
"""

# The value prompt's examples, then several states at once: one answer line each.
VALUE_BATCH_PROMPT = (
    VALUE_PROMPT[: VALUE_PROMPT.index("{input}")]
    + """\
Evaluate each numbered line of numbers below the same way. Answer one line per input, in \
order, as "N. <numbers>: <a short calculation> <sure/likely/impossible>".
Inputs:
{inputs}
Answers:
"""
)

VALUE_LAST_STEP_PROMPT = """\
Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Given an input and an \
answer, give a judgement (sure/impossible) if the answer is correct, i.e. it uses each input \
exactly once and no other numbers, and reach 24.
Input: 3 5 6 9
Answer: (5 + 3) * (9 - 6) = 24
Judge:
sure
Input: 1 5 6 12
Answer: 12 * (6 - 5 + 1) = 24
Judge:
sure
Input: 3 5 6 9
Answer: (5 + 3) * (9 - 6) + 1 = 25
Judge:
impossible
Input: 1 5 6 12
Answer: 6 * (5 - 1) = 24
Judge:
impossible
Input: {input}
Answer: {answer}
Judge:"""

VOTE_PROMPT = """\
Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Each choice below is a \
partial solution. Analyse which one is most likely to reach 24, then end with \
"The best choice is N".
Input: {input}
{choices}
"""

# The paper's value map, per sample; the paper sums samples, our mean ranks equal
# counts the same and stays fair when counts differ.
VALUE_MAP = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}

# Bump a suffix when the reading of value answers, or of proposals and steps, changes.
_VALUE_READING = repr(sorted(VALUE_MAP.items())) + "last-word/1"
_NUMBERED = re.compile(r"^\s*(\d+)\s*[.):]")
_STEP = re.compile(r"=.*\(\s*left:\s*[^)]*\)", re.IGNORECASE)
# One step as the propose prompt writes it: "a op b = c (left: x y z)".
_STEP_PARTS = re.compile(
    r"^\s*(?P<a>[-\d./]+)\s*(?P<op>[-+*/\u00d7\u00f7\u2212])\s*(?P<b>[-\d./]+)\s*="
    r"\s*(?P<c>[-\d./]+)\s*\(\s*left:\s*(?P<left>[^)]*)\)\s*$",
    re.IGNORECASE,
)
_OPERATORS = {"\u00d7": "*", "\u00f7": "/", "\u2212": "-"}
_APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_ANSWER = re.compile(r"^\s*answer\s*:\s*", re.IGNORECASE)


def _fraction(token: str) -> Fraction | None:
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def _fractions(text: str) -> list[Fraction] | None:
    values = [_fraction(token) for token in text.replace(",", " ").split()]
    return None if None in values else values  # type: ignore[return-value]


def _canonical_number(token: str) -> str:
    """``"2.0"`` and ``"4/2"`` are ``"2"``; what is not a number stays as it is."""
    value = _fraction(token)
    return token if value is None else str(value)


def _proves_24(output: str, numbers: Sequence[str]) -> bool:
    """Whether a line of ``output`` writes an expression over exactly ``numbers`` equal to
    24, as the value prompt's examples back a "sure" (``(6 - 2) * 6 = 4 * 6 = 24``)."""
    try:
        wanted = [int(n) for n in numbers]
    except ValueError:
        return False  # fractions left: the literals of an expression cannot match them
    lines = (line.split("=")[0].rsplit(":", 1)[-1] for line in output.splitlines() if "=" in line)
    return any(check_24(expression, wanted) for expression in lines)


def _parse_step(step: str) -> tuple[Fraction, str, Fraction, Fraction, list[Fraction]] | None:
    """``a op b = c (left: ...)`` as numbers and an ASCII operator, or ``None``."""
    match = _STEP_PARTS.match(step)
    if match is None:
        return None
    a, b, c = (_fraction(match[name]) for name in ("a", "b", "c"))
    left = _fractions(match["left"])
    if a is None or b is None or c is None or left is None:
        return None
    return a, _OPERATORS.get(match["op"], match["op"]), b, c, left


def step_is_valid(before: Sequence[Fraction], step: str) -> bool:
    """Whether ``step`` is a legal move from the numbers ``before``: both operands there
    (a multiset), ``c`` exactly ``a op b``, left: ``before`` less ``a`` and ``b``, plus ``c``."""
    parsed = _parse_step(step)
    if parsed is None:
        return False
    a, op, b, c, left = parsed
    used, have = Counter([a, b]), Counter(before)
    if not used <= have or (op == "/" and b == 0):
        return False
    return _APPLY[op](a, b) == c and Counter(left) == have - used + Counter([c])


def current_numbers(problem: str, steps: Sequence[str]) -> str:
    """The numbers still to combine: the last step's ``(left: ...)``, or the puzzle."""
    if not steps:
        return " ".join(problem.split())
    return " ".join(steps[-1].split("left:")[-1].split(")")[0].split())


class Game24Task(TaskDefaults):
    name = "game24"
    verifies_answers = True  # answers: check_24; steps: step_is_valid
    STEPS = 4  # three arithmetic steps and the answer line
    default_depth = STEPS
    value_version = prompt_version(VALUE_PROMPT, VALUE_LAST_STEP_PROMPT, _VALUE_READING)
    propose_version = prompt_version(PROPOSE_PROMPT, COT_PROMPT, "step-lines/1")
    value_batch_version = prompt_version(VALUE_BATCH_PROMPT, _VALUE_READING, "numbered-lines/1")
    value_range = (0.0, VALUE_MAP["sure"])

    def validate_problem(self, problem: str) -> str:
        try:
            numbers = parse_numbers(problem)
        except ValueError:
            numbers = []
        if len(numbers) != 4 or any(n > 1000 for n in numbers):
            raise InvalidInputError(
                f"a Game of 24 puzzle is four whole numbers up to 1000, got {problem!r}"
            )
        return " ".join(str(n) for n in numbers)

    def _answer_step(self, problem: str, steps: Sequence[str]) -> bool:
        return bool(steps) and current_numbers(problem, steps) == "24"

    def _cot(self, problem: str, steps: Sequence[str]) -> SplitPrompt:
        body = "".join(step + "\n" for step in steps)
        return split_template(COT_PROMPT + "Steps:\n{body}", input=problem, body=body)

    def propose_prompt(self, problem: str, steps: Sequence[str]) -> str:
        # As in the paper: once 24 is left, "proposing" is writing the answer.
        if self._answer_step(problem, steps):
            return self._cot(problem, steps)
        return split_template(PROPOSE_PROMPT, input=current_numbers(problem, steps))

    def parse_proposals(self, output: str, problem: str, steps: Sequence[str]) -> list[str]:
        lines = unique_lines(output)
        if self._answer_step(problem, steps):
            return [line for line in lines if _ANSWER.match(line)]
        return [line for line in lines if _STEP.search(line) and not _ANSWER.match(line)]

    def sample_prompt(self, problem: str, steps: Sequence[str]) -> str:
        return self._cot(problem, steps)

    def sample_stop(self, problem: str, steps: Sequence[str]) -> list[str] | None:
        return ["\n"]

    def parse_sample(self, output: str, problem: str, steps: Sequence[str]) -> str | None:
        return next(iter(unique_lines(output)), None)

    def static_value(self, problem: str, steps: Sequence[str]) -> float | None:
        """Values the rules decide: an answer is checked, one number left is 24 or a dead
        end, a full path without an answer is 0 (the paper values it 0 after asking)."""
        if self.is_final(problem, steps):
            return VALUE_MAP["sure"] if self.check_answer(problem, steps) else 0.0
        if len(steps) >= self.STEPS:
            return 0.0
        left = current_numbers(problem, steps).split()
        if steps and len(left) == 1:
            return VALUE_MAP["sure"] if _canonical_number(left[0]) == "24" else 0.0
        return None

    def value_prompt(self, problem: str, steps: Sequence[str]) -> str:
        if self.is_final(problem, steps):
            answer = self.answer(problem, steps)
            return split_template(VALUE_LAST_STEP_PROMPT, input=problem, answer=answer)
        return split_template(VALUE_PROMPT, input=current_numbers(problem, steps))

    def value_batch_prompt(self, problem: str, states: Sequence[Sequence[str]]) -> str:
        inputs = "\n".join(
            f"{i}. {current_numbers(problem, steps)}" for i, steps in enumerate(states, start=1)
        )
        return split_template(VALUE_BATCH_PROMPT, inputs=inputs)

    def parse_value_batch(self, output: str, count: int) -> list[float]:
        """The score of each of ``count`` states: its numbered line's last label, else 0."""
        scores = [0.0] * count
        for line in output.splitlines():
            match = _NUMBERED.match(line)
            if match is not None and 1 <= int(match[1]) <= count:
                scores[int(match[1]) - 1] = self.parse_value(line)
        return scores

    def parse_value(self, output: str) -> float:
        label = last_line_label(output, VALUE_MAP)
        return 0.0 if label is None else VALUE_MAP[label]

    def samples_agree(
        self, problem: str, steps: Sequence[str], outputs: Sequence[str], scores: Sequence[float]
    ) -> bool:
        """A "sure" backed by a checked expression settles a state; so do two equal labels."""
        if not self.is_final(problem, steps):
            numbers = current_numbers(problem, steps).split()
            for output, score in zip(outputs, scores, strict=False):
                if score == VALUE_MAP["sure"] and _proves_24(output, numbers):
                    return True
        return len(scores) >= 2 and scores[-1] == scores[-2]

    def vote_prompt(self, problem: str, candidates: Sequence[Sequence[str]]) -> str:
        choices = "\n".join(
            f"Choice {i}:\n" + "\n".join(steps) for i, steps in enumerate(candidates, start=1)
        )
        return split_template(VOTE_PROMPT, input=problem, choices=choices)

    def state_key(self, problem: str, steps: Sequence[str]) -> str:
        """The numbers left as a sorted multiset, whatever the puzzle; an answer: its expression."""
        if self.is_final(problem, steps):
            expression = "".join(self.answer(problem, steps).split())
            return f"answer {' '.join(sorted(problem.split()))} {expression}"
        numbers = current_numbers(problem, steps).split()
        return "left " + " ".join(sorted(_canonical_number(n) for n in numbers))

    def can_expand(self, problem: str, steps: Sequence[str]) -> bool:
        if len(steps) >= self.STEPS or self.is_final(problem, steps):
            return False
        left = current_numbers(problem, steps).split()
        return not (len(left) == 1 and left[0] != "24")  # one number, not 24: nothing to do

    def children_checked(self, problem: str, steps: Sequence[str]) -> bool:
        """Two numbers left: any next step leaves one, which ``static_value`` decides."""
        left = current_numbers(problem, steps).split()
        return bool(steps) and len(steps) < self.STEPS and len(left) == 2

    def is_final(self, problem: str, steps: Sequence[str]) -> bool:
        return bool(steps) and _ANSWER.match(steps[-1]) is not None

    def check_step(self, problem: str, steps: Sequence[str]) -> bool | None:
        """Whether the last step is a legal move (``step_is_valid``); ``None`` for answers."""
        if not steps or self.is_final(problem, steps):
            return None
        before = _fractions(current_numbers(problem, steps[:-1]))
        return before is not None and step_is_valid(before, steps[-1])

    def program_answer(self, problem: str, steps: Sequence[str]) -> str | None:
        """Once checked steps leave 24, the answer is their expression: written here, not
        asked for (a model copying it out can only make mistakes)."""
        if not self._answer_step(problem, steps):
            return None
        pool = [(Fraction(n), n) for n in problem.split()]  # each number and how it was made
        for step in steps:
            parsed = _parse_step(step)
            if parsed is None or not step_is_valid([value for value, _ in pool], step):
                return None
            a, op, b, c, _ = parsed
            # Both operands are in the pool: the step was checked against it.
            x, y = (pool.pop([v for v, _ in pool].index(n))[1] for n in (a, b))
            pool.append((c, f"({x} {op} {y})"))
        if len(pool) != 1:
            return None
        answer = f"Answer: {pool[0][1][1:-1]} = 24"
        return answer if check_24(answer, problem) else None

    def check_answer(self, problem: str, steps: Sequence[str]) -> bool | None:
        return self.is_final(problem, steps) and check_24(steps[-1], problem)

    def answer(self, problem: str, steps: Sequence[str]) -> str:
        return _ANSWER.sub("", steps[-1], count=1).strip() if steps else ""
