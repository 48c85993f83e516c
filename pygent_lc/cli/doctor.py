"""``diagnose``: is each provider configured, reachable, keyed, with its model? How fast?

What ``pygent-lc doctor`` prints. Each provider checks itself
(``ProviderSpec.health`` in the provider registry); only providers whose
configuration is complete are contacted. ``probe`` also asks each healthy one
for a few tokens, through the same chain an agent would use. With a shared
state store (``PYGENT_STATE_URL``), one more line names a password or a
user's permissions that its Redis refuses.
"""

from __future__ import annotations

from collections.abc import Sequence

from pygent_lc.build import build_chat_model
from pygent_lc.errors import PygentError
from pygent_lc.langchain_backend import LangChainBackend
from pygent_lc.limits import ResilientStore, open_store, redact_url
from pygent_lc.limits.store import MEMORY_URLS
from pygent_lc.providers.ollama import installed_ollama_models
from pygent_lc.providers.registry import PROVIDERS
from pygent_lc.providers.status import ProviderHealth, one_line, timed
from pygent_lc.settings import ProviderName, Settings

PROBE_PROMPT = "Reply with the single word OK."


def diagnose(
    settings: Settings, providers: Sequence[ProviderName] | None = None, *, probe: bool = False
) -> list[ProviderHealth]:
    """The health of each provider (default: all, in the configured order first)."""
    names = list(providers or dict.fromkeys([*settings.providers, *PROVIDERS]))
    report = []
    for name in names:
        health = PROVIDERS[name].health(settings)
        if probe and health.status == "ok":
            health = _probe(name, settings, health)
        report.append(health)
    store = _state_store_problem(settings)
    return report if store is None else [*report, store]


def _state_store_problem(settings: Settings) -> ProviderHealth | None:
    """A line when the shared state store refuses this client (its password, its ACL).

    Every call would fall back to per-process limits; a Redis that is down or
    read-only is an outage that passes, and calls are answered meanwhile.
    """
    url = settings.state_url.get_secret_value() if settings.state_url is not None else None
    if url is None or url.strip() in MEMORY_URLS:
        return None
    store = open_store(url)
    try:
        outage = store.check() if isinstance(store, ResilientStore) else None
    finally:
        store.close()
    if outage is None or not outage.misconfigured:
        return None
    return ProviderHealth("state store", "problem", f"{redact_url(url)} {outage}")


def first_configured(settings: Settings) -> ProviderName:
    """The chain's first provider that is set up: OpenRouter with a key, Ollama whose
    server answers, any other as it is; ``local`` (the embedded model) when none is.

    What ``pygent-lc models`` lists without ``--provider``.
    """
    key = settings.openrouter.api_key
    for name in settings.providers:
        if name == "openrouter" and (key is None or not key.get_secret_value().strip()):
            continue  # `OPENROUTER_API_KEY=` in a .env is no key either
        if name == "ollama" and not _ollama_answers(settings):
            continue
        return name
    return "local"


def _ollama_answers(settings: Settings) -> bool:
    """Whether one of the Ollama hosts answers ``GET /api/tags``."""
    for host in settings.ollama.base_urls:
        try:
            installed_ollama_models(settings, host)
        except PygentError:
            continue
        return True
    return False


def setup_hint() -> str:
    """How to make some provider usable."""
    return ", or ".join(spec.setup_hint for spec in PROVIDERS.values())


def _probe(name: ProviderName, settings: Settings, health: ProviderHealth) -> ProviderHealth:
    try:
        with LangChainBackend(build_chat_model(settings, [name])) as backend:  # closes its pool
            reply, latency = timed(
                lambda: backend.generate_sync(PROBE_PROMPT, max_tokens=4, temperature=0.0)
            )
    except PygentError as exc:
        return ProviderHealth(name, "problem", f"probe failed: {one_line(exc)}", health.model)
    detail = f"{health.detail}; probe answered {reply.strip()[:20]!r}"
    return ProviderHealth(name, "ok", detail, model=health.model, latency_ms=latency)
