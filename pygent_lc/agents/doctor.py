"""``diagnose``: is each provider configured, reachable, keyed, with its model? How fast?

What ``pygent-lc doctor`` prints. Only providers whose configuration is
complete are contacted; ``probe`` also asks each healthy one for a few
tokens, through the same chain an agent would use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pygent_lc.agents.checks import check_ollama, configured_model
from pygent_lc.chain import build_chat_model
from pygent_lc.errors import AgentError, PygentError
from pygent_lc.langchain_backend import LangChainBackend
from pygent_lc.openrouter_catalog import find_openrouter_model, key_status
from pygent_lc.providers.local import default_model_path
from pygent_lc.settings import PROVIDER_NAMES, ProviderName, Settings

Status = Literal["ok", "problem", "not configured"]
PROBE_PROMPT = "Reply with the single word OK."


@dataclass(frozen=True)
class ProviderHealth:
    """One line of the doctor's report."""

    provider: str
    status: Status
    detail: str
    model: str | None = None
    latency_ms: float | None = None
    """Time of the provider's own check request (or the probe, with ``probe``)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(
    settings: Settings, providers: Sequence[ProviderName] | None = None, *, probe: bool = False
) -> list[ProviderHealth]:
    """The health of each provider (default: all three, in the configured order first)."""
    names = list(providers or _all_in_order(settings))
    report = []
    for name in names:
        health = _CHECKS[name](settings)
        if probe and health.status == "ok":
            health = _probe(name, settings, health)
        report.append(health)
    return report


def _all_in_order(settings: Settings) -> list[ProviderName]:
    return [*settings.providers, *(p for p in PROVIDER_NAMES if p not in settings.providers)]


def _timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = action()
    return value, (time.perf_counter() - started) * 1000


def _openrouter(settings: Settings) -> ProviderHealth:
    model = settings.openrouter_model
    if settings.openrouter_api_key is None:
        return ProviderHealth("openrouter", "not configured", "OPENROUTER_API_KEY is not set")
    try:
        key, latency = _timed(lambda: key_status(settings))
        info = find_openrouter_model(settings, model)
    except PygentError as exc:
        return ProviderHealth("openrouter", "problem", _one_line(exc), model=model)
    credit = (
        "no credit limit"
        if key.limit_remaining is None
        else f"${key.limit_remaining:.2f} of ${key.limit or 0:.2f} left"
    )
    tier = ", free tier" if key.is_free_tier else ""
    detail = (
        f"key valid ({credit}, ${key.usage:.4f} used{tier}); model listed "
        f"({info.context_length or '?'} tokens context, ${info.prompt_price:g}/"
        f"${info.completion_price:g} per M in/out)"
    )
    return ProviderHealth("openrouter", "ok", detail, model=model, latency_ms=latency)


def _ollama(settings: Settings) -> ProviderHealth:
    model = settings.ollama_model
    if not model:
        return ProviderHealth("ollama", "not configured", "OLLAMA_MODEL is not set")
    try:
        installed, latency = _timed(lambda: check_ollama(settings))
    except PygentError as exc:
        return ProviderHealth("ollama", "problem", _one_line(exc), model=model)
    detail = f"server at {settings.ollama_base_url} answers; {installed} installed"
    return ProviderHealth("ollama", "ok", detail, model=installed, latency_ms=latency)


def _local(settings: Settings) -> ProviderHealth:
    try:
        configured_model("local", settings)
    except AgentError as exc:
        return ProviderHealth("local", "problem", _one_line(exc))
    path = settings.local_model_path or default_model_path()
    size = f"{path.stat().st_size / 1e6:.0f} MB" if path is not None else "?"
    name = path.name if path is not None else None
    return ProviderHealth(
        "local", "ok", f"llama.cpp server starts on first use; model file {path} ({size})", name
    )


def _probe(name: ProviderName, settings: Settings, health: ProviderHealth) -> ProviderHealth:
    backend = LangChainBackend(build_chat_model(settings, [name]))
    try:
        reply, latency = _timed(
            lambda: backend.generate_sync(PROBE_PROMPT, max_tokens=4, temperature=0.0)
        )
    except PygentError as exc:
        return ProviderHealth(name, "problem", f"probe failed: {_one_line(exc)}", health.model)
    detail = f"{health.detail}; probe answered {reply.strip()[:20]!r}"
    return ProviderHealth(name, "ok", detail, model=health.model, latency_ms=latency)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


_CHECKS: dict[ProviderName, Callable[[Settings], ProviderHealth]] = {
    "openrouter": _openrouter,
    "ollama": _ollama,
    "local": _local,
}

__all__ = ["ProviderHealth", "diagnose"]
