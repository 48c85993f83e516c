"""Ollama through langchain-ollama's ``ChatOllama``, with per-call options and a timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_ollama import ChatOllama
from pydantic import model_validator

from pygent_lc.errors import (
    ConfigurationError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    PygentError,
)
from pygent_lc.providers.boundary import ProviderBoundary
from pygent_lc.providers.cache_markers import without_cache_markers
from pygent_lc.providers.error_mapping import map_exception
from pygent_lc.providers.http import ProviderHttp
from pygent_lc.providers.status import ModelListing, ProviderHealth, one_line, timed
from pygent_lc.providers.text import aclean_chunks, clean_chunks
from pygent_lc.settings import Settings

# Per-call keywords that ``ChatOllama`` would otherwise send at the top level of
# the request (where Ollama ignores them): keyword -> name in ``options``.
_OPTION_KEYWORDS = {
    "max_tokens": "num_predict",
    **{name: name for name in ("temperature", "num_predict", "top_p", "top_k", "seed", "num_ctx")},
}


class OllamaChatModel(ProviderBoundary, ChatOllama):
    """``ChatOllama`` whose per-call ``temperature``/``max_tokens``/``stop`` reach ``options``."""

    provider_label: str = "ollama"

    @model_validator(mode="before")
    @classmethod
    def _own_http_transports(cls, values: Any) -> Any:
        """Loop-safe, deadline-aware transports (:mod:`~pygent_lc.providers.http`)
        under the ollama clients, unless the caller set a transport."""
        shared = dict(values.get("client_kwargs") or {}) if isinstance(values, dict) else {}
        if not isinstance(values, dict) or "transport" in shared:
            return values
        timeout = shared.get("timeout")
        pools = ProviderHttp(timeout=timeout if isinstance(timeout, int | float) else None)
        return {
            **values,
            "http_pools": pools,
            "sync_client_kwargs": {
                "transport": pools,
                **(values.get("sync_client_kwargs") or {}),
            },
            "async_client_kwargs": {
                "transport": pools,
                **(values.get("async_client_kwargs") or {}),
            },
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """Naming the model a call really used (a per-call ``model=``)."""
        params = super()._get_ls_params(stop=stop, **kwargs)
        if isinstance(kwargs.get("model"), str):
            params["ls_model_name"] = kwargs["model"]
        return params

    def _is_final_chunk(self, chunk: ChatGenerationChunk) -> bool:
        return (chunk.generation_info or {}).get("done") is True

    def _iterate_over_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        """Lines with encodable text, for ``invoke`` too: ``ChatOllama`` joins them
        into one reply, which a surrogate would make fail."""
        return clean_chunks(super()._iterate_over_stream(messages, stop, **kwargs))

    def _aiterate_over_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        return aclean_chunks(super()._aiterate_over_stream(messages, stop, **kwargs))

    def _chat_params(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        # Ollama answers one completion a request and has no ``n``: asked for
        # several, it answers one (the caller, told so, asks again).
        kwargs.pop("n", None)
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

    def _answered(self, result: ChatResult) -> ChatResult:
        """A reply without Ollama's ``done: true`` line was cut off."""
        info = result.generations[0].generation_info if result.generations else None
        if (info or {}).get("done") is not True:
            raise ProviderUnavailableError(
                "reply ended before Ollama's final line", provider="ollama", model=self.model
            )
        return super()._answered(result)


def ollama_model(settings: Settings | None = None, **overrides: Any) -> OllamaChatModel:
    """Ollama's chat model from ``settings``; keywords override any field.

    The client gets ``settings.request_timeout`` (``ChatOllama`` has none: a hung
    server would hang the caller) and ``num_ctx`` (the server's small default
    silently truncates long prompts). With several hosts it is the first one's.
    """
    settings = settings or Settings()
    ollama = settings.ollama
    model = overrides.pop("model", None) or ollama.model
    if not model:
        raise ConfigurationError(
            "Ollama needs a model name: set OLLAMA_MODEL (see `ollama list`)", field="ollama_model"
        )
    timeout = {"timeout": settings.request_timeout}
    params = {"base_url": ollama.base_urls[0], "num_ctx": ollama.num_ctx, "client_kwargs": timeout}
    return OllamaChatModel(**{"model": model, **params, **overrides})


def ollama_host_models(settings: Settings) -> dict[str, BaseChatModel]:
    """One chat model per host (by URL) when ``OLLAMA_BASE_URL`` names several, for a
    :class:`~pygent_lc.host_pool.HostPool`; else empty. No network."""
    hosts = settings.ollama.base_urls
    if len(hosts) < 2:
        return {}
    return {host: ollama_model(settings, base_url=host) for host in hosts}


def installed_ollama_models(settings: Settings, base_url: str | None = None) -> list[str]:
    """The models installed at ``base_url`` (default: the first host): ``GET /api/tags``."""
    url = f"{base_url or settings.ollama.base_urls[0]}/api/tags"
    try:
        response = httpx.get(url, timeout=min(settings.request_timeout, 10.0))
        response.raise_for_status()
        return [str(entry["name"]) for entry in response.json().get("models", [])]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        mapped = map_exception(exc, provider="ollama", model=None)
        raise (mapped or ProviderUnavailableError(str(exc), provider="ollama")) from exc


