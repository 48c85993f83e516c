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
    """One line of the doctor's report; ``hosts``: a pool's lines."""

    provider: str
    status: Status
    detail: str
    model: str | None = None
    latency_ms: float | None = None
    host: str | None = None
    hosts: tuple[ProviderHealth, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "hosts": [host.as_dict() for host in self.hosts]}
        return {k: v for k, v in data.items() if k not in ("host", "hosts") or v}


@dataclass(frozen=True)
class ModelListing:
    """One object per model (``id`` first) for ``--json``, and the text for a terminal."""

    rows: list[dict[str, Any]]
    lines: list[str]


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = action()
    return value, (time.perf_counter() - started) * 1000


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
