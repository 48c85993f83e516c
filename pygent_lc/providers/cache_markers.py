"""Prompt-cache breakpoints: how a cacheable prompt prefix is marked, and who keeps the mark.

A prefix that is the same on every call (few-shot examples, a long problem) is sent
as one user message of two text blocks, the first with LangChain's (and Anthropic's)
``cache_control`` marker. OpenRouter keeps it for the models that cache only at
explicit breakpoints (Anthropic, Gemini); its other models, Ollama and llama.cpp
reuse a repeated prefix by themselves and get the plain text: the blocks joined
without a separator, byte-identical to the unsplit prompt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

#: The marker on a cacheable text block (Anthropic's only type; OpenRouter passes it on).
CACHE_CONTROL: dict[str, str] = {"type": "ephemeral"}

# OpenRouter model ids (minus a leading ``~`` of the "latest" aliases) whose
# upstreams cache only where a breakpoint says so.
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
    """Whether any of these OpenRouter model ids caches only at marked breakpoints."""
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
        content = message.content
        blocks = content if isinstance(content, list) else []
        if not any(isinstance(block, dict) and "cache_control" in block for block in blocks):
            plain.append(message)
            continue
        texts = [_text_of(block) for block in content]
        if all(text is not None for text in texts):
            new_content: str | list[str | dict[str, Any]] = "".join(t for t in texts if t)
        else:
            new_content = [
                {k: v for k, v in block.items() if k != "cache_control"}
                if isinstance(block, dict)
                else block
                for block in content
            ]
        plain.append(message.model_copy(update={"content": new_content}))
    return plain
