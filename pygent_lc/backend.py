"""The PyGent contract: an object with ``async generate(prompt, **kwargs) -> str``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class UsageTotals:
    """Running totals a backend reports, so callers can measure a span of work."""

    calls: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached_input_tokens: int = 0
    """Input tokens read from the provider's prompt cache (part of ``input_tokens``)."""
    cache_discount_usd: float = 0.0
    """What the cache saved, as the provider reports it (already taken off ``cost_usd``)."""

    def __sub__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(
            calls=self.calls - other.calls,
            failures=self.failures - other.failures,
            input_tokens=self.input_tokens - other.input_tokens,
            output_tokens=self.output_tokens - other.output_tokens,
            cost_usd=self.cost_usd - other.cost_usd,
            cached_input_tokens=self.cached_input_tokens - other.cached_input_tokens,
            cache_discount_usd=self.cache_discount_usd - other.cache_discount_usd,
        )


class LLMBackend(ABC):
    """What PyGent's reasoning engine asks for text.

    ``generate`` accepts ``temperature``, ``max_tokens`` and ``stop`` keywords.
    It returns non-empty text or raises a :class:`pygent_lc.errors.PygentError`.

    A backend that sets :attr:`accepts_cache_prefix` also takes ``cache_prefix``:
    the start of ``prompt`` that stays the same from call to call, which it
    may ask the provider to cache. Callers pass it only to such backends, so
    a backend that does not know the keyword never sees it.
    """

    accepts_cache_prefix: ClassVar[bool] = False

    @abstractmethod
    async def generate(self, prompt: str, **kwargs: Any) -> str:
        """Return the model's completion of ``prompt``."""

    def usage_totals(self) -> UsageTotals | None:
        """Totals so far, or ``None`` when this backend does not track usage."""
        return None
