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

from pygent_lc import errors
from pygent_lc.providers.boundary import ProviderBoundary
from pygent_lc.providers.cache_markers import without_cache_markers
from pygent_lc.providers.error_mapping import map_exception
from pygent_lc.providers.http import ProviderHttp
from pygent_lc.providers.status import ModelListing, ProviderHealth, one_line, timed
from pygent_lc.providers.text import aclean_chunks, clean_chunks
from pygent_lc.settings import Settings

# Per-call keywords ``ChatOllama`` would send at the top level (ignored there) -> ``options``.
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
        """Our loop-safe, deadline-aware transports, unless the caller set one."""
        shared = dict(values.get("client_kwargs") or {}) if isinstance(values, dict) else {}
        if not isinstance(values, dict) or "transport" in shared:
            return values
        timeout = shared.get("timeout")
        pools = ProviderHttp(timeout=timeout if isinstance(timeout, int | float) else None)
        keys = ("sync_client_kwargs", "async_client_kwargs")  # one transport serves both
        clients = {key: {"transport": pools, **(values.get(key) or {})} for key in keys}
        return {**values, "http_pools": pools, **clients}

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
        """Encodable text, for ``invoke`` too (a surrogate would fail ``ChatOllama``'s join)."""
        return clean_chunks(super()._iterate_over_stream(messages, stop, **kwargs))

    def _aiterate_over_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        return aclean_chunks(super()._aiterate_over_stream(messages, stop, **kwargs))

    def _chat_params(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        kwargs.pop("n", None)  # Ollama has no ``n``: it answers one (the caller asks again)
        per_call = {
            option: kwargs.pop(keyword)
            for keyword, option in _OPTION_KEYWORDS.items()
            if kwargs.get(keyword) is not None
        }
        # Ollama reuses a repeated prefix by itself; marked blocks would reach it joined.
        params = super()._chat_params(without_cache_markers(messages), stop, **kwargs)
        if per_call:
            params["options"] = {**(params.get("options") or {}), **per_call}
        return params

    def _answered(self, result: ChatResult) -> ChatResult:
        """A reply without Ollama's ``done: true`` line was cut off."""
        info = result.generations[0].generation_info if result.generations else None
        if (info or {}).get("done") is not True:
            raise errors.ProviderUnavailableError(
                "reply ended before Ollama's final line", provider="ollama", model=self.model
            )
        return super()._answered(result)


def ollama_model(settings: Settings | None = None, **overrides: Any) -> OllamaChatModel:
    """The first host's; ``num_ctx`` because the server's small default truncates long
    prompts, a timeout because ``ChatOllama`` has none (a hung server would hang us)."""
    settings = settings or Settings()
    ollama = settings.ollama
    model = overrides.pop("model", None) or ollama.model
    if not model:
        raise errors.ConfigurationError(
            "Ollama needs a model name: set OLLAMA_MODEL (see `ollama list`)", field="ollama_model"
        )
    timeout = {"timeout": settings.request_timeout}
    params = {"base_url": ollama.base_urls[0], "num_ctx": ollama.num_ctx, "client_kwargs": timeout}
    return OllamaChatModel(**{"model": model, **params, **overrides})


def ollama_host_models(settings: Settings) -> dict[str, BaseChatModel]:
    """One chat model per host when ``OLLAMA_BASE_URL`` names several (a host pool)."""
    hosts = settings.ollama.base_urls
    return {host: ollama_model(settings, base_url=host) for host in hosts} if len(hosts) > 1 else {}


def installed_ollama_models(settings: Settings, base_url: str | None = None) -> list[str]:
    url = f"{base_url or settings.ollama.base_urls[0]}/api/tags"
    try:
        response = httpx.get(url, timeout=min(settings.request_timeout, 10.0))
        response.raise_for_status()
        return [str(entry["name"]) for entry in response.json().get("models", [])]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        mapped = map_exception(exc, provider="ollama", model=None)
        raise (mapped or errors.ProviderUnavailableError(str(exc), provider="ollama")) from exc


def check_ollama_model(
    settings: Settings, model: str | None = None, base_url: str | None = None
) -> str:
    """The installed name of ``model`` (``llama3.2`` matches ``llama3.2:latest``)."""
    wanted = model or settings.ollama.model
    if not wanted:
        raise errors.ConfigurationError(
            "no Ollama model given: set OLLAMA_MODEL", field="ollama_model"
        )
    host = base_url or settings.ollama.base_urls[0]
    try:
        installed = installed_ollama_models(settings, host)
    except errors.ProviderUnavailableError as exc:
        unresolved = exc.message.startswith("host name not found")
        todo = "check the host name in" if unresolved else "start it with `ollama serve` or set"
        raise errors.ProviderUnavailableError(
            f"Ollama at {host} did not answer ({exc.message}); {todo} OLLAMA_BASE_URL",
            provider="ollama",
            model=wanted,
            status_code=exc.status_code,
            retryable=exc.retryable,
        ) from exc
    candidates = {wanted, wanted if ":" in wanted else f"{wanted}:latest"}
    if found := next((name for name in installed if name in candidates), None):
        return found
    raise errors.ModelNotFoundError(
        f"model {wanted!r} is not installed on {host} "
        f"(installed: {', '.join(installed) or 'none'}); run `ollama pull {wanted}`",
        provider="ollama",
        model=wanted,
        status_code=404,
    )


def check_ollama(settings: Settings, check_model: bool = True) -> str:
    """The configured model (always checked) on the first host that has it; else an error
    naming each host's problem."""
    failures: dict[str, errors.ProviderError] = {}
    for host in settings.ollama.base_urls:
        try:
            return check_ollama_model(settings, base_url=host)
        except errors.ProviderError as exc:
            failures[host] = exc
    if len(failures) == 1:
        raise next(iter(failures.values()))
    summary = "; ".join(f"{host}: {type(e).__name__}: {e.message}" for host, e in failures.items())
    missing = all(isinstance(e, errors.ModelNotFoundError) for e in failures.values())
    raise (errors.ModelNotFoundError if missing else errors.ProviderUnavailableError)(
        f"no Ollama host serves {settings.ollama.model!r} ({summary})",
        provider="ollama",
        model=settings.ollama.model,
        status_code=404 if missing else None,
        retryable=False,
    )


def ollama_health(settings: Settings) -> ProviderHealth:
    model, hosts = settings.ollama.model, settings.ollama.base_urls
    if not model:
        return ProviderHealth("ollama", "not configured", "OLLAMA_MODEL is not set")

    def line(host: str, pooled: bool) -> ProviderHealth:
        named = host if pooled else None
        try:
            found, latency = timed(lambda: check_ollama_model(settings, base_url=host))
        except errors.PygentError as exc:
            return ProviderHealth("ollama", "problem", one_line(exc), model, host=named)
        detail = f"server at {host} answers; {found} installed"
        return ProviderHealth("ollama", "ok", detail, found, latency_ms=latency, host=named)

    if len(hosts) == 1:
        return line(hosts[0], pooled=False)
    with ThreadPoolExecutor(max_workers=min(len(hosts), 8)) as pool:
        lines = tuple(pool.map(lambda host: line(host, pooled=True), hosts))
    serving = [each for each in lines if each.status == "ok"]
    return ProviderHealth(
        "ollama",
        "ok" if len(serving) == len(lines) else "problem",
        f"{len(serving)} of {len(hosts)} hosts answer with {model}",
        model=serving[0].model if serving else model,
        hosts=lines,
    )


def ollama_listing(
    settings: Settings, search: str | None = None, free: bool = False
) -> ModelListing:
    names: dict[str, None] = {}
    failures: list[errors.ProviderError] = []
    for host in settings.ollama.base_urls:
        try:
            names.update(dict.fromkeys(installed_ollama_models(settings, host)))
        except errors.ProviderError as exc:
            failures.append(exc)
    if failures and len(failures) == len(settings.ollama.base_urls):
        raise failures[0]
    rows = [{"id": name} for name in names if not search or search in name]
    return ModelListing(rows, [row["id"] for row in rows] or ["no models installed"])
