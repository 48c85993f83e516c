"""``pygent_lc.providers.text``: replies with surrogates reach users as encodable text.

Through the real provider classes on the scripted wire (``tests/providers/mock_http.py``):
OpenRouter and local (the OpenAI wire, SSE) and Ollama (NDJSON), in all four call
modes, with half pairs, lone surrogates and pairs split between stream chunks
in the content, the reasoning and the tool-call arguments.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk
from pydantic import BaseModel, SecretStr

from pygent_lc import Settings
from pygent_lc.providers.local import LocalChatModel
from pygent_lc.providers.ollama import ollama_model
from pygent_lc.providers.openrouter.model import openrouter_model
from pygent_lc.providers.text import StreamText, clean_json_text, clean_message, clean_text
from tests.providers.mock_http import MockServer, Mode, Reply, json_reply, ndjson_reply, sse_reply

MODES: list[Mode] = ["invoke", "ainvoke", "stream", "astream"]
PROVIDERS = ["openrouter", "ollama", "local"]
SMILE = "\U0001f600"
HIGH, LOW = "\ud83d", "\ude00"  # SMILE as JSON spells it: "\ud83d\ude00"

# The reply as the provider cuts it into chunks, and what the caller must get.
CONTENT = ["smile ", HIGH, LOW, " lone \ud800 and \udc00, cut ", HIGH, "next", " last", HIGH]
CONTENT_TEXT = f"smile {SMILE} lone \ufffd and \ufffd, cut \ufffdnext last\ufffd"
REASONING = ["think ", HIGH, LOW, " \udfff"]
REASONING_TEXT = f"think {SMILE} \ufffd"
ARGS = ['{"value": "', HIGH, LOW, "\ud800", '"}']
ARGS_VALUE = {"value": f"{SMILE}\ufffd"}


class Answer(BaseModel):
    value: str


# ---------------------------------------------------------------- the wire
def _sse(pieces: dict[str, list[str]], reasoning_key: str) -> Reply:
    """OpenAI-wire stream: the reasoning, the content, then one tool call, a piece an event."""

    def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {"id": "gen-1", "model": "m", "object": "chat.completion.chunk", "choices": [choice]}

    events = [event({"role": "assistant", "content": ""})]
    events += [event({reasoning_key: piece}) for piece in pieces["reasoning"]]
    events += [event({"content": piece}) for piece in pieces["content"]]
    for i, piece in enumerate(pieces["args"]):
        function = {"arguments": piece, **({"name": "Answer"} if i == 0 else {})}
        call = {
            "index": 0,
            "function": function,
            **({"id": "c1", "type": "function"} if i == 0 else {}),
        }
        events.append(event({"tool_calls": [call]}))
    events.append(event({}, "tool_calls"))
    return sse_reply(events, comment=None)


def _completion(pieces: dict[str, list[str]], reasoning_key: str) -> Reply:
    """The same reply whole: JSON spells the joined pieces' pairs as one character."""
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "Answer", "arguments": "".join(pieces["args"])},
    }
    message = {
        "role": "assistant",
        "content": "".join(pieces["content"]),
        reasoning_key: "".join(pieces["reasoning"]),
        "tool_calls": [call],
    }
    choice = {"index": 0, "finish_reason": "tool_calls", "message": message}
    return json_reply(
        {"id": "gen-1", "model": "m", "object": "chat.completion", "choices": [choice]}
    )


def _ndjson(pieces: dict[str, list[str]]) -> Reply:
    """Ollama's lines: thinking, content, then the tool call whole (arguments as an object)."""

    def line(done: bool = False, **message: Any) -> dict[str, Any]:
        found = {"model": "m", "created_at": "2025-01-01T00:00:00Z", "done": done}
        found["message"] = {"role": "assistant", "content": "", **message}
        return found

    lines = [line(thinking=piece) for piece in pieces["reasoning"]]
    lines += [line(content=piece) for piece in pieces["content"]]
    arguments = json.loads("".join(pieces["args"]).replace("\ud800", "\\ud800"))
    lines.append(line(tool_calls=[{"function": {"name": "Answer", "arguments": arguments}}]))
    lines.append({**line(True), "done_reason": "stop", "eval_count": 4, "prompt_eval_count": 3})
    return ndjson_reply(lines)


def _model(provider: str, wire: MockServer, mode: Mode) -> Any:
    pieces = {"content": CONTENT, "reasoning": REASONING, "args": ARGS}
    streams = mode in ("stream", "astream")
    if provider == "ollama":
        wire.script(_ndjson(pieces))
        settings = Settings(ollama_model="m")
        return ollama_model(settings, client_kwargs=wire.ollama_client_kwargs(), reasoning=True)
    key = "reasoning" if provider == "openrouter" else "reasoning_content"
    wire.script(_sse(pieces, key) if streams else _completion(pieces, key))
    if provider == "openrouter":
        settings = Settings(openrouter_api_key="sk-or-test", openrouter_model="m")
        return openrouter_model(settings, **wire.openai_clients())
    return LocalChatModel(
        model="m",
        base_url="http://127.0.0.1:8080/v1",
        api_key=SecretStr("k"),
        **wire.openai_clients(),
    )


def _encodable(message: AIMessage) -> None:
    """Everything the caller may print, write or send on is valid UTF-8."""
    for part in (message.content, message.additional_kwargs, message.tool_calls):
        json.dumps(part, ensure_ascii=False).encode("utf-8")
    message.text.encode("utf-8")


