"""Stores for the state tests: every behavioural test runs on memory and on a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pygent_lc.limits import MemoryStore, StateStore
from pygent_lc.limits.store import Clock
from tests.limits.state_helpers import FakeClock, StoreFactory


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.live_local)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_store(kind: str, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """Makes stores that share state: for Redis one client per call, as separate processes
    would have (same prefix, fresh per test); for memory the same store each time."""
    made: list[StateStore] = []
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    memory: dict[str, MemoryStore] = {}

    def factory(clock: Clock | None = None) -> StateStore:
        options = {} if clock is None else {"clock": clock}
        if kind == "memory":
            if "store" not in memory:
                memory["store"] = MemoryStore(prefix=prefix, **options)
            return memory["store"]
        from pygent_lc.limits.redis_store import RedisStore

        url = request.getfixturevalue("redis_url")
        store = RedisStore(url, prefix=prefix, **options)
        made.append(store)
        return store

    yield factory
    if made:
        made[0].clear()
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory, clock: FakeClock) -> StateStore:
    """A store on the fake clock."""
    return make_store(clock)
