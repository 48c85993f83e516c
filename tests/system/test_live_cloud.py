"""Live-cloud tier: real OpenRouter / Ollama, run only when a key or a server is present."""

from __future__ import annotations

import os

import httpx
import pytest

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.errors import AuthenticationError
from pygent_lc.providers import check_ollama_model, openrouter_model

pytestmark = pytest.mark.live_cloud

# The autouse fixture in conftest clears these from os.environ; read them at import.
OPENROUTER_KEY = os.environ.get("OPENROUTER_API_KEY")
OPENROUTER_TEST_MODEL = os.environ.get("PYGENT_TEST_OPENROUTER_MODEL", "openai/gpt-4o-mini")
OLLAMA_URL = os.environ.get("OLLAMA_BASE_URL", "http://localhost:11434")
OLLAMA_TEST_MODEL = os.environ.get("OLLAMA_MODEL")

needs_key = pytest.mark.skipif(not OPENROUTER_KEY, reason="OPENROUTER_API_KEY is not set")


def _ollama_up() -> bool:
    try:
        return httpx.get(f"{OLLAMA_URL}/api/version", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


needs_ollama = pytest.mark.skipif(
    not (OLLAMA_TEST_MODEL and _ollama_up()), reason="no reachable Ollama with OLLAMA_MODEL"
)


@needs_key
async def test_openrouter_generate_reports_cost_and_served_model() -> None:
    settings = Settings(openrouter_api_key=OPENROUTER_KEY, openrouter_model=OPENROUTER_TEST_MODEL)
    backend = LangChainBackend(build_chat_model(settings, ["openrouter"]))
    text = await backend.generate("Reply with the word: pong", max_tokens=5, temperature=0)
    assert "pong" in text.lower()
    [entry] = backend.usage.summary().values()
    assert entry.provider == "openrouter"
    assert entry.usage.cost_usd > 0


@needs_key
async def test_openrouter_stream_keeps_cost() -> None:
    settings = Settings(openrouter_api_key=OPENROUTER_KEY, openrouter_model=OPENROUTER_TEST_MODEL)
    merged = None
    async for chunk in openrouter_model(settings).astream("Count to three.", max_tokens=20):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    assert merged.response_metadata["cost"] > 0
    assert merged.response_metadata["generation_id"].startswith("gen-")


@needs_key
async def test_openrouter_bad_key_is_an_authentication_error() -> None:
    settings = Settings(openrouter_api_key="sk-or-v1-invalid", max_retries=0)
    with pytest.raises(AuthenticationError):
        await LangChainBackend(build_chat_model(settings, ["openrouter"])).generate("hi")


@needs_ollama
async def test_ollama_generate() -> None:
    settings = Settings(ollama_base_url=OLLAMA_URL, ollama_model=OLLAMA_TEST_MODEL)
    check_ollama_model(settings)
    backend = LangChainBackend(build_chat_model(settings, ["ollama"]))
    assert (await backend.generate("Reply with one word: hello", max_tokens=10)).strip()
