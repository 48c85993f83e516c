"""What ``pygent-lc`` shows: summaries, JSON, one-line errors with a hint, the fallbacks
for ``--json``, and live status lines on a terminal, redrawn on a clock (a call to a slow
model can take a minute, and a time that stands still looks like a hang)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Self, TextIO

from dotenv.parser import parse_stream

from pygent_lc import errors
from pygent_lc.agents import ChatAgent, ReasoningAgent, SolveProgress
from pygent_lc.chain import FallbackNotice, short_reason
from pygent_lc.chain import logger as fallback_logger
from pygent_lc.limits.usage import UsageSummary, UsageTracker
from pygent_lc.providers.local import INSTALL_HINT
from pygent_lc.providers.registry import PROVIDERS
from pygent_lc.redaction import redact_text
from pygent_lc.settings import DEFAULT_ENV_FILE
from pygent_lc.tot.result import ToTResult

# What to do about a configuration error, by the setting it names.
_FIELD_HINTS = {field: hint for spec in PROVIDERS.values() for field, hint in spec.hints.items()}
_DOWN = "run `pygent-lc doctor` to see which provider is down"
#: What to do next, by the kind of failure: the first that matches.
_HINTS: dict[type[BaseException], str] = {
    errors.InvalidInputError: "check the problem text and the numeric options",
    errors.AuthenticationError: "check OPENROUTER_API_KEY (`pygent-lc doctor`)",
    errors.InsufficientCreditsError: "add credits at https://openrouter.ai/settings/credits "
    "or pick a :free model",
    errors.RateLimitError: "wait and retry, or add a fallback (--fallback local)",
    errors.ContentRefusedError: "the provider's moderation refused the input; rephrase it",
    errors.ProviderError: _DOWN,
    errors.AllProvidersFailedError: _DOWN,
    errors.NoAnswerError: "raise --max-calls / --max-cost, or try a stronger model",
    errors.BudgetExceededError: "the spending limit allows no further call: raise or unset "
    "PYGENT_MAX_COST_USD (0 allows none), or wait for its PYGENT_BUDGET_WINDOW to start again",
}
MAX_ERROR_CHARS = 600
_ERASE = "\r\x1b[2K"


def usage_line(usage: UsageTracker) -> str:
    parts = [
        f"{e.provider}/{e.model}: {e.usage.calls} call(s)"
        f"{f' ({e.usage.failures} failed)' if e.usage.failures else ''}, "
        f"{e.usage.input_tokens}+{e.usage.output_tokens} tokens, ${e.usage.cost_usd:.6f}"
        for e in usage.summary().values()
    ]
    return "[" + "; ".join(parts or ["no calls"]) + "]"


def served_by(usage: UsageTracker) -> list[str]:
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
    return {
        "answer": answer,
        "providers": agent.providers,
        "served_by": served_by(agent.usage),
        "usage": usage_json(list(agent.usage.summary().values())),
    }


def solve_json(result: ToTResult, agent: ReasoningAgent) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.to_json(indent=None))
    data["solved"] = result.solved
    return data | answer_json(result.best.text if result.best else None, agent)


def usage_json(rows: list[UsageSummary]) -> list[dict[str, Any]]:
    return [
        {"provider": row.provider, "model": row.model, **asdict(row.usage)}
        | {"mean_latency_s": row.mean_latency_s, "p95_latency_s": row.p95_latency_s}
        for row in rows
    ]


def usage_table(rows: list[UsageSummary]) -> list[str]:
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


def hint_for(exc: BaseException) -> str:
    if isinstance(exc, errors.ConfigurationError):
        field = (exc.field or "").split(" ")[0]
        if field in _FIELD_HINTS:
            return _FIELD_HINTS[field]
        if isinstance(exc, errors.AgentError):
            return "see `pygent-lc --help` and `pygent-lc doctor`"
        if "local" in str(exc) and "pip install" in str(exc):
            return INSTALL_HINT
        return "check the setting or file named above (`pygent-lc doctor` shows every provider)"
    if isinstance(exc, errors.ModelNotFoundError):
        provider = exc.provider if exc.provider in PROVIDERS else "openrouter"
        return f"list the models with `pygent-lc models --provider {provider}`"
    hints = (hint for kind, hint in _HINTS.items() if isinstance(exc, kind))
    return next(hints, "this is a bug in pygent-lc; run with PYGENT_DEBUG=1 to see the traceback")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or "(no message)"


def error_line(exc: BaseException) -> str:
    """``error: <Kind>: <message>`` then ``hint: ...``, the message on one line."""
    message = _one_line(exc)
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    return f"error: {type(exc).__name__}: {message}\nhint: {hint_for(exc)}"


def redact(text: str) -> str:
    """``text`` without the value of any variable (environment, ``./.env``) whose name
    holds KEY, TOKEN or SECRET, nor anything shaped like a credential."""
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
        secret = any(word in name.upper() for word in ("KEY", "TOKEN", "SECRET"))
        if secret and value is not None and len(value) >= 8:
            text = text.replace(value, "***")
    return redact_text(text)


class FallbackRecorder(logging.Handler):
    """Keeps the fallbacks logged while it is attached, as JSON-ready dicts."""

    def __init__(self, fallbacks: list[dict[str, Any]] | None = None) -> None:
        super().__init__(logging.WARNING)
        self.fallbacks = [] if fallbacks is None else fallbacks

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


def _error(exc: BaseException, message: str) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type(exc).__name__, "message": redact(message)}
    if not isinstance(exc, errors.ProviderError):
        return error | dict.fromkeys(("provider", "model", "status"))
    details = {"provider": exc.provider, "model": exc.model, "status": exc.status_code}
    return error | details | {"reason": short_reason(exc)}


def error_json(exc: BaseException) -> dict[str, Any]:
    """``{"error": {type, message, provider, model, status, hint}}``; a chain that failed
    everywhere lists each provider's in ``errors``."""
    error = _error(exc, _one_line(exc)) | {"hint": hint_for(exc)}
    if isinstance(exc, errors.AllProvidersFailedError):
        error["errors"] = [_error(e, e.message) for e in exc.errors.values()]
    return {"error": error}


