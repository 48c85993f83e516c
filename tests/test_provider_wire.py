"""What reaches the wire and what comes back, per provider, against the loopback server."""

from __future__ import annotations

import pytest
from loopback_server import LoopbackServer

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.errors import ModelNotFoundError, ProviderUnavailableError
from pygent_lc.providers import check_ollama_model, ollama_model, openrouter_model

pytestmark = pytest.mark.live_local


def settings_for(server: LoopbackServer) -> Settings:
    return Settings(
        openrouter_api_key="sk-or-v1-wire-test",
        openrouter_base_url=server.openrouter_base_url,
        openrouter_model="openai/gpt-4o-mini",
        app_url="https://pygent.example",
        app_title="PyGent Factory",
        ollama_base_url=server.ollama_base_url,
        ollama_model="llama3.2",
    )


async def test_openrouter_generation_keywords_on_the_wire(loopback: LoopbackServer) -> None:
    backend = LangChainBackend(build_chat_model(settings_for(loopback), ["openrouter"]))
    await backend.generate("one two three", temperature=0.2, max_tokens=7, stop=["\n"])
    [request] = loopback.requests("openrouter")
    body = request.json
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.2, 7, ["\n"])
    assert "max_completion_tokens" not in body
    assert body["model"] == "openai/gpt-4o-mini"


async def test_ollama_generation_keywords_in_options(loopback: LoopbackServer) -> None:
    backend = LangChainBackend(build_chat_model(settings_for(loopback), ["ollama"]))
    await backend.generate("one two three", temperature=0.2, max_tokens=7, stop=["\n"])
    [request] = loopback.requests("ollama")
    options = request.json["options"]
    assert (options["temperature"], options["num_predict"], options["stop"]) == (0.2, 7, ["\n"])
    assert options["num_ctx"] == 8192
    assert "temperature" not in request.json  # only inside options, where Ollama reads it


async def test_openrouter_headers_key_and_sdk_retries(loopback: LoopbackServer) -> None:
    await openrouter_model(settings_for(loopback)).ainvoke("hi")
    [request] = loopback.requests("openrouter")
    headers = request.headers
    assert headers["authorization"] == "Bearer sk-or-v1-wire-test"
    assert headers["http-referer"] == "https://pygent.example"
    assert headers["x-openrouter-title"] == headers["x-title"] == "PyGent Factory"
    assert headers["x-stainless-retry-count"] == "0"


async def test_openrouter_extras_on_invoke(loopback: LoopbackServer) -> None:
    reply = await openrouter_model(settings_for(loopback)).ainvoke("one two three")
    meta = reply.response_metadata
    assert meta["generation_id"].startswith("gen-")
    assert meta["provider"] == "LoopbackAI"
    assert meta["native_finish_reason"] == "stop"
    assert meta["model_name"] == "openai/gpt-4o-mini"
    assert meta["cost"] > 0
    assert "upstream_inference_prompt_cost" in meta["cost_details"]
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["cost"] == meta["cost"]  # type: ignore[typeddict-item]


async def test_openrouter_extras_on_stream(loopback: LoopbackServer) -> None:
    model = openrouter_model(settings_for(loopback))
    merged = None
    async for chunk in model.astream("one two three"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    assert merged.content == "echo: one two three"
    meta = merged.response_metadata
    assert meta["provider"] == "LoopbackAI"  # once, not concatenated per chunk
    assert meta["generation_id"].startswith("gen-")
    assert meta["cost"] > 0
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == 4
    [request] = loopback.requests("openrouter")
    assert request.json["stream_options"] == {"include_usage": True}


async def test_usage_tracker_reports_openrouter_cost_for_invoke_and_stream(
    loopback: LoopbackServer,
) -> None:
    backend = LangChainBackend(build_chat_model(settings_for(loopback), ["openrouter", "ollama"]))
    await backend.generate("one two three")
    _ = [part async for part in backend.stream("four five")]
    summary = backend.usage.summary()
    entry = summary[("openrouter", "openai/gpt-4o-mini")]
    assert entry.usage.calls == 2
    # The loopback server bills 1e-6 USD per prompt word and 2e-6 per reply word:
    # "one two three" -> "echo: one two three", "four five" -> "echo: four five".
    assert (entry.usage.input_tokens, entry.usage.output_tokens) == (3 + 2, 4 + 3)
    assert entry.usage.cost_usd == pytest.approx(5e-6 + 7 * 2e-6)


async def test_usage_tracker_reports_zero_cost_for_ollama(loopback: LoopbackServer) -> None:
    backend = LangChainBackend(build_chat_model(settings_for(loopback), ["ollama"]))
    await backend.generate("one two three")
    [entry] = backend.usage.summary().values()
    assert (entry.provider, entry.model, entry.usage.cost_usd) == ("ollama", "llama3.2", 0.0)
    assert entry.usage.output_tokens == 4


def test_check_ollama_model(loopback: LoopbackServer) -> None:
    settings = settings_for(loopback)
    assert check_ollama_model(settings, "llama3.2") == "llama3.2:latest"
    with pytest.raises(ModelNotFoundError, match=r"llama3\.2:latest") as caught:
        check_ollama_model(settings, "mistral")
    assert "ollama pull mistral" in str(caught.value)


def test_check_ollama_model_server_down() -> None:
    settings = Settings(ollama_base_url="http://127.0.0.1:9", ollama_model="llama3.2")
    with pytest.raises(ProviderUnavailableError):
        check_ollama_model(settings)


def test_ollama_model_has_client_timeout_and_num_ctx(loopback: LoopbackServer) -> None:
    model = ollama_model(settings_for(loopback))
    assert model.num_ctx == 8192
    assert model.client_kwargs == {"timeout": 60.0}
