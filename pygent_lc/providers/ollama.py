"""Ollama through langchain-ollama's ``ChatOllama``, with per-call options and a timeout."""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_ollama import ChatOllama
from pydantic import model_validator

from pygent_lc.errors import (
    ConfigurationError,
    ModelNotFoundError,
    ProviderUnavailableError,
    PygentError,
)
from pygent_lc.providers.boundary import ProviderBoundary
from pygent_lc.providers.cache_markers import without_cache_markers
from pygent_lc.providers.error_mapping import map_exception
from pygent_lc.providers.http import ProviderHttp
from pygent_lc.providers.status import ModelListing, ProviderHealth, one_line, timed
from pygent_lc.settings import Settings

# Per-call keywords that ``ChatOllama`` would otherwise send at the top level of
# the request (where Ollama ignores them): keyword -> name in ``options``.
_OPTION_KEYWORDS = {
    "temperature": "temperature",
    "max_tokens": "num_predict",
    "num_predict": "num_predict",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "num_ctx": "num_ctx",
}


class OllamaChatModel(ProviderBoundary, ChatOllama):
    """``ChatOllama`` whose per-call ``temperature``/``max_tokens``/``stop`` reach ``options``."""

    provider_label: str = "ollama"

    @model_validator(mode="before")
    @classmethod
    def _own_http_transports(cls, values: Any) -> Any:
        """Loop-safe, deadline-aware transports under the ollama clients, unless the
        caller set a transport (see :mod:`pygent_lc.providers.http`)."""
        if not isinstance(values, dict):
            return values
        shared = dict(values.get("client_kwargs") or {})
        if "transport" in shared:
            return values
        timeout = shared.get("timeout")
        pools = ProviderHttp(timeout=timeout if isinstance(timeout, int | float) else None)
        return {
            **values,
            "http_pools": pools,
            "sync_client_kwargs": {
                "transport": pools.sync_transport,
                **(values.get("sync_client_kwargs") or {}),
            },
            "async_client_kwargs": {
                "transport": pools.async_transport,
                **(values.get("async_client_kwargs") or {}),
            },
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """LangSmith params naming the model a call really used (a per-call ``model=``)."""
        params = super()._get_ls_params(stop=stop, **kwargs)
        if isinstance(kwargs.get("model"), str):
            params["ls_model_name"] = kwargs["model"]
        return params

    def _is_final_chunk(self, chunk: ChatGenerationChunk) -> bool:
        return (chunk.generation_info or {}).get("done") is True

    def _chat_params(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        per_call = {
            option: kwargs.pop(keyword)
            for keyword, option in _OPTION_KEYWORDS.items()
            if kwargs.get(keyword) is not None
        }
        # Ollama reuses a repeated prefix by itself; marked text blocks would
        # reach it joined by newlines, so it gets the plain prompt.
        params = super()._chat_params(without_cache_markers(messages), stop, **kwargs)
        if per_call:
            params["options"] = {**(params.get("options") or {}), **per_call}
        return params

    def _chat_stream_with_aggregation(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        verbose: bool = False,
        **kwargs: Any,
    ) -> ChatGenerationChunk:
        final = super()._chat_stream_with_aggregation(
            messages, stop, run_manager, verbose, **kwargs
        )
        return self._require_done(final)

    async def _achat_stream_with_aggregation(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        verbose: bool = False,
        **kwargs: Any,
    ) -> ChatGenerationChunk:
        final = await super()._achat_stream_with_aggregation(
            messages, stop, run_manager, verbose, **kwargs
        )
        return self._require_done(final)

    def _require_done(self, final: ChatGenerationChunk) -> ChatGenerationChunk:
        """A reply without Ollama's ``done: true`` line was cut off."""
        if not self._is_final_chunk(final):
            raise ProviderUnavailableError(
                "reply ended before Ollama's final line", provider="ollama", model=self.model
            )
        return final


def ollama_model(settings: Settings | None = None, **overrides: Any) -> OllamaChatModel:
    """Ollama's chat model from ``settings``; keywords override any field.

    The client gets ``settings.request_timeout`` (``ChatOllama`` has none, so a
    hung server would hang the caller) and an explicit ``num_ctx`` (the
    server's small default silently truncates long prompts).
    """
    settings = settings or Settings()
    ollama = settings.ollama
    model = overrides.pop("model", None) or ollama.model
    if not model:
        raise ConfigurationError(
            "Ollama needs a model name: set OLLAMA_MODEL (see `ollama list`)", field="ollama_model"
        )
    params: dict[str, Any] = {
        "model": model,
        "base_url": ollama.base_url,
        "num_ctx": ollama.num_ctx,
        "client_kwargs": {"timeout": settings.request_timeout},
    }
    params.update(overrides)
    return OllamaChatModel(**params)


def installed_ollama_models(settings: Settings) -> list[str]:
    """Names of the models installed on the Ollama server (``GET /api/tags``)."""
    url = f"{settings.ollama.base_url}/api/tags"
    try:
        response = httpx.get(url, timeout=min(settings.request_timeout, 10.0))
        response.raise_for_status()
        return [str(entry["name"]) for entry in response.json().get("models", [])]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        mapped = map_exception(exc, provider="ollama", model=None)
        raise (mapped or ProviderUnavailableError(str(exc), provider="ollama")) from exc


def check_ollama_model(settings: Settings, model: str | None = None) -> str:
    """Return the installed name of ``model`` or raise ``ModelNotFoundError`` listing the rest.

    ``llama3.2`` matches ``llama3.2:latest``, as it does for Ollama itself.
    """
    wanted = model or settings.ollama.model
    if not wanted:
        raise ConfigurationError("no Ollama model given: set OLLAMA_MODEL", field="ollama_model")
    installed = installed_ollama_models(settings)
    candidates = {wanted, wanted if ":" in wanted else f"{wanted}:latest"}
    for name in installed:
        if name in candidates:
            return name
    listing = ", ".join(installed) or "none"
    raise ModelNotFoundError(
        f"model {wanted!r} is not installed on {settings.ollama.base_url} "
        f"(installed: {listing}); run `ollama pull {wanted}`",
        provider="ollama",
        model=wanted,
        status_code=404,
    )


def check_ollama(settings: Settings, check_model: bool = True) -> str:
    """The installed name of the configured model; the server must answer and have it.

    Raises :class:`ProviderUnavailableError` when Ollama does not answer and
    :class:`ModelNotFoundError` (listing the installed models) when the model
    is not installed. ``check_model`` is for the registry's signature: an
    Ollama model is always checked (it costs one local request).
    """
    try:
        return check_ollama_model(settings)
    except ProviderUnavailableError as exc:
        raise ProviderUnavailableError(
            f"Ollama at {settings.ollama.base_url} did not answer ({exc.message}); "
            "start it with `ollama serve` or set OLLAMA_BASE_URL",
            provider="ollama",
            model=settings.ollama.model,
            status_code=exc.status_code,
            retryable=exc.retryable,
        ) from exc


def ollama_health(settings: Settings) -> ProviderHealth:
    """Configured? Does the server answer, with the model installed?"""
    model = settings.ollama.model
    if not model:
        return ProviderHealth("ollama", "not configured", "OLLAMA_MODEL is not set")
    try:
        installed, latency = timed(lambda: check_ollama(settings))
    except PygentError as exc:
        return ProviderHealth("ollama", "problem", one_line(exc), model=model)
    detail = f"server at {settings.ollama.base_url} answers; {installed} installed"
    return ProviderHealth("ollama", "ok", detail, model=installed, latency_ms=latency)


def ollama_listing(
    settings: Settings, search: str | None = None, free: bool = False
) -> ModelListing:
    """The installed models whose name contains ``search`` (``free`` does not apply)."""
    names = installed_ollama_models(settings)
    rows = [{"id": name} for name in names if not search or search in name]
    return ModelListing(rows, [row["id"] for row in rows] or ["no models installed"])
