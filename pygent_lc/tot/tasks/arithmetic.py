"""A safe reader of arithmetic answers: model text is never executed; its ``ast`` is walked,
anything but integer literals, ``+ - * /``, unary minus and parentheses is refused before a
number is computed, and literals and intermediate results are bounded (never slow)."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Sequence
from fractions import Fraction

MAX_EXPRESSION_CHARS = 200
MAX_LITERAL = 10**6
# Bound on intermediate numerators/denominators: far past 24's, never costly to multiply.
MAX_MAGNITUDE = 10**18

_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
# What models write for ASCII operators: times, middle dot, division, minus, dashes.
_TRANSLATE = str.maketrans("\u00d7\u00b7\u00f7\u2212\u2013\u2014", "**/---")


class UnsafeExpressionError(ValueError):
    """Not a plain arithmetic expression over integer literals."""


def _walk(node: ast.AST, literals: list[int]) -> Fraction:
    if isinstance(node, ast.Constant):
        value = node.value
        # bool is an int subclass: "True + 23" is not arithmetic on numbers.
        if type(value) is not int:
            raise UnsafeExpressionError(f"only integer literals are allowed, not {value!r}")
        if abs(value) > MAX_LITERAL:
            raise UnsafeExpressionError("literal too large")
        literals.append(value)
        return Fraction(value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_walk(node.operand, literals)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _walk(node.left, literals)
        right = _walk(node.right, literals)
        if isinstance(node.op, ast.Div) and right == 0:
            raise UnsafeExpressionError("division by zero")
        result = _BINARY[type(node.op)](left, right)
        if abs(result.numerator) > MAX_MAGNITUDE or result.denominator > MAX_MAGNITUDE:
            raise UnsafeExpressionError("intermediate result too large")
        return result
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        raise UnsafeExpressionError(f"operator {type(node.op).__name__} is not allowed")
    raise UnsafeExpressionError(f"{type(node).__name__} is not allowed")


def evaluate_arithmetic(expression: str) -> tuple[Fraction, list[int]]:
    """The exact value of ``expression`` and its integer literals, in order;
    :class:`UnsafeExpressionError` for anything that is not plain arithmetic."""
    text = expression.translate(_TRANSLATE).strip()
    if not text:
        raise UnsafeExpressionError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise UnsafeExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnsafeExpressionError(f"not an expression: {exc}") from exc
    literals: list[int] = []
    try:
        value = _walk(tree.body, literals)
    except RecursionError as exc:
        raise UnsafeExpressionError("expression nested too deeply") from exc
    return value, literals


def parse_numbers(text: str) -> list[int]:
    """``"4 9 10 13"`` (spaces or commas) -> ``[4, 9, 10, 13]``; ``ValueError`` otherwise."""
    parts = text.replace(",", " ").split()
    if not parts or not all(part.isdigit() for part in parts):
        raise ValueError(f"not a list of whole numbers: {text!r}")
    return [int(part) for part in parts]


def check_24(expression: str, numbers: Sequence[int] | str, *, target: int = 24) -> bool:
    """Whether ``expression`` uses exactly ``numbers`` (a multiset) and equals ``target``;
    a trailing ``= 24`` and a leading ``Answer:`` are ignored."""
    puzzle = parse_numbers(numbers) if isinstance(numbers, str) else list(numbers)
    text = expression.strip()
    if text.lower().startswith("answer:"):
        text = text[len("answer:") :]
    try:
        value, literals = evaluate_arithmetic(text.split("=")[0])
    except UnsafeExpressionError:
        return False
    return sorted(literals) == sorted(puzzle) and value == target
