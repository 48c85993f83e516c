"""``diagnose``: is each provider configured, reachable, keyed, with its model? How fast?

What ``pygent-lc doctor`` prints. Each provider checks itself
(``ProviderSpec.health`` in the provider registry); only providers whose
configuration is complete are contacted. ``probe`` also asks each healthy one
for a few tokens, through the same chain an agent would use.
"""

from __future__ import annotations

from collections.abc import Sequence

from pygent_lc.chain import build_chat_model
from pygent_lc.errors import PygentError
from pygent_lc.langchain_backend import LangChainBackend
from pygent_lc.providers.registry import PROVIDERS
from pygent_lc.providers.status import ProviderHealth, Status, one_line, timed
from pygent_lc.settings import ProviderName, Settings

PROBE_PROMPT = "Reply with the single word OK."


def diagnose(
    settings: Settings, providers: Sequence[ProviderName] | None = None, *, probe: bool = False
) -> list[ProviderHealth]:
    """The health of each provider (default: all, in the configured order first)."""
    names = list(providers or _all_in_order(settings))
    report = []
    for name in names:
        health = PROVIDERS[name].health(settings)
        if probe and health.status == "ok":
            health = _probe(name, settings, health)
        report.append(health)
    return report


def setup_hint() -> str:
    """How to make some provider usable."""
    return ", or ".join(spec.setup_hint for spec in PROVIDERS.values())


def _all_in_order(settings: Settings) -> list[ProviderName]:
    return [*settings.providers, *(p for p in PROVIDERS if p not in settings.providers)]


def _probe(name: ProviderName, settings: Settings, health: ProviderHealth) -> ProviderHealth:
    backend = LangChainBackend(build_chat_model(settings, [name]))
    try:
        reply, latency = timed(
            lambda: backend.generate_sync(PROBE_PROMPT, max_tokens=4, temperature=0.0)
        )
    except PygentError as exc:
        return ProviderHealth(name, "problem", f"probe failed: {one_line(exc)}", health.model)
    detail = f"{health.detail}; probe answered {reply.strip()[:20]!r}"
    return ProviderHealth(name, "ok", detail, model=health.model, latency_ms=latency)


__all__ = ["ProviderHealth", "Status", "diagnose", "setup_hint"]
