"""Shared helpers of the benchmark scripts: a loopback server process, timing, tables.

The zero-latency loopback server (``tests/loopback_server``) runs in its own
process for throughput figures, so the client under test does not share its
interpreter (and GIL) with the server's threads.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

KEY = "sk-or-v1-benchmark"
MODEL = "openai/gpt-4o-mini"
PROMPT = "hello there"  # the loopback server answers "echo: hello there"

Call = Callable[[], Awaitable[str]]


async def sequential(call: Call, n: int) -> float:
    """Seconds per call of ``n`` calls made one after another."""
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - started) / n


async def concurrent(call: Call, n: int) -> float:
    """Calls per second with ``n`` calls in flight at once; every answer is checked."""
    started = time.perf_counter()
    results = await asyncio.gather(*(call() for _ in range(n)))
    elapsed = time.perf_counter() - started
    assert all(r == f"echo: {PROMPT}" for r in results), results[:3]
    return n / elapsed

_SERVER_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from loopback_server import LoopbackServer
with LoopbackServer(ollama_models=["llama3.2:latest"]) as server:
    print(server.port, flush=True)
    sys.stdin.read()
"""


@contextmanager
def server_process() -> Iterator[str]:
    """A zero-latency loopback server in a child process; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT.format(tests=str(TESTS))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"load average at the end {load}"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (pastes straight into BENCHMARKS.md)."""
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
