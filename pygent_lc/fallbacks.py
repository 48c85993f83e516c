"""How falling back is reported: never silently, never with a secret.

The chain logs each failed provider at DEBUG on this logger, and an answer after
failures as one WARNING, rate-limited per kind (:class:`FallbackNotices`), whose
record carries ``record.fallback`` (a :class:`FallbackNotice`) for handlers such as
the CLI's ``--json``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pygent_lc.errors import (
    AuthenticationError,
    ContentRefusedError,
    InsufficientCreditsError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
    UnsupportedRequestError,
)
from pygent_lc.limits.breaker import CircuitOpenError
from pygent_lc.limits.rate import LocalRateLimitError

logger = logging.getLogger(__name__)

#: How often one kind of fallback is logged at WARNING at most.
FALLBACK_WARNING_INTERVAL_S = 60.0

# The first class in an error's MRO found here names its reason (subclasses first).
_REASONS: dict[type[ProviderError], str] = {
    AuthenticationError: "unauthorized",
    InsufficientCreditsError: "no credits left",
    ContentRefusedError: "refused by moderation",
    ModelNotFoundError: "model not found",
    LocalRateLimitError: "local rate limit reached",
    RateLimitError: "rate limited",
    UnsupportedRequestError: "unsupported request",
    StreamInterruptedError: "stream interrupted",
    CircuitOpenError: "circuit open",
    ProviderUnavailableError: "unavailable",
}

# How the provider boundary and the HTTP deadline word a timeout and a failed connection.
_TIMEOUT_MESSAGES = ("request timed out", "no reply within the deadline", "the deadline")
_CONNECTION_MESSAGES = ("connection refused", "connection failed", "host name not found")


def short_reason(error: ProviderError) -> str:
    """Why a provider failed, in a few words: ``"401 unauthorized"``, ``"timeout"``...

    Made of the error's type and HTTP status only (plus "timeout" or "connection
    refused", read from the start of an unavailable provider's message), so it
    never holds a secret or a reply's text.
    """
    label = next(
        (_REASONS[cls] for cls in type(error).__mro__ if cls in _REASONS), "provider error"
    )
    if label == "unavailable":
        if error.message.startswith(_TIMEOUT_MESSAGES):
            label = "timeout"
        elif error.message.startswith(_CONNECTION_MESSAGES):
            label = error.message.split(" (")[0]  # "connection refused" / "... failed" / DNS
    return label if error.status_code is None else f"{error.status_code} {label}"


@dataclass(frozen=True)
class FallbackNotice:
    """One call served after other providers failed: who failed, why, who answered."""

    failed: tuple[tuple[str, str], ...]
    """``(provider, short reason)`` for each provider that failed, in order."""
    served_by: str
    suppressed: int = 0
    """How many such fallbacks were not logged since the last one was."""

    def message(self) -> str:
        failures = ", ".join(f"{name} failed ({reason})" for name, reason in self.failed)
        left_out = f" [{self.suppressed} more like this not logged]" if self.suppressed else ""
        return f"fell back: {failures}; {self.served_by} answered{left_out}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "failed": [{"provider": name, "reason": reason} for name, reason in self.failed],
            "served_by": self.served_by,
            "suppressed": self.suppressed,
            "message": self.message(),
        }


@dataclass
class FallbackNotices:
    """Logs fallbacks at WARNING, each kind (failed providers and reasons) at most
    once per ``interval_s``; the next one logged counts those left out."""

    interval_s: float = FALLBACK_WARNING_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    _last: dict[Any, tuple[float, int]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fell_back(self, failed: Sequence[tuple[str, str]], served_by: str) -> None:
        key = (tuple(failed), served_by)
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.interval_s:
                self._last[key] = (last[0], last[1] + 1)
                return
            self._last[key] = (now, 0)
        notice = FallbackNotice(tuple(failed), served_by, last[1] if last else 0)
        logger.warning("%s", notice.message(), extra={"fallback": notice})

    def reset(self) -> None:
        """Forget what was logged (the next fallback of each kind logs again)."""
        with self._lock:
            self._last.clear()


#: The process's fallback log: one rate limit for every chain.
fallback_notices = FallbackNotices()


__all__ = [
    "FALLBACK_WARNING_INTERVAL_S",
    "FallbackNotice",
    "FallbackNotices",
    "fallback_notices",
    "short_reason",
]
