"""The ``pygent-lc`` command line: ``solve``, ``chat``, ``models``, ``doctor``.

Settings come from the environment and ``./.env``. Exit codes: 0 success,
1 a provider failed (or ``doctor`` found a problem), 2 bad usage or
configuration, 3 ``solve`` found nothing to answer with, 130 interrupted.
Errors print one line and a hint on stderr, never a traceback (unless
``PYGENT_DEBUG=1``) and never the key; the library's log (retries, circuit
breakers) shows only with ``--verbose``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pygent_lc.agents import AgentFactory, ChatAgent, NoAnswerError, ReasoningAgent
from pygent_lc.agents.doctor import diagnose
from pygent_lc.agents.spec import PROVIDER_CHOICES, TASK_NAMES
from pygent_lc.chain import ProviderSkippedWarning, validate_provider_names
from pygent_lc.cli_output import (
    ProgressLine,
    error_line,
    redact,
    solve_json,
    solve_summary,
    usage_line,
)
from pygent_lc.errors import ConfigurationError, InvalidInputError
from pygent_lc.openrouter_catalog import list_openrouter_models
from pygent_lc.providers.local import INSTALL_HINT, MODEL_INSTALL_HINT, default_model_path
from pygent_lc.providers.ollama import installed_ollama_models
from pygent_lc.settings import PROVIDER_NAMES, Settings
from pygent_lc.validation import validate_prompt

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3
EXIT_INTERRUPTED = 130

#: ``solve`` defaults per task: small for free-form questions (a few calls on a
#: local model), the paper's settings for Game of 24.
SOLVE_DEFAULTS: dict[str, dict[str, int]] = {
    "generic": {"max_depth": 2, "n_select_sample": 2, "n_evaluate_sample": 1, "max_tokens": 160},
    "game24": {"max_depth": 4, "n_select_sample": 5, "n_evaluate_sample": 3, "max_tokens": 256},
}


def _provider_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        default="auto",
        help="provider to use (default: auto, the configured chain: openrouter, ollama, local)",
    )
    parser.add_argument(
        "--fallback",
        action="append",
        choices=PROVIDER_NAMES,
        default=[],
        help="provider to fall back to, in order (repeatable)",
    )
    parser.add_argument("--model", help="model name (a GGUF file for --provider local)")


def _prompt_options(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(name, nargs="?", help=f"the {name}; '-' reads it from standard input")
    parser.add_argument("--file", metavar="PATH", help=f"read the {name} from a file (UTF-8)")


def _read_prompt(args: argparse.Namespace, name: str) -> str:
    """The prompt from the argument, standard input (``-``) or ``--file``, checked.

    One limit for every command: :data:`~pygent_lc.validation.MAX_PROMPT_CHARS`.
    """
    given: str | None = getattr(args, name)
    if (given is None) == (args.file is None):
        raise InvalidInputError(f"give the {name} as an argument, as '-' (stdin) or with --file")
    if args.file is not None:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read {args.file}: {exc}") from None
    elif given == "-":
        try:
            text = sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"standard input is not UTF-8 text: {exc}") from None
    else:
        text = str(given)
    return validate_prompt(text)


def _verbose_option(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="show the library's log on stderr: retries, circuit breakers",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pygent-lc",
        description="PyGent's LLM layer: Tree-of-Thought solving and chat over "
        "OpenRouter, Ollama and an embedded llama.cpp model.",
        epilog="exit codes: 0 ok, 1 provider failure, 2 usage/configuration, "
        "3 no answer, 130 interrupted",
    )
    _verbose_option(parser, default=False)
    parser.add_argument(
        "--otel",
        action="store_true",
        help="export this run's spans to the OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT); "
        "needs opentelemetry-exporter-otlp-proto-http",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    solve = commands.add_parser("solve", help="solve a problem with a Tree-of-Thought search")
    _prompt_options(solve, "problem")
    solve.add_argument("--task", choices=TASK_NAMES, default="generic")
    _provider_options(solve)
    solve.add_argument("--depth", type=int, help="thought steps (default: generic 2, game24 4)")
    solve.add_argument("--breadth", type=int, help="states kept per level (default: 2 / 5)")
    solve.add_argument("--samples", type=int, help="value samples per state (default: 1 / 3)")
    solve.add_argument("--search", choices=("bfs", "dfs"), default="bfs")
    solve.add_argument("--max-tokens", type=int, help="per call (default: 160 / 256)")
    solve.add_argument("--max-calls", type=int, help="stop after this many LLM calls")
    solve.add_argument("--max-cost", type=float, help="stop after this much spend in USD")
    solve.add_argument("--json", action="store_true", help="print the full result as JSON")
    solve.add_argument("--mermaid", metavar="FILE", help="write the tree as a Mermaid flowchart")
    solve.add_argument("--no-progress", action="store_true", help="no live progress line")

    chat = commands.add_parser("chat", help="stream the answer to one prompt")
    _prompt_options(chat, "prompt")
    _provider_options(chat)
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.7)

    models = commands.add_parser("models", help="list the models a provider offers")
    models.add_argument("--provider", choices=PROVIDER_NAMES, default="openrouter")
    models.add_argument("--search", help="only models whose id contains this text")
    models.add_argument("--free", action="store_true", help="only free OpenRouter models")
    models.add_argument("--json", action="store_true")

    doctor = commands.add_parser("doctor", help="check every provider: key, server, model")
    doctor.add_argument(
        "--provider", action="append", choices=PROVIDER_NAMES, help="only these providers"
    )
    doctor.add_argument("--probe", action="store_true", help="also ask each for a few tokens")
    doctor.add_argument("--json", action="store_true")
    for command in (solve, chat, models, doctor):
        # SUPPRESS: a subcommand without -v keeps the value given before it
        _verbose_option(command, default=argparse.SUPPRESS)
    return parser


def _custom_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {"provider": args.provider}
    if args.fallback:
        config["fallbacks"] = list(args.fallback)
    if args.model:
        config["model_name"] = args.model
    return config


async def _solve(args: argparse.Namespace, settings: Settings) -> int:
    problem = _read_prompt(args, "problem")
    config = _custom_config(args)
    tot: dict[str, Any] = dict(SOLVE_DEFAULTS[args.task])
    for option, field in (
        ("depth", "max_depth"),
        ("breadth", "n_select_sample"),
        ("samples", "n_evaluate_sample"),
        ("max_tokens", "max_tokens"),
        ("max_calls", "max_llm_calls"),
        ("max_cost", "max_cost_usd"),
    ):
        if getattr(args, option) is not None:
            tot[field] = getattr(args, option)
    config.update(tot, task=args.task, search_method=args.search)
    agent = await AgentFactory(settings).create_agent("reasoning", custom_config=config)
    assert isinstance(agent, ReasoningAgent)
    show_progress = sys.stderr.isatty() and not args.no_progress
    progress = ProgressLine(sys.stderr) if show_progress else None
    try:
        result = await agent.solve(problem, on_progress=progress.update if progress else None)
    finally:
        if progress is not None:
            progress.close()
    if args.mermaid:
        await asyncio.to_thread(Path(args.mermaid).write_text, result.to_mermaid(), "utf-8")
    if args.json:
        print(json.dumps(solve_json(result, agent), indent=2, ensure_ascii=False))
    elif result.best is not None:
        label = "Answer" if result.solved else "Best partial answer (no final answer reached)"
        print(f"{label}: {result.best.text}")
    print(solve_summary(result, agent), file=sys.stderr)
    return EXIT_OK if result.best is not None else EXIT_NO_ANSWER


async def _chat(args: argparse.Namespace, settings: Settings) -> int:
    prompt = _read_prompt(args, "prompt")
    config = _custom_config(args)
    config.update(max_tokens=args.max_tokens, temperature=args.temperature)
    if args.system:
        config["system_prompt"] = args.system
    agent = await AgentFactory(settings).create_agent("chat", custom_config=config)
    assert isinstance(agent, ChatAgent)
    async for text in agent.stream(prompt):
        print(text, end="", flush=True)
    print()
    print(usage_line(agent.usage), file=sys.stderr)
    return EXIT_OK


def _models(args: argparse.Namespace, settings: Settings) -> int:
    if args.provider == "local":
        path = settings.local_model_path or default_model_path()
        rows: list[dict[str, Any]] = [{"id": str(path) if path else None}]
        if not args.json:
            print(path or f"no local model file: {MODEL_INSTALL_HINT}")
    elif args.provider == "ollama":
        names = installed_ollama_models(settings)
        rows = [{"id": name} for name in names if not args.search or args.search in name]
        if not args.json:
            print("\n".join(row["id"] for row in rows) or "no models installed")
    else:
        models = list_openrouter_models(settings)
        rows = [
            {
                "id": m.id,
                "context_length": m.context_length,
                "prompt_per_million": m.prompt_price,
                "completion_per_million": m.completion_price,
            }
            for m in models
            if (not args.search or args.search.lower() in m.id.lower())
            and (not args.free or m.is_free)
        ]
        if not args.json:
            width = max([len(row["id"]) for row in rows] + [5])
            print(f"{'model':<{width}}  {'context':>9}  {'$/M in':>9}  {'$/M out':>9}")
            for row in rows:
                print(
                    f"{row['id']:<{width}}  {row['context_length'] or '?':>9}  "
                    f"{row['prompt_per_million']:>9.3f}  {row['completion_per_million']:>9.3f}"
                )
    if args.json:
        print(json.dumps(rows, indent=2))
    return EXIT_OK


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    providers = validate_provider_names(args.provider) if args.provider else None
    report = diagnose(settings, providers, probe=args.probe)
    if args.json:
        print(json.dumps([health.as_dict() for health in report], indent=2))
    else:
        for health in report:
            latency = f" ({health.latency_ms:.0f} ms)" if health.latency_ms is not None else ""
            print(f"{health.provider:<11} {health.status:<15} {health.detail}{latency}")
    problems = [h for h in report if h.status == "problem"]
    usable = [h for h in report if h.status == "ok"]
    if not problems and not usable and not args.json:
        print(
            "no provider is usable: set OPENROUTER_API_KEY or OLLAMA_MODEL, "
            f"or {INSTALL_HINT} && {MODEL_INSTALL_HINT}"
        )
    return EXIT_FAILED if problems or not usable else EXIT_OK


async def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env_file()
    if args.command == "solve":
        return await _solve(args, settings)
    if args.command == "chat":
        return await _chat(args, settings)
    if args.command == "models":
        return await asyncio.to_thread(_models, args, settings)
    return await asyncio.to_thread(_doctor, args, settings)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _configure_logging(*, verbose: bool) -> None:
    """The ``pygent_lc`` log on stderr with ``--verbose``; otherwise only its errors.

    Python prints any warning record of a logger without handlers on stderr,
    which would put lines beside the ``error:``/``hint:`` pair.
    """
    logger = logging.getLogger("pygent_lc")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO if verbose else logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; errors print one line and a hint, never a traceback or the key."""
    args = _parser().parse_args(argv)
    _configure_logging(verbose=args.verbose)
    # Skipped providers are reported by errors and `doctor`; every other warning shows.
    warnings.filterwarnings("ignore", category=ProviderSkippedWarning)
    debug = os.environ.get("PYGENT_DEBUG") == "1"
    stop_export: Callable[[], None] | None = None
    try:
        if args.otel:
            from pygent_lc.telemetry.export import start_otlp_export

            stop_export = start_otlp_export()
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK  # e.g. `pygent-lc models | head`
    except Exception as exc:
        if debug:
            raise
        print(redact(error_line(exc)), file=sys.stderr)
        if isinstance(exc, ConfigurationError | InvalidInputError):
            return EXIT_USAGE
        if isinstance(exc, NoAnswerError):
            return EXIT_NO_ANSWER
        return EXIT_FAILED
    finally:
        if stop_export is not None:
            stop_export()


if __name__ == "__main__":
    raise SystemExit(main())
