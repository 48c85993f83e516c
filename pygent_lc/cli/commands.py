"""What each ``pygent-lc`` command does: the heavy half of the command line (agents, the
chain, LangChain), which :func:`pygent_lc.cli.main` imports once the arguments parse."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import warnings
from collections.abc import Sequence
from contextlib import closing, nullcontext
from pathlib import Path
from typing import Any

from pygent_lc.agents import AgentFactory
from pygent_lc.build import ProviderSkippedWarning, build_chat_model
from pygent_lc.cli import output
from pygent_lc.cli.parser import (
    EXIT_FAILED,
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_USAGE,
    FLAG_OF_FIELD,
    name_flags,
)
from pygent_lc.errors import ConfigurationError, InvalidInputError, PygentError
from pygent_lc.langchain_backend import LangChainBackend
from pygent_lc.limits import ResilientStore, open_store, redact_url
from pygent_lc.limits.store import MEMORY_URLS, UNREACHABLE
from pygent_lc.limits.usage import UsageSummary
from pygent_lc.providers.ollama import ollama_listing
from pygent_lc.providers.registry import PROVIDERS, validate_provider_names
from pygent_lc.providers.status import ProviderHealth, one_line, timed
from pygent_lc.settings import MisspeltSettingWarning, ProviderName, Settings

#: ``solve`` defaults: a few calls on a local model; the paper's settings for Game of 24.
SOLVE_DEFAULTS: dict[str, dict[str, int]] = {
    "generic": {"max_depth": 2, "n_select_sample": 2, "n_evaluate_sample": 1, "max_tokens": 160},
    "game24": {"max_depth": 4, "n_select_sample": 5, "n_evaluate_sample": 3, "max_tokens": 256},
}
PROBE_PROMPT = "Reply with the single word OK."
STATE_URL_ENV = "PYGENT_STATE_URL"
NO_SHARED_STORE = (
    f"usage is only kept per process unless {STATE_URL_ENV} is set "
    "(a redis:// URL every process shares); nothing to show"
)


async def _agent(args: argparse.Namespace, settings: Settings, config: dict[str, Any]) -> Any:
    """The agent the flags ask for (over ``config``); an error names the flags typed."""
    given = {field: getattr(args, field) for field in FLAG_OF_FIELD[args.command]}
    config |= {field: value for field, value in given.items() if value not in (None, "")}
    kind = "reasoning" if args.command == "solve" else "chat"
    try:
        return await AgentFactory(settings).create_agent(kind, custom_config=config)
    except (ConfigurationError, InvalidInputError) as exc:
        if (message := name_flags(str(exc), args.command)) == str(exc):
            raise
        if isinstance(exc, ConfigurationError):
            field = name_flags(exc.field, args.command) if exc.field else None
            raise type(exc)(message, field=field) from None
        raise InvalidInputError(message) from None


def _interactive(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() and not getattr(args, "no_progress", False)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


async def _solve(args: argparse.Namespace, settings: Settings, fallbacks: list[Any]) -> int:
    async with await _agent(args, settings, dict(SOLVE_DEFAULTS[args.task])) as agent:
        progress = output.ProgressLine(sys.stderr) if _interactive(args) else None
        async with progress or nullcontext():
            result = await agent.solve(args.text, on_progress=progress.update if progress else None)
    if args.mermaid:
        await asyncio.to_thread(Path(args.mermaid).write_text, result.to_mermaid(), "utf-8")
    if args.json:
        _print_json(output.solve_json(result, agent) | {"fallbacks": fallbacks})
    elif result.best is not None:
        label = "Answer" if result.solved else "Best partial answer (no final answer reached)"
        print(f"{label}: {result.best.text}")
    print(output.solve_summary(result, agent), file=sys.stderr)
    return EXIT_OK if result.best is not None else EXIT_NO_ANSWER


async def _chat(args: argparse.Namespace, settings: Settings, fallbacks: list[Any]) -> int:
    async with await _agent(args, settings, {}) as agent:
        if args.json:
            answer = await agent.process(args.text)
        else:
            # Until the first text: the model loads (local) or thinks, on a terminal.
            first = agent.providers[0] if agent.providers else "the model"
            waiting = output.StatusLine(sys.stderr, f"{first}: loading the model or thinking…")
            async with waiting if _interactive(args) else nullcontext():
                async for text in agent.stream(args.text):
                    if text:
                        waiting.close()  # nothing to erase unless it was shown
                    print(text, end="", flush=True)
            print()
    if args.json:
        _print_json(output.answer_json(answer, agent) | {"fallbacks": fallbacks})
    print(output.usage_line(agent.usage), file=sys.stderr)
    return EXIT_OK


def _models(args: argparse.Namespace, settings: Settings) -> int:
    provider = args.provider or first_configured(settings)
    listing = PROVIDERS[provider].list_models(settings, args.search, args.free)
    print(json.dumps(listing.rows, indent=2) if args.json else "\n".join(listing.lines))
    return EXIT_OK


def first_configured(settings: Settings) -> ProviderName:
    """``models``' default: the chain's first provider that is set up (OpenRouter with
    a key, Ollama whose server answers, any other as it is), else ``local``."""
    key = settings.openrouter.api_key
    for name in settings.providers:
        if name == "openrouter" and (key is None or not key.get_secret_value().strip()):
            continue  # `OPENROUTER_API_KEY=` in a .env is no key either
        if name == "ollama":
            try:
                ollama_listing(settings)  # raises when no host answers
            except PygentError:
                continue
        return name
    return "local"


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    providers = validate_provider_names(args.provider) if args.provider else None
    report = diagnose(settings, providers, probe=args.probe)
    # What a provider's check reports may quote a setting's value: never a key.
    if args.json:
        print(output.redact(json.dumps([health.as_dict() for health in report], indent=2)))
    else:
        for health in report:
            print(output.redact(_health_line(health)))
            width = max((len(host.host or "") for host in health.hosts), default=0)
            for host in health.hosts:  # a pool: each host on its own line
                print(output.redact(_health_line(host, f"  {host.host or '':<{width}}")))
    problems = [h for h in report if h.status == "problem"]
    usable = [h for h in report if h.status == "ok"]
    if not problems and not usable and not args.json:
        hints = ", or ".join(spec.setup_hint for spec in PROVIDERS.values())
        print(f"no provider is usable: {hints}")
    return EXIT_FAILED if problems or not usable else EXIT_OK


def _health_line(health: ProviderHealth, name: str | None = None) -> str:
    latency = f" ({health.latency_ms:.0f} ms)" if health.latency_ms is not None else ""
    return f"{name or health.provider:<11} {health.status:<15} {health.detail}{latency}"


def diagnose(
    settings: Settings, providers: Sequence[ProviderName] | None = None, *, probe: bool = False
) -> list[ProviderHealth]:
    """``doctor``: each provider's health (default: all, configured first), then a line if the
    shared store refuses this client (password, ACL; a Redis down or read-only passes)."""
    names = providers or dict.fromkeys([*settings.providers, *PROVIDERS])
    report = [_health(name, settings, probe=probe) for name in names]
    if (url := _shared_url(settings)) is not None:
        with closing(open_store(url)) as store:
            outage = store.check() if isinstance(store, ResilientStore) else None
        if outage is not None and outage.misconfigured:
            report.append(ProviderHealth("state store", "problem", f"{redact_url(url)} {outage}"))
    return report


def _health(name: ProviderName, settings: Settings, *, probe: bool) -> ProviderHealth:
    """``probe`` also asks a healthy provider for a few tokens, through an agent's chain."""
    health = PROVIDERS[name].health(settings)
    if not probe or health.status != "ok":
        return health
    try:
        with LangChainBackend(build_chat_model(settings, [name])) as backend:  # closes its pool
            reply, latency = timed(
                lambda: backend.generate_sync(PROBE_PROMPT, max_tokens=4, temperature=0.0)
            )
    except PygentError as exc:
        return ProviderHealth(name, "problem", f"probe failed: {one_line(exc)}", health.model)
    detail = f"{health.detail}; probe answered {reply.strip()[:20]!r}"
    return ProviderHealth(name, "ok", detail, model=health.model, latency_ms=latency)


