"""The PyGent contract: an object with ``async generate(prompt, **kwargs) -> str``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class UsageTotals:
    """The one usage record of the package (a backend's, per provider and model, a
    search's); ``+``, ``-`` and :meth:`merge` combine records."""

    calls: int = 0  # requests: a retry or a fallback counts again
    failures: int = 0  # requests that raised (part of calls)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0  # charged, the prompt-cache discount taken off
    cached_input_tokens: int = 0  # read from the prompt cache (part of input_tokens)
    cache_discount_usd: float = 0.0  # what the cache saved, as the provider reports it
    # replies whose cost was implausible (NaN, negative, > MAX_PLAUSIBLE_COST_USD): not in cost
    cost_faults: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: UsageTotals, sign: int = 1) -> UsageTotals:
        return UsageTotals(
            *(getattr(self, f.name) + sign * getattr(other, f.name) for f in fields(UsageTotals))
        )

    def __sub__(self, other: UsageTotals) -> UsageTotals:
        return self.__add__(other, -1)

    @classmethod
    def merge(cls, records: Iterable[UsageTotals]) -> UsageTotals:
        return sum(records, cls())


class LLMBackend(ABC):
    """What PyGent's reasoning engine asks for text: ``generate`` returns non-empty text or
    raises a :class:`~pygent_lc.errors.PygentError`. Callers pass ``cache_prefix`` (a start
    of ``prompt`` that repeats) only to a backend that sets :attr:`accepts_cache_prefix`."""

    accepts_cache_prefix: bool = False

    @abstractmethod
    async def generate(self, prompt: str, **kwargs: Any) -> str:
        """Return the model's completion of ``prompt``."""

    async def generate_samples(self, prompt: str, n: int, **kwargs: Any) -> list[str]:
        """At least one and up to ``n`` completions of ``prompt`` in one request (this
        default: one ``generate``; a caller wanting more asks again)."""
        return [await self.generate(prompt, **kwargs)]

    def usage_totals(self) -> UsageTotals | None:
        """Totals so far, or ``None`` when this backend does not track usage."""
        return None

    def cost_bound(self, prompt: str, max_tokens: int | None) -> float | None:
        """The most a call of ``prompt`` can cost in USD, or ``None`` (unbounded calls on a
        budget run one at a time)."""
        return None
