"""Game of 24 with the ToT engine, side by side with the Tree of Thoughts paper.

Examples::

    # offline, deterministic: the scripted arithmetic model, and the paper's BFS
    # replayed on the same model both ways: value cache per puzzle, and kept
    # across puzzles as the paper's run.py keeps it (the paper as it ran)
    python -m benchmarks.tot_game24 --provider scripted --start 900 --end 1000 --beams 1,5

    # the paper's setting on OpenRouter (needs OPENROUTER_API_KEY)
    python -m benchmarks.tot_game24 --provider openrouter --model openai/gpt-4o \
        --start 900 --end 1000

    # the embedded llama.cpp model (SmolLM2-135M unless PYGENT_LOCAL_MODEL is set)
    python -m benchmarks.tot_game24 --provider local --start 900 --end 902 --beams 1

One engine (default settings but the beam) solves every puzzle of a run, so
its value cache is kept across puzzles, as the paper's ``run.py`` keeps its
``task.value_cache``. Requests count API requests: the engine sends one per
sample; the paper's replay sends the ``n`` value samples of a prompt as one
request (``n=3``) and pays its prompt once. Success counts a puzzle as solved
when the best answer passes the safe checker (``check_24``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._bench import table
from benchmarks.game24_model import (
    ImperfectGame24Backend,
    ImperfectGame24Model,
    ScriptedGame24Backend,
    Tally,
)
from benchmarks.game24_replay import PaperBFSRun, load_game24_puzzles, paper_bfs_llm_calls
from pygent_lc.backend import LLMBackend
from pygent_lc.errors import AllProvidersFailedError, ProviderError
from pygent_lc.tot import Game24Task, ToTConfig, ToTEngine, ToTResult

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
    cached_input_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_backend(
    provider: str, model: str | None, latency_s: float, seed: int = 0, honours_n: bool = False
) -> LLMBackend:
    if provider == "scripted":
        return ScriptedGame24Backend(latency_s=latency_s, track_usage=True, honours_n=honours_n)
    if provider == "imperfect":
        return ImperfectGame24Backend(
            seed=seed, latency_s=latency_s, track_usage=True, honours_n=honours_n
        )
    # Imported here so the scripted path needs nothing but the engine.
    from pygent_lc import LangChainBackend, Settings, build_chat_model

    overrides: dict[str, Any] = {}
    if model:
        if provider == "local":
            overrides["local_model_path"] = model
        else:
            overrides[SETTINGS_FIELD[provider]] = model
    return LangChainBackend(build_chat_model(Settings(**overrides), providers=[provider]))


def build_config(args: argparse.Namespace, beam: int) -> ToTConfig:
    """The defaults (the paper's settings; depth from the task), with the beam ``b``."""
    overrides: dict[str, Any] = {"n_select_sample": beam}
    optional = {
        "n_evaluate_sample": args.n_evaluate,
        "temperature": args.temperature,
        "evaluation_temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "max_llm_calls": args.max_llm_calls,
        "max_cost_usd": args.max_cost_usd,
        "seed": args.seed,
    }
    overrides.update({key: value for key, value in optional.items() if value is not None})
    if args.no_adaptive:
        overrides["adaptive_sampling"] = False
    if args.value_batch:
        overrides["value_batch"] = True
    if args.reuse_proposals is not None:
        overrides["reuse_proposals"] = args.reuse_proposals
    if args.max_concurrency is not None:
        overrides["max_concurrency"] = args.max_concurrency
    return ToTConfig.for_provider(args.provider, **overrides)


async def run_puzzle(
    engine: ToTEngine, index: int, puzzle: str, args: argparse.Namespace
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
    usage = result.stats.usage
    run = PuzzleRun(
        index=index,
        puzzle=puzzle,
        solved=bool(best and best.correct),
        answer=best.text if best else None,
        llm_calls=result.stats.llm_calls,
        cache_hits=result.stats.cache_hits,
        output_tokens=None if usage is None else usage.output_tokens,
        input_tokens=None if usage is None else usage.input_tokens,
        cost_usd=None if usage is None else usage.cost_usd,
        cached_input_tokens=None if usage is None else usage.cached_input_tokens,
        wall_time_s=result.stats.wall_time_s,
        budget_exhausted=result.stats.budget_exhausted,
        extra={
            "failed_calls": result.stats.failed_calls,
            "samples_saved": result.stats.samples_saved,
            "duplicates_merged": result.stats.duplicates_merged,
            "proposals_reused": result.stats.proposals_reused,
        },
    )
    if args.tree_dir:
        write_tree(result, Path(args.tree_dir), index)
    return run


def write_tree(result: ToTResult, folder: Path, index: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"game24_{index}.json").write_text(result.to_json(), "utf-8")
    (folder / f"game24_{index}.mmd").write_text(result.to_mermaid(), "utf-8")


def write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=2), "utf-8")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass
class Row:
    """One line of the table: a method at one beam width, per-puzzle means."""

    label: str
    beam: int
    solved: float
    requests: float
    input_tokens: float | None
    output_tokens: float | None
    cost_usd: float | None
    cached_tokens: float | None = 0.0
    """Input tokens read from the provider's prompt cache (the replay has none)."""

    def cells(self) -> list[object]:
        tokens = (
            None
            if self.input_tokens is None or self.output_tokens is None
            else self.input_tokens + self.output_tokens
        )
        return [
            self.label,
            self.beam,
            f"{100 * self.solved:.0f}%",
            f"{self.requests:.1f}",
            "-" if self.input_tokens is None else f"{self.input_tokens:,.0f}",
            "-" if self.output_tokens is None else f"{self.output_tokens:,.0f}",
            "-" if self.cached_tokens is None else f"{self.cached_tokens:,.0f}",
            "-" if tokens is None else f"{tokens:,.0f}",
            "-" if self.cost_usd is None else f"{self.cost_usd:.3f}",
        ]


