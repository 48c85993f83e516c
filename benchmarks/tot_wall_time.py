"""ToT wall time at a fixed latency per call: concurrent levels vs the critical path.

The measured setting: propose / value / bfs, ``n_generate_sample=3``,
``n_evaluate_sample=2``, ``n_select_sample=3``, ``max_depth=3``, 50 ms per
call, on Game of 24 with the scripted arithmetic model. The critical path is
``levels x (one generation + one evaluation)``: the least time any schedule
needs. The same search runs again at several ``max_concurrency`` values, down
to 1 (every call one after another, like the paper's code).

    python -m benchmarks.tot_wall_time [--latency 0.05] [--puzzle "4 9 10 13"]
"""

from __future__ import annotations

import argparse
import asyncio

from benchmarks.game24_model import ScriptedGame24Backend
from pygent_lc.tot import (
    CLOUD_MAX_CONCURRENCY,
    LOCAL_MAX_CONCURRENCY,
    Game24Task,
    ToTConfig,
    ToTEngine,
)

UNBOUNDED = 256


async def measure(puzzle: str, latency: float, max_concurrency: int) -> tuple[float, int, int, int]:
    config = ToTConfig(
        generation_strategy="propose",
        evaluation_method="value",
        search_method="bfs",
        n_generate_sample=3,
        n_evaluate_sample=2,
        n_select_sample=3,
        max_depth=3,
        max_concurrency=max_concurrency,
    )
    backend = ScriptedGame24Backend(latency_s=latency)
    result = await ToTEngine(config, backend, task=Game24Task()).solve(puzzle)
    stats = result.stats
    return stats.wall_time_s, stats.llm_calls, stats.cache_hits, stats.depth_reached


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per call")
    parser.add_argument("--puzzle", default="4 9 10 13")
    args = parser.parse_args(argv)

    rows = []
    for label, limit in [
        (f"max_concurrency={UNBOUNDED} (unbounded)", UNBOUNDED),
        (f"max_concurrency={CLOUD_MAX_CONCURRENCY} (cloud default)", CLOUD_MAX_CONCURRENCY),
        (f"max_concurrency={LOCAL_MAX_CONCURRENCY} (local default)", LOCAL_MAX_CONCURRENCY),
        ("max_concurrency=1 (sequential)", 1),
    ]:
        rows.append((label, *await measure(args.puzzle, args.latency, limit)))

    _, _, calls, hits, levels = rows[0]
    critical = levels * 2 * args.latency
    sequential_sum = calls * args.latency
    sequential_wall = rows[-1][1]
    print(
        f"ToT wall time, Game of 24 '{args.puzzle}', {args.latency * 1000:.0f} ms per call, "
        f"propose/value/bfs 3/2/3, depth {levels}"
    )
    print(
        f"{calls} LLM calls ({hits} evaluation cache hits); critical path {critical:.3f} s; "
        f"sequential sum {sequential_sum:.3f} s"
    )
    header = (
        f"{'':40} {'wall s':>8} {'/ critical path':>16} {'/ sequential sum':>17} "
        f"{'speed-up vs seq.':>17}"
    )
    print(header)
    print("-" * len(header))
    for label, wall, *_ in rows:
        print(
            f"{label:40} {wall:8.3f} {wall / critical:16.2f} {wall / sequential_sum:17.3f} "
            f"{sequential_wall / wall:16.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
