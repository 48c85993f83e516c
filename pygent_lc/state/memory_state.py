"""Everything a :class:`~pygent_lc.state.MemoryStore` holds: the Python twins of the Redis keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from pygent_lc.state.cache import Caches
from pygent_lc.state.circuit import BreakerRecords
from pygent_lc.state.inflight import Tickets
from pygent_lc.state.ledger import Ledgers
from pygent_lc.state.rate import RateLogs
from pygent_lc.state.usage_log import UsageBuckets


@dataclass
class MemoryState:
    """In-process state; every access holds the owning store's lock."""

    breakers: BreakerRecords = field(default_factory=dict)
    rates: RateLogs = field(default_factory=dict)
    ledgers: Ledgers = field(default_factory=Ledgers)
    usage: UsageBuckets = field(default_factory=dict)
    tickets: Tickets = field(default_factory=dict)
    caches: Caches = field(default_factory=Caches)


__all__ = ["MemoryState"]
