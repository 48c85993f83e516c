"""Checks on the caller's prompt and generation parameters, made before any network call."""

from __future__ import annotations

import math
from typing import Any

from pygent_lc.errors import InvalidInputError

GENERATION_KEYWORDS = ("temperature", "max_tokens", "stop", "top_p", "seed")
MAX_PROMPT_CHARS = 2_000_000
MAX_TOKENS_LIMIT = 1_000_000


def validate_prompt(prompt: object) -> str:
    """``prompt`` itself if it is a non-blank string of sane size."""
    if not isinstance(prompt, str):
        raise InvalidInputError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise InvalidInputError("prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"prompt has {len(prompt)} characters; limit {MAX_PROMPT_CHARS}")
    return prompt


def validate_generation_params(params: dict[str, Any]) -> dict[str, Any]:
    """The keywords that are set, checked; unknown keywords are an error, not ignored."""
    unknown = sorted(set(params) - set(GENERATION_KEYWORDS))
    if unknown:
        raise InvalidInputError(
            f"unknown generation keyword(s) {unknown}; accepted: {', '.join(GENERATION_KEYWORDS)}"
        )
    checked: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        checked[name] = _CHECKS[name](value)
    return checked


def _number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise InvalidInputError(f"{name} must be between {low} and {high}, got {value}")
    return float(value)


def _integer(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidInputError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _stop(value: object) -> list[str]:
    sequences = [value] if isinstance(value, str) else value
    if not isinstance(sequences, list | tuple) or not all(
        isinstance(s, str) and s for s in sequences
    ):
        raise InvalidInputError(f"stop must be a non-empty string or a list of them, got {value!r}")
    return list(sequences)


_CHECKS = {
    "temperature": lambda v: _number("temperature", v, 0.0, 2.0),
    "top_p": lambda v: _number("top_p", v, 0.0, 1.0),
    "max_tokens": lambda v: _integer("max_tokens", v, 1, MAX_TOKENS_LIMIT),
    "seed": lambda v: _integer("seed", v, -(2**63), 2**63 - 1),
    "stop": _stop,
}
