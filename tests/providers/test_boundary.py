"""``pygent_lc.providers.boundary``: typed errors once, replies that are no answer rejected,
secrets kept out of errors and tracebacks.

Each case runs a real provider class against ``httpx.MockTransport``: the
boundary wraps the provider's own methods, so that is where it shows.
"""

from __future__ import annotations

import traceback
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessageChunk
from pydantic import BaseModel

from pygent_lc import Settings
from pygent_lc.errors import ProviderError, ProviderUnavailableError, StreamInterruptedError
from pygent_lc.providers.ollama import ollama_model
from pygent_lc.providers.openrouter.model import OpenRouterChatModel, openrouter_model
from tests.helpers import secret_holders
from tests.providers.mock_http import (
    BrokenStream,
    MockServer,
    Mode,
    Scripted,
    call,
    json_reply,
    ndjson_reply,
    proxy_page,
    sse_reply,
)

KEY = "sk-or-v1-canary-boundary-0000000000000000000000000000000000000000000"
BASE = {"id": "gen-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


class Add(BaseModel):
    """Add two integers."""

    a: int
    b: int


def openrouter_on(wire: MockServer) -> OpenRouterChatModel:
    return openrouter_model(
        Settings(openrouter_api_key=KEY, openrouter_model="m"), **wire.openai_clients()
    )


def tool_call_stream(arguments: list[str], name: str = "Add") -> list[dict[str, Any]]:
    """A streamed tool call whose name the server repeats in every chunk (llama.cpp does)."""
    events: list[dict[str, Any]] = [
        {**BASE, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}
    ]
    for position, fragment in enumerate(arguments):
        call: dict[str, Any] = {
            "index": 0,
            "type": "function",
            "function": {"name": name, "arguments": fragment},
        }
        if position == 0:
            call["id"] = "call-1"
        events.append({**BASE, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    events.append({**BASE, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return events


def merged(chunks: list[Any]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert isinstance(total, AIMessageChunk)
    return total


# ---------------------------------------------------------------- streamed tool calls
def test_a_repeated_tool_name_is_kept_once_when_chunks_merge(wire: MockServer) -> None:
    """Chunks merge by concatenating strings: ``"Add"`` three times would be ``"AddAddAdd"``."""
    wire.script(sse_reply(tool_call_stream(['{"a": ', "2, ", '"b": 3}']), comment=None))
    total = merged(list(openrouter_on(wire).bind_tools([Add], tool_choice="Add").stream("2+3?")))
    assert total.tool_calls == [
        {"name": "Add", "args": {"a": 2, "b": 3}, "id": "call-1", "type": "tool_call"}
    ]


def test_structured_output_by_function_calling_streams_a_valid_object(wire: MockServer) -> None:
    wire.script(sse_reply(tool_call_stream(['{"a": 2,', ' "b": 40}']), comment=None))
    structured = openrouter_on(wire).with_structured_output(Add, method="function_calling")
    assert list(structured.stream("2+40?"))[-1] == Add(a=2, b=40)


def test_a_tool_call_alone_is_an_answer(wire: MockServer) -> None:
    wire.script(sse_reply(tool_call_stream(['{"a": 1, "b": 1}']), comment=None))
    total = merged(list(openrouter_on(wire).stream("1+1?")))
    assert total.content == ""
    assert [call["name"] for call in total.tool_calls] == ["Add"]
    assert total.response_metadata["model_provider"] == "openrouter"


# ---------------------------------------------------------------- replies that are no answer
def test_a_refusal_is_an_answer_not_an_empty_reply(wire: MockServer) -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    reply = {**BASE, "object": "chat.completion", "choices": [
        {"index": 0, "message": message, "finish_reason": "stop"}
    ]}  # fmt: skip
    wire.script(json_reply(reply))
    answer = openrouter_on(wire).invoke("something bad")
    assert answer.additional_kwargs["refusal"] == "I can't help with that."


# ---------------------------------------------------------------- errors
def test_a_bug_is_not_disguised_as_a_provider_failure(wire: MockServer) -> None:
    """Exceptions the mapping does not know (our bugs, a broken transport) pass unchanged."""
    wire.script(RuntimeError("a bug in a transport"))
    model = ollama_model(
        Settings(ollama_model="llama3.2"), client_kwargs=wire.ollama_client_kwargs()
    )
    with pytest.raises(RuntimeError, match="a bug in a transport"):
        model.invoke("hi")


def test_an_error_raised_by_our_parsing_restarts_its_traceback_at_the_boundary(
    wire: MockServer,
) -> None:
    """The frames that parsed the body hold the body, which may echo the key."""
    error = {"error": {"code": 502, "message": f"upstream saw {KEY}"}}
    wire.script(json_reply(error))
    with pytest.raises(ProviderUnavailableError) as caught:
        openrouter_on(wire).invoke("hi")
    failure = caught.value
    assert failure.__context__ is None and failure.__cause__ is None
    functions = [frame.name for frame in traceback.extract_tb(failure.__traceback__)]
    assert "_create_chat_result" not in functions
    assert "_generate" in functions


def exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is seen for seen in chain):
            continue
        chain.append(current)
        pending += [current.__cause__, current.__context__]
    return chain


def mid_stream_echo() -> Any:
    return sse_reply(
        [
            {**BASE, "choices": [{"index": 0, "delta": {"content": "echo:"}}]},
            {**BASE, "error": {"code": 502, "message": f"broken for {KEY}"}},
        ],
        done=False,
    )


ECHOES = (
    [
        pytest.param(
            json_reply({"error": {"code": 401, "message": f"bad key {KEY}"}}, 401),
            mode,
            id=f"401-{mode}",
        )
        for mode in ("invoke", "stream")
    ]
    + [
        pytest.param(
            json_reply({"error": {"code": 500, "message": f"saw {KEY}"}}, 500),
            mode,
            id=f"500-{mode}",
        )
        for mode in ("invoke", "stream")
    ]
    + [
        pytest.param(
            json_reply({"error": {"code": 502, "message": f"saw {KEY}"}}),
            "invoke",
            id="error-in-200",
        ),
        pytest.param(mid_stream_echo(), "stream", id="mid-stream"),
    ]
)


@pytest.mark.parametrize(("reply", "mode"), ECHOES)
async def test_the_key_is_in_no_exception_of_the_chain_nor_any_traceback_local(
    wire: MockServer, reply: Any, mode: str
) -> None:
    """What Sentry or loguru's diagnose mode would record: every exception of the
    chain, with the local variables of every frame."""
    wire.script(reply)
    failure = failure_of(openrouter_on(wire), mode)
    for exc in exception_chain(failure):
        shown = f"{exc!s} {exc!r} {getattr(exc, 'body', '')!r} {vars(exc)!r}"
        assert KEY not in shown, type(exc).__name__
    recorded = traceback.TracebackException.from_exception(failure, capture_locals=True)
    assert KEY not in "".join(recorded.format())
    assert "***" in failure.message
    if isinstance(failure, StreamInterruptedError):
        assert failure.partial_text == "echo:"


def failure_of(model: OpenRouterChatModel, mode: str) -> ProviderError:
    """The error of one call; its traceback starts here, not in a test holding the key."""
    try:
        if mode == "invoke":
            model.invoke("one two three")
        else:
            for _ in model.stream("one two three"):
                pass
    except ProviderError as exc:
        return exc
    raise AssertionError("the call did not fail")


def test_ollama_stream_without_the_done_line_is_incomplete(wire: MockServer) -> None:
    """Ollama's end-of-reply marker is ``done: true``, not a finish reason."""
    line = {"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z", "done": False}
    wire.script(ndjson_reply([{**line, "message": {"role": "assistant", "content": "hi"}}]))
    model = ollama_model(
        Settings(ollama_model="llama3.2"), client_kwargs=wire.ollama_client_kwargs()
    )
    with pytest.raises(StreamInterruptedError, match="marked it finished") as caught:
        list(model.stream("hi"))
    assert caught.value.partial_text == "hi"


def test_an_http_error_keeps_its_raw_error_as_cause_when_it_holds_no_secret(
    wire: MockServer,
) -> None:
    """Ollama has no key: its raw error stays chained, for debugging."""
    wire.script(json_reply({"error": "overloaded"}, 503))
    model = ollama_model(
        Settings(ollama_model="llama3.2"), client_kwargs=wire.ollama_client_kwargs()
    )
    with pytest.raises(ProviderUnavailableError) as caught:
        model.invoke("hi")
    cause = caught.value.__cause__
    assert cause is not None and "overloaded" in str(cause)
    assert caught.value.message == "overloaded"


def reset_mid_body(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, stream=BrokenStream([b"data: {"], request))


# Failures whose raw error holds the request (the key in its headers), none echoing it.
TRANSPORT_FAULTS: dict[str, Scripted] = {
    "read-error": httpx.ReadError("connection reset by peer"),
    "read-timeout": httpx.ReadTimeout("timed out"),
    "connect-error": httpx.ConnectError("connection refused"),
    "remote-protocol-error": httpx.RemoteProtocolError("peer closed connection"),
    "reset-mid-body": reset_mid_body,
    "503": json_reply({"error": {"code": 503, "message": "overloaded"}}, 503),
    "401": json_reply({"error": {"code": 401, "message": "No auth credentials found"}}, 401),
    "proxy-page": proxy_page(),
}


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
@pytest.mark.parametrize("fault", list(TRANSPORT_FAULTS))
async def test_nothing_reachable_from_a_typed_error_holds_the_key(
    wire: MockServer, fault: str, mode: Mode
) -> None:
    """Not the raw error's request or response, nor any pickle: the raw error is dropped."""
    wire.script(TRANSPORT_FAULTS[fault])
    with pytest.raises(ProviderError) as caught:
        await call(openrouter_on(wire), mode)
    assert secret_holders(caught.value, KEY) == []


def test_no_request_is_sent_when_the_transport_is_unused(wire: MockServer) -> None:
    """Building a model sends nothing (no model check, no warm-up request)."""
    openrouter_on(wire)
    ollama_model(Settings(ollama_model="llama3.2"), client_kwargs=wire.ollama_client_kwargs())
    assert wire.count == 0
