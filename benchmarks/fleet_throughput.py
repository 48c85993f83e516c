"""Throughput of a fleet of worker processes, with and without the shared state store.

Four spawned processes each call ``LangChainBackend.generate`` over
``build_chat_model(settings, ["openrouter"])``, one call after another, against a
zero-latency loopback server running in a process of its own. Each process holds two
backends built from the same settings, except that one has ``state_url`` set (a local
``redis-server`` this benchmark starts, through ``tests/redis_server.py``), as
``PYGENT_STATE_URL`` would set it: then the breaker, rate limit, budget and usage of
every call live in Redis (``begin_call`` and ``end_call``: one round trip each),
otherwise in the process's memory. Both carry the same limits (a rate limit and a
budget no run reaches, the default breaker), so the two differ only in where the
state is kept.

Per round, for each variant (in alternating order, so drift in the machine's load hits
both alike): all processes start together and make ``--calls`` calls each; calls/s is
the fleet's calls over the time from the first start to the last finish. Then, in this
process alone, ``--sequential`` calls one after another give the per-call latency of
each variant; the added latency is the median over rounds of the paired difference.

    python -m benchmarks.fleet_throughput [--rounds 6] [--calls 100] [--sequential 100]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from benchmarks._bench import KEY, MODEL, PROMPT, machine, median, server_process, table
from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.limits.redis_store import RedisStore
from tests.redis_server import RedisServer

PROCESSES = 4
WARMUP = 20
VARIANTS = ("memory", "redis")  # where the state lives: this process, or PYGENT_STATE_URL
SYNC_TIMEOUT_S = 120.0

Command = tuple[str, int] | None  # (variant, calls), or None: stop
Result = tuple[int, str, float, float]  # (worker, variant, start, end) on the monotonic clock


def settings(base_url: str, state_url: str | None, budget: bool) -> Settings:
    """The same limits for both variants; only where their state lives differs."""
    values: dict[str, Any] = {
        "openrouter_api_key": KEY,
        "openrouter_base_url": f"{base_url}/api/v1",
        "openrouter_model": MODEL,
        "state_url": state_url,
        "rate_limits": "openrouter=1000000/min",
    }
    if budget:
        values["max_cost_usd"] = 1e6
    return Settings(**values)


def backends(base_url: str, redis_url: str, budget: bool) -> dict[str, LangChainBackend]:
    state_urls = {"memory": None, "redis": redis_url}
    return {
        variant: LangChainBackend(
            build_chat_model(settings(base_url, state_urls[variant], budget), ["openrouter"])
        )
        for variant in VARIANTS
    }


async def calls(backend: LangChainBackend, n: int) -> None:
    for _ in range(n):
        answer = await backend.generate(PROMPT)
        assert answer == f"echo: {PROMPT}", answer


def worker(
    index: int,
    base_url: str,
    redis_url: str,
    budget: bool,
    commands: Queue[Command],
    results: Queue[Result],
    barrier: Barrier,
) -> None:
    """Runs the commands it gets, each started together with the others (the barrier)."""
    for name in list(os.environ):
        if name.startswith(("OPENROUTER_", "OLLAMA_", "PYGENT_")):
            del os.environ[name]
    with asyncio.Runner() as runner:  # one event loop: the clients' pools live on it
        mine = backends(base_url, redis_url, budget)
        for backend in mine.values():
            runner.run(calls(backend, WARMUP))
        while (command := commands.get()) is not None:
            variant, n = command
            barrier.wait(SYNC_TIMEOUT_S)
            started = time.monotonic()
            runner.run(calls(mine[variant], n))
            results.put((index, variant, started, time.monotonic()))
        for backend in mine.values():
            runner.run(backend.aclose())


async def sequential_ms(backend: LangChainBackend, n: int) -> float:
    started = time.perf_counter()
    await calls(backend, n)
    return (time.perf_counter() - started) / n * 1000


def run(args: argparse.Namespace) -> None:
    context = multiprocessing.get_context("spawn")
    throughput: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    latency: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with RedisServer() as redis, server_process() as base_url:
        barrier = context.Barrier(PROCESSES + 1)
        results: Queue[Result] = context.Queue()
        commands: list[Queue[Command]] = [context.Queue() for _ in range(PROCESSES)]
        processes: list[SpawnProcess] = [
            context.Process(
                target=worker,
                args=(i, base_url, redis.url, args.budget, commands[i], results, barrier),
            )
            for i in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        with asyncio.Runner() as runner:
            here = backends(base_url, redis.url, args.budget)
            for backend in here.values():
                runner.run(calls(backend, WARMUP))
            for round_number in range(args.rounds):
                order = VARIANTS if round_number % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    for queue in commands:
                        queue.put((variant, args.calls))
                    barrier.wait(SYNC_TIMEOUT_S)
                    spans = [results.get(timeout=SYNC_TIMEOUT_S) for _ in processes]
                    assert all(span[1] == variant for span in spans)
                    elapsed = max(span[3] for span in spans) - min(span[2] for span in spans)
                    throughput[variant].append(PROCESSES * args.calls / elapsed)
                for variant in order:
                    latency[variant].append(
                        runner.run(sequential_ms(here[variant], args.sequential))
                    )
            for backend in here.values():
                runner.run(backend.aclose())
        for queue in commands:
            queue.put(None)
        for process in processes:
            process.join(timeout=30)
        store = RedisStore(redis.url)
        recorded = sum(row.usage.calls for row in store.usage_rows())
        store.close()
    expected = (PROCESSES + 1) * WARMUP + args.rounds * (PROCESSES * args.calls + args.sequential)
    assert recorded == expected, (recorded, expected)  # every redis call went through Redis

    memory_rate, redis_rate = median(throughput["memory"]), median(throughput["redis"])
    added = median([r - m for r, m in zip(latency["redis"], latency["memory"], strict=True)])
    rows: list[list[object]] = [
        ["memory (no state_url)", memory_rate, 1.0, median(latency["memory"]), "-"],
        [
            "redis (PYGENT_STATE_URL)",
            redis_rate,
            redis_rate / memory_rate,
            median(latency["redis"]),
            added,
        ],
    ]
    print(f"machine: {machine()}")
    limits = "rate limit, budget, breaker" if args.budget else "rate limit, breaker"
    print(
        f"{PROCESSES} processes x {args.calls} calls per round, {args.rounds} interleaved "
        f"rounds, medians; sequential: {args.sequential} calls in one process per round; "
        f"limits: {limits}; {recorded} calls recorded in Redis\n"
    )
    print(
        table(
            [
                "state",
                f"{PROCESSES} processes: calls/s",
                "x memory",
                "sequential ms/call",
                "added ms/call",
            ],
            rows,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds, variants interleaved")
    parser.add_argument("--calls", type=int, default=100, help="calls per process per round")
    parser.add_argument("--sequential", type=int, default=100, help="sequential calls per round")
    parser.add_argument(
        "--no-budget",
        dest="budget",
        action="store_false",
        help="leave out the budget (max_cost_usd) from both variants",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