def check_ollama_model(
    settings: Settings, model: str | None = None, base_url: str | None = None
) -> str:
    """The installed name of ``model`` on ``base_url`` (default: the first host), or
    ``ModelNotFoundError`` listing the rest; ``llama3.2`` matches ``llama3.2:latest``."""
    wanted = model or settings.ollama.model
    if not wanted:
        raise ConfigurationError("no Ollama model given: set OLLAMA_MODEL", field="ollama_model")
    host = base_url or settings.ollama.base_urls[0]
    installed = installed_ollama_models(settings, host)
    candidates = {wanted, wanted if ":" in wanted else f"{wanted}:latest"}
    if found := next((name for name in installed if name in candidates), None):
        return found
    listing = ", ".join(installed) or "none"
    raise ModelNotFoundError(
        f"model {wanted!r} is not installed on {host} "
        f"(installed: {listing}); run `ollama pull {wanted}`",
        provider="ollama",
        model=wanted,
        status_code=404,
    )


def _check_host(settings: Settings, host: str) -> str:
    """:func:`check_ollama_model` on ``host``, with what to do when it does not answer."""
    try:
        return check_ollama_model(settings, base_url=host)
    except ProviderUnavailableError as exc:
        unresolved = exc.message.startswith("host name not found")
        todo = "check the host name in" if unresolved else "start it with `ollama serve` or set"
        raise ProviderUnavailableError(
            f"Ollama at {host} did not answer ({exc.message}); {todo} OLLAMA_BASE_URL",
            provider="ollama",
            model=settings.ollama.model,
            status_code=exc.status_code,
            retryable=exc.retryable,
        ) from exc


def check_ollama(settings: Settings, check_model: bool = True) -> str:
    """The installed name of the configured model: :class:`ProviderUnavailableError`
    when Ollama does not answer, :class:`ModelNotFoundError` when it lacks the model
    (always checked: one local request). Of several hosts one with the model is
    enough (the pool skips the others); else the error names each one's problem.
    """
    errors: dict[str, ProviderError] = {}
    for host in settings.ollama.base_urls:
        try:
            return _check_host(settings, host)
        except ProviderError as exc:
            errors[host] = exc
    if len(errors) == 1:
        raise next(iter(errors.values()))
    summary = "; ".join(f"{host}: {type(e).__name__}: {e.message}" for host, e in errors.items())
    missing = all(isinstance(e, ModelNotFoundError) for e in errors.values())
    raise (ModelNotFoundError if missing else ProviderUnavailableError)(
        f"no Ollama host serves {settings.ollama.model!r} ({summary})",
        provider="ollama",
        model=settings.ollama.model,
        status_code=404 if missing else None,
        retryable=False,
    )


def _host_health(settings: Settings, host: str | None = None) -> ProviderHealth:
    """One server's line: does it answer, with the model installed?"""
    url = host or settings.ollama.base_urls[0]
    try:
        installed, latency = timed(lambda: _check_host(settings, url))
    except PygentError as exc:
        return ProviderHealth("ollama", "problem", one_line(exc), settings.ollama.model, host=host)
    detail = f"server at {url} answers; {installed} installed"
    return ProviderHealth("ollama", "ok", detail, installed, latency_ms=latency, host=host)


def ollama_health(settings: Settings) -> ProviderHealth:
    """Configured? Does the server answer, with the model installed? Of several
    hosts, one line each (``hosts``, checked at once), ``"ok"`` when all are."""
    model = settings.ollama.model
    if not model:
        return ProviderHealth("ollama", "not configured", "OLLAMA_MODEL is not set")
    hosts = settings.ollama.base_urls
    if len(hosts) == 1:
        return _host_health(settings)
    with ThreadPoolExecutor(max_workers=min(len(hosts), 8)) as pool:
        lines = tuple(pool.map(lambda host: _host_health(settings, host), hosts))
    serving = [line for line in lines if line.status == "ok"]
    detail = f"{len(serving)} of {len(hosts)} hosts answer with {model}"
    return ProviderHealth(
        "ollama",
        "ok" if len(serving) == len(lines) else "problem",
        detail,
        model=serving[0].model if serving else model,
        hosts=lines,
    )


def ollama_listing(
    settings: Settings, search: str | None = None, free: bool = False
) -> ModelListing:
    """The installed models (of every host that answers) whose name contains ``search``."""
    names: dict[str, None] = {}
    errors: list[ProviderError] = []
    for host in settings.ollama.base_urls:
        try:
            names.update(dict.fromkeys(installed_ollama_models(settings, host)))
        except ProviderError as exc:
            errors.append(exc)
    if errors and len(errors) == len(settings.ollama.base_urls):
        raise errors[0]
    rows = [{"id": name} for name in names if not search or search in name]
    return ModelListing(rows, [row["id"] for row in rows] or ["no models installed"])
