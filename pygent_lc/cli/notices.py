"""What ``pygent-lc`` reports beside its answer: fallbacks, and a failure as JSON.

A fallback is logged once per call kind by :mod:`pygent_lc.fallbacks` (a
WARNING on ``pygent_lc.fallbacks``); the CLI always shows that line on stderr,
and :class:`FallbackRecorder` keeps each one for ``--json``. A failure under
``--json`` prints :func:`error_json` on stdout, so a script reading stdout
sees what went wrong as well as the exit code.
"""

from __future__ import annotations

import logging
from typing import Any

from pygent_lc.cli.output import hint_for, redact
from pygent_lc.errors import AllProvidersFailedError, ProviderError
from pygent_lc.fallbacks import FallbackNotice, short_reason
from pygent_lc.fallbacks import logger as fallback_logger


class FallbackRecorder(logging.Handler):
    """Keeps the fallbacks logged while it is attached, as JSON-ready dicts."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.fallbacks: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        notice = record.__dict__.get("fallback")
        if isinstance(notice, FallbackNotice):
            data = notice.as_dict()
            data["message"] = redact(data["message"])
            self.fallbacks.append(data)

    def __enter__(self) -> FallbackRecorder:
        fallback_logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        fallback_logger.removeHandler(self)


def _provider_error(error: ProviderError) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "message": redact(error.message),
        "provider": error.provider,
        "model": error.model,
        "status": error.status_code,
        "reason": short_reason(error),
    }


def error_json(exc: BaseException) -> dict[str, Any]:
    """The failure as ``{"error": {type, message, provider, status, hint}}``.

    ``provider``, ``model`` and ``status`` are null when the error is not one
    provider's; a chain that failed everywhere lists each provider's in ``errors``.
    """
    message = " ".join(str(exc).split()) or "(no message)"
    error: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": redact(message),
        "provider": None,
        "model": None,
        "status": None,
        "hint": hint_for(exc),
    }
    if isinstance(exc, ProviderError):
        details = _provider_error(exc)
        error.update(provider=details["provider"], model=details["model"], status=exc.status_code)
        error["reason"] = details["reason"]
    if isinstance(exc, AllProvidersFailedError):
        error["errors"] = [_provider_error(e) for e in exc.errors.values()]
    return {"error": error}


__all__ = ["FallbackRecorder", "error_json"]
