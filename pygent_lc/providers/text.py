"""Provider text that can always be encoded: JSON may spell a character as a surrogate pair,
send half a pair or split one between stream chunks. A pair becomes its character, anything
else U+FFFD; a stream holds back a high surrogate ending a field until that field's next
chunk, or the end (:class:`StreamText`)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, TypeVar

from langchain_core.messages import AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult

T = TypeVar("T")

# Fields a stream repeats whole (merged as equal, not concatenated): never held back.
_WHOLE_FIELDS = frozenset({"id", "index", "name", "type"})
# Fields of a message that hold reply text, in streams and whole replies.
_STREAMED_FIELDS = ("content", "additional_kwargs", "tool_call_chunks")
_REPLY_FIELDS = ("content", "additional_kwargs", "tool_calls", "invalid_tool_calls")

Path = tuple[object, ...]

# Tool-call arguments are JSON text, parsed when chunks merge: a surrogate may be spelled
# there as an escape (``\\ud800``): a pair (kept) or any other (replaced), unless escaped.
_ESCAPED_SURROGATE = re.compile(
    r"(?<!\\)((?:\\\\)*)"
    r"(\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[dD][89a-fA-F][0-9a-fA-F]{2})"
)
# An unfinished pair of escapes ending a fragment (group 1), its backslash not escaped.
_OPEN_PAIR = re.compile(
    r"(?<!\\)(?:\\\\)*"
    r"(\\(u([dD]([89abAB]([0-9a-fA-F]([0-9a-fA-F](\\(u([dD]([c-fC-F]([0-9a-fA-F])?)?)?)?)?)?)?)?)?)?)\Z"
)
_JSON_FIELDS = frozenset({"args", "arguments"})


def clean_text(text: str) -> str:
    """``text`` with surrogate pairs joined and every other surrogate as U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16: a valid pair decodes to its character, any other surrogate to U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def clean_json_text(text: str) -> str:
    """JSON text whose escapes spell no lone surrogate: pairs kept, others as ``\\ufffd``."""
    if "\\u" not in text:
        return text
    return _ESCAPED_SURROGATE.sub(
        lambda found: found[0] if len(found[2]) == 12 else found[1] + "\\ufffd", text
    )


def _open_escape(text: str) -> int:
    """Where an unfinished pair of surrogate escapes ends ``text`` (else its length)."""
    found = _OPEN_PAIR.search(text)
    return len(text) if found is None else found.start(1)


def clean_value(value: T) -> T:
    """``value`` with :func:`clean_text` on every string in it (lists, tuples, dicts)."""
    if isinstance(value, str):
        return clean_text(value)  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        items = [clean_value(item) for item in value]
        return items if isinstance(value, list) else tuple(items)  # type: ignore[return-value]
    if isinstance(value, dict):
        cleaned = {clean_value(key): clean_value(item) for key, item in value.items()}
        return cleaned  # type: ignore[return-value]
    return value


def clean_message(message: BaseMessage) -> BaseMessage:
    """``message`` with its text, tool calls and extras cleaned; itself when already clean."""
    updates = {}
    for field in _REPLY_FIELDS:
        value = getattr(message, field, None)
        if (cleaned := clean_value(value)) != value:
            updates[field] = cleaned
    return message.model_copy(update=updates) if updates else message


def clean_result(result: ChatResult) -> ChatResult:
    generations = [
        generation
        if (message := clean_message(generation.message)) is generation.message
        else type(generation)(message=message, generation_info=generation.generation_info)
        for generation in result.generations
    ]
    if generations == result.generations:
        return result
    return ChatResult(generations=generations, llm_output=result.llm_output)


