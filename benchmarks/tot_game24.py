"""Game of 24 with the ToT engine, side by side with the Tree of Thoughts paper.

Examples::

    # offline, deterministic: the scripted arithmetic model (also counts the
    # calls the paper's sequential BFS would make with the same model)
    python benchmarks/tot_game24.py --provider scripted --start 900 --end 1000

    # the paper's setting on OpenRouter (needs OPENROUTER_API_KEY)
    python benchmarks/tot_game24.py --provider openrouter --model openai/gpt-4o \
        --start 900 --end 1000

    # the embedded llama.cpp model (SmolLM2-135M unless PYGENT_LOCAL_MODEL is set)
    python benchmarks/tot_game24.py --provider local --start 900 --end 902 --beam 1

Success counts a puzzle as solved when the engine's best answer passes the
safe checker (``check_24``): the expression uses exactly the four numbers and
equals 24.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pygent_lc.backend import LLMBackend
from pygent_lc.errors import AllProvidersFailedError, ProviderError
from pygent_lc.tot import Game24Task, ToTConfig, ToTEngine, ToTResult, load_game24_puzzles
from pygent_lc.tot.tasks.game24_solver import ScriptedGame24Backend, paper_bfs_llm_calls

# Table 2 and section 4.1 of Yao et al. (2023), GPT-4, puzzles 900-999.
PAPER_ROWS = [
    ("paper GPT-4 IO prompt", 7.3, None, None),
    ("paper GPT-4 CoT prompt", 4.0, None, None),
    ("paper GPT-4 ToT (b=1)", 45.0, None, None),
    ("paper GPT-4 ToT (b=5)", 74.0, 5500, 0.74),
]
SETTINGS_FIELD = {"openrouter": "openrouter_model", "ollama": "ollama_model"}


@dataclass
class PuzzleRun:
    index: int
    puzzle: str
    solved: bool
    answer: str | None
    llm_calls: int
    cache_hits: int
    output_tokens: int | None
    input_tokens: int | None
    cost_usd: float | None
    wall_time_s: float
    budget_exhausted: str | None = None
    error: str | None = None
    paper_llm_calls: int | None = None
    paper_solved: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_backend(provider: str, model: str | None, latency_s: float) -> LLMBackend:
    if provider == "scripted":
        return ScriptedGame24Backend(latency_s=latency_s, track_usage=True)
    # Imported here so the scripted path needs nothing but the engine.
    from pygent_lc import LangChainBackend, Settings, build_chat_model

    overrides: dict[str, Any] = {}
    if model:
        if provider == "local":
            overrides["local_model_path"] = model
        else:
            overrides[SETTINGS_FIELD[provider]] = model
    return LangChainBackend(build_chat_model(Settings(**overrides), providers=[provider]))


def build_config(args: argparse.Namespace) -> ToTConfig:
    overrides: dict[str, Any] = {
        "generation_strategy": "propose",
        "evaluation_method": "value",
        "search_method": "bfs",
        "n_generate_sample": 1,
        "n_evaluate_sample": args.n_evaluate,
        "n_select_sample": args.beam,
        "max_depth": Game24Task.STEPS,
        "temperature": args.temperature,
        "evaluation_temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "max_llm_calls": args.max_llm_calls,
        "max_cost_usd": args.max_cost_usd,
    }
    if args.max_concurrency is not None:
        overrides["max_concurrency"] = args.max_concurrency
    return ToTConfig.for_provider(args.provider, **overrides)


async def run_puzzle(
    engine: ToTEngine, backend: LLMBackend, index: int, puzzle: str, args: argparse.Namespace
) -> PuzzleRun:
    started = time.perf_counter()
    try:
        result = await engine.solve(puzzle, task=Game24Task())
    except (ProviderError, AllProvidersFailedError) as exc:
        return PuzzleRun(
            index=index,
            puzzle=puzzle,
            solved=False,
            answer=None,
            llm_calls=0,
            cache_hits=0,
            output_tokens=None,
            input_tokens=None,
            cost_usd=None,
            wall_time_s=time.perf_counter() - started,
            error=f"{type(exc).__name__}: {exc}",
        )
    best = result.best
    run = PuzzleRun(
        index=index,
        puzzle=puzzle,
        solved=bool(best and best.correct),
        answer=best.text if best else None,
        llm_calls=result.stats.llm_calls,
        cache_hits=result.stats.cache_hits,
        output_tokens=result.stats.output_tokens,
        input_tokens=result.stats.input_tokens,
        cost_usd=result.stats.cost_usd,
        wall_time_s=result.stats.wall_time_s,
        budget_exhausted=result.stats.budget_exhausted,
        extra={"failed_calls": result.stats.failed_calls},
    )
    if args.provider == "scripted":
        scripted = backend if isinstance(backend, ScriptedGame24Backend) else None
        paper = paper_bfs_llm_calls(
            puzzle,
            scripted.reply if scripted else ScriptedGame24Backend().reply,
            n_evaluate_sample=args.n_evaluate,
            n_select_sample=args.beam,
        )
        run.paper_llm_calls = paper.llm_calls
        run.paper_solved = paper.solved
    if args.tree_dir:
        write_tree(result, Path(args.tree_dir), index)
    return run


def write_tree(result: ToTResult, folder: Path, index: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"game24_{index}.json").write_text(result.to_json(), "utf-8")
    (folder / f"game24_{index}.mmd").write_text(result.to_mermaid(), "utf-8")


def write_json(runs: list[PuzzleRun], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in runs], indent=2), "utf-8")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def report(runs: list[PuzzleRun], args: argparse.Namespace, total_wall: float) -> None:
    n = len(runs)
    solved = sum(r.solved for r in runs)
    calls = _mean([r.llm_calls for r in runs])
    out_tokens = [r.output_tokens for r in runs if r.output_tokens is not None]
    in_tokens = [r.input_tokens for r in runs if r.input_tokens is not None]
    costs = [r.cost_usd for r in runs if r.cost_usd is not None]
    wall = _mean([r.wall_time_s for r in runs])
    errors = [r for r in runs if r.error]
    label = f"{args.provider}" + (f" / {args.model}" if args.model else "")
    print()
    print(
        f"Game of 24, puzzles {args.start}-{args.end - 1} ({n}), provider {label}, "
        f"ToT propose/value/bfs b={args.beam}, {args.n_evaluate} value samples"
    )
    header = (
        f"{'':34} {'success':>8} {'calls/puzzle':>13} {'out tok/puzzle':>15} "
        f"{'in tok/puzzle':>14} {'$/puzzle':>9} {'wall s/puzzle':>14}"
    )
    print(header)
    print("-" * len(header))
    print(
        f"{'this run: ToT (b=' + str(args.beam) + ')':34} {100 * solved / n:7.1f}% {calls:13.1f} "
        f"{_fmt(_mean(out_tokens) if out_tokens else None, '{:.0f}'):>15} "
        f"{_fmt(_mean(in_tokens) if in_tokens else None, '{:.0f}'):>14} "
        f"{_fmt(_mean(costs) if costs else None, '{:.4f}'):>9} {wall:14.3f}"
    )
    paper_calls = [r.paper_llm_calls for r in runs if r.paper_llm_calls is not None]
    if paper_calls:
        paper_solved = sum(bool(r.paper_solved) for r in runs)
        paper_mean = _mean(paper_calls)
        # The paper's calls run one after another: at a fixed latency per
        # call its wall time is calls x latency (compute time left out).
        paper_wall = f"{paper_mean * args.latency:14.3f}" if args.latency else f"{'sequential':>14}"
        print(
            f"{'paper BFS, same model (replayed)':34} {100 * paper_solved / n:7.1f}% "
            f"{paper_mean:13.1f} {'':>15} {'':>14} {'':>9} {paper_wall}"
        )
    for name, rate, tokens, cost in PAPER_ROWS:
        print(
            f"{name:34} {rate:7.1f}% {'-':>13} {_fmt(tokens, '~{:.0f}'):>15} {'-':>14} "
            f"{_fmt(cost, '{:.2f}'):>9} {'-':>14}"
        )
    print()
    if paper_calls:
        fewer = sum(r.llm_calls <= (r.paper_llm_calls or 0) for r in runs)
        print(
            f"engine calls <= paper calls on {fewer}/{n} puzzles; "
            f"total {sum(r.llm_calls for r in runs)} vs {sum(paper_calls)}"
        )
    hits = _mean([r.cache_hits for r in runs])
    print(f"cache hits/puzzle {hits:.1f}; total wall {total_wall:.2f} s")
    exhausted = [r for r in runs if r.budget_exhausted]
    if exhausted:
        print(f"{len(exhausted)} puzzles stopped on a budget: {exhausted[0].budget_exhausted}")
    if errors:
        print(f"{len(errors)} puzzles failed: {errors[0].error}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=900, help="first puzzle index (0-based)")
    parser.add_argument("--end", type=int, default=910, help="one past the last puzzle index")
    parser.add_argument(
        "--provider", choices=["scripted", "openrouter", "ollama", "local"], default="scripted"
    )
    parser.add_argument("--model", help="model slug (openrouter/ollama) or .gguf path (local)")
    parser.add_argument("--beam", type=int, default=5, help="n_select_sample, the paper's b")
    parser.add_argument("--n-evaluate", type=int, default=3, help="value samples per state")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--max-concurrency", type=int, default=None)
    parser.add_argument("--max-llm-calls", type=int, default=None, help="budget per puzzle")
    parser.add_argument("--max-cost-usd", type=float, default=None, help="budget per puzzle")
    parser.add_argument("--latency", type=float, default=0.0, help="scripted: seconds per call")
    parser.add_argument("--json", help="write per-puzzle results to this file")
    parser.add_argument("--tree-dir", help="write each puzzle's tree (JSON, Mermaid) here")
    args = parser.parse_args(argv)

    puzzles = load_game24_puzzles()
    if not 0 <= args.start < args.end <= len(puzzles):
        parser.error(f"need 0 <= start < end <= {len(puzzles)}")
    backend = build_backend(args.provider, args.model, args.latency)
    engine = ToTEngine(build_config(args), backend, task=Game24Task())
    runs: list[PuzzleRun] = []
    started = time.perf_counter()
    for index in range(args.start, args.end):
        run = await run_puzzle(engine, backend, index, puzzles[index], args)
        runs.append(run)
        mark = "solved" if run.solved else ("error" if run.error else "failed")
        print(
            f"[{index}] {run.puzzle:<12} {mark:<7} calls={run.llm_calls:<4} "
            f"wall={run.wall_time_s:.2f}s answer={run.answer!r}",
            file=sys.stderr,
        )
    report(runs, args, time.perf_counter() - started)
    if args.json:
        write_json(runs, Path(args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
