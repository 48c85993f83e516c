"""What ``pygent-lc`` prints: summaries, JSON, one-line errors with a hint, fallbacks.

A fallback is logged once per call kind by :mod:`pygent_lc.fallbacks` (a
WARNING on ``pygent_lc.fallbacks``); the CLI always shows that line on stderr,
and :class:`FallbackRecorder` keeps each one for ``--json``. A failure under
``--json`` prints :func:`error_json` on stdout, so a script reading stdout
sees what went wrong as well as the exit code.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dotenv.parser import parse_stream

from pygent_lc.agents import AgentError, ChatAgent, NoAnswerError, ReasoningAgent
from pygent_lc.errors import (
    AllProvidersFailedError,
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    ContentRefusedError,
    InsufficientCreditsError,
    InvalidInputError,
    ModelNotFoundError,
    ProviderError,
    RateLimitError,
)
from pygent_lc.fallbacks import FallbackNotice, short_reason
from pygent_lc.fallbacks import logger as fallback_logger
from pygent_lc.limits.usage import UsageSummary, UsageTracker
from pygent_lc.providers.local import INSTALL_HINT
from pygent_lc.providers.registry import PROVIDERS
from pygent_lc.redaction import redact_text
from pygent_lc.settings import DEFAULT_ENV_FILE
from pygent_lc.tot.result import ToTResult

# What to do about a configuration error, by the setting it names.
_FIELD_HINTS = {field: hint for spec in PROVIDERS.values() for field, hint in spec.hints.items()}
MAX_ERROR_CHARS = 600


def usage_line(usage: UsageTracker) -> str:
    """``provider/model: calls, tokens, cost`` for each pair that was asked."""
    parts = [
        f"{e.provider}/{e.model}: {e.usage.calls} call(s)"
        f"{f' ({e.usage.failures} failed)' if e.usage.failures else ''}, "
        f"{e.usage.input_tokens}+{e.usage.output_tokens} tokens, ${e.usage.cost_usd:.6f}"
        for e in usage.summary().values()
    ]
    return "[" + "; ".join(parts or ["no calls"]) + "]"


def served_by(usage: UsageTracker) -> list[str]:
    """The ``provider/model`` pairs that answered at least one call."""
    summaries = usage.summary().values()
    return [f"{e.provider}/{e.model}" for e in summaries if e.usage.calls > e.usage.failures]


def solve_summary(result: ToTResult, agent: ReasoningAgent) -> str:
    stats = result.stats
    total = agent.usage.totals()
    budget = f" · stopped: {stats.budget_exhausted}" if stats.budget_exhausted else ""
    return (
        f"[{'solved' if result.solved else 'not solved'} · served by "
        f"{', '.join(served_by(agent.usage)) or 'nobody'} · {stats.llm_calls} calls"
        f"{f' ({stats.failed_calls} failed)' if stats.failed_calls else ''} · "
        f"{total.input_tokens}+{total.output_tokens} tokens · ${total.cost_usd:.6f} · "
        f"depth {stats.depth_reached}/{result.config.max_depth} · {stats.nodes} nodes · "
        f"{stats.wall_time_s:.1f}s{budget}]"
    )


def answer_json(answer: str | None, agent: ReasoningAgent | ChatAgent) -> dict[str, Any]:
    """The answer, the providers asked and those that served, and the usage."""
    return {
        "answer": answer,
        "providers": agent.providers,
        "served_by": served_by(agent.usage),
        "usage": usage_rows(agent.usage),
    }


def solve_json(result: ToTResult, agent: ReasoningAgent) -> dict[str, Any]:
    """The full result (tree included) plus the answer, providers and usage."""
    data: dict[str, Any] = json.loads(result.to_json(indent=None))
    data["solved"] = result.solved
    return data | answer_json(result.best.text if result.best else None, agent)


def usage_rows(usage: UsageTracker) -> list[dict[str, Any]]:
    """Each ``provider/model`` pair's calls, failures, tokens, cost and latency, for JSON."""
    totals = ("calls", "failures", "input_tokens", "output_tokens", "cost_usd")
    return [
        {"provider": e.provider, "model": e.model}
        | {name: getattr(e.usage, name) for name in totals}
        | {"mean_latency_s": e.mean_latency_s}
        for e in usage.summary().values()
    ]


