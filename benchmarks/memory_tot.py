"""Peak RSS of Tree-of-Thought searches totalling at least 1,000 nodes, with a fake backend.

One Game of 24 search saturates at ~400 distinct states (duplicates are
merged), so the searches of several puzzles run concurrently and their
results (whole trees included) are all kept alive until RSS is read: at
least ``--nodes`` nodes are in memory at the peak. The backend is the
offline ``ScriptedGame24Backend`` (no network, no model).

    python -m benchmarks.memory_tot [--nodes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource

from benchmarks._bench import machine, table
from benchmarks.game24_model import ScriptedGame24Backend
from pygent_lc.tot import Game24Task, ToTConfig, ToTEngine, ToTResult

PUZZLES = ["4 9 10 13", "1 1 4 6", "1 2 3 4", "2 3 5 12", "3 3 8 8", "1 5 5 5", "4 4 10 10"]


def rss_mib() -> float:
    """Current resident set size (MiB), from /proc."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(target_nodes: int) -> None:
    config = ToTConfig(
        generation_strategy="propose",
        evaluation_method="value",
        search_method="bfs",
        n_generate_sample=3,
        n_evaluate_sample=1,
        n_select_sample=256,
        max_depth=4,
    )
    # Warm-up: imports, caches, first-call setup are not the search's memory.
    await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLES[0])
    gc.collect()
    before_rss, before_peak = rss_mib(), peak_rss_mib()
    kept: list[ToTResult] = []
    while sum(r.stats.nodes for r in kept) < target_nodes:
        batch = PUZZLES[len(kept) % len(PUZZLES) :] or PUZZLES
        kept += await asyncio.gather(
            *(ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(p) for p in batch)
        )
    nodes = sum(r.stats.nodes for r in kept)
    calls = sum(r.stats.llm_calls for r in kept)
    after_rss, after_peak = rss_mib(), peak_rss_mib()
    print(f"machine: {machine()}\n")
    print(
        table(
            [
                "searches",
                "nodes",
                "LLM calls",
                "RSS before MiB",
                "RSS after MiB",
                "peak RSS MiB",
                "delta MiB",
                "KiB per node",
            ],
            [
                [
                    len(kept),
                    nodes,
                    calls,
                    before_rss,
                    after_rss,
                    max(after_peak, before_peak, after_rss),
                    after_rss - before_rss,
                    (after_rss - before_rss) * 1024 / nodes,
                ]
            ],
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    asyncio.run(main(parser.parse_args().nodes))