HEADERS = [
    "run",
    "b",
    "solved",
    "requests / puzzle",
    "input tok / puzzle",
    "output tok / puzzle",
    "cached tok",
    "tokens / puzzle",
    "$ / puzzle",
]


def engine_row(runs: list[PuzzleRun], beam: int) -> Row:
    inputs = [r.input_tokens for r in runs if r.input_tokens is not None]
    outputs = [r.output_tokens for r in runs if r.output_tokens is not None]
    costs = [r.cost_usd for r in runs if r.cost_usd is not None]
    cached = [r.cached_input_tokens for r in runs if r.cached_input_tokens is not None]
    return Row(
        label="this engine, one engine for all puzzles",
        beam=beam,
        solved=_mean([r.solved for r in runs]),
        requests=_mean([r.llm_calls for r in runs]),
        input_tokens=_mean(inputs) if len(inputs) == len(runs) else None,
        output_tokens=_mean(outputs) if len(outputs) == len(runs) else None,
        cost_usd=_mean(costs) if len(costs) == len(runs) else None,
        cached_tokens=_mean(cached) if len(cached) == len(runs) else None,
    )


def paper_row(label: str, runs: list[PaperBFSRun], beam: int) -> Row:
    return Row(
        label=label,
        beam=beam,
        solved=_mean([r.solved for r in runs]),
        requests=_mean([r.requests for r in runs]),
        input_tokens=_mean([r.input_tokens for r in runs]),
        output_tokens=_mean([r.output_tokens for r in runs]),
        cost_usd=_mean([r.cost_usd() for r in runs]),
    )


def paper_rows(
    puzzles: list[str], beam: int, n_evaluate: int, args: argparse.Namespace, tally: Tally
) -> list[Row]:
    """The paper's BFS on the same model: cache per puzzle, and kept as run.py keeps it."""

    def model() -> Callable[[str], str]:
        if args.provider == "imperfect":
            return ImperfectGame24Model(args.seed)
        return ScriptedGame24Backend().reply

    reply = model()
    per_puzzle = [
        paper_bfs_llm_calls(p, reply, n_evaluate_sample=n_evaluate, n_select_sample=beam)
        for p in puzzles
    ]
    shared: dict[str, float] = {}
    reply = model()
    as_run = [
        paper_bfs_llm_calls(
            p,
            reply,
            n_evaluate_sample=n_evaluate,
            n_select_sample=beam,
            value_cache=shared,
            tally=tally,
        )
        for p in puzzles
    ]
    return [
        paper_row("paper's BFS, value cache per puzzle", per_puzzle, beam),
        paper_row("paper's BFS as its run.py ran (cache kept)", as_run, beam),
    ]


def tally_table(engine: Tally | None, paper: Tally | None, puzzles: int) -> str:
    """Requests and tokens per puzzle by kind of prompt and level, engine beside paper."""
    keys = sorted({*(engine.counts if engine else {}), *(paper.counts if paper else {})})
    rows = []
    for key in keys:
        cells: list[object] = [key[0], key[1]]
        for source in (engine, paper):
            entry = source.counts.get(key, [0, 0, 0]) if source else [0, 0, 0]
            cells += [f"{entry[0] / puzzles:.1f}", f"{(entry[1] + entry[2]) / puzzles:,.0f}"]
        rows.append(cells)
    return table(
        ["kind", "level", "engine requests", "engine tokens", "paper requests", "paper tokens"],
        rows,
    )


