"""The store never causes an outage: Redis dying mid-run, never there, coming back; open_store."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from typing import TypeVar

import pytest

from pygent_lc.errors import ConfigurationError
from pygent_lc.limits import MemoryStore, ResilientStore, open_store, redact_url
from pygent_lc.limits.budget import BudgetReservation
from pygent_lc.limits.script import Step
from pygent_lc.limits.shared import INSTALL_HINT
from pygent_lc.limits.store import UNREACHABLE
from pygent_lc.limits.store import Outage as StoreOutage
from tests.limits.steps import (
    arate_take,
    breaker_admit,
    breaker_success,
    budget_reserve,
    budget_settle,
    cache_get,
    cache_set,
    rate_take,
    record_usage,
)
from tests.redis_server import RedisServer, free_port

LOGGER = "pygent_lc.limits"
T = TypeVar("T")


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(LOGGER)
    ]


def infos_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and r.name.startswith(LOGGER)
    ]


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may kill and start again (also
    when ``$PYGENT_TEST_REDIS_URL`` names a shared one, which must not be killed)."""
    with RedisServer() as server:
        yield server


def shared_store(server: RedisServer, prefix: str) -> ResilientStore:
    store = open_store(server.url, prefix=prefix, retry_after_s=0.2, max_retry_after_s=0.2)
    assert isinstance(store, ResilientStore)
    return store


