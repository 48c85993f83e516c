"""``build_chat_model``: the configured providers, each retried, joined by fallbacks."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from pygent_lc.errors import ConfigurationError
from pygent_lc.fallbacks import ProviderChain
from pygent_lc.host_pool import HostPool
from pygent_lc.limits import RateSpec, StateStore, shared_store
from pygent_lc.limits.breaker import CircuitBreaker
from pygent_lc.limits.budget import CostBudget
from pygent_lc.limits.rate import FREE_MODEL_LIMIT
from pygent_lc.policy import ProviderPolicy, RetryPolicy
from pygent_lc.providers.registry import PROVIDERS, validate_provider_names
from pygent_lc.settings import Settings
from pygent_lc.telemetry import instrument_from_env


class ProviderSkippedWarning(UserWarning):
    """A provider of the chain was left out because its configuration is incomplete."""


def with_provider_policy(
    model: BaseChatModel,
    settings: Settings,
    *,
    breaker: bool = True,
    budget: CostBudget | None = None,
) -> ProviderPolicy:
    """``model`` under the retry policy, deadline, limits and circuit breaker of ``settings``.

    State (breaker, rate limit, budget, usage) lives in the store of
    ``settings.state_url``: this process's own without one. The breaker is left
    out when ``breaker`` is false or the settings disable it
    (``breaker_failures`` or ``breaker_cooldown`` of 0). ``budget`` is the
    spending limit (else the settings' ``max_cost_usd``, keyed ``budget_key``).
    """
    store = state_of(settings)
    provider, model_name = names_of(model)
    circuit = None
    if breaker and settings.breaker_failures and settings.breaker_cooldown:
        circuit = CircuitBreaker(
            settings.breaker_failures,
            settings.breaker_cooldown,
            provider=provider,
            model=model_name,
            endpoint=endpoint_of(model),
            store=store,
        )
    if budget is not None and settings.max_cost_usd is not None:
        raise ConfigurationError(
            "give a budget or PYGENT_MAX_COST_USD, not both", field="max_cost_usd"
        )
    if settings.max_cost_usd is not None:
        budget = CostBudget(
            settings.max_cost_usd,
            store=store,
            key=settings.budget_key,
            window_s=settings.budget_window_s,
        )
    return ProviderPolicy(
        bound=model,
        provider=provider,
        model_name=model_name,
        retry=RetryPolicy(
            max_attempts=settings.max_retries + 1,
            initial_wait=settings.retry_initial_wait,
            max_wait=settings.retry_max_wait,
            deadline=settings.request_timeout,
        ),
        circuit=circuit,
        store=store,
        rate=rate_spec(model, provider, settings),
        rate_mode=settings.rate_limit_mode,
        budget=budget,
        record_usage=settings.state_url is not None,
    )


def state_of(settings: Settings) -> StateStore:
    """The store of ``settings.state_url``; without one, this process's own."""
    url = settings.state_url
    return shared_store(url.get_secret_value() if url is not None else None)


def names_of(model: BaseChatModel) -> tuple[str, str | None]:
    """The provider and model names of ``model``, as LangChain traces name them."""
    traced = model._get_ls_params()
    provider = getattr(model, "provider_label", None) or traced.get("ls_provider")
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    name = name or traced.get("ls_model_name")
    return str(provider or type(model).__name__), name if isinstance(name, str) else None


def endpoint_of(model: BaseChatModel) -> str | None:
    """The server a model talks to (its base URL), part of its breaker's key."""
    url = getattr(model, "openai_api_base", None) or getattr(model, "base_url", None)
    return str(url) if url else None


def rate_spec(model: BaseChatModel, provider: str, settings: Settings) -> RateSpec | None:
    """The rate limit of ``provider`` in ``settings``; for OpenRouter's ``:free``
    models the stricter of it and their built-in 20 a minute per key."""
    limit = settings.rate_limits.get(provider)
    key = f"rate|{provider}"
    model_name = str(getattr(model, "model_name", None) or "")
    if provider == "openrouter" and model_name.endswith(":free"):
        free = FREE_MODEL_LIMIT
        if limit is None or limit.limit / limit.period_s > free.limit / free.period_s:
            limit = free
        api_key = settings.openrouter.api_key
        secret = api_key.get_secret_value() if api_key else ""
        key = f"rate|openrouter:free|{hashlib.sha256(secret.encode()).hexdigest()[:16]}"
    return None if limit is None else RateSpec(key, limit.limit, limit.period_s)


def build_chat_model(
    settings: Settings | str | None = None,
    providers: Sequence[str] | None = None,
    *,
    fallbacks: Sequence[str] | None = None,
    budget: CostBudget | None = None,
) -> ProviderChain:
    """The provider chain: each provider retried, then the next one on ``ProviderError``.

    Two forms, like LangChain's ``init_chat_model``::

        build_chat_model(Settings(...))                         # the configured chain
        build_chat_model("openrouter:anthropic/claude-3.5-sonnet")
        build_chat_model("ollama:llama3.1", fallbacks=["local"])

    A ``"provider:model"`` string (or just ``"provider"``) names the primary;
    ``fallbacks`` (same form) follow it in order. Everything else comes from
    ``Settings()`` (the environment), or from ``providers``'s settings object
    when ``settings`` is one and ``fallbacks`` is given.

    Always a :class:`ProviderChain`, one provider or several, so ``bind_tools``
    and ``with_structured_output`` work the same on any configuration; with one
    provider its own typed error is raised, not ``AllProvidersFailedError``.

    Each provider sits behind its own circuit breaker (:mod:`pygent_lc.limits.breaker`),
    shared by every call through the returned Runnable. A provider configured
    with several hosts (``OLLAMA_BASE_URL=http://a:11434,http://b:11434``) is a
    :class:`~pygent_lc.host_pool.HostPool`: one breaker per host, each call to
    the least busy host, the next host on failure before the next provider.

    ``providers`` overrides ``settings.providers`` (same names). A provider
    whose configuration is incomplete (no key, no model, no local extra) is
    skipped with a :class:`ProviderSkippedWarning` while others remain;
    otherwise its :class:`ConfigurationError` is raised. Nothing here touches
    the network. ``budget`` (a :class:`~pygent_lc.limits.budget.CostBudget`) is
    reserved by every provider call, as ``PYGENT_MAX_COST_USD`` builds one (not
    both); its ledger is kept in the settings' state store unless it has a store.
    With ``PYGENT_OTEL=1`` it first switches on telemetry
    (:func:`pygent_lc.telemetry.instrument`), once per process.
    """
    instrument_from_env()  # PYGENT_OTEL=1: telemetry from the first chain on
    if isinstance(settings, str) or fallbacks is not None:
        if providers is not None:
            raise ConfigurationError(
                "give either providers or a 'provider:model' primary with fallbacks",
                field="providers",
            )
        primary = settings if isinstance(settings, str) else None
        base = settings if isinstance(settings, Settings) else Settings()
        settings, providers = _settings_for_specs(base, primary, fallbacks or ())
    settings = settings or Settings()
    names = validate_provider_names(providers if providers is not None else settings.providers)
    steps: list[Runnable[Any, Any]] = []
    skipped: dict[str, ConfigurationError] = {}
    for name in names:
        try:
            hosts = PROVIDERS[name].host_models(settings)
            model = None if hosts else PROVIDERS[name].factory(settings)
        except ConfigurationError as exc:
            skipped[name] = exc
            continue
        steps.append(
            with_provider_policy(model, settings, budget=budget)
            if model is not None
            else _host_pool(name, hosts, settings, budget)
        )
    if not steps:
        if len(skipped) == 1:
            (only_reason,) = skipped.values()
            raise only_reason
        reasons = "; ".join(f"{skipped_name}: {why}" for skipped_name, why in skipped.items())
        raise ConfigurationError(f"no provider is usable ({reasons})", field="providers")
    for skipped_name, why in skipped.items():
        warnings.warn(
            f"provider {skipped_name!r} skipped: {why}", ProviderSkippedWarning, stacklevel=2
        )
    return ProviderChain(providers=steps)


def _host_pool(
    name: str,
    hosts: Mapping[str, BaseChatModel],
    settings: Settings,
    budget: CostBudget | None,
) -> HostPool:
    """Provider ``name`` served by several hosts: one policy (and breaker) per host."""
    return HostPool.of(
        {url: with_provider_policy(model, settings, budget=budget) for url, model in hosts.items()},
        provider=name,
        store=state_of(settings),
    )


def _settings_for_specs(
    base: Settings, primary: str | None, fallbacks: Sequence[str]
) -> tuple[Settings, list[str]]:
    """``base`` with each ``"provider:model"`` spec's model set, and the provider order."""
    specs = [primary] if primary is not None else [str(name) for name in base.providers[:1]]
    changes: dict[str, Any] = {}
    names: list[str] = []
    for spec in [*specs, *fallbacks]:
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigurationError(f"invalid model spec {spec!r}", field="providers")
        name, _, model = spec.strip().partition(":")
        (provider,) = validate_provider_names([name])
        names.append(provider)
        if model.strip():
            changes[PROVIDERS[provider].model_keyword] = model.strip()
    validate_provider_names(names)  # each provider once
    return Settings(**{**_explicit_values(base), **changes}), names


def _explicit_values(settings: Settings) -> dict[str, Any]:
    """The values of ``settings`` as keywords for a new ``Settings``."""
    return {name: getattr(settings, name) for name in settings.model_fields_set | {"providers"}}


__all__ = [
    "ProviderSkippedWarning",
    "build_chat_model",
    "validate_provider_names",
    "with_provider_policy",
]
