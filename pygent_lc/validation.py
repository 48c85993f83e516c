"""Checks on the caller's prompt and generation parameters, made before any network call."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue

from pygent_lc.errors import InvalidInputError

GENERATION_KEYWORDS = ("temperature", "max_tokens", "stop", "top_p", "seed")
# Call keywords a chat Runnable may also be given (by bind_tools, structured
# output, or a caller who knows the provider): passed on unchecked.
PASS_THROUGH_KEYWORDS = frozenset(
    {
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "strict",
        "ls_structured_output_format",
        "frequency_penalty",
        "presence_penalty",
        "top_k",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "format",
        "options",
        "keep_alive",
        "reasoning",
        "extra_body",
    }
)
MAX_PROMPT_CHARS = 2_000_000
MAX_TOKENS_LIMIT = 1_000_000


def validate_prompt(prompt: object) -> str:
    """``prompt`` itself if it is a non-blank string of sane size that can be sent."""
    if not isinstance(prompt, str):
        raise InvalidInputError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise InvalidInputError("prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"prompt has {len(prompt)} characters; limit {MAX_PROMPT_CHARS}")
    _encodable(prompt, "prompt")
    return prompt


def validate_chat_call(input: object, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Check a chat Runnable's input and call keywords before anything is sent.

    Text anywhere in the input must be encodable as UTF-8 (a lone surrogate such
    as ``"\\ud800"`` is not); generation keywords are range-checked, keywords a
    provider may legitimately take are passed on, anything else is an error.
    Returns the keywords to call with.
    """
    _check_text(input, "input")
    generation = {k: v for k, v in kwargs.items() if k not in PASS_THROUGH_KEYWORDS}
    unknown = sorted(set(generation) - set(GENERATION_KEYWORDS))
    if unknown:
        raise InvalidInputError(
            f"unknown call keyword(s) {unknown}; accepted: "
            f"{', '.join(sorted({*GENERATION_KEYWORDS, *PASS_THROUGH_KEYWORDS}))}"
        )
    checked = validate_generation_params(generation)
    passed_on = {k: v for k, v in kwargs.items() if k in PASS_THROUGH_KEYWORDS}
    return {**passed_on, **checked}


def _encodable(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{where} cannot be sent: {exc.reason} at character {exc.start} "
            f"({text[exc.start:exc.end]!a})"
        ) from None


def _check_text(value: object, where: str) -> None:
    """Every string inside ``value`` (messages, content blocks, tool calls) is encodable."""
    if isinstance(value, str):
        _encodable(value, where)
    elif isinstance(value, BaseMessage):
        _check_text(value.content, f"{where} ({value.type} message)")
        _check_text(value.additional_kwargs, f"{where} ({value.type} message)")
        _check_text(getattr(value, "tool_calls", None), f"{where} ({value.type} message)")
    elif isinstance(value, PromptValue):
        _check_text(value.to_messages(), where)
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_text(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_text(item, where)


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
