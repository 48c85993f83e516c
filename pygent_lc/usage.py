"""``UsageTracker``: calls, failures, tokens, cost and latency per provider and model."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from pygent_lc.backend import UsageTotals


@dataclass(frozen=True)
class UsageSummary:
    """What one (provider, model) pair cost so far."""

    provider: str
    model: str
    calls: int
    failures: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    mean_latency_s: float
    p95_latency_s: float
    cached_input_tokens: int = 0
    """Input tokens served from the provider's prompt cache (part of ``input_tokens``)."""
    cache_discount_usd: float = 0.0
    """OpenRouter's ``cache_discount``: what the cache took off ``cost_usd``."""


@dataclass
class _Bucket:
    calls: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached_input_tokens: int = 0
    cache_discount_usd: float = 0.0
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Run:
    provider: str
    model: str
    started: float


class UsageTracker(BaseCallbackHandler):
    """A LangChain callback handler that totals every chat-model request it sees.

    Each request counts as a call, retries and fallbacks included; a request
    that raised counts as a failure too. Cost comes from OpenRouter's
    ``usage.cost`` (``response_metadata["cost"]``) and is 0 where the provider
    reports none (Ollama, the local model). Input tokens read from a prompt
    cache (``usage_metadata["input_token_details"]["cache_read"]``, OpenRouter's
    ``prompt_tokens_details.cached_tokens``) and OpenRouter's ``cache_discount``
    are totalled too. ``model`` is the model that
    actually served when the reply says so. Thread-safe and run inline, so it
    is exact under concurrent calls.
    """

    run_inline = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[UUID, _Run] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._largest_cost_usd = 0.0

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = metadata or {}
        run = _Run(
            provider=str(metadata.get("ls_provider") or "unknown"),
            model=str(metadata.get("ls_model_name") or "unknown"),
            started=time.perf_counter(),
        )
        with self._lock:
            self._runs[run_id] = run

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        ended = time.perf_counter()
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        input_tokens = output_tokens = cached = 0
        cost = discount = 0.0
        model = run.model
        for generations in response.generations:
            for generation in generations:
                if not isinstance(generation, ChatGeneration):
                    continue
                message = generation.message
                usage = getattr(message, "usage_metadata", None) or {}
                input_tokens += int(usage.get("input_tokens", 0))
                output_tokens += int(usage.get("output_tokens", 0))
                details = usage.get("input_token_details") or {}
                cached += int(details.get("cache_read") or 0)
                cost += float(message.response_metadata.get("cost") or 0.0)
                discount += float(message.response_metadata.get("cache_discount") or 0.0)
                model = str(message.response_metadata.get("model_name") or model)
        with self._lock:
            bucket = self._buckets.setdefault((run.provider, model), _Bucket())
            bucket.calls += 1
            bucket.input_tokens += input_tokens
            bucket.output_tokens += output_tokens
            bucket.cost_usd += cost
            bucket.cached_input_tokens += cached
            bucket.cache_discount_usd += discount
            bucket.latencies.append(ended - run.started)
            self._largest_cost_usd = max(self._largest_cost_usd, cost)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        ended = time.perf_counter()
        with self._lock:
            run = self._runs.pop(run_id, None)
            if run is None:
                return
            bucket = self._buckets.setdefault((run.provider, run.model), _Bucket())
            bucket.calls += 1
            bucket.failures += 1
            bucket.latencies.append(ended - run.started)

    def summary(self) -> dict[tuple[str, str], UsageSummary]:
        """Per (provider, model): calls, failures, tokens (cached ones too), cost,
        cache discount, mean and p95 latency."""
        with self._lock:
            return {
                key: UsageSummary(
                    provider=key[0],
                    model=key[1],
                    calls=bucket.calls,
                    failures=bucket.failures,
                    input_tokens=bucket.input_tokens,
                    output_tokens=bucket.output_tokens,
                    cost_usd=bucket.cost_usd,
                    mean_latency_s=sum(bucket.latencies) / len(bucket.latencies),
                    p95_latency_s=_percentile(bucket.latencies, 0.95),
                    cached_input_tokens=bucket.cached_input_tokens,
                    cache_discount_usd=bucket.cache_discount_usd,
                )
                for key, bucket in self._buckets.items()
            }

    def largest_cost_usd(self) -> float:
        """The largest cost of one request so far (what a cost budget reserves per call)."""
        with self._lock:
            return self._largest_cost_usd

    def totals(self) -> UsageTotals:
        """Everything added up, for measuring a span of work by difference."""
        with self._lock:
            buckets = list(self._buckets.values())
            return UsageTotals(
                calls=sum(b.calls for b in buckets),
                failures=sum(b.failures for b in buckets),
                input_tokens=sum(b.input_tokens for b in buckets),
                output_tokens=sum(b.output_tokens for b in buckets),
                cost_usd=sum(b.cost_usd for b in buckets),
                cached_input_tokens=sum(b.cached_input_tokens for b in buckets),
                cache_discount_usd=sum(b.cache_discount_usd for b in buckets),
            )


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (the value at or above ``fraction`` of the samples)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