def _shared_url(settings: Settings) -> str | None:
    url = settings.state_url.get_secret_value() if settings.state_url is not None else None
    return None if url is None or url.strip() in MEMORY_URLS else url


class StoreUnreachableError(Exception):
    """The shared store did not answer, so its totals are unknown."""


def fleet_usage(url: str) -> list[UsageSummary]:
    """The shared store's usage by provider and model; one that does not answer is a
    :class:`StoreUnreachableError`, not this process's (misleading) empty totals."""
    with closing(open_store(url)) as store:
        if not isinstance(store, ResilientStore):
            return store.usage_rows()
        try:
            return store.primary.usage_rows()
        except Exception as exc:
            if (outage := store.outage_in(exc)) is None:
                raise
        problem = "did not answer" if outage.reason == UNREACHABLE.reason else outage.reason
        raise StoreUnreachableError(f"state store {redact_url(url)} {problem}")


def _usage(args: argparse.Namespace, settings: Settings) -> int:
    if (url := _shared_url(settings)) is None:
        print(NO_SHARED_STORE, file=sys.stderr)
        return EXIT_USAGE
    try:
        rows = fleet_usage(url)
    except StoreUnreachableError as exc:
        print(f"error: {exc}\nhint: check {STATE_URL_ENV} and that its Redis runs", file=sys.stderr)
        return EXIT_FAILED
    table = "\n".join(output.usage_table(rows))
    print(json.dumps(output.usage_json(rows), indent=2) if args.json else table)
    return EXIT_OK


def _settings() -> Settings:
    """``./.env`` and the environment; a misspelt variable is a warning line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MisspeltSettingWarning)
        settings = Settings.from_env_file()
    for warning in caught:
        if issubclass(warning.category, MisspeltSettingWarning):
            print(output.redact(f"warning: {warning.message}"), file=sys.stderr)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return settings


def run(args: argparse.Namespace, fallbacks: list[dict[str, Any]]) -> int:
    """Run the parsed command in its own event loop; the fallbacks go to ``fallbacks``."""
    # Skipped providers are reported by errors and `doctor`; every other warning shows.
    warnings.filterwarnings("ignore", category=ProviderSkippedWarning)
    settings = _settings()
    if args.command in ("solve", "chat"):
        command = (_solve if args.command == "solve" else _chat)(args, settings, fallbacks)
    else:
        blocking = {"models": _models, "usage": _usage, "doctor": _doctor}[args.command]
        command = asyncio.to_thread(blocking, args, settings)
    with output.FallbackRecorder(fallbacks):
        return asyncio.run(command)
