"""The one retry policy: which provider errors are retried, and how long to wait.

Only :class:`~pygent_lc.errors.ProviderError` with ``retryable=True`` is
retried. Waits back off exponentially with jitter; a server's ``Retry-After``
replaces the backoff when it is at most ``max_wait``; a longer one is not
waited for at all: the call fails at once and the fallback runs.

``deadline`` (the ``request_timeout`` setting) bounds one provider's whole part
of a call: connect, body, every attempt and every wait. No retry (and no wait)
starts that would end past it, so a hung provider costs one timeout before the
fallback runs, not one per attempt. The HTTP transports enforce it below the
SDKs (:mod:`pygent_lc.providers.http`) through :data:`current_deadline`.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)
from tenacity import wait_exponential_jitter as exponential_jitter
from tenacity.stop import stop_base

from pygent_lc.errors import ProviderError
from pygent_lc.providers.http import Deadline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one provider call is tried."""

    max_attempts: int = 3
    """Attempts per provider call, the first included."""

    initial_wait: float = 0.5
    """First backoff wait in seconds; doubles per retry, plus jitter of up to as much."""

    max_wait: float = 20.0
    """Cap for one wait, ``Retry-After`` included."""

    deadline: float | None = None
    """Seconds all attempts of one provider call may take, waits included."""

    @cached_property
    def tenacity_kwargs(self) -> dict[str, Any]:
        """Keywords for ``tenacity.Retrying`` / ``AsyncRetrying`` that apply this policy
        (built once: every strategy in them is stateless, so calls share them)."""
        return self._tenacity_kwargs(self.deadline)

    def tenacity_kwargs_after(self, elapsed: float) -> dict[str, Any]:
        """:attr:`tenacity_kwargs` for a retry loop that starts ``elapsed`` seconds into
        the call (its first attempt made before the loop): the deadline counts from the
        call's start, as when the loop made every attempt."""
        return self._tenacity_kwargs(None if self.deadline is None else self.deadline - elapsed)

    def _tenacity_kwargs(self, deadline: float | None) -> dict[str, Any]:
        backoff = exponential_jitter(
            multiplier=self.initial_wait, max=self.max_wait, jitter=self.initial_wait
        )

        def wait_seconds(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, ProviderError) and error.retry_after is not None:
                return min(error.retry_after, self.max_wait)
            return float(backoff(state))

        stop: stop_base = stop_after_attempt(self.max_attempts)
        if deadline is not None:
            stop = stop | stop_before_delay(deadline)
        return {
            "stop": stop,
            "wait": wait_seconds,
            "retry": retry_if_exception(self.retryable),
            "before_sleep": _log_retry,
            "reraise": True,
        }

    def retryable(self, error: BaseException) -> bool:
        """Whether another attempt may help: a retryable provider error, no long ``Retry-After``."""
        if not isinstance(error, ProviderError) or not error.retryable:
            return False
        return error.retry_after is None or error.retry_after <= self.max_wait


def deadline_scope(seconds: float | None) -> AbstractContextManager[Deadline | None]:
    """:data:`current_deadline` for the length of one provider call (none without a limit)."""
    return _NO_DEADLINE if seconds is None else Deadline(seconds)


_NO_DEADLINE: AbstractContextManager[None] = nullcontext()


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.info("attempt %d failed (%r); retrying in %.2fs", state.attempt_number, error, wait)


__all__ = ["RetryPolicy", "deadline_scope"]
