"""``pygent-lc usage``: fleet-wide usage per provider and model, from the shared state store.

Every process that shares the store (``PYGENT_STATE_URL``, a ``redis://``
URL) adds its calls to the same totals (:meth:`StateStore.usage_rows`):
calls, failures, tokens, cost and latency per (provider, model). Without a
shared store each process keeps its usage to itself (the summary ``chat``
and ``solve`` print), so there is nothing for this command to read: it says
so on one line and exits 2, like any other configuration problem.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pygent_lc.limits import ResilientStore, open_store, redact_url
from pygent_lc.limits.store import MEMORY_URLS, UNREACHABLE
from pygent_lc.limits.usage import UsageSummary

STATE_URL_ENV = "PYGENT_STATE_URL"

NO_SHARED_STORE = (
    f"usage is only kept per process unless {STATE_URL_ENV} is set "
    "(a redis:// URL every process shares); nothing to show"
)


class StoreUnreachableError(Exception):
    """The shared store did not answer, so its totals are unknown."""


def is_shared_store_url(url: str | None) -> bool:
    """Whether ``url`` names a store other processes can share (not memory)."""
    return url is not None and url.strip() not in MEMORY_URLS


def fleet_usage(url: str) -> list[UsageSummary]:
    """The usage totals in the store ``url`` names, sorted by provider and model.

    Raises :class:`StoreUnreachableError` when it does not answer, or refuses
    this client (a wrong or missing password, a user without permission),
    rather than show the empty totals of this process's memory, which would
    mislead. The shared store is asked directly, so no log line repeats it.
    """
    store = open_store(url)
    try:
        if not isinstance(store, ResilientStore):
            return store.usage_rows()
        try:
            return store.primary.usage_rows()
        except Exception as exc:
            if (outage := store.outage_in(exc)) is None:
                raise
        problem = "did not answer" if outage.reason == UNREACHABLE.reason else outage.reason
        raise StoreUnreachableError(f"state store {redact_url(url)} {problem}")
    finally:
        store.close()


def usage_json(rows: list[UsageSummary]) -> list[dict[str, Any]]:
    """One object per (provider, model) with every total (``--json``)."""
    return [
        {
            "provider": row.provider,
            "model": row.model,
            **asdict(row.usage),
            "mean_latency_s": row.mean_latency_s,
            "p95_latency_s": row.p95_latency_s,
        }
        for row in rows
    ]


def usage_table(rows: list[UsageSummary]) -> list[str]:
    """A header and one line per (provider, model), like ``pygent-lc models``."""
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


__all__ = [
    "NO_SHARED_STORE",
    "StoreUnreachableError",
    "fleet_usage",
    "is_shared_store_url",
    "usage_json",
    "usage_table",
]
