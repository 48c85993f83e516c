"""The PyGent contract: an object with ``async generate(prompt, **kwargs) -> str``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class UsageTotals:
    """Calls, failures, tokens and cost: the one usage record of the package.

    A backend's running totals, the usage tracker's per (provider, model), a
    search's (``ToTStats.usage``: the difference of two snapshots). Records
    combine with ``+`` (or :meth:`merge` for many) and ``-``.
    """

    calls: int = 0
    """Calls, as the backend counts them: ``LangChainBackend`` counts each request,
    so a call it retried or passed to a fallback counts more than once."""
    failures: int = 0
    """Requests that raised (part of ``calls``)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    """What the provider charged, prompt-cache discount already taken off."""
    cached_input_tokens: int = 0
    """Input tokens read from the provider's prompt cache (part of ``input_tokens``)."""
    cache_discount_usd: float = 0.0
    """What the cache saved, as the provider reports it (already taken off ``cost_usd``)."""
    cost_faults: int = 0
    """Replies whose reported cost (or cache discount) was not a plausible amount (NaN,
    infinite, negative, above :data:`pygent_lc.limits.usage.MAX_PLAUSIBLE_COST_USD`): a
    provider fault, logged and counted here, its amount left out of ``cost_usd``."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return self._combine(other, 1)

    def __sub__(self, other: UsageTotals) -> UsageTotals:
        return self._combine(other, -1)

    def _combine(self, other: UsageTotals, sign: int) -> UsageTotals:
        return UsageTotals(
            *(getattr(self, f.name) + sign * getattr(other, f.name) for f in fields(UsageTotals))
        )

    @classmethod
    def merge(cls, records: Iterable[UsageTotals]) -> UsageTotals:
        """The sum of ``records`` (all zero when there are none)."""
        return sum(records, cls())


class LLMBackend(ABC):
    """What PyGent's reasoning engine asks for text: ``generate`` (with ``temperature``,
    ``max_tokens`` and ``stop`` keywords) returns non-empty text or raises a
    :class:`pygent_lc.errors.PygentError`.

    A backend that sets :attr:`accepts_cache_prefix` also takes ``cache_prefix``:
    the start of ``prompt`` that stays the same from call to call, which it
    may ask the provider to cache. Callers pass it only to such backends, so
    a backend that does not know the keyword never sees it.
    """

    accepts_cache_prefix: bool = False

    @abstractmethod
    async def generate(self, prompt: str, **kwargs: Any) -> str:
        """Return the model's completion of ``prompt``."""

    async def generate_samples(self, prompt: str, n: int, **kwargs: Any) -> list[str]:
        """Up to ``n`` completions of ``prompt`` in one request, where the provider
        honours ``n`` (the prompt is then paid for once).

        Returns at least one completion; fewer than ``n`` means the provider
        answered with fewer choices (most ignore ``n``), and a caller wanting
        more asks again. This default sends one ``generate`` request.
        """
        return [await self.generate(prompt, **kwargs)]

    def usage_totals(self) -> UsageTotals | None:
        """Totals so far, or ``None`` when this backend does not track usage."""
        return None

    def cost_bound(self, prompt: str, max_tokens: int | None) -> float | None:
        """The most a call of ``prompt`` can cost in USD, or ``None`` when unknown.

        Budgets over this backend (``ToTConfig.max_cost_usd``) let calls with a
        bound run concurrently within the limit; calls without one run one at
        a time.
        """
        return None