async def _reply(model: Any, mode: Mode) -> tuple[AIMessage, list[AIMessageChunk]]:
    bound = model.bind_tools([Answer])
    if mode == "invoke":
        return bound.invoke("hi"), []
    if mode == "ainvoke":
        return await bound.ainvoke("hi"), []
    if mode == "stream":
        chunks = list(bound.stream("hi"))
    else:
        chunks = [chunk async for chunk in bound.astream("hi")]
    merged = chunks[0]
    for more in chunks[1:]:
        merged = merged + more
    return merged, chunks


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_reply_with_surrogates_reaches_the_caller_as_encodable_text(
    wire: MockServer, provider: str, mode: Mode
) -> None:
    reply, chunks = await _reply(_model(provider, wire, mode), mode)
    for chunk in chunks:
        _encodable(chunk)  # each chunk as it is delivered, not only the whole
    _encodable(reply)
    assert reply.content == CONTENT_TEXT
    reasoning = reply.additional_kwargs.get("reasoning") or reply.additional_kwargs.get(
        "reasoning_content"
    )
    assert reasoning == REASONING_TEXT
    assert [(call["name"], call["args"]) for call in reply.tool_calls] == [("Answer", ARGS_VALUE)]


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_half_a_pair_at_the_end_of_a_stream_is_delivered(
    wire: MockServer, mode: Mode
) -> None:
    wire.script(
        ndjson_reply(
            [
                {"model": "m", "message": {"role": "assistant", "content": f"bye {HIGH}"}},
                {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True},
            ]
        )
    )
    model = ollama_model(Settings(ollama_model="m"), client_kwargs=wire.ollama_client_kwargs())
    if mode == "stream":
        parts = [str(chunk.content) for chunk in model.stream("hi")]
    else:
        parts = [str(chunk.content) async for chunk in model.astream("hi")]
    assert "".join(parts) == "bye \ufffd"
    assert "bye " in parts  # the text before the half pair was not held back


class _Tokens(BaseCallbackHandler):
    """Records the tokens a streaming callback sees (as LangGraph's message stream does)."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        assert isinstance(token, str)
        self.tokens.append(token)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_streaming_callbacks_see_encodable_tokens(wire: MockServer, provider: str) -> None:
    model = _model(provider, wire, "stream").model_copy(update={"streaming": True})
    seen = _Tokens()
    reply = model.bind_tools([Answer]).invoke("hi", config={"callbacks": [seen]})
    assert reply.content == CONTENT_TEXT
    for token in seen.tokens:
        token.encode("utf-8")
    assert "".join(seen.tokens) == CONTENT_TEXT


@pytest.mark.parametrize("mode", MODES)
async def test_tool_call_arguments_that_escape_a_lone_surrogate(
    wire: MockServer, mode: Mode
) -> None:
    """Arguments are JSON text: ``\\ud800`` in them would parse to a lone surrogate."""
    pieces = {"content": [""], "reasoning": ["r"], "args": ['{"value": "\\ud8', '00 ok"}']}
    streams = mode in ("stream", "astream")
    wire.script(_sse(pieces, "reasoning") if streams else _completion(pieces, "reasoning"))
    settings = Settings(openrouter_api_key="sk-or-test", openrouter_model="m")
    reply, _ = await _reply(openrouter_model(settings, **wire.openai_clients()), mode)
    assert [call["args"] for call in reply.tool_calls] == [{"value": "\ufffd ok"}]


# ---------------------------------------------------------------- the functions
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain", "plain"),
        (f"caf\u00e9 {SMILE}", f"caf\u00e9 {SMILE}"),
        (HIGH + LOW, SMILE),
        ("\ud800", "\ufffd"),
        (chr(0xDC00), "\ufffd"),
        (LOW + HIGH, "\ufffd\ufffd"),  # the wrong order is no pair
        (HIGH + HIGH + LOW, "\ufffd" + SMILE),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean
    clean_text(raw).encode("utf-8")


def test_clean_json_text_replaces_escaped_lone_surrogates_only() -> None:
    assert clean_json_text(r'{"a": "x\ud800"}') == r'{"a": "x\ufffd"}'
    assert clean_json_text(r'{"a": "\ud83d\ude00"}') == r'{"a": "\ud83d\ude00"}'
    assert clean_json_text(r'{"a": "\\ud800"}') == r'{"a": "\\ud800"}'  # a backslash, text
    assert clean_json_text(r'{"a": "\\\udc00"}') == r'{"a": "\\\ufffd"}'


def test_an_escaped_pair_split_between_argument_chunks_is_joined() -> None:
    stream = StreamText()
    pieces = ['{"v": "\\ud8', "3d\\u", "de00", '\\ud800"}']
    delivered = []
    for piece in pieces:
        message = AIMessageChunk(
            content="", tool_call_chunks=[{"index": 0, "args": piece, "name": None, "id": None}]
        )
        delivered.append(stream.accept(ChatGenerationChunk(message=message)).message)
    assert stream.leftover() is None
    merged = delivered[0]
    for more in delivered[1:]:
        merged = merged + more
    assert isinstance(merged, AIMessageChunk)
    assert merged.tool_calls[0]["args"] == {"v": f"{SMILE}\ufffd"}


def test_extras_in_a_tuple_of_any_kind_are_cleaned_and_clean_replies_kept_as_they_are() -> None:
    """A reply's extras may hold tuples a caller's code put there (named ones too)."""

    class Point(NamedTuple):
        x: int
        label: str

    clean = AIMessage(content="hi", additional_kwargs={"at": Point(1, "a")})
    assert clean_message(clean) is clean
    dirty = AIMessage(content=HIGH + LOW, additional_kwargs={"at": Point(1, "\ud800")})
    cleaned = clean_message(dirty)
    assert cleaned.content == SMILE
    assert tuple(cleaned.additional_kwargs["at"]) == (1, "\ufffd")
