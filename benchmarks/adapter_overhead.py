"""Adapter overhead and throughput against a zero-latency loopback server.

Per call, sequentially and with 300 calls in flight, side by side in one run:

- raw ``httpx``: POST the same JSON, parse the reply (the floor);
- bare ``ChatOpenAI.ainvoke`` (stock langchain-openai, SDK retries off);
- ``ChatOpenAI(...).with_fallbacks([ChatOpenAI(...)])`` (primary answers);
- ``build_chat_model(["openrouter"]).ainvoke``: our provider behind retry + breaker;
- ``LangChainBackend.generate`` over the same (adds validation and the UsageTracker);
- ``LangChainBackend.generate`` over ``["openrouter", "ollama"]`` (primary answers).

Variants run interleaved, round by round, so drift hits them alike; the
figure is the median over rounds. Ratios are against bare ``ChatOpenAI``.

Streams, in a phase of their own: time to the first chunk with text, and to
the end of the stream, of ``astream`` on bare ``ChatOpenAI``, on
``build_chat_model(["openrouter"])`` and of ``LangChainBackend.stream``;
ratios against bare ``astream``.

Memory: Python's own allocations (``tracemalloc``) per call in flight, on
fresh clients: the peak while ``--concurrency`` calls are in flight, less
what was allocated before them, divided by the number of calls (connections
opened for the burst included, as a caller pays for them; the cycle
collector paused); median over rounds. Each counted burst follows an
uncounted one of the same variant, so every pool starts it with the same
idle connections (a pool drops those idle for 5 s, its ``keepalive_expiry``,
and a burst that must open them again costs ~4 KiB more per call).
Measured in a phase of its own, since tracing slows every allocation.

    python -m benchmarks.adapter_overhead [--rounds 20] [--calls 50] [--concurrency 300] [--streams]

Wall time on a shared machine swings by tens of percent, so ``--instructions N``
counts CPU instructions per call instead (deterministic within 0.5%): each
variant runs in its own process under ``valgrind --tool=callgrind``, warms up
uncounted, then makes ``N`` sequential calls inside ``functools.reduce``, the
one C function callgrind is told to count (``--toggle-collect``), so imports,
start-up and the server (its own process, not traced) stay out.

    python -m benchmarks.adapter_overhead --instructions 100 [--only build_chat_model ...]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from benchmarks._bench import (
    KEY,
    MODEL,
    PROMPT,
    ROOT,
    Call,
    concurrent,
    machine,
    median,
    sequential,
    server_process,
    table,
)
from pygent_lc import LangChainBackend, Settings, build_chat_model

Stream = Callable[[], AsyncIterator[str]]
BARE_STREAM = "bare ChatOpenAI.astream"


def variants(base_url: str) -> tuple[dict[str, Call], list[httpx.AsyncClient]]:
    calls, clients, _ = all_variants(base_url)
    return calls, clients


def all_variants(
    base_url: str,
) -> tuple[dict[str, Call], list[httpx.AsyncClient], dict[str, Stream]]:
    """The calls compared, the clients to close, and the streams compared."""
    openrouter_url = f"{base_url}/api/v1"
    raw = httpx.AsyncClient(
        base_url=openrouter_url,
        headers={"Authorization": f"Bearer {KEY}"},
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        timeout=60,
    )
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}

    async def raw_httpx() -> str:
        response = await raw.post("/chat/completions", json=body)
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    def stock() -> ChatOpenAI:
        return ChatOpenAI(model=MODEL, api_key=KEY, base_url=openrouter_url, max_retries=0)  # type: ignore[arg-type]

    bare = stock()
    fallbacks = stock().with_fallbacks([stock()])
    settings = Settings(
        openrouter_api_key=KEY,
        openrouter_base_url=openrouter_url,
        openrouter_model=MODEL,
        ollama_base_url=base_url,
        ollama_model="llama3.2",
    )
    # Each variant its own chain, so its own connection pool: a pool's history
    # (idle connections kept, or expired) moves what a burst costs.
    ours = build_chat_model(settings, ["openrouter"])
    backend = LangChainBackend(build_chat_model(settings, ["openrouter"]))
    chain_backend = LangChainBackend(build_chat_model(settings, ["openrouter", "ollama"]))
    messages = [HumanMessage(content=PROMPT)]

    async def text(awaitable: Awaitable[object]) -> str:
        return str(getattr(await awaitable, "content", ""))

    async def texts(chunks: AsyncIterator[Any]) -> AsyncIterator[str]:
        async for chunk in chunks:
            yield chunk if isinstance(chunk, str) else str(chunk.content)

    streams: dict[str, Stream] = {
        BARE_STREAM: lambda: texts(bare.astream(messages)),
        "build_chat_model(openrouter).astream": lambda: texts(ours.astream(messages)),
        "LangChainBackend.stream (openrouter)": lambda: texts(backend.stream(PROMPT)),
    }
    return (
        {
            "raw httpx": raw_httpx,
            "bare ChatOpenAI.ainvoke": lambda: text(bare.ainvoke(messages)),
            "ChatOpenAI.with_fallbacks": lambda: text(fallbacks.ainvoke(messages)),
            "build_chat_model(openrouter).ainvoke": lambda: text(ours.ainvoke(messages)),
            "LangChainBackend.generate (openrouter)": lambda: backend.generate(PROMPT),
            "LangChainBackend.generate (openrouter->ollama)": lambda: chain_backend.generate(
                PROMPT
            ),
        },
        [raw],
        streams,
    )


async def timed_stream(stream: Stream) -> tuple[float, float]:
    """Seconds to the first chunk with text, and to the end of ``stream``."""
    started = time.perf_counter()
    first, text = 0.0, ""
    async for part in stream():
        if part and not first:
            first = time.perf_counter() - started
        text += part
    assert text == f"echo: {PROMPT}", text
    return first, time.perf_counter() - started


async def streams_phase(rounds: int, calls: int) -> None:
    """Time to first chunk and whole stream, per stream, ratios to bare ``astream``."""
    with server_process() as base_url:
        _, clients, streams = all_variants(base_url)
        for stream in streams.values():  # warm-up
            for _ in range(20):
                await timed_stream(stream)
        firsts: dict[str, list[float]] = {name: [] for name in streams}
        wholes: dict[str, list[float]] = {name: [] for name in streams}
        for _ in range(rounds):
            for name, stream in streams.items():
                times = [await timed_stream(stream) for _ in range(calls)]
                firsts[name].append(sum(t[0] for t in times) / calls)
                wholes[name].append(sum(t[1] for t in times) / calls)
        for client in clients:
            await client.aclose()
    first_bare, whole_bare = median(firsts[BARE_STREAM]), median(wholes[BARE_STREAM])
    print(f"\nstreams: {rounds} rounds x {calls} sequential streams, medians; load {load()}\n")
    print(
        table(
            ["stream", "first chunk ms", "x bare astream", "whole stream ms", "x bare astream"],
            [
                [
                    name,
                    median(firsts[name]) * 1000,
                    median(firsts[name]) / first_bare,
                    median(wholes[name]) * 1000,
                    median(wholes[name]) / whole_bare,
                ]
                for name in firsts
            ],
        )
    )


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


async def main(rounds: int, calls: int, concurrency: int) -> None:
    # Two phases, each on fresh clients: after a burst of concurrent calls a
    # connection pool holds up to 100 idle keep-alive connections, and every
    # later request pays for scanning them (measured: +0.4 ms per sequential
    # call for raw httpx, +1.7 ms for the openai SDK), so sequential figures
    # taken after a burst depend on pool history rather than on the adapter.
    seq: dict[str, list[float]] = {}
    conc: dict[str, list[float]] = {}
    memory: dict[str, list[float]] = {}
    load_before = load()
    with server_process() as base_url:
        calls_by_name, clients = variants(base_url)
        for call in calls_by_name.values():  # warm-up: imports, first-call setup
            for _ in range(20):
                assert await call() == f"echo: {PROMPT}"
        seq = {name: [] for name in calls_by_name}
        for _ in range(rounds):
            for name, call in calls_by_name.items():
                seq[name].append(await sequential(call, calls))
        for client in clients:
            await client.aclose()
    with server_process() as base_url:
        calls_by_name, clients = variants(base_url)
        for call in calls_by_name.values():
            await concurrent(call, concurrency)
        conc = {name: [] for name in calls_by_name}
        for _ in range(max(3, rounds // 4)):
            for name, call in calls_by_name.items():
                conc[name].append(await concurrent(call, concurrency))
        for client in clients:
            await client.aclose()
    with server_process() as base_url:
        calls_by_name, clients = variants(base_url)
        for call in calls_by_name.values():
            await concurrent(call, concurrency)
        memory = {name: [] for name in calls_by_name}
        for _ in range(max(3, rounds // 4)):
            for name, call in calls_by_name.items():
                await concurrent(call, concurrency)  # the same idle connections for each
                memory[name].append(await in_flight_memory(call, concurrency))
        for client in clients:
            await client.aclose()

    bare = "bare ChatOpenAI.ainvoke"
    bare_seq, bare_conc, bare_memory = median(seq[bare]), median(conc[bare]), median(memory[bare])
    rows = [
        [
            name,
            median(seq[name]) * 1000,
            median(seq[name]) / bare_seq,
            median(conc[name]),
            median(conc[name]) / bare_conc,
            median(memory[name]) / 1024,
            median(memory[name]) / bare_memory,
        ]
        for name in calls_by_name
    ]
    print(f"machine: {machine()}; load average at the start {load_before}")
    print(
        f"{rounds} rounds x {calls} sequential calls; {len(conc['raw httpx'])} rounds x "
        f"{concurrency} concurrent, and as many traced by tracemalloc; medians over rounds; "
        "ratios vs bare ChatOpenAI\n"
    )
    print(
        table(
            [
                "variant",
                "sequential ms/call",
                "x bare",
                f"{concurrency} in flight: calls/s",
                "x bare",
                "KiB per call in flight",
                "x bare",
            ],
            rows,
        )
    )


async def in_flight_memory(call: Call, n: int) -> float:
    """Bytes Python allocates per call with ``n`` calls in flight (tracemalloc's peak
    during them, less what was allocated before; the cycle collector paused, so
    cyclic garbage counts as the call made it)."""
    gc.collect()
    gc.disable()  # a collection in the middle of a burst would move the peak by chance
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        results = await asyncio.gather(*(call() for _ in range(n)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert all(r == f"echo: {PROMPT}" for r in results), results[:3]
    return (peak - before) / n


def counted_calls(variant: str, calls: int) -> None:
    """Warm ``variant`` up, then make ``calls`` calls inside ``functools.reduce``
    (what callgrind counts, see the module's docstring). Runs under valgrind."""
    loop = asyncio.new_event_loop()
    with server_process() as base_url:
        calls_by_name, clients, streams = all_variants(base_url)
        call = calls_by_name.get(variant) or joined(streams[variant])

        async def many(n: int) -> None:
            for _ in range(n):
                assert await call() == f"echo: {PROMPT}"

        loop.run_until_complete(many(20))
        functools.reduce(lambda _, n: loop.run_until_complete(many(n)), [calls], None)
        for client in clients:
            loop.run_until_complete(client.aclose())
    loop.close()


def joined(stream: Stream) -> Call:
    """A whole stream as one call: its text."""

    async def text() -> str:
        return "".join([part async for part in stream()])

    return text


def instructions(calls: int, only: list[str]) -> None:
    """Instructions per call of every variant (those whose name contains one of
    ``only``, when given, and bare ChatOpenAI), each counted in its own valgrind run."""
    calls_by_name, _, streams = all_variants("http://127.0.0.1:1")
    bares = ("bare ChatOpenAI.ainvoke", BARE_STREAM)
    names = [n for n in [*calls_by_name, *streams] if not only or any(p in n for p in only)]
    kinds = {n in streams for n in names}  # each kind chosen is compared with its bare one
    names = [bare for bare in bares if (bare == BARE_STREAM) in kinds and bare not in names] + names
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for index, name in enumerate(names):
            out = Path(folder) / f"callgrind.{index}"
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    "--collect-atstart=no",
                    "--toggle-collect=functools_reduce",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    "-m",
                    "benchmarks.adapter_overhead",
                    "--counted-variant",
                    name,
                    "--instructions",
                    str(calls),
                ],
                cwd=ROOT,
                check=True,
                stderr=subprocess.DEVNULL,
            )
            totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
            assert totals is not None, f"no totals in {out}"
            counts[name] = int(totals.group(1)) / calls
    print(f"machine: {machine()}")
    print(f"callgrind, {calls} sequential calls per variant after 20 uncounted")
    print("(streams: whole streams, against bare astream)\n")
    rows = [
        [name, f"{count:,.0f}", count / counts[bares[name in streams]]]
        for name, count in counts.items()
    ]
    print(table(["variant", "instructions/call", "x bare"], rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=300)
    parser.add_argument(
        "--instructions", type=int, metavar="N", help="count instructions of N calls instead"
    )
    parser.add_argument(
        "--only", action="append", default=[], help="with --instructions: variants named so"
    )
    parser.add_argument("--streams", action="store_true", help="only the streams' phase")
    parser.add_argument("--counted-variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.counted_variant:
        counted_calls(args.counted_variant, args.instructions)
    elif args.instructions:
        instructions(args.instructions, args.only)
    else:
        if not args.streams:
            asyncio.run(main(args.rounds, args.calls, args.concurrency))
        asyncio.run(streams_phase(args.rounds, args.calls))
