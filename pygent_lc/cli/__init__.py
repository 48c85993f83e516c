"""The ``pygent-lc`` command line: ``solve``, ``chat``, ``models``, ``doctor``, ``usage``.

Settings come from the environment and ``./.env``. Exit codes: 0 success,
1 a provider failed (or ``doctor`` found a problem), 2 bad usage or
configuration (``usage`` without a shared state store too), 3 ``solve``
found nothing to answer with, 130 interrupted.
Errors print one line and a hint on stderr, never a traceback (unless
``PYGENT_DEBUG=1``) and never the key; with ``--json`` stdout also gets the
error as a JSON object. A fallback (a provider answered after another failed)
is always one WARNING line on stderr, and a ``fallbacks`` list under ``--json``;
the rest of the library's log (each failed attempt, retries, circuit breakers)
shows only with ``--verbose``.
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

from pygent_lc._cli_start import interrupt_as_exception
from pygent_lc.agents import AgentFactory, ChatAgent, NoAnswerError, ReasoningAgent
from pygent_lc.chain import ProviderSkippedWarning
from pygent_lc.cli.doctor import diagnose, setup_hint
from pygent_lc.cli.notices import FallbackRecorder, error_json
from pygent_lc.cli.output import (
    error_line,
    redact,
    served_by,
    solve_json,
    solve_summary,
    usage_line,
    usage_rows,
)
from pygent_lc.cli.parser import build_parser, read_prompt
from pygent_lc.cli.progress import ProgressLine
from pygent_lc.cli.usage import (
    NO_SHARED_STORE,
    STATE_URL_ENV,
    StoreUnreachableError,
    fleet_usage,
    is_shared_store_url,
    usage_json,
    usage_table,
)
from pygent_lc.errors import ConfigurationError, InvalidInputError
from pygent_lc.providers.registry import PROVIDERS, validate_provider_names
from pygent_lc.providers.status import ProviderHealth
from pygent_lc.settings import MisspeltSettingWarning, Settings
from pygent_lc.telemetry import instrument_from_env

FALLBACK_LOGGER = "pygent_lc.fallbacks"

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


#: The commands that read a prompt, and the name of its argument.
_PROMPT_ARGUMENT = {"solve": "problem", "chat": "prompt"}


def _custom_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {"provider": args.provider}
    if args.fallback:
        config["fallbacks"] = list(args.fallback)
    if args.model:
        config["model_name"] = args.model
    return config


async def _solve(args: argparse.Namespace, settings: Settings, recorder: FallbackRecorder) -> int:
    problem: str = args.text
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
        data = solve_json(result, agent)
        data["fallbacks"] = recorder.fallbacks
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif result.best is not None:
        label = "Answer" if result.solved else "Best partial answer (no final answer reached)"
        print(f"{label}: {result.best.text}")
    print(solve_summary(result, agent), file=sys.stderr)
    return EXIT_OK if result.best is not None else EXIT_NO_ANSWER


async def _chat(args: argparse.Namespace, settings: Settings, recorder: FallbackRecorder) -> int:
    prompt: str = args.text
    config = _custom_config(args)
    config.update(max_tokens=args.max_tokens, temperature=args.temperature)
    if args.system:
        config["system_prompt"] = args.system
    agent = await AgentFactory(settings).create_agent("chat", custom_config=config)
    assert isinstance(agent, ChatAgent)
    if args.json:
        answer = await agent.process(prompt)
        data = {
            "answer": answer,
            "providers": agent.providers,
            "served_by": served_by(agent.usage),
            "usage": usage_rows(agent.usage),
            "fallbacks": recorder.fallbacks,
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        async for text in agent.stream(prompt):
            print(text, end="", flush=True)
        print()
    print(usage_line(agent.usage), file=sys.stderr)
    return EXIT_OK


def _models(args: argparse.Namespace, settings: Settings) -> int:
    listing = PROVIDERS[args.provider].list_models(settings, args.search, args.free)
    print(json.dumps(listing.rows, indent=2) if args.json else "\n".join(listing.lines))
    return EXIT_OK


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    providers = validate_provider_names(args.provider) if args.provider else None
    report = diagnose(settings, providers, probe=args.probe)
    # What a provider's check reports may quote a setting's value: never a key.
    if args.json:
        print(redact(json.dumps([health.as_dict() for health in report], indent=2)))
    else:
        for health in report:
            print(redact(_health_line(health)))
            width = max((len(host.host or "") for host in health.hosts), default=0)
            for host in health.hosts:  # a pool: each host on its own line
                print(redact(_health_line(host, f"  {host.host or '':<{width}}")))
    problems = [h for h in report if h.status == "problem"]
    usable = [h for h in report if h.status == "ok"]
    if not problems and not usable and not args.json:
        print(f"no provider is usable: {setup_hint()}")
    return EXIT_FAILED if problems or not usable else EXIT_OK


def _health_line(health: ProviderHealth, name: str | None = None) -> str:
    latency = f" ({health.latency_ms:.0f} ms)" if health.latency_ms is not None else ""
    return f"{name or health.provider:<11} {health.status:<15} {health.detail}{latency}"


def _usage(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.state_url.get_secret_value() if settings.state_url is not None else None
    if url is None or not is_shared_store_url(url):
        print(NO_SHARED_STORE, file=sys.stderr)
        return EXIT_USAGE
    try:
        rows = fleet_usage(url)
    except StoreUnreachableError as exc:
        print(f"error: {exc}\nhint: check {STATE_URL_ENV} and that its Redis runs", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(usage_json(rows), indent=2) if args.json else "\n".join(usage_table(rows)))
    return EXIT_OK


def _settings() -> Settings:
    """The settings of ``./.env`` and the environment; a misspelt variable is a warning line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MisspeltSettingWarning)
        settings = Settings.from_env_file()
    for warning in caught:
        if issubclass(warning.category, MisspeltSettingWarning):
            print(redact(f"warning: {warning.message}"), file=sys.stderr)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return settings