@pytest.mark.live_local
def test_redis_dying_mid_run_falls_back_to_memory_then_resumes(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    store, peer = shared_store(own_redis, prefix), shared_store(own_redis, prefix)
    assert rate_take(store, "rpm", 2, 60.0) == 0.0
    assert rate_take(peer, "rpm", 2, 60.0) == 0.0
    assert rate_take(store, "rpm", 2, 60.0) > 0  # the limit is shared
    assert warnings_in(caplog) == []

    own_redis.kill()
    started = time.monotonic()
    # Every operation still answers, from this process's memory, which enforces limits.
    assert rate_take(store, "rpm", 2, 60.0) == 0.0
    assert rate_take(store, "rpm", 2, 60.0) == 0.0
    assert rate_take(store, "rpm", 2, 60.0) > 0
    admission = breaker_admit(store, "p|m", 3, 30.0)
    assert admission.allowed
    breaker_success(store, "p|m", admission)
    hold = budget_reserve(store, "usd", 1.0, 0.25)
    assert isinstance(hold, BudgetReservation)
    budget_settle(store, hold, 0.25)
    record_usage(store, "p", "m", 1, 0, 1, 1, 0.25, 0.1)
    assert store.usage_rows()[0].usage.cost_usd == 0.25
    cache_set(store, "ns", "k", "memory")
    assert cache_get(store, "ns", "k") == "memory"
    assert not store.shared
    assert time.monotonic() - started < 2.0  # a dead Redis stalls nothing
    (warning,) = warnings_in(caplog)  # exactly one, however many operations
    assert "unreachable" in warning and own_redis.url.split("/0")[0] in warning

    own_redis.start()  # back, empty
    time.sleep(0.3)  # past the backoff: the next operation tries Redis again
    cache_set(store, "ns", "k", "shared")
    assert store.shared
    assert cache_get(peer, "ns", "k") == "shared"  # the peer resumed too
    assert rate_take(store, "rpm", 1, 60.0) == 0.0
    assert rate_take(peer, "rpm", 1, 60.0) > 0  # limits are shared again
    assert len(warnings_in(caplog)) == 1
    assert any("reachable again" in message for message in infos_in(caplog))
    store.close()
    peer.close()


@pytest.mark.live_local
def test_async_callers_fall_back_and_resume_too(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    store = shared_store(own_redis, f"t{uuid.uuid4().hex[:8]}:")

    async def calls(n: int) -> list[float]:
        return list(await asyncio.gather(*(arate_take(store, "a", 5, 60.0) for _ in range(n))))

    assert asyncio.run(calls(3)) == [0.0] * 3
    own_redis.kill()
    waits = asyncio.run(calls(6))  # memory starts afresh: 5 pass, 1 waits
    assert waits.count(0.0) == 5
    assert len(warnings_in(caplog)) == 1
    own_redis.start()
    time.sleep(0.3)
    assert asyncio.run(calls(1)) == [0.0]  # this caller tries Redis, which came back empty
    assert store.shared
    waits = asyncio.run(calls(6))
    assert waits.count(0.0) == 4
    assert len(warnings_in(caplog)) == 1
    asyncio.run(store.aclose())


@pytest.mark.live_local
def test_a_redis_that_is_never_there_costs_nothing_and_keeps_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0?password=s3cret-pw"
    store = open_store(url, retry_after_s=0.05, max_retry_after_s=0.1)
    started = time.monotonic()
    for _ in range(50):
        assert breaker_admit(store, "k", 3, 1.0).allowed
        time.sleep(0.005)  # some calls land past the backoff and try Redis again
    assert time.monotonic() - started < 2.0
    assert len(warnings_in(caplog)) == 1
    assert "s3cret" not in caplog.text
    assert "s3cret" not in repr(store)


class Outage(Exception):
    pass


def outage(error: Exception) -> StoreOutage | None:
    return UNREACHABLE if isinstance(error, Outage) else None


class FlakyStore(MemoryStore):
    """A primary that fails with ``Outage`` while ``down``; counts the calls that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def run(self, op: Step[T]) -> T:
        self.calls += 1
        if self.down:
            raise Outage("connection refused")
        return super().run(op)


def test_backoff_tries_the_primary_once_per_period_and_doubles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    now = [0.0]
    primary = FlakyStore()
    store = ResilientStore(
        primary, outage, retry_after_s=1.0, max_retry_after_s=3.0, monotonic=lambda: now[0]
    )
    cache_set(store, "n", "k", "v")
    primary.down = True
    cache_set(store, "n", "k", "v")
    assert primary.calls == 2  # the one that failed
    for _ in range(5):
        cache_get(store, "n", "k")
    assert primary.calls == 2  # within the backoff: memory only
    tries = []
    for step in (1.0, 2.0, 3.0, 3.0):  # 1 s, then doubling up to 3 s
        now[0] += step - 0.01
        cache_set(store, "n", "k", "v")
        before = primary.calls
        now[0] += 0.01
        cache_get(store, "n", "k")  # what only reads stays on memory while Redis is down
        cache_set(store, "n", "k", "v")
        cache_set(store, "n", "k", "v")  # the next caller waits for the next period
        tries.append(primary.calls - before)
    assert tries == [1, 1, 1, 1]
    primary.down = False
    now[0] += 3.0
    assert cache_get(store, "n", "k") == "v"  # from memory: a read does not try Redis
    assert not store.shared
    cache_set(store, "n", "k", "w")  # a write does, and finds it back
    assert store.shared
    assert cache_get(primary, "n", "k") == "w"
    assert len(warnings_in(caplog)) == 1
    assert len(infos_in(caplog)) == 1


def test_other_errors_are_bugs_and_propagate() -> None:
    class Broken(MemoryStore):
        def run(self, op: Step[T]) -> T:
            raise KeyError("a bug")

    store = ResilientStore(Broken(), outage)
    with pytest.raises(KeyError):
        cache_get(store, "n", "k")


# -- open_store -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, "", "memory", "memory://"])
def test_no_url_means_state_in_this_process(url: str | None) -> None:
    assert isinstance(open_store(url), MemoryStore)


def test_a_redis_url_makes_a_resilient_redis_store_without_connecting() -> None:
    store = open_store("redis://:pw@127.0.0.1:1/0", prefix="app:")
    assert isinstance(store, ResilientStore)
    assert store.prefix == "app:"
    assert "pw@" not in repr(store)


@pytest.mark.parametrize(
    "url", ["http://:s3cret@localhost:6379", "redis://:s3cret@localhost:notaport/0"]
)
def test_bad_urls_are_configuration_errors_without_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        rate_take(open_store(url), "k", 1, 1.0)
    assert "s3cret" not in str(caught.value)
    assert caught.value.field == "state_url"


def test_without_redis_py_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    monkeypatch.delitem(sys.modules, "pygent_lc.limits.redis_store", raising=False)
    with pytest.raises(ConfigurationError, match="redis") as caught:
        open_store("redis://localhost:6379/0")
    assert INSTALL_HINT in str(caught.value)
    assert isinstance(open_store(None), MemoryStore)  # memory needs no redis


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:secret@host/0", "redis://user:***@host/0"),
        ("rediss://secret@host", "rediss://***@host"),
        ("unix:///run/redis.sock?db=1&password=secret", "unix:///run/redis.sock?db=1&password=***"),
        ("redis://:p%40ss@host", "redis://:***@host"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