async def run_engine(
    args: argparse.Namespace, beam: int, puzzles: list[str]
) -> tuple[list[PuzzleRun], float, Tally | None]:
    backend = build_backend(args.provider, args.model, args.latency, args.seed, args.honours_n)
    engine = ToTEngine(build_config(args, beam), backend, task=Game24Task())
    runs: list[PuzzleRun] = []
    started = time.perf_counter()
    for offset, puzzle in enumerate(puzzles):
        index = args.start + offset
        run = await run_puzzle(engine, index, puzzle, args)
        runs.append(run)
        mark = "solved" if run.solved else ("error" if run.error else "failed")
        print(
            f"[b={beam} {index}] {run.puzzle:<12} {mark:<7} calls={run.llm_calls:<4} "
            f"wall={run.wall_time_s:.2f}s answer={run.answer!r}",
            file=sys.stderr,
        )
    tally = backend.tally if isinstance(backend, ScriptedGame24Backend) else None
    return runs, time.perf_counter() - started, tally


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=900, help="first puzzle index (0-based)")
    parser.add_argument("--end", type=int, default=910, help="one past the last puzzle index")
    parser.add_argument(
        "--provider",
        choices=["scripted", "imperfect", "openrouter", "ollama", "local"],
        default="scripted",
    )
    parser.add_argument("--seed", type=int, default=0, help="imperfect: the model's seed")
    parser.add_argument(
        "--honours-n",
        action="store_true",
        help="scripted/imperfect: answer n samples in one request, as llama.cpp does",
    )
    parser.add_argument("--model", help="model slug (openrouter/ollama) or .gguf path (local)")
    parser.add_argument("--beams", default="5", help="beam widths b, comma-separated")
    parser.add_argument("--n-evaluate", type=int, default=3, help="value samples per state")
    parser.add_argument("--no-adaptive", action="store_true", help="always ask every sample")
    parser.add_argument(
        "--value-batch", action="store_true", help="value a parent's new states in one prompt"
    )
    parser.add_argument(
        "--reuse-proposals",
        choices=["checked", "all", "none"],
        default=None,
        help="ToTConfig.reuse_proposals (default: the engine's, 'checked')",
    )
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--max-concurrency", type=int, default=None)
    parser.add_argument("--max-llm-calls", type=int, default=None, help="budget per puzzle")
    parser.add_argument("--max-cost-usd", type=float, default=None, help="budget per puzzle")
    parser.add_argument("--latency", type=float, default=0.0, help="scripted: seconds per call")
    parser.add_argument("--json", help="write per-puzzle results to this file")
    parser.add_argument("--tree-dir", help="write each puzzle's tree (JSON, Mermaid) here")
    args = parser.parse_args(argv)

    all_puzzles = load_game24_puzzles()
    if not 0 <= args.start < args.end <= len(all_puzzles):
        parser.error(f"need 0 <= start < end <= {len(all_puzzles)}")
    puzzles = all_puzzles[args.start : args.end]
    beams = [int(b) for b in args.beams.split(",")]
    rows: list[Row] = []
    tallies: list[tuple[int, str]] = []
    dump: dict[str, Any] = {}
    for beam in beams:
        runs, wall, engine_tally = await run_engine(args, beam, puzzles)
        rows.append(engine_row(runs, beam))
        paper_tally = Tally()
        if args.provider in ("scripted", "imperfect"):
            rows.extend(paper_rows(puzzles, beam, args.n_evaluate, args, paper_tally))
            tallies.append((beam, tally_table(engine_tally, paper_tally, len(puzzles))))
        dump[f"b={beam}"] = [asdict(r) for r in runs]
        saved = _mean([r.extra.get("samples_saved", 0) for r in runs])
        merged = _mean([r.extra.get("duplicates_merged", 0) for r in runs])
        hits = _mean([r.cache_hits for r in runs])
        reused = _mean([r.extra.get("proposals_reused", 0) for r in runs])
        print(
            f"b={beam}: per puzzle {hits:.1f} value cache hits, {reused:.1f} states' "
            f"proposals reused, {saved:.1f} samples saved, {merged:.1f} states merged; "
            f"engine wall {wall:.2f} s",
            file=sys.stderr,
        )
        errors = [r for r in runs if r.error]
        if errors:
            print(f"{len(errors)} puzzles failed: {errors[0].error}", file=sys.stderr)
    label = args.provider + (f" / {args.model}" if args.model else "")
    print(
        f"Game of 24, puzzles {args.start}-{args.end - 1} ({len(puzzles)}), model {label}, "
        f"propose/value/bfs, {args.n_evaluate} value samples"
    )
    print()
    print(table(HEADERS, [row.cells() for row in rows]))
    for beam, text in tallies:
        print(f"\nWhere the tokens go, b={beam} (per puzzle; paper as its run.py ran):\n")
        print(text)
    if args.json:
        write_json(dump, Path(args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
