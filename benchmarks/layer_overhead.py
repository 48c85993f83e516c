"""Cost of each layer of the stack per call, over a scripted chat model (no network).

Isolates what our wrappers add on top of LangChain's own chat-model machinery:
the provider policy (retries and deadline), its breaker (one step in the
in-process state store before the call and one after), the fallback chain,
``LangChainBackend`` and its ``UsageTracker``. Microseconds per call, median of
5 rounds x 1,000 calls.

    python -m benchmarks.layer_overhead
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from langchain_core.messages import HumanMessage

from benchmarks._bench import machine, median, table
from pygent_lc import LangChainBackend, Settings
from pygent_lc.build import with_provider_policy
from pygent_lc.chain import ProviderChain
from pygent_lc.limits.usage import UsageTracker
from pygent_lc.testing import ScriptedChatModel


async def main() -> None:
    settings = Settings()
    model = ScriptedChatModel()
    retried = with_provider_policy(model, settings, breaker=False)
    guarded = with_provider_policy(model, settings)
    chain = ProviderChain(providers=[guarded, with_provider_policy(ScriptedChatModel(), settings)])
    tracker = UsageTracker()
    messages = [HumanMessage("hi")]
    on_breaker, on_chain = LangChainBackend(guarded), LangChainBackend(chain)
    layers: dict[str, Callable[[], Awaitable[object]]] = {
        "chat model alone": lambda: model.ainvoke(messages),
        "chat model + UsageTracker callback": lambda: model.ainvoke(
            messages, {"callbacks": [tracker]}
        ),
        "+ provider policy (retries, deadline)": lambda: retried.ainvoke(messages),
        "+ breaker (state store steps)": lambda: guarded.ainvoke(messages),
        "+ fallback chain": lambda: chain.ainvoke(messages),
        "LangChainBackend.generate over the policy": lambda: on_breaker.generate("hi"),
        "LangChainBackend.generate over chain": lambda: on_chain.generate("hi"),
    }
    for call in layers.values():
        for _ in range(200):
            await call()
    results: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(5):
        for name, call in layers.items():
            started = time.perf_counter()
            for _ in range(1000):
                await call()
            results[name].append((time.perf_counter() - started) / 1000 * 1e6)
    print(f"machine: {machine()}\n")
    print(table(["layer", "us/call"], [[n, median(v)] for n, v in results.items()]))


if __name__ == "__main__":
    asyncio.run(main())