async def _run(args: argparse.Namespace, recorder: FallbackRecorder) -> int:
    settings = _settings()
    if args.command == "solve":
        return await _solve(args, settings, recorder)
    if args.command == "chat":
        return await _chat(args, settings, recorder)
    if args.command == "models":
        return await asyncio.to_thread(_models, args, settings)
    if args.command == "usage":
        return await asyncio.to_thread(_usage, args, settings)
    return await asyncio.to_thread(_doctor, args, settings)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _configure_logging(*, verbose: bool) -> None:
    """The ``pygent_lc`` log on stderr from DEBUG with ``--verbose``; otherwise only
    its errors and the fallback warnings (a provider answered for a failed one).

    Python prints any warning record of a logger without handlers on stderr,
    which would put lines beside the ``error:``/``hint:`` pair.
    """
    logger = logging.getLogger("pygent_lc")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(_errors_and_fallbacks)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


def _errors_and_fallbacks(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or record.name == FALLBACK_LOGGER


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; errors print one line and a hint, never a traceback or the key."""
    debug = os.environ.get("PYGENT_DEBUG") == "1"
    stop_export: Callable[[], None] | None = None
    recorder = FallbackRecorder()
    try:
        interrupt_as_exception()  # from here on, Ctrl-C is the KeyboardInterrupt below
        args = build_parser().parse_args(argv)
        _configure_logging(verbose=args.verbose)
        if args.command in _PROMPT_ARGUMENT:  # before the event loop: Ctrl-C stops a read
            args.text = read_prompt(args, _PROMPT_ARGUMENT[args.command])
        # Skipped providers are reported by errors and `doctor`; every other warning shows.
        warnings.filterwarnings("ignore", category=ProviderSkippedWarning)
        if args.otel:
            from pygent_lc.telemetry.export import start_otlp_export

            stop_export = start_otlp_export()
        else:
            instrument_from_env()  # PYGENT_OTEL=1: spans and metrics of this run
        with recorder:
            return asyncio.run(_run(args, recorder))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK  # e.g. `pygent-lc models | head`
    except Exception as exc:
        if debug:
            raise
        print(redact(error_line(exc)), file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({**error_json(exc), "fallbacks": recorder.fallbacks}, indent=2))
        if isinstance(exc, ConfigurationError | InvalidInputError):
            return EXIT_USAGE
        if isinstance(exc, NoAnswerError):
            return EXIT_NO_ANSWER
        return EXIT_FAILED
    finally:
        if stop_export is not None:
            stop_export()


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_NO_ANSWER", "EXIT_OK", "EXIT_USAGE", "main"]
