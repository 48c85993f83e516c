"""A Redis that answers with errors is an outage, not a crash (real redis-servers).

A read-only replica, a Redis out of memory (``maxmemory`` with
``noeviction``), a user without ``EVAL``/``EVALSHA`` and a wrong or missing
password each degrade like a Redis that is down: one log line per process,
limits from this process's memory, every call answered, and the shared
state used again once Redis is fixed. The store finds out before the
provider is called; a failure after the call never loses the paid reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis

from pygent_lc.limits import MemoryStore, ResilientStore, open_store
from pygent_lc.limits.breaker import CircuitBreaker
from pygent_lc.limits.call import CallEnd, CallPlan
from pygent_lc.limits.redis_store import outage_of
from pygent_lc.limits.script import Step
from pygent_lc.policy import ProviderPolicy
from pygent_lc.testing import ScriptedChatModel
from tests.limits.steps import rate_take
from tests.redis_server import RedisServer

LOGGER = "pygent_lc.limits"
PASSWORD = "s3cret-pw-canary"
T = TypeVar("T")
BACKOFF_S = 1.0

pytestmark = pytest.mark.live_local


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warning (and error) lines of the state store."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(LOGGER)
    ]


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def admin(server: RedisServer, password: str | None = None) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, password=password)


def resilient(url: str) -> ResilientStore:
    store = open_store(
        url,
        prefix=f"t{uuid.uuid4().hex[:8]}:",
        retry_after_s=BACKOFF_S,
        max_retry_after_s=BACKOFF_S,
    )
    assert isinstance(store, ResilientStore)
    return store


def policy_on(
    store: ResilientStore, seen: list[bool], *, breaker: bool = True, during: Any = None
) -> ProviderPolicy:
    """A policy whose scripted model notes, at each call, whether the store was shared
    (``during()`` runs inside the call: Redis may turn on us mid-call)."""

    def reply(prompt: str) -> str:
        seen.append(store.shared)
        if during is not None:
            during()
        return f"paid reply to {prompt}"

    return ProviderPolicy(
        bound=ScriptedChatModel(provider="acme", reply=reply, cost_per_call=0.01),
        provider="acme",
        model_name="acme-1",
        store=store,
        circuit=CircuitBreaker(provider="acme", model="acme-1", store=store) if breaker else None,
        record_usage=True,
        max_attempts=1,
    )


def call(policy: ProviderPolicy, prompt: str, mode: str) -> str:
    if mode == "async":
        return str(asyncio.run(policy.ainvoke(prompt)).content)
    return str(policy.invoke(prompt).content)


def calls_recorded(store: ResilientStore) -> int:
    return sum(row.usage.calls for row in store.usage_rows())


def recovers(store: ResilientStore, policy: ProviderPolicy, mode: str) -> None:
    """After the fix, the next calls go to Redis again (past the backoff)."""
    time.sleep(BACKOFF_S + 0.1)
    assert call(policy, "again", mode) == "paid reply to again"
    assert store.shared
    assert calls_recorded(store) == 1  # the shared totals: this call only


def replicate(replica: RedisServer, primary: RedisServer) -> None:
    """Make ``replica`` a replica of ``primary``, and wait until it is in sync (not loading)."""
    admin(replica).replicaof("127.0.0.1", primary.port)
    deadline = time.monotonic() + 10
    while admin(replica).info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.02)


def read_only_replica(server: RedisServer) -> Iterator[Callable[[], object]]:
    with RedisServer() as primary:
        replicate(server, primary)
        yield lambda: admin(server).replicaof("NO", "ONE")  # promoted: takes writes again


def out_of_memory(server: RedisServer) -> Iterator[Callable[[], object]]:
    admin(server).config_set("maxmemory-policy", "noeviction")
    admin(server).config_set("maxmemory", 1)
    yield lambda: admin(server).config_set("maxmemory", 0)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("turn", "reason"),
    [(read_only_replica, "read-only"), (out_of_memory, "out of memory")],
    ids=["readonly", "oom"],
)
def test_a_redis_that_takes_no_writes_is_found_before_the_call(
    server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    turn: Callable[[RedisServer], Iterator[Callable[[], object]]],
    reason: str,
    mode: str,
) -> None:
    """A closed breaker and usage alone write nothing before the call: the check must."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    store = resilient(server.url)
    seen: list[bool] = []
    for breaker in (True, False):
        policy = policy_on(store, seen, breaker=breaker)
        assert call(policy, "warm", mode) == "paid reply to warm"
    assert seen == [True, True]
    store.clear()

    fixes = turn(server)
    fix = next(fixes)
    for breaker in (True, False, True):
        policy = policy_on(store, seen, breaker=breaker)
        assert call(policy, "hi", mode) == "paid reply to hi"
    assert seen[2:] == [False, False, False]  # degraded before each provider call
    assert calls_recorded(store) == 3  # in this process's memory
    (line,) = logged(caplog)
    assert reason in line and f"127.0.0.1:{server.port}" in line

    fix()
    recovers(store, policy_on(store, seen), mode)
    assert len(logged(caplog)) == 1
    next(fixes, None)
    store.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("how", ["replicaof", "maxmemory"])
