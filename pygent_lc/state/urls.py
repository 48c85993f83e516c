"""State store URLs, and how to show one without its password."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

REDIS_SCHEMES = ("redis", "rediss", "unix")
"""The schemes :func:`pygent_lc.state.open_store` hands to redis-py."""

MEMORY_URLS = ("", "memory", "memory://")
"""What means "state in this process" (as does no URL at all)."""

_PASSWORD_QUERY = re.compile(r"(?i)([?&]password=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: in the userinfo or a ``password=`` query.

    Whatever goes into a log line or an error message goes through this.
    """
    try:
        parts = urlsplit(url)
        netloc = _redacted_netloc(parts)
    except ValueError:  # unparsable (a bad port): show nothing that could be a secret
        return "<unparsable URL>"
    redacted = url if netloc == parts.netloc else url.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    return _PASSWORD_QUERY.sub(r"\1***", redacted)


def _redacted_netloc(parts: SplitResult) -> str:
    if "@" not in parts.netloc:
        return parts.netloc
    host = parts.netloc.rpartition("@")[2]
    if parts.password is None:
        # "redis://token@host": some servers take a lone userinfo as the password.
        return f"***@{host}"
    return f"{parts.username or ''}:***@{host}"


__all__ = ["MEMORY_URLS", "REDIS_SCHEMES", "redact_url"]
