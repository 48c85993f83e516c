"""``build_chat_model``: the configured providers, each under its policy, in a chain."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from pygent_lc.chain import ProviderChain
from pygent_lc.errors import ConfigurationError
from pygent_lc.host_pool import HostPool
from pygent_lc.limits import RateSpec, StateStore, shared_store
from pygent_lc.limits.breaker import CircuitBreaker
from pygent_lc.limits.budget import CostBudget
from pygent_lc.limits.rate import FREE_MODEL_LIMIT as FREE
from pygent_lc.policy import ProviderPolicy
from pygent_lc.providers.registry import PROVIDERS, validate_provider_names
from pygent_lc.settings import Settings
from pygent_lc.telemetry import instrument_from_env


class ProviderSkippedWarning(UserWarning):
    """A provider was left out of the chain: its configuration is incomplete."""


def with_provider_policy(
    model: BaseChatModel,
    settings: Settings,
    *,
    breaker: bool = True,
    budget: CostBudget | None = None,
) -> ProviderPolicy:
    """``model`` under the retries, deadline, limits and breaker (unless ``breaker`` is false)
    of ``settings``; ``budget`` or else the settings' ``max_cost_usd`` limits spend."""
    store = state_of(settings)
    traced = model._get_ls_params()  # the provider and model names, as traces show them
    label = getattr(model, "provider_label", None) or traced.get("ls_provider")
    provider = str(label or type(model).__name__)
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    name = name or traced.get("ls_model_name")
    model_name = name if isinstance(name, str) else None
    circuit = None
    if breaker and settings.breaker_failures and settings.breaker_cooldown:
        url = getattr(model, "openai_api_base", None) or getattr(model, "base_url", None)
        circuit = CircuitBreaker(
            settings.breaker_failures,
            settings.breaker_cooldown,
            provider=provider,
            model=model_name,
            endpoint=str(url) if url else None,
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
    limit = settings.rate_limits.get(provider)
    rate_key = f"rate|{provider}"
    if provider == "openrouter" and str(model_name).endswith(":free"):  # at most 20/min per key
        if limit is None or limit.limit / limit.period_s > FREE.limit / FREE.period_s:
            limit = FREE
        api_key = settings.openrouter.api_key
        secret = api_key.get_secret_value() if api_key else ""
        rate_key = f"rate|openrouter:free|{hashlib.sha256(secret.encode()).hexdigest()[:16]}"
    return ProviderPolicy(
        bound=model,
        provider=provider,
        model_name=model_name,
        max_attempts=settings.max_retries + 1,
        initial_wait=settings.retry_initial_wait,
        max_wait=settings.retry_max_wait,
        deadline=settings.request_timeout,
        circuit=circuit,
        store=store,
        rate=None if limit is None else RateSpec(rate_key, limit.limit, limit.period_s),
        rate_mode=settings.rate_limit_mode,
        budget=budget,
        record_usage=settings.state_url is not None,
    )


def state_of(settings: Settings) -> StateStore:
    url = settings.state_url
    return shared_store(url.get_secret_value() if url is not None else None)


def build_chat_model(
    settings: Settings | str | None = None,
    providers: Sequence[str] | None = None,
    *,
    fallbacks: Sequence[str] | None = None,
    budget: CostBudget | None = None,
) -> ProviderChain:
    """The provider chain, like ``init_chat_model``: ``Settings``, or a ``"provider:model"``
    primary with ``fallbacks`` alike. A provider whose configuration is incomplete is skipped
    with a :class:`ProviderSkippedWarning` while others remain. No network."""
    instrument_from_env()  # PYGENT_OTEL=1: telemetry from the first chain on
    if isinstance(settings, str) or fallbacks is not None:
        if providers is not None:
            raise ConfigurationError(
                "give either providers or a 'provider:model' primary with fallbacks",
                field="providers",
            )
        base = settings if isinstance(settings, Settings) else Settings()
        specs = [settings] if isinstance(settings, str) else [str(p) for p in base.providers[:1]]
        changes = {name: getattr(base, name) for name in base.model_fields_set | {"providers"}}
        providers = []
        for spec in [*specs, *(fallbacks or ())]:
            if not isinstance(spec, str) or not spec.strip():
                raise ConfigurationError(f"invalid model spec {spec!r}", field="providers")
            name, _, model = spec.strip().partition(":")
            providers += validate_provider_names([name])
            if model.strip():
                changes[PROVIDERS[providers[-1]].model_keyword] = model.strip()
        settings = Settings(**changes)
    settings = settings or Settings()
    names = validate_provider_names(providers if providers is not None else settings.providers)
    steps: list[Runnable[Any, Any]] = []
    skipped: dict[str, ConfigurationError] = {}
    for name in names:
        try:
            hosts = PROVIDERS[name].host_models(settings)
            models = hosts or {"": PROVIDERS[name].factory(settings)}
        except ConfigurationError as exc:
            skipped[name] = exc
            continue
        each = {url: with_provider_policy(m, settings, budget=budget) for url, m in models.items()}
        steps.append(
            HostPool.of(each, provider=name, store=state_of(settings)) if hosts else each[""]
        )
    if not steps:
        if len(skipped) == 1:
            raise next(iter(skipped.values()))
        reasons = "; ".join(f"{skipped_name}: {why}" for skipped_name, why in skipped.items())
        raise ConfigurationError(f"no provider is usable ({reasons})", field="providers")
    for skipped_name, why in skipped.items():
        warnings.warn(
            f"provider {skipped_name!r} skipped: {why}", ProviderSkippedWarning, stacklevel=2
        )
    return ProviderChain(providers=steps)
