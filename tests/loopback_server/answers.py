"""Deterministic answers: reply text, token cutting, token counts.

One whitespace-separated word (with its leading whitespace) is one token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Responder = Callable[[str, Mapping[str, Any]], str]
"""``(protocol, body) -> reply text``; protocol is ``"openrouter"`` or ``"ollama"``."""

_TOKEN_RE = re.compile(r"\s*\S+")


def message_text(content: Any) -> str:
    """Text of a message ``content``: a string or a list of OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return ""


def marked_prefixes(body: Mapping[str, Any]) -> list[str]:
    """Per message, the text up to and including its last ``cache_control``-marked block."""
    prefixes: list[str] = []
    for message in messages_of(body):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        parts: list[str] = []
        marked = ""
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
                if "cache_control" in part:
                    marked = "".join(parts)
        if marked:
            prefixes.append(marked)
    return prefixes


def messages_of(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, Mapping)]


def last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(messages_of(body)):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def echo_responder(protocol: str, body: Mapping[str, Any]) -> str:
    """Default responder: ``"echo: "`` + the words of the last user message."""
    words = last_user_text(body).split()
    return " ".join(["echo:", *words])


def count_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Number of whitespace-separated words over all messages."""
    return sum(len(message_text(m.get("content")).split()) for m in messages_of(body))


def tokenize(text: str) -> list[str]:
    """Split into tokens that concatenate back to ``text`` exactly."""
    tokens = _TOKEN_RE.findall(text)
    rest = text[sum(len(t) for t in tokens) :]
    if rest:
        if tokens:
            tokens[-1] += rest
        else:
            tokens.append(rest)
    return tokens


@dataclass(frozen=True)
class Answer:
    tokens: tuple[str, ...]
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int

    @property
    def content(self) -> str:
        return "".join(self.tokens)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _as_stops(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [s for s in value if isinstance(s, str) and s]
    return []


def limits(protocol: str, body: Mapping[str, Any]) -> tuple[int | None, list[str]]:
    """``(max_tokens, stop sequences)`` as the protocol spells them."""
    if protocol == "ollama":
        options = body.get("options")
        if not isinstance(options, Mapping):
            return None, []
        limit = _as_int(options.get("num_predict"))
        # Ollama treats a negative num_predict as "no limit".
        return (limit if limit is not None and limit >= 0 else None), _as_stops(options.get("stop"))
    limit = _as_int(body.get("max_tokens"))
    if limit is None:
        limit = _as_int(body.get("max_completion_tokens"))
    return limit, _as_stops(body.get("stop"))


def utf16_halves(text: str) -> list[str]:
    """``text`` cut between the two UTF-16 halves of each character outside the BMP
    (the pieces concatenate to ``text`` with those characters as surrogate pairs)."""
    pieces: list[str] = []
    current = ""
    for char in text:
        if ord(char) <= 0xFFFF:
            current += char
            continue
        offset = ord(char) - 0x10000
        pieces.append(current + chr(0xD800 + (offset >> 10)))
        current = chr(0xDC00 + (offset & 0x3FF))
    pieces.append(current)
    return [piece for piece in pieces if piece]


def split_surrogates(answer: Answer) -> Answer:
    """``answer`` with each token cut by :func:`utf16_halves`: one chunk per piece."""
    tokens = tuple(piece for token in answer.tokens for piece in utf16_halves(token))
    return Answer(tokens, answer.finish_reason, answer.prompt_tokens)


def build_answer(text: str, protocol: str, body: Mapping[str, Any]) -> Answer:
    max_tokens, stops = limits(protocol, body)
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    tokens = tokenize(text[:cut])
    finish_reason = "stop"
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens = tokens[:max_tokens]
        finish_reason = "length"
    return Answer(
        tokens=tuple(tokens),
        finish_reason=finish_reason,
        prompt_tokens=count_prompt_tokens(body),
    )
