"""The Game-of-24 answer checker: exact, and never executes model text."""

from __future__ import annotations

import builtins
from fractions import Fraction

import pytest

from pygent_lc.tot.tasks.arithmetic import (
    UnsafeExpressionError,
    check_24,
    evaluate_arithmetic,
)


@pytest.mark.parametrize(
    ("expression", "numbers"),
    [
        ("(4 + 8) * (6 - 4)", "4 4 6 8"),
        ("(4 + 8) * (6 - 4) = 24", [4, 4, 6, 8]),
        ("Answer: (13 - 9) * (10 - 4) = 24", "4 9 10 13"),
        ("answer: 2 * 12 * (10 - 9)", "2 9 10 12"),
        ("6 / (1 - 3 / 4)", "1 3 4 6"),  # needs exact fractions
        ("8 / (3 - 8 / 3)", "3 3 8 8"),
        ("5 + 5 + 5 + 9", "5 5 5 9"),
        ("(10 \u2212 4) \u00d7 4", "4 4 10"),  # unicode operators
        ("-(1 - 5) * 6", "1 5 6"),
    ],
)
def test_correct_answers_are_accepted(expression, numbers):
    assert check_24(expression, numbers)


@pytest.mark.parametrize(
    ("expression", "numbers", "why"),
    [
        ("(4 + 8) * (6 - 4)", "4 4 6 9", "wrong numbers"),
        ("(4 + 8) * 2", "4 4 6 8", "missing numbers"),
        ("(4 + 8) * (6 - 4) * 1", "4 4 6 8", "extra number"),
        ("(4 + 8) * (8 - 6)", "4 4 6 8", "a number used twice, another not at all"),
        ("(4 + 8) * (6 - 4) + 1", "4 4 6 8", "wrong value"),
        ("4 * 4 + 6 + 8", "4 4 6 8", "wrong value, right numbers"),
        ("6 / (1 - 1)", "1 1 6", "division by zero"),
        ("", "4 4 6 8", "empty"),
        ("24", "4 4 6 8", "just the target"),
        ("4.0 * 6", "4 6", "float literal"),
        ("(4 + 8) * (6 - 4", "4 4 6 8", "syntax error"),
    ],
)
def test_wrong_answers_are_rejected(expression, numbers, why):
    assert not check_24(expression, numbers), why


HOSTILE = [
    "__import__('os').system('touch /tmp/pygent_tot_pwned')",
    "__import__('os').system('x')",
    "9**9**9**9",
    "2 ** 100000000",
    "(4).__class__.__base__.__subclasses__()",
    "open('/etc/passwd').read()",
    "exec('print(1)')",
    "eval('2*12')",
    "lambda: 24",
    "[24][0]",
    "x + 24",
    "24 if True else 0",
    "True * 24",
    "4 @ 6",
    "24 // 1",
    "48 % 24",
    "1 << 5",
    "(yield 24)",
    "f'{24}'",
    "9" * 5000,
    "1" + "0" * 150,
    "(" * 150 + "24" + ")" * 150,
    "\x00",
    "4; import os",
]


@pytest.mark.parametrize("expression", HOSTILE)
def test_hostile_strings_are_rejected_without_executing(expression, monkeypatch):
    def no_import(*args, **kwargs):
        raise AssertionError("the checker tried to import something")

    with monkeypatch.context() as patched:
        patched.setattr(builtins, "__import__", no_import)
        verdict = check_24(expression, "4 6 9 9")
    assert verdict is False
    with pytest.raises(UnsafeExpressionError):
        evaluate_arithmetic(expression)


@pytest.mark.timeout(5)
def test_huge_exponent_is_refused_not_computed():
    with pytest.raises(UnsafeExpressionError, match="Pow"):
        evaluate_arithmetic("9**9**9**9")


def test_large_intermediate_results_are_refused():
    with pytest.raises(UnsafeExpressionError):
        evaluate_arithmetic("999999 * 999999 * 999999 * 999999")


def test_no_file_was_touched():
    import os

    assert not os.path.exists("/tmp/pygent_tot_pwned")


def test_evaluate_returns_exact_value_and_literals():
    value, literals = evaluate_arithmetic("6 / (1 - 3 / 4)")
    assert value == Fraction(24)
    assert literals == [6, 1, 3, 4]


def test_bad_puzzle_text_is_a_value_error():
    with pytest.raises(ValueError, match="whole numbers"):
        check_24("1 + 1", "one two")
