"""Soak: many concurrent generate calls, 10% random faults on the primary, a fallback behind.

Every call must end in a result or a typed error (both counted; nothing lost,
nothing hung), and afterwards no socket, task or thread may be left behind.

Sizes: the default run is reduced (``SOAK_CALLS`` x ``SOAK_IN_FLIGHT`` below)
so the suite stays fast; the full size (2,000 calls, 200 in flight)
runs with ``PYGENT_SOAK=full pytest -m soak tests/system/test_soak.py`` (the
variable is read at import, before the fixtures clear ``PYGENT_*``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.errors import PygentError
from tests.loopback_server import Fault, LoopbackServer

FULL = os.environ.get("PYGENT_SOAK", "").lower() == "full"
SOAK_CALLS, SOAK_IN_FLIGHT = 400, 100
FULL_CALLS, FULL_IN_FLIGHT = 2000, 200
CALL_DEADLINE_S = 20.0  # a call still running after this counts as hung

pytestmark = pytest.mark.live_local


def primary_faults(rng: random.Random, n: int, rate: float = 0.10) -> list[Fault]:
    """``n`` scripted responses, ``rate`` of them a random fault (retryable or not)."""
    kinds = [
        Fault.status(500),
        Fault.status(502),
        Fault.status(503),
        Fault.status(503, retry_after=0.01),
        Fault.status(429),
        Fault.status(408),
        Fault.status(401),
        Fault.status(400),
        Fault.error_in_200(),
        Fault.malformed_json(),
        Fault.reset(),
        Fault.truncated_stream(after_chunks=0),
        Fault.hang(1.0),
    ]
    return [rng.choice(kinds) if rng.random() < rate else Fault.ok() for _ in range(n)]


@dataclass
class Tally:
    results: int = 0
    typed_errors: Counter[str] = field(default_factory=Counter)
    untyped: list[BaseException] = field(default_factory=list)
    hung: int = 0
    wrong_text: int = 0

    @property
    def total(self) -> int:
        return self.results + sum(self.typed_errors.values()) + len(self.untyped) + self.hung


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_targets() -> list[str]:
    """What the open descriptors point at (``socket:[...]``, files), for the failure message."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    return sorted(targets)


async def close_clients(runnable: Any) -> None:
    """Close the HTTP clients of every chat model inside ``runnable``.

    The backends keep keep-alive pools open for reuse (that is the point); a
    leak is what stays open after they are closed.
    """
    for step in _walk(runnable):
        root = getattr(step, "root_async_client", None)
        if root is not None:
            await root.close()
        sync_root = getattr(step, "root_client", None)
        if sync_root is not None:
            sync_root.close()
        for name in ("_async_client", "_client"):
            client = getattr(step, name, None)
            inner = getattr(client, "_client", None)
            if inner is not None and hasattr(inner, "aclose"):
                await inner.aclose()
            elif inner is not None and hasattr(inner, "close"):
                inner.close()


def _walk(runnable: Any) -> list[Any]:
    found = [runnable]
    for name in ("bound", "runnable"):
        child = getattr(runnable, name, None)
        if child is not None:
            found += _walk(child)
    for child in getattr(runnable, "fallbacks", None) or []:
        found += _walk(child)
    return found


async def soak(calls: int, in_flight: int) -> tuple[Tally, float]:
    rng = random.Random(20240905)
    tally = Tally()
    with LoopbackServer(ollama_models=["llama3.2:latest"], max_hang=2) as server:
        server.script("openrouter", primary_faults(rng, int(calls * 1.6)))
        # A flaky fallback too, so that some calls end in a typed error.
        server.script("ollama", primary_faults(rng, calls, rate=0.3))
        settings = Settings(
            openrouter_api_key="sk-or-v1-soak",
            openrouter_base_url=server.openrouter_base_url,
            openrouter_model="openai/gpt-4o-mini",
            ollama_base_url=server.ollama_base_url,
            ollama_model="llama3.2",
            # A deadline for a provider's whole part of a call: it must cover the
            # queueing of 100 calls in flight on two cores, not just one read.
            request_timeout=5.0,
            max_retries=2,
            retry_initial_wait=0.01,
            retry_max_wait=0.1,
        )
        chain = build_chat_model(settings, ["openrouter", "ollama"])
        backend = LangChainBackend(chain)
        queue = iter(range(calls))

        async def worker() -> None:
            for i in queue:
                prompt = f"call {i}"
                try:
                    text = await asyncio.wait_for(backend.generate(prompt), CALL_DEADLINE_S)
                except TimeoutError:
                    tally.hung += 1
                except PygentError as exc:
                    tally.typed_errors[type(exc).__name__] += 1
                except Exception as exc:
                    tally.untyped.append(exc)
                else:
                    tally.results += 1
                    tally.wrong_text += text != f"echo: {prompt}"

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
        await close_clients(chain)
        assert server.errors == []
    return tally, elapsed


async def run_and_check(calls: int, in_flight: int) -> None:
    gc.collect()
    fds_before = open_fds()
    threads_before = {t.ident for t in threading.enumerate()}
    tasks_before = len(asyncio.all_tasks())

    tally, elapsed = await soak(calls, in_flight)

    await asyncio.sleep(0.05)  # let transports finish closing
    gc.collect()
    print(
        f"\nsoak: {calls} calls, {in_flight} in flight, {elapsed:.1f}s "
        f"({calls / elapsed:.0f} calls/s): {tally.results} results, "
        f"typed errors {dict(tally.typed_errors)}, untyped {len(tally.untyped)}, "
        f"hung {tally.hung}"
    )
    assert tally.untyped == []
    assert tally.hung == 0
    assert tally.total == calls
    assert tally.wrong_text == 0
    assert tally.results >= calls * 0.97

    leftover_tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert len(leftover_tasks) == tasks_before - 1, leftover_tasks
    new_threads = [
        t
        for t in threading.enumerate()
        if t.ident not in threads_before and not t.name.startswith("asyncio_")
    ]
    assert new_threads == []  # the loop's default executor may keep its idle workers
    executor_threads = [t for t in threading.enumerate() if t.name.startswith("asyncio_")]
    assert len(executor_threads) <= min(32, (os.cpu_count() or 1) + 4)
    assert open_fds() <= fds_before, fd_targets()


@pytest.mark.timeout(60)
async def test_soak_reduced() -> None:
    await run_and_check(SOAK_CALLS, SOAK_IN_FLIGHT)


@pytest.mark.soak
@pytest.mark.timeout(180)
@pytest.mark.skipif(not FULL, reason="full-size soak: PYGENT_SOAK=full pytest -m soak")
async def test_soak_full() -> None:
    await run_and_check(FULL_CALLS, FULL_IN_FLIGHT)
