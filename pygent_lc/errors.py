"""Every failure a caller can see (ARCHITECTURE.md draws the tree), translated from openai,
httpx and ollama once, at the provider boundary (:mod:`pygent_lc.providers.error_mapping`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Required, Self, TypedDict, Unpack

from pygent_lc.redaction import mask_credentials, redact_text


class PygentError(Exception):
    """Pickles with its attributes (``provider``...): it crosses process boundaries intact."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type[PygentError], args: tuple[Any, ...], state: dict[str, Any]) -> PygentError:
    error = cls.__new__(cls, *args)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigurationError(PygentError, ValueError):
    """A setting is missing or invalid, or a provider name unknown: before any request."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        # A key pasted into the wrong setting must not be printed back (CI logs).
        super().__init__(redact_text(message))
        self.field = None if field is None else mask_credentials(field)


class AgentError(ConfigurationError):
    """An agent cannot be created as asked: unknown type or provider, bad ``custom_config``."""


class InvalidInputError(PygentError, ValueError):
    """A bad prompt or parameters: never retried, no fallback, no breaker failure."""


class ProviderDetails(TypedDict, total=False):
    provider: Required[str]
    model: str | None
    status_code: int | None


class _FromProvider(PygentError):
    """An error a provider reported: its ``message``, ``provider``, ``model`` and HTTP status."""

    def __init__(self, message: str, **details: Unpack[ProviderDetails]) -> None:
        super().__init__(message)
        self.message = message
        self.provider = details["provider"]
        self.model = details.get("model")
        self.status_code = details.get("status_code")

    def __str__(self) -> str:
        where = self.provider if self.model is None else f"{self.provider}/{self.model}"
        status = "" if self.status_code is None else f" [{self.status_code}]"
        return f"{where}{status}: {self.message}"


class ContextLengthError(InvalidInputError, _FromProvider):
    """The prompt (plus the output asked for) does not fit the model's context, it says."""


class ProviderError(_FromProvider):
    """``retryable``: asking again can help; ``retry_after``: the server's advice (s)."""

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        **details: Unpack[ProviderDetails],
    ) -> None:
        super().__init__(message, **details)
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after

    def __repr__(self) -> str:
        shown = ("provider", "model", "status_code", "retryable", "message")
        return f"{type(self).__name__}({', '.join(f'{a}={getattr(self, a)!r}' for a in shown)})"


class AuthenticationError(ProviderError):
    """401: the key is missing, invalid or disabled."""


class InsufficientCreditsError(ProviderError):
    """402: the account or key has no credits left."""


class ContentRefusedError(ProviderError):
    """403: the input was flagged by moderation or a guardrail."""


class ModelNotFoundError(ProviderError):
    """404: the model does not exist on the provider, or is not installed."""


class UnsupportedRequestError(ProviderError):
    """Not retried, not a breaker failure: another provider may serve the request."""


class RateLimitError(ProviderError):
    """429: too many requests; ``retry_after`` comes from ``Retry-After``."""

    default_retryable = True


class ProviderUnavailableError(ProviderError):
    """5xx, 408, timeouts, connection failures, or an error inside a 200 body."""

    default_retryable = True


class StreamInterruptedError(ProviderError):
    """``partial_text``: all the text delivered, which the caller already paid for."""

    def __init__(
        self, message: str, *, partial_text: str, **details: Unpack[ProviderDetails]
    ) -> None:
        super().__init__(message, retryable=False, **details)
        self.partial_text = partial_text


class AllProvidersFailedError(PygentError, ExceptionGroup[ProviderError]):
    """An ``ExceptionGroup`` (``except* RateLimitError`` works) whose ``errors`` map
    ``"<position>:<provider>"`` (``"1:openrouter"``) to each provider's error."""

    errors: dict[str, ProviderError]

    def __new__(cls, errors: Mapping[str, ProviderError]) -> Self:
        lines = "; ".join(f"{type(e).__name__}: {e}" for e in errors.values())
        group = super().__new__(
            cls, f"all {len(errors)} providers failed: {lines}", list(errors.values())
        )
        group.errors = dict(errors)
        return group

    def __init__(self, errors: Mapping[str, ProviderError]) -> None:
        super().__init__(self.message, list(errors.values()))

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.errors,)


class BudgetExceededError(PygentError):
    """A call or spending budget would be passed by the next call."""


class NoAnswerError(PygentError):
    """No state at all to answer with (otherwise a partial answer is returned)."""
