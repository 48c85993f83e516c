"""OpenRouter's catalog, key status and generation stats (``/models``, ``/key``,
``/generation``), and from them its health, model listing and model check."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, BeforeValidator, Field

from pygent_lc.errors import ConfigurationError, ModelNotFoundError, ProviderError, PygentError
from pygent_lc.limits.usage import finite
from pygent_lc.providers.error_mapping import holds_secret, map_exception
from pygent_lc.providers.status import ModelListing, ProviderHealth, one_line, timed
from pygent_lc.settings import Settings

CATALOG_TTL_S = 600.0
PER_MILLION = 1_000_000


def _int_or_none(value: object) -> int | None:
    return value if type(value) is int else None


def _cost(value: object) -> float:
    """Unknown or negative ("varies", on routers) is no cost."""
    return max(finite(value) or 0.0, 0.0)


# Figures from OpenRouter's replies: junk (NaN, text, lists) is unknown, never an error.
_Figure = Annotated[float | None, BeforeValidator(finite)]
_Count = Annotated[int | None, BeforeValidator(_int_or_none)]
_Text = Annotated[str | None, BeforeValidator(lambda v: v if isinstance(v, str) else None)]


@dataclass(frozen=True)
class ModelInfo:
    """One catalog entry; prices in USD per million tokens."""

    id: str
    context_length: int | None
    prompt_price: float
    completion_price: float
    request_price: float
    supported_parameters: tuple[str, ...]
    max_completion_tokens: int | None = None  # the most one reply may have

    @property
    def is_free(self) -> bool:
        return self.id.endswith(":free") or (self.prompt_price == 0 and self.completion_price == 0)

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD at list prices."""
        return (
            self.request_price
            + input_tokens * self.prompt_price / PER_MILLION
            + output_tokens * self.completion_price / PER_MILLION
        )


class KeyStatus(BaseModel, frozen=True):
    """What ``GET /key`` says about the key in use (USD)."""

    label: _Text = None
    limit: _Figure = None
    limit_remaining: _Figure = None
    usage: Annotated[float, BeforeValidator(lambda v: finite(v) or 0.0)] = 0.0
    is_free_tier: Annotated[bool, BeforeValidator(bool)] = False


class GenerationStats(BaseModel, frozen=True, populate_by_name=True):
    """What ``GET /generation`` says about one finished request."""

    id: str
    model: _Text = None
    provider_name: _Text = None
    total_cost: Annotated[float, BeforeValidator(_cost)] = 0.0
    latency_ms: _Figure = Field(None, validation_alias="latency")
    native_tokens_prompt: _Count = None
    native_tokens_completion: _Count = None


def missing_key() -> ConfigurationError:
    return ConfigurationError(
        "OpenRouter needs an API key: set OPENROUTER_API_KEY", field="openrouter_api_key"
    )


_catalog_cache: dict[str, tuple[float, list[ModelInfo]]] = {}  # by base URL (atomic dict ops)


def list_openrouter_models(settings: Settings, *, refresh: bool = False) -> list[ModelInfo]:
    """The catalog (``GET /models``), cached per base URL for ``CATALOG_TTL_S`` seconds."""
    url, now = settings.openrouter.base_url, time.monotonic()
    cached = _catalog_cache.get(url)
    if cached and not refresh and now - cached[0] < CATALOG_TTL_S:
        return cached[1]
    entries = _get(settings, "/models", auth=False).get("data")
    models = [
        _model_info(entry)
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and entry.get("id")
    ]
    _catalog_cache[url] = (now, models)
    return models


def find_openrouter_model(settings: Settings, model_id: str | None = None) -> ModelInfo:
    """The catalog entry of ``model_id`` (default: configured), or ``ModelNotFoundError``."""
    wanted = model_id or settings.openrouter.model
    models = {info.id: info for info in list_openrouter_models(settings)}
    if wanted in models:
        return models[wanted]
    close = difflib.get_close_matches(wanted, list(models), n=3, cutoff=0.5)
    suggestion = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"model {wanted!r} is not in OpenRouter's catalog ({len(models)} models){suggestion} "
        "(see `pygent-lc models`)",
        provider="openrouter",
        model=wanted,
        status_code=404,
    )