class StatusLine:
    """One terminal line, redrawn every ``tick_s`` during ``async with``: ``text`` and the
    seconds elapsed, or what a function ``text`` returns (``None``: nothing yet)."""

    def __init__(
        self, stream: TextIO, text: str | Callable[[], str | None], *, tick_s: float = 0.5
    ) -> None:
        started = time.monotonic()
        self.stream = stream
        self.tick_s = tick_s
        self._text = text if callable(text) else lambda: f"{text} {time.monotonic() - started:.1f}s"
        self._shown = self._closed = False
        self._ticker: asyncio.Task[None] | None = None

    def draw(self) -> None:
        if not self._closed and (text := self._text()) is not None:
            self.stream.write(_ERASE + text)
            self.stream.flush()
            self._shown = True

    async def _tick(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(self.tick_s)

    def close(self) -> None:
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
        if self._shown:
            self.stream.write(_ERASE)
            self.stream.flush()
            self._shown = False

    async def __aenter__(self) -> Self:
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        if self._ticker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker


class ProgressLine(StatusLine):
    """``solve``'s line; :meth:`update`, its ``on_progress``, redraws at most every
    ``interval_s``."""

    def __init__(self, stream: TextIO, *, interval_s: float = 0.1, tick_s: float = 0.5) -> None:
        super().__init__(
            stream, lambda: None if self._progress is None else self._progress.line(), tick_s=tick_s
        )
        self.interval_s = interval_s
        self._progress: SolveProgress | None = None
        self._last = 0.0

    def update(self, progress: SolveProgress) -> None:
        self._progress = progress
        if time.monotonic() - self._last >= self.interval_s:
            self._last = time.monotonic()
            self.draw()