class StreamText:
    """One stream's text, chunk by chunk: pairs split between chunks joined; a field found by
    its place in the message, list items by their ``index`` (as chunks merge)."""

    def __init__(self) -> None:
        self._held: dict[Path, str] = {}

    def accept(self, chunk: ChatGenerationChunk) -> ChatGenerationChunk:
        message = chunk.message
        if not self._held and _plain(message):
            return chunk  # the common chunk: clean text and nothing else
        updates: dict[str, Any] = {}
        for field in _STREAMED_FIELDS:
            value = getattr(message, field, None)
            if (joined := self._joined(value, (field,))) != value:
                updates[field] = joined
        cleaned = clean_message(_updated(message, updates))
        if cleaned is message:
            return chunk
        assert isinstance(cleaned, BaseMessageChunk)
        return ChatGenerationChunk(message=cleaned, generation_info=chunk.generation_info)

    def leftover(self) -> ChatGenerationChunk | None:
        """A last chunk with U+FFFD for each surrogate still held back, if any."""
        if not self._held:
            return None
        first, *more = (_held_chunk(path) for path in self._held)
        self._held.clear()
        return ChatGenerationChunk(message=first + more if more else first)

    def _joined(self, value: object, path: Path) -> Any:
        if isinstance(value, str):
            return self._text(value, path)
        if isinstance(value, list):
            return [self._joined(item, (*path, _item_key(item, i))) for i, item in enumerate(value)]
        if isinstance(value, Mapping):
            return {key: self._joined(item, (*path, key)) for key, item in value.items()}
        return value

    def _text(self, text: str, path: Path) -> str:
        held = self._held.pop(path, "")
        joined = held + text
        if path[-1] in _JSON_FIELDS:
            cut = _open_escape(joined)
            joined, rest = joined[:cut], joined[cut:]
            if rest:
                self._held[path] = rest
            joined = clean_json_text(joined)
        if path[-1] not in _WHOLE_FIELDS and joined and 0xD800 <= ord(joined[-1]) <= 0xDBFF:
            self._held[path] = joined[-1] + self._held.get(path, "")
            joined = joined[:-1]
        cleaned = clean_text(joined)
        return text if cleaned == text else cleaned


def clean_chunks(chunks: Iterator[ChatGenerationChunk]) -> Iterator[ChatGenerationChunk]:
    text = StreamText()
    for chunk in chunks:
        yield text.accept(chunk)
    if (last := text.leftover()) is not None:
        yield last


async def aclean_chunks(
    chunks: AsyncIterator[ChatGenerationChunk],
) -> AsyncIterator[ChatGenerationChunk]:
    text = StreamText()
    async for chunk in chunks:
        yield text.accept(chunk)
    if (last := text.leftover()) is not None:
        yield last


def _plain(message: BaseMessage) -> bool:
    content = message.content
    return (
        isinstance(content, str)
        and clean_text(content) is content
        and not message.additional_kwargs
        and not getattr(message, "tool_call_chunks", None)
        and not getattr(message, "tool_calls", None)
        and not getattr(message, "invalid_tool_calls", None)
    )


def _item_key(item: object, position: int) -> object:
    if isinstance(item, Mapping) and isinstance(item.get("index"), int):
        return ("index", item["index"])
    return position


def _updated(message: BaseMessage, updates: dict[str, Any]) -> BaseMessage:
    """``message`` with ``updates``; a chunk's tool calls parsed again from its chunks."""
    if not updates:
        return message
    if "tool_call_chunks" in updates and isinstance(message, AIMessageChunk):
        data = {**message.model_dump(), **updates, "tool_calls": [], "invalid_tool_calls": []}
        return AIMessageChunk(**data)
    return message.model_copy(update=updates)


def _held_chunk(path: Path) -> AIMessageChunk:
    """A chunk with U+FFFD in the field at ``path`` (as :class:`StreamText` walks them)."""
    value: Any = "\ufffd"
    for step in reversed(path[1:]):
        if isinstance(step, tuple):  # a list item, by its index
            value = [{"index": step[1], **value}]
        elif isinstance(step, int):
            value = [value]
        else:
            value = {step: value}
    field = str(path[0])
    if field == "tool_call_chunks":
        items: list[dict[str, Any]] = value
        value = [tool_call_chunk(**{"name": None, "id": None, "args": None, **i}) for i in items]
    return AIMessageChunk(**{"content": "", field: value})
