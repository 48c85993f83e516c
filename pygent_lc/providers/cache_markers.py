"""Prompt-cache breakpoints: a cacheable prefix is the first text block of one user message,
marked with ``cache_control``. OpenRouter keeps the mark for models that cache only at
breakpoints (Anthropic, Gemini); every other server gets the blocks joined, byte-identical
to the unsplit prompt, and reuses a repeated prefix by itself."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

#: The marker on a cacheable text block (Anthropic's only type; OpenRouter passes it on).
CACHE_CONTROL: dict[str, str] = {"type": "ephemeral"}

# OpenRouter model ids (minus a ``~`` of the "latest" aliases) that cache only at breakpoints.
_EXPLICIT_BREAKPOINT_MODELS = ("anthropic/", "google/gemini")


def cached_prefix_message(prefix: str, rest: str) -> HumanMessage:
    """One user message: ``prefix`` as a text block marked cacheable, then ``rest``
    (none when empty: providers reject empty text blocks)."""
    blocks: list[str | dict[str, Any]] = [
        {"type": "text", "text": prefix, "cache_control": dict(CACHE_CONTROL)}
    ]
    if rest:
        blocks.append({"type": "text", "text": rest})
    return HumanMessage(content=blocks)


def needs_explicit_breakpoints(models: Iterable[str]) -> bool:
    return any(
        model.strip().lstrip("~").lower().startswith(_EXPLICIT_BREAKPOINT_MODELS)
        for model in models
    )


def _text_of(block: object) -> str | None:
    if isinstance(block, str):
        return block
    if isinstance(block, dict) and block.get("type") == "text" and isinstance(block["text"], str):
        return block["text"]
    return None


def without_cache_markers(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """``messages`` with every ``cache_control`` marker gone: text blocks alone become
    one string; other blocks (images) stay, unmarked; unmarked messages are untouched."""
    plain: list[BaseMessage] = []
    for message in messages:
        blocks = message.content if isinstance(message.content, list) else []
        if any(isinstance(block, dict) and "cache_control" in block for block in blocks):
            texts = [_text_of(block) for block in blocks]
            content: str | list[str | dict[str, Any]] = "".join(t for t in texts if t)
            if None in texts:  # other blocks (images) stay, unmarked
                content = [
                    {k: v for k, v in b.items() if k != "cache_control"}
                    if isinstance(b, dict)
                    else b
                    for b in blocks
                ]
            message = message.model_copy(update={"content": content})
        plain.append(message)
    return plain
