"""The providers' HTTP layer under real use, against the loopback server.

- Any number of successive event loops, and threads each with its own loop,
  on one chain (langchain-openai's process-wide cached async client broke the
  second ``asyncio.run``).
- ``request_timeout`` is a deadline for a provider's whole part of a call: a
  reply that drips one byte at a time, or a slow error followed by a hang,
  cannot stretch it; a stream gets it again for every gap between chunks.
- ``aclose()`` returns the process to its open-descriptor baseline.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from helpers import loopback_settings
from loopback_server import Fault, LoopbackServer
from loopback_server.answers import last_user_text

from benchmarks.game24_model import scripted_game24_reply
from pygent_lc import LangChainBackend, build_chat_model
from pygent_lc.agents import AgentFactory
from pygent_lc.errors import ProviderUnavailableError

pytestmark = pytest.mark.live_local

PROTOCOLS = ["openrouter", "ollama"]


def game24_responder(protocol: str, body: Mapping[str, Any]) -> str:
    return scripted_game24_reply(last_user_text(body))


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(responder=game24_responder, max_hang=10) as live:
        yield live


def backend_for(server: LoopbackServer, provider: str, **changes: Any) -> LangChainBackend:
    return LangChainBackend(build_chat_model(loopback_settings(server, **changes), [provider]))


async def collect(backend: LangChainBackend, prompt: str) -> str:
    return "".join([part async for part in backend.stream(prompt)])


@pytest.mark.parametrize("provider", PROTOCOLS)
def test_successive_event_loops_share_one_backend(server: LoopbackServer, provider: str) -> None:
    backend = backend_for(server, provider)
    answers = [asyncio.run(backend.generate(f"loop {i}")) for i in range(3)]
    answers += [asyncio.run(collect(backend, f"stream {i}")) for i in range(3)]
    assert len(answers) == 6 and all(answers)
    assert server.request_count(provider) == 6  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", PROTOCOLS)
def test_threads_each_with_their_own_loops(server: LoopbackServer, provider: str) -> None:
    backend = backend_for(server, provider, request_timeout=10)
    failures: list[BaseException] = []
    slowest: list[float] = []

    def worker() -> None:
        for i in range(5):
            started = time.perf_counter()
            try:
                asyncio.run(backend.generate(f"thread call {i}"))
            except BaseException as exc:
                failures.append(exc)
            slowest.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)  # nothing hung
    assert failures == []
    assert len(slowest) == 40
    assert server.request_count(provider) == 40  # type: ignore[arg-type]


def test_solve_sync_and_engine_invoke_twice(server: LoopbackServer) -> None:
    settings = loopback_settings(server, max_retries=0)
    agent = asyncio.run(
        AgentFactory(settings).create_agent(
            "reasoning",
            custom_config={"provider": "openrouter", "task": "game24", "n_select_sample": 1},
        )
    )
    assert agent.solve_sync("4 9 10 13").solved
    assert agent.solve_sync("1 1 4 6").solved
    assert agent.engine.invoke("4 9 10 13").solved
    assert agent.engine.invoke({"problem": "1 1 4 6"}).solved


@pytest.mark.parametrize("provider", PROTOCOLS)
@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
def test_a_dripping_reply_ends_at_the_deadline(
    server: LoopbackServer, provider: str, mode: str
) -> None:
    """One byte every 0.1 s: each read succeeds, yet the call ends within 1.5 s."""
    server.script(provider, [Fault.drip(0.1)] * 3)  # type: ignore[arg-type]
    chain = build_chat_model(loopback_settings(server, request_timeout=1), [provider])

    async def astream() -> None:
        async for _ in chain.astream("drip please"):
            pass

    calls = {
        "invoke": lambda: chain.invoke("drip please"),
        "ainvoke": lambda: asyncio.run(chain.ainvoke("drip please")),
        "stream": lambda: list(chain.stream("drip please")),
        "astream": lambda: asyncio.run(astream()),
    }
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailableError, match=r"timed out|deadline"):
        calls[mode]()
    assert time.perf_counter() - started < 1.5


@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_a_slow_error_then_a_hang_costs_one_deadline(
    server: LoopbackServer, provider: str
) -> None:
    """A 503 after 1.8 s, then a hang: the retry gets what is left of the 2 s, not 2 s more."""
    server.script(provider, [Fault.status(503, delay=1.8), Fault.hang(8)])  # type: ignore[arg-type]
    backend = backend_for(server, provider, request_timeout=2, retry_initial_wait=0.05)
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailableError):
        await backend.generate("slow then hung")
    assert time.perf_counter() - started < 2.4


@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_a_stream_gets_the_deadline_for_each_gap_not_for_the_whole_reply(
    provider: str,
) -> None:
    """Ten chunks 0.3 s apart (3 s in all) with request_timeout=1 stream to the end."""
    with LoopbackServer(chunk_delay=0.3) as slow:
        backend = backend_for(slow, provider, request_timeout=1, max_retries=0)
        started = time.perf_counter()
        text = await collect(backend, "one two three four five six seven eight nine ten")
        assert time.perf_counter() - started > 1.5
        assert text.endswith("ten")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_aclose_returns_descriptors_to_the_baseline(
    server: LoopbackServer, provider: str
) -> None:
    backend = backend_for(server, provider)
    await backend.generate("warm up")  # imports, lazily created objects
    await backend.aclose()
    gc.collect()
    baseline = open_descriptors()
    await asyncio.gather(*(backend.generate(f"burst {i}") for i in range(200)))
    assert open_descriptors() > baseline  # the pool really holds connections
    await backend.aclose()
    await asyncio.sleep(0.05)
    assert open_descriptors() <= baseline
    assert await backend.generate("after close")  # still usable


@pytest.mark.parametrize("provider", PROTOCOLS)
def test_chain_and_backend_are_context_managers(server: LoopbackServer, provider: str) -> None:
    with build_chat_model(loopback_settings(server), [provider]) as chain:
        assert chain.invoke("sync").content

    async def use() -> str:
        async with backend_for(server, provider) as backend:
            return await backend.generate("async")

    assert asyncio.run(use())