def hint_for(exc: BaseException) -> str:
    """What to do next, for each kind of failure."""
    if isinstance(exc, ConfigurationError):
        field = (exc.field or "").split(" ")[0]
        if field in _FIELD_HINTS:
            return _FIELD_HINTS[field]
        if isinstance(exc, AgentError):
            return "see `pygent-lc --help` and `pygent-lc doctor`"
        if "local" in str(exc) and "pip install" in str(exc):
            return INSTALL_HINT
        return "check the setting or file named above (`pygent-lc doctor` shows every provider)"
    if isinstance(exc, InvalidInputError):
        return "check the problem text and the numeric options"
    if isinstance(exc, AuthenticationError):
        return "check OPENROUTER_API_KEY (`pygent-lc doctor`)"
    if isinstance(exc, InsufficientCreditsError):
        return "add credits at https://openrouter.ai/settings/credits or pick a :free model"
    if isinstance(exc, ModelNotFoundError):
        provider = exc.provider if exc.provider in PROVIDERS else "openrouter"
        return f"list the models with `pygent-lc models --provider {provider}`"
    if isinstance(exc, RateLimitError):
        return "wait and retry, or add a fallback (--fallback local)"
    if isinstance(exc, ContentRefusedError):
        return "the provider's moderation refused the input; rephrase it"
    if isinstance(exc, ProviderError | AllProvidersFailedError):
        return "run `pygent-lc doctor` to see which provider is down"
    if isinstance(exc, NoAnswerError):
        return "raise --max-calls / --max-cost, or try a stronger model"
    if isinstance(exc, BudgetExceededError):
        return (
            "the spending limit allows no further call: raise or unset PYGENT_MAX_COST_USD "
            "(0 allows none), or wait for its PYGENT_BUDGET_WINDOW to start again"
        )
    return "this is a bug in pygent-lc; run with PYGENT_DEBUG=1 to see the traceback"


def error_line(exc: BaseException) -> str:
    """``error: <Kind>: <message>`` then ``hint: ...``, the message on one line."""
    message = " ".join(str(exc).split()) or "(no message)"
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    kind = type(exc).__name__
    return f"error: {kind}: {message}\nhint: {hint_for(exc)}"


def _is_secret(name: str, value: str | None) -> bool:
    return (
        value is not None
        and len(value) >= 8
        and any(word in name.upper() for word in ("KEY", "TOKEN", "SECRET"))
    )


def redact(text: str) -> str:
    """``text`` without any secret of the environment or of ``./.env`` in it.

    A secret is the value of a variable whose name holds KEY, TOKEN or SECRET
    (``OPENROUTER_API_KEY`` among them), or anything shaped like a credential
    (a key pasted into another variable), see :func:`~pygent_lc.redaction.redact_text`.
    """
    variables: dict[str, str | None] = dict(os.environ)
    # An unreadable .env has no secret to hide; a line that does not parse is
    # skipped here (its error names the line, not its text).
    with contextlib.suppress(OSError, ValueError):
        raw = Path(DEFAULT_ENV_FILE).read_text("utf-8")
        variables.update(
            (binding.key, binding.value)
            for binding in parse_stream(io.StringIO(raw))
            if binding.key is not None and not binding.error
        )
    for name, value in variables.items():
        if value is not None and _is_secret(name, value):
            text = text.replace(value, "***")
    return redact_text(text)


class FallbackRecorder(logging.Handler):
    """Keeps the fallbacks logged while it is attached, as JSON-ready dicts."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.fallbacks: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        notice = record.__dict__.get("fallback")
        if isinstance(notice, FallbackNotice):
            data = notice.as_dict()
            data["message"] = redact(data["message"])
            self.fallbacks.append(data)

    def __enter__(self) -> FallbackRecorder:
        fallback_logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        fallback_logger.removeHandler(self)


def _provider_error(error: ProviderError) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "message": redact(error.message),
        "provider": error.provider,
        "model": error.model,
        "status": error.status_code,
        "reason": short_reason(error),
    }


def error_json(exc: BaseException) -> dict[str, Any]:
    """The failure as ``{"error": {type, message, provider, status, hint}}``.

    ``provider``, ``model`` and ``status`` are null when the error is not one
    provider's; a chain that failed everywhere lists each provider's in ``errors``.
    """
    error: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": redact(" ".join(str(exc).split()) or "(no message)"),
        "provider": None,
        "model": None,
        "status": None,
        "hint": hint_for(exc),
    }
    if isinstance(exc, ProviderError):
        details = _provider_error(exc)
        error.update({key: details[key] for key in ("provider", "model", "status", "reason")})
    if isinstance(exc, AllProvidersFailedError):
        error["errors"] = [_provider_error(e) for e in exc.errors.values()]
    return {"error": error}


def usage_json(rows: list[UsageSummary]) -> list[dict[str, Any]]:
    """``pygent-lc usage --json``: one object per (provider, model) with every total."""
    return [
        {
            "provider": row.provider,
            "model": row.model,
            **asdict(row.usage),
            "mean_latency_s": row.mean_latency_s,
            "p95_latency_s": row.p95_latency_s,
        }
        for row in rows
    ]


def usage_table(rows: list[UsageSummary]) -> list[str]:
    """``pygent-lc usage``: a header and one line per (provider, model)."""
    if not rows:
        return ["no calls recorded yet"]
    provider_width = max([len(row.provider) for row in rows] + [8])
    model_width = max([len(row.model) for row in rows] + [5])
    lines = [
        f"{'provider':<{provider_width}}  {'model':<{model_width}}  {'calls':>7}  "
        f"{'failed':>7}  {'tokens in':>10}  {'tokens out':>10}  {'cost $':>10}  {'p95 s':>7}"
    ]
    lines += [
        f"{row.provider:<{provider_width}}  {row.model:<{model_width}}  {row.usage.calls:>7}  "
        f"{row.usage.failures:>7}  {row.usage.input_tokens:>10}  "
        f"{row.usage.output_tokens:>10}  {row.usage.cost_usd:>10.6f}  {row.p95_latency_s:>7.2f}"
        for row in rows
    ]
    return lines