def test_a_redis_that_turns_during_the_call_never_loses_the_paid_reply(
    server: RedisServer, caplog: pytest.LogCaptureFixture, how: str, mode: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    store = resilient(server.url)
    with RedisServer() as primary:

        def turn() -> None:  # after the step before the call, before the one after it
            if how == "replicaof":
                replicate(server, primary)
            else:
                admin(server).config_set("maxmemory-policy", "noeviction")
                admin(server).config_set("maxmemory", 1)

        seen: list[bool] = []
        assert call(policy_on(store, seen, during=turn), "hi", mode) == "paid reply to hi"
        assert seen == [True]
        assert not store.shared
        assert calls_recorded(store) == 1  # recorded in this process's memory
        (line,) = logged(caplog)
        assert "read-only" in line or "out of memory" in line
        store.close()


def test_a_user_without_eval_permission_degrades_with_one_line_naming_it(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    admin(server).acl_setuser(
        "app",
        enabled=True,
        passwords=[f"+{PASSWORD}"],
        keys=["*"],
        commands=["+@all", "-eval", "-evalsha"],
    )
    store = resilient(f"redis://app:{PASSWORD}@127.0.0.1:{server.port}/0")
    seen: list[bool] = []
    policy = policy_on(store, seen)
    for _ in range(3):
        assert call(policy, "hi", "sync") == "paid reply to hi"
    assert seen == [False, False, False]
    assert rate_take(store, "rpm", 1, 60.0) == 0.0
    assert rate_take(store, "rpm", 1, 60.0) > 0  # limits hold, per process
    (line,) = logged(caplog)
    assert "permission" in line and "EVALSHA" in line.upper()
    assert PASSWORD not in caplog.text
    outage = store.check()
    assert outage is not None and outage.misconfigured  # what `pygent-lc doctor` reports

    admin(server).acl_setuser("app", commands=["+eval", "+evalsha"])
    recovers(store, policy, "sync")
    store.close()


@pytest.mark.parametrize("given", ["wrong", "missing"])
def test_a_wrong_or_missing_password_is_named_once_and_never_shown(
    server: RedisServer, caplog: pytest.LogCaptureFixture, given: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    admin(server).config_set("requirepass", PASSWORD)
    userinfo = ":wrong-pw-canary@" if given == "wrong" else ""
    store = resilient(f"redis://{userinfo}127.0.0.1:{server.port}/0")
    seen: list[bool] = []
    policy = policy_on(store, seen)
    for _ in range(2):
        assert call(policy, "hi", "async") == "paid reply to hi"
    assert seen == [False, False]
    (line,) = logged(caplog)
    assert "password" in line
    assert [r.levelno for r in caplog.records if r.getMessage() == line] == [logging.ERROR]
    assert "canary" not in caplog.text
    assert store.outage is not None and "password" in store.outage.reason
    assert store.check() == store.outage  # asked again, straight to Redis

    admin(server, PASSWORD).config_set("requirepass", "wrong-pw-canary" if userinfo else "")
    recovers(store, policy, "sync")
    assert store.outage is None
    assert store.check() is None
    store.close()


def test_the_step_before_the_call_checks_writes_even_with_nothing_to_limit(
    server: RedisServer,
) -> None:
    """An empty plan is how a policy that only records usage asks before the call."""
    store = resilient(server.url)
    assert store.begin_call(CallPlan()).allowed and store.shared
    admin(server).config_set("maxmemory-policy", "noeviction")
    admin(server).config_set("maxmemory", 1)
    assert store.begin_call(CallPlan()).allowed
    assert not store.shared
    store.close()


class FailsAfterCall(MemoryStore):
    """A primary whose step after a call fails with an error that is no outage (a bug, say)."""

    def run(self, op: Step[T]) -> T:
        if isinstance(op, CallEnd):
            raise KeyError("a bug")
        return super().run(op)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_any_failure_of_the_step_after_the_call_keeps_the_reply(
    caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    store = ResilientStore(FailsAfterCall(), outage_of)
    seen: list[bool] = []
    assert call(policy_on(store, seen), "hi", mode) == "paid reply to hi"
    assert call(policy_on(store, seen), "hi", mode) == "paid reply to hi"
    assert seen == [True, False]
    assert calls_recorded(store) == 2  # both in this process's memory
    (line,) = logged(caplog)
    assert "KeyError" in line