def key_status(settings: Settings) -> KeyStatus:
    return KeyStatus.model_validate(_data(_get(settings, "/key", auth=True)))


def generation_stats(settings: Settings, generation_id: str) -> GenerationStats:
    """Ready seconds after the generation ends."""
    if not generation_id.startswith("gen-"):
        raise ConfigurationError(f"not an OpenRouter generation id: {generation_id!r}")
    data = _data(_get(settings, "/generation", auth=True, params={"id": generation_id}))
    own_id = data.get("id") if isinstance(data.get("id"), str) else generation_id
    return GenerationStats.model_validate({**data, "id": own_id})


def openrouter_health(settings: Settings) -> ProviderHealth:
    """Configured? Is the key valid, with credit left, and the model listed?"""
    model = settings.openrouter.model
    if settings.openrouter.api_key is None:
        return ProviderHealth("openrouter", "not configured", "OPENROUTER_API_KEY is not set")
    try:
        key, latency = timed(lambda: key_status(settings))
        info = find_openrouter_model(settings, model)
    except PygentError as exc:
        return ProviderHealth("openrouter", "problem", one_line(exc), model=model)
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


def openrouter_listing(
    settings: Settings, search: str | None = None, free: bool = False
) -> ModelListing:
    """The catalog with prices: ids containing ``search`` (any case), only ``free`` ones."""
    rows: list[dict[str, Any]] = [
        {
            "id": m.id,
            "context_length": m.context_length,
            "prompt_per_million": m.prompt_price,
            "completion_per_million": m.completion_price,
        }
        for m in list_openrouter_models(settings)
        if (not search or search.lower() in m.id.lower()) and (not free or m.is_free)
    ]
    width = max([len(row["id"]) for row in rows] + [5])
    lines = [f"{'model':<{width}}  {'context':>9}  {'$/M in':>9}  {'$/M out':>9}"]
    lines += [
        f"{row['id']:<{width}}  {row['context_length'] or '?':>9}  "
        f"{row['prompt_per_million']:>9.3f}  {row['completion_per_million']:>9.3f}"
        for row in rows
    ]
    return ModelListing(rows, lines)


def _get(
    settings: Settings, path: str, *, auth: bool, params: dict[str, str] | None = None
) -> dict[str, Any]:
    """No local variable holds the key (tracebacks may record them), and the raw error,
    whose request holds it, is chained only without it."""
    key = settings.openrouter.api_key
    if auth and key is None:
        raise missing_key()
    try:
        response = httpx.get(
            f"{settings.openrouter.base_url}{path}",
            headers={"Authorization": f"Bearer {key.get_secret_value()}"} if auth and key else {},
            params=params,
            timeout=min(settings.request_timeout, 30.0),
        )
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        failure = map_exception(exc, provider="openrouter", model=None)
        failure = failure or ProviderError(str(exc), provider="openrouter")
        failure.__cause__ = None if key and holds_secret(exc, [key.get_secret_value()]) else exc
    else:
        if isinstance(body, dict):
            return body
        failure = ProviderError(f"unexpected reply from {path}", provider="openrouter")
    raise failure


def _model_info(entry: dict[str, Any]) -> ModelInfo:
    pricing, top = _data(entry, "pricing"), _data(entry, "top_provider")
    supported = entry.get("supported_parameters")
    return ModelInfo(
        id=str(entry["id"]),
        context_length=_int_or_none(entry.get("context_length")),
        prompt_price=_cost(_cost(pricing.get("prompt")) * PER_MILLION),  # quoted per token
        completion_price=_cost(_cost(pricing.get("completion")) * PER_MILLION),
        request_price=_cost(pricing.get("request")),
        supported_parameters=tuple(supported) if isinstance(supported, list) else (),
        max_completion_tokens=_int_or_none(top.get("max_completion_tokens")),
    )


def _data(body: dict[str, Any], field: str = "data") -> dict[str, Any]:
    value = body.get(field)
    return value if isinstance(value, dict) else {}
