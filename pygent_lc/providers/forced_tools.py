"""Tool calls emulated for chat templates that render no tools (SmolLM2's): llama.cpp is
asked for a JSON schema instead (a forced tool's arguments, ``{"name", "arguments"}`` for
a choice, or ``{"answer"}`` when calling is optional), and the JSON reply becomes the
call. A system message names the tools and earlier results, which the template cannot show."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.json import parse_partial_json

from pygent_lc.errors import InvalidInputError

_TOOL_KEYWORDS = ("tools", "tool_choice", "parallel_tool_calls")
_ANSWER: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}


@dataclass(frozen=True)
class ForcedTools:
    """The tools (OpenAI function dicts) a request forces the model to choose from."""

    functions: tuple[dict[str, Any], ...]
    optional: bool = False  # tool_choice "auto": the model may answer instead

    @property
    def _single(self) -> bool:  # one forced tool: the reply is its arguments alone
        return len(self.functions) == 1 and not self.optional

    @property
    def names(self) -> list[str]:
        return [str(function["name"]) for function in self.functions]

    def schema(self) -> dict[str, Any]:
        if self._single:
            return _parameters(self.functions[0])
        arguments = [_parameters(function) for function in self.functions]
        # Refs point at the root: every tool's definitions move there.
        definitions = {k: v for schema in arguments for k, v in schema.pop("$defs", {}).items()}
        choices: list[dict[str, Any]] = [
            {
                "type": "object",
                "properties": {"name": {"const": function["name"]}, "arguments": schema},
                "required": ["name", "arguments"],
            }
            for function, schema in zip(self.functions, arguments, strict=True)
        ]
        choices += [_ANSWER] if self.optional else []
        return {"anyOf": choices, **({"$defs": definitions} if definitions else {})}

    def instruction(self) -> str:
        lines = "\n".join(
            f"- {function['name']}({_signature(function)}): {function.get('description') or ''}"
            for function in self.functions
        )
        if self._single:
            return f"Call this function, replying with its arguments as JSON:\n{lines}"
        choose = 'one of these functions, replying with JSON {"name": ..., "arguments": {...}}:\n'
        choose += lines
        if not self.optional:
            return "Call " + choose
        return (
            f"You can call {choose}"
            + '\nOr answer directly, replying with JSON {"answer": "..."}. After a '
            "function's result, answer with it unless another call is needed."
        )

    def response_format(self) -> dict[str, Any]:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", "_or_".join(self.names))[:64]
        return {"type": "json_schema", "json_schema": {"name": name, "schema": self.schema()}}

    def call_of(self, text: str, finish_reason: object) -> ToolCall | InvalidToolCall:
        """The tool call a constrained reply spells; an invalid one if it was cut off."""
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        single = self._single
        name: str | None = self.names[0] if single else None
        try:
            parsed = json.loads(text)
            if not single:
                name, parsed = parsed["name"], parsed["arguments"]
            if not isinstance(parsed, dict) or name not in self.names:
                raise ValueError("not an object for a bound tool")
        except (ValueError, KeyError, TypeError) as exc:
            reason = (
                "the reply reached max_tokens before the arguments were complete"
                if finish_reason == "length"
                else f"the reply is not a call of a bound tool ({exc})"
            )
            return invalid_tool_call(name=name, args=text, id=call_id, error=reason)
        return tool_call(name=str(name), args=parsed, id=call_id)

    def answer_of(self, text: str) -> str | None:
        """The text of an ``{"answer": ...}`` reply (also one cut at max_tokens); ``None``
        for a tool call, or when answering is not allowed."""
        with contextlib.suppress(ValueError):
            parsed = parse_partial_json(text) if self.optional else None
            if isinstance(parsed, dict) and isinstance(parsed.get("answer"), str):
                return None if "name" in parsed else str(parsed["answer"])
        return None


def _parameters(function: Mapping[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters")
    if not isinstance(parameters, Mapping):
        parameters = {"type": "object", "properties": {}}
    return dict(parameters)


def _signature(function: Mapping[str, Any]) -> str:
    properties = _parameters(function).get("properties") or {}
    return ", ".join(
        f"{name}: {spec.get('type', 'any')}" if isinstance(spec, Mapping) else str(name)
        for name, spec in properties.items()
    )


def forced_tools(kwargs: Mapping[str, Any]) -> ForcedTools | None:
    """The tools a call's ``tool_choice`` offers the model: forced, or ``optional``
    for ``"auto"`` (or no choice); ``None`` without tools or with ``"none"``."""
    choice = kwargs.get("tool_choice")
    functions = [
        tool["function"]
        for tool in kwargs.get("tools") or ()
        if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping)
    ]
    if not functions or choice in (False, "none"):
        return None
    if choice is True or choice in (None, "auto", "any", "required"):  # "auto": or an answer
        return ForcedTools(tuple(functions), optional=choice in (None, "auto"))
    wanted = choice
    if isinstance(choice, Mapping):
        wanted = (choice.get("function") or {}).get("name") or choice.get("name")
    chosen = [function for function in functions if function.get("name") == wanted]
    if not chosen:
        raise InvalidInputError(
            f"tool_choice {choice!r} names no bound tool "
            f"(bound: {', '.join(str(f.get('name')) for f in functions)})"
        )
    return ForcedTools(tuple(chosen))


def constrained_request(kwargs: dict[str, Any], forced: ForcedTools) -> dict[str, Any]:
    """The call's keywords with the tools (which could steer a template that renders them
    into its own syntax, which the grammar forbids) replaced by a JSON schema."""
    rest = {k: v for k, v in kwargs.items() if k not in _TOOL_KEYWORDS}
    if forced.optional:
        # llama.cpp's own field: the SDK parses a ``response_format`` reply and raises when
        # it was cut at max_tokens, where an answer cut short should stay its text.
        extra_body = {**(rest.pop("extra_body", None) or {}), "json_schema": forced.schema()}
        return {**rest, "extra_body": extra_body}
    return {**rest, "response_format": forced.response_format()}


def instructed(messages: list[BaseMessage], forced: ForcedTools) -> list[BaseMessage]:
    """``messages`` with the tools and earlier results in the (first) system message, each
    ``name({"arg": ...}) returned ...`` (as a later user turn, SmolLM2 calls again)."""
    calls: dict[str, ToolCall] = {}
    plain: list[BaseMessage] = []
    results: list[str] = []
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            # Left out whole, its text too: kept, it could end the conversation,
            # and llama.cpp continues a last assistant turn, which no grammar allows.
            calls.update((call["id"] or "", call) for call in message.tool_calls)
        elif isinstance(message, ToolMessage):
            call = calls.get(message.tool_call_id)
            name = call["name"] if call else (message.name or "a function")
            arguments = json.dumps(call["args"], ensure_ascii=False) if call else ""
            results.append(f"{name}({arguments}) returned {message.text}")
        else:
            plain.append(message)
    instruction = forced.instruction()
    if results:
        instruction += "\n\nResults so far:\n" + "\n".join(results)
    if plain and isinstance(plain[0], SystemMessage):
        merged = f"{instruction}\n\n{plain[0].text}"
        return [plain[0].model_copy(update={"content": merged}), *plain[1:]]
    return [SystemMessage(instruction), *plain]


def as_tool_call(result: ChatResult, forced: ForcedTools) -> ChatResult:
    """``result`` with each reply's JSON text as a tool call (or the answer's text)."""
    generations: list[ChatGeneration] = []
    for generation in result.generations:
        message = generation.message
        info = dict(generation.generation_info or {})
        answer = forced.answer_of(message.text)
        calls: dict[str, list[Any]] = {"tool_calls": [], "invalid_tool_calls": []}
        if answer is None:
            call = forced.call_of(message.text, info.get("finish_reason"))
            calls["invalid_tool_calls" if "error" in call else "tool_calls"].append(call)
            if info.get("finish_reason") == "stop" and "error" not in call:
                info["finish_reason"] = "tool_calls"  # what a server with tool support says
        replaced = message.model_copy(update={"content": answer or "", **calls})
        generations.append(ChatGeneration(message=replaced, generation_info=info))
    return ChatResult(generations=generations, llm_output=result.llm_output)


def as_chunk(result: ChatResult) -> ChatGenerationChunk:
    generation = result.generations[0]
    message = generation.message
    assert isinstance(message, AIMessage)
    calls = [*message.tool_calls, *message.invalid_tool_calls]
    fields = {k: v for k, v in message if k not in ("type", "tool_calls", "invalid_tool_calls")}
    chunk = AIMessageChunk(
        **fields,
        tool_call_chunks=[
            tool_call_chunk(
                name=call["name"],
                args=call["args"] if isinstance(call["args"], str) else json.dumps(call["args"]),
                id=call["id"],
                index=index,
            )
            for index, call in enumerate(calls)
        ],
        chunk_position="last",
    )
    return ChatGenerationChunk(message=chunk, generation_info=generation.generation_info)
