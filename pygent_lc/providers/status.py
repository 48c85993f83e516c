"""What a provider's own checks report: its health (``pygent-lc doctor``) and its models."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

Status = Literal["ok", "problem", "not configured"]
T = TypeVar("T")


@dataclass(frozen=True)
class ProviderHealth:
    """One line of the doctor's report."""

    provider: str
    status: Status
    detail: str
    model: str | None = None
    latency_ms: float | None = None
    """Time of the provider's own check request (or the probe, with ``probe``)."""
    host: str | None = None
    """The server this line is about, for one host of a pool."""
    hosts: tuple[ProviderHealth, ...] = ()
    """One line per host when the provider is a pool of several (Ollama's)."""

    def as_dict(self) -> dict[str, Any]:
        """The fields; ``host`` and ``hosts`` only when there are any."""
        data = asdict(self)
        if self.host is None:
            del data["host"]
        if self.hosts:
            data["hosts"] = [host.as_dict() for host in self.hosts]
        else:
            del data["hosts"]
        return data


@dataclass(frozen=True)
class ModelListing:
    """The models a provider offers, as ``pygent-lc models`` prints them."""

    rows: list[dict[str, Any]]
    """One object per model (``id`` first), for ``--json``."""
    lines: list[str]
    """The text for a terminal."""


def timed(action: Callable[[], T]) -> tuple[T, float]:
    """``action()`` and the milliseconds it took."""
    started = time.perf_counter()
    value = action()
    return value, (time.perf_counter() - started) * 1000


def one_line(exc: BaseException) -> str:
    """``Kind: message``, the message on one line."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


__all__ = ["ModelListing", "ProviderHealth", "Status", "one_line", "timed"]
