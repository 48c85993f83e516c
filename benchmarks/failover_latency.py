"""Failover latency: time to the fallback's answer when the primary is refused, 503 or hung.

The primary speaks OpenRouter's protocol, the fallback Ollama's, both on
loopback servers (the fallback answers at once). Side by side in one run:

- direct: the fallback alone (ours, and stock ``ChatOllama``);
- ours, breaker off: ``build_chat_model(["openrouter", "ollama"])``, default
  retry policy (2 retries, 0.5 s initial backoff), ``breaker_failures=0``;
- ours, default settings, first calls: a fresh chain, circuit still closed;
- ours, default settings, breaker open: after 3 failed calls the primary is skipped;
- plain LangChain: ``ChatOpenAI(...).with_fallbacks([ChatOllama(...)])`` with
  default settings (SDK retries on, 600 s timeout); cut off after ``--cutoff`` s.

The hung primary never answers; our request timeout is ``--timeout`` (the
"configured timeout"); figures are medians.

    python -m benchmarks.failover_latency [--timeout 1.0] [--cutoff 20]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI

from benchmarks._bench import KEY, MODEL, machine, median, table
from pygent_lc import LangChainBackend, Settings, build_chat_model
from tests.loopback_server import Fault, LoopbackServer

PROMPT = "hello there"
Call = Callable[[], Awaitable[object]]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def timed(call: Call, cutoff: float) -> float:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(call(), cutoff)
    except TimeoutError:
        return float("inf")
    return time.perf_counter() - started


async def series(call: Call, n: int, cutoff: float) -> float:
    return median([await timed(call, cutoff) for _ in range(n)])


def ms(seconds: float) -> str:
    return "> cutoff" if seconds == float("inf") else f"{seconds * 1000:.1f}"


async def scenario(
    name: str,
    primary_url: str,
    fallback: LoopbackServer,
    args: argparse.Namespace,
    repeats: int,
) -> list[str]:
    def settings(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "openrouter_api_key": KEY,
            "openrouter_base_url": primary_url,
            "openrouter_model": MODEL,
            "ollama_base_url": fallback.ollama_base_url,
            "ollama_model": "llama3.2",
            "request_timeout": args.timeout,
        }
        values.update(overrides)
        return Settings(**values)

    def chain(**overrides: Any) -> LangChainBackend:
        return LangChainBackend(build_chat_model(settings(**overrides), ["openrouter", "ollama"]))

    direct = LangChainBackend(build_chat_model(settings(), ["ollama"]))
    stock_ollama = ChatOllama(model="llama3.2", base_url=fallback.ollama_base_url)
    messages = [HumanMessage(content=PROMPT)]
    for _ in range(5):  # warm-up
        await direct.generate(PROMPT)
        await stock_ollama.ainvoke(messages)
    direct_s = await series(lambda: direct.generate(PROMPT), 30, args.cutoff)
    stock_direct_s = await series(lambda: stock_ollama.ainvoke(messages), 30, args.cutoff)

    no_breaker = chain(breaker_failures=0)
    await timed(lambda: no_breaker.generate(PROMPT), args.cutoff)  # warm-up
    no_breaker_s = await series(lambda: no_breaker.generate(PROMPT), repeats, args.cutoff)

    firsts: list[float] = []
    default = chain()
    for _ in range(3):  # the calls that open the circuit
        firsts.append(await timed(lambda: default.generate(PROMPT), args.cutoff))
    open_s = await series(lambda: default.generate(PROMPT), 30, args.cutoff)

    plain = ChatOpenAI(model=MODEL, api_key=KEY, base_url=primary_url).with_fallbacks(  # type: ignore[arg-type]
        [ChatOllama(model="llama3.2", base_url=fallback.ollama_base_url)]
    )
    plain_s = await series(lambda: plain.ainvoke(messages), 1 if repeats < 3 else 3, args.cutoff)
    return [
        name,
        ms(direct_s),
        ms(stock_direct_s),
        ms(no_breaker_s),
        ms(median(firsts)),
        ms(open_s),
        ms(open_s - direct_s),
        ms(plain_s),
    ]


async def main(args: argparse.Namespace) -> None:
    rows = []
    with (
        LoopbackServer(ollama_models=["llama3.2:latest"]) as fallback,
        LoopbackServer(max_hang=args.cutoff + 5) as primary,
    ):
        rows.append(
            await scenario(
                "refused", f"http://127.0.0.1:{closed_port()}/api/v1", fallback, args, repeats=30
            )
        )
        primary.script("openrouter", [Fault.status(503)] * 1000)
        rows.append(await scenario("503", primary.openrouter_base_url, fallback, args, repeats=3))
        primary.reset()
        primary.script("openrouter", [Fault.hang(args.cutoff + 5)] * 1000)
        rows.append(await scenario("hung", primary.openrouter_base_url, fallback, args, repeats=2))
    print(f"machine: {machine()}")
    print(
        f"request_timeout={args.timeout}s for ours; cutoff {args.cutoff}s; "
        "times in ms to the fallback's answer (medians)\n"
    )
    print(
        table(
            [
                "primary",
                "direct (ours)",
                "direct (stock ChatOllama)",
                "ours, breaker off",
                "ours, default, first 3 calls",
                "ours, breaker open",
                "open - direct",
                "plain ChatOpenAI.with_fallbacks",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1.0, help="our request_timeout (s)")
    parser.add_argument("--cutoff", type=float, default=20.0, help="give up on a call after (s)")
    asyncio.run(main(parser.parse_args()))
