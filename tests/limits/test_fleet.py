"""A fleet of four spawned workers shares limits, breakers, budget and usage through Redis.

Each worker builds its own chain with ``build_chat_model(Settings(state_url=...))``
against loopback servers this process runs, as separate hosts of one service would;
the servers count what reached them. The workers are started once for the module
(imports cost ~2 s a process) and run one scenario per test (see fleet_workers.py).
Each test starts on an empty Redis (the default ``pygent:`` keys cleared) and a
fresh loopback server. Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from typing import Any

import pytest

import tests.limits.fleet_workers as fleet_workers
from pygent_lc.cli.usage import fleet_usage
from pygent_lc.limits import UsageSummary
from pygent_lc.limits.redis_store import RedisStore
from tests.limits.fleet_workers import PROCESSES, Report
from tests.limits.steps import budget_spent
from tests.loopback_server import Fault, LoopbackServer
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.live_local, pytest.mark.timeout(90)]

COST = 0.004  # per OpenRouter call: "echo: hi" is 2 completion tokens at $0.002
RESULT_TIMEOUT_S = 60.0


class Fleet:
    """The worker processes, their command queues, and the barrier the test shares."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(PROCESSES + 1)
        self.results: Any = context.Queue()
        self.commands: list[Any] = [context.Queue() for _ in range(PROCESSES)]
        self.processes: list[SpawnProcess] = [
            context.Process(
                target=fleet_workers.serve,
                args=(index, self.commands[index], self.results, self.barrier),
                daemon=True,
            )
            for index in range(PROCESSES)
        ]
        for process in self.processes:
            process.start()

    def start(self, scenario: str, **keywords: Any) -> None:
        """Every worker runs ``scenario``; each of its syncs waits for :meth:`sync` here."""
        self.barrier.reset()  # a failed scenario before may have broken it
        with contextlib.suppress(queue.Empty):  # and left reports behind
            while True:
                self.results.get_nowait()
        for commands in self.commands:
            commands.put((scenario, keywords))

    def sync(self) -> None:
        try:
            self.barrier.wait(fleet_workers.SYNC_TIMEOUT_S)
        except threading.BrokenBarrierError:
            pytest.fail("a worker failed or hung:\n" + "\n".join(self._failures()))

    def _failures(self) -> list[str]:
        """What each worker reported, once the barrier broke (every worker then reports)."""
        failures = []
        with contextlib.suppress(queue.Empty):
            for _ in self.processes:
                index, answer = self.results.get(timeout=10.0)
                failures.append(f"worker {index}: {answer}")
        return failures

    def reports(self) -> list[Report]:
        """Each worker's report, in worker order; a worker's failure fails the test."""
        answers = dict(self.results.get(timeout=RESULT_TIMEOUT_S) for _ in self.processes)
        failures = [answer for answer in answers.values() if isinstance(answer, str)]
        assert not failures, "\n".join(failures)
        return [answers[index] for index in range(PROCESSES)]

    def close(self) -> None:
        for commands in self.commands:
            commands.put(None)
        for process in self.processes:
            # Exiting interpreters on a loaded 2-core machine have taken over 10 s;
            # one that never exits is still killed and fails the module.
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    fleet = Fleet()
    yield fleet
    fleet.close()
    assert all(process.exitcode == 0 for process in fleet.processes)


@pytest.fixture
def state(redis_url: str) -> Iterator[RedisStore]:
    """The shared state the workers use (the default prefix of ``Settings(state_url=...)``),
    empty at the start of the test."""
    store = RedisStore(redis_url)
    store.clear()
    yield store
    store.clear()
    store.close()


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(ollama_models=["llama3.2:latest"], price_in=0.0, price_out=COST / 2) as srv:
        yield srv


def settings_for(server: LoopbackServer, state_url: str, **overrides: Any) -> dict[str, Any]:
    """Keywords of ``Settings`` for a worker: both protocols on ``server``, no retries (one
    request per call, so the server's counts are the calls'), a budget key of the test's own."""
    values: dict[str, Any] = {
        "state_url": state_url,
        "openrouter_api_key": "sk-or-v1-test-key-for-loopback",
        "openrouter_base_url": server.openrouter_base_url,
        "openrouter_model": "openai/gpt-4o-mini",
        "ollama_base_url": server.ollama_base_url,
        "ollama_model": "llama3.2",
        "request_timeout": 5,
        "max_retries": 0,
        "retry_initial_wait": 0.001,
        "breaker_failures": 0,
        "budget_key": f"fleet-{uuid.uuid4().hex[:8]}",
    }
    values.update(overrides)
    return values


def total(reports: list[Report], field: str) -> Counter[str]:
    """The sum over workers of a ``Counter``-like field (``answered``, ``errors``)."""
    summed: Counter[str] = Counter()
    for report in reports:
        summed.update(report[field])
    return summed


def rows_by_provider(store: RedisStore) -> dict[str, UsageSummary]:
    return {row.provider: row for row in store.usage_rows()}


def test_a_rate_limit_holds_across_the_fleet(
    fleet: Fleet, state: RedisStore, redis_url: str, server: LoopbackServer
) -> None:
    """openrouter=10/min, mode ``raise``: calls over the limit raise LocalRateLimitError
    in the OpenRouter policy at once, and the chain's next provider (Ollama) answers."""
    per_worker = 6
    settings = settings_for(
        server, redis_url, rate_limits="openrouter=10/min", rate_limit_mode="raise"
    )
    fleet.start(
        "calls",
        settings=settings,
        providers=["openrouter", "ollama"],
        count=[per_worker] * PROCESSES,
    )
    fleet.sync()
    reports = fleet.reports()
    answered, errors = total(reports, "answered"), total(reports, "errors")
    calls = PROCESSES * per_worker
    print(
        f"\na: {PROCESSES} workers x {per_worker} calls = {calls} calls, server saw "
        f"{server.request_count('openrouter')} openrouter requests, "
        f"{server.request_count('ollama')} fell back to ollama, errors {dict(errors)}; "
        f"per worker openrouter/ollama: "
        + ", ".join(
            f"{r['answered'].get('openrouter', 0)}/{r['answered'].get('ollama', 0)}"
            for r in reports
        )
    )
    assert not errors
    assert server.request_count("openrouter") == 10  # the window is a minute: all in it
    assert answered == {"openrouter": 10, "ollama": calls - 10}
    assert server.request_count("ollama") == calls - 10
    assert all(r["calls"] == per_worker for r in reports)
    # Every worker got some of the fleet's 10 slots only if it asked in time; the usage agrees.
    rows = rows_by_provider(state)
    assert (rows["openrouter"].usage.calls, rows["ollama"].usage.calls) == (10, calls - 10)


def test_b_budget_holds_across_the_fleet(
    fleet: Fleet, state: RedisStore, redis_url: str, server: LoopbackServer
) -> None:
    """$0.02 shared by the fleet, $0.004 calls, no cost bounds: calls go one at a time
    across the fleet, each reserving the largest cost seen; at most one call over the
    limit (6), the rest BudgetExceededError (not a provider error: no fallback)."""
    per_worker = 4
    settings = settings_for(server, redis_url, max_cost_usd=0.02)
    fleet.start(
        "calls",
        settings=settings,
        providers=["openrouter", "ollama"],
        count=[per_worker] * PROCESSES,
    )
    fleet.sync()
    reports = fleet.reports()
    answered, errors = total(reports, "answered"), total(reports, "errors")
    served = server.request_count("openrouter")
    spent = budget_spent(state, settings["budget_key"])
    calls = PROCESSES * per_worker
    print(
        f"\nb: {PROCESSES} workers x {per_worker} calls = {calls} calls, server saw {served} "
        f"openrouter requests (${spent:.4f} spent of $0.02), "
        f"{errors.get('BudgetExceededError', 0)} BudgetExceededError, "
        f"{server.request_count('ollama')} ollama requests"
    )
    assert 5 <= served <= 6
    assert answered == {"openrouter": served}
    assert errors == {"BudgetExceededError": calls - served}
    assert server.request_count("ollama") == 0
    assert spent == pytest.approx(served * COST)


def test_c_a_breaker_opened_by_one_worker_keeps_the_fleet_off_the_primary(
    fleet: Fleet, state: RedisStore, redis_url: str, server: LoopbackServer
) -> None:
    """The primary answers 503; worker 0 alone makes the 3 failed calls that open its
    breaker (key provider|model|endpoint); then no worker's call reaches it (cooldown 60 s:
    no probe during the test), and the fallback answers every call."""
    threshold, per_worker = 3, 5
    server.script("openrouter", [Fault.status(503)] * 100)
    settings = settings_for(server, redis_url, breaker_failures=threshold, breaker_cooldown=60)
    fleet.start(
        "breaker",
        settings=settings,
        providers=["openrouter", "ollama"],
        opening=threshold,
        count=per_worker,
    )
    fleet.sync()  # go: worker 0 opens the breaker
    fleet.sync()  # then everyone calls
    reports = fleet.reports()
    answered, errors = total(reports, "answered"), total(reports, "errors")
    calls = threshold + PROCESSES * per_worker
    primary = server.request_count("openrouter")
    print(
        f"\nc: worker 0 made {threshold} calls (503s, breaker opened), then {PROCESSES} "
        f"workers x {per_worker} calls; {calls} calls, primary saw {primary} requests, "
        f"fallback answered {answered.get('ollama', 0)}, errors {dict(errors)}"
    )
    assert primary == threshold
    assert not errors
    assert answered == {"ollama": calls}
    assert server.request_count("ollama") == calls
    rows = rows_by_provider(state)
    assert (rows["openrouter"].usage.calls, rows["openrouter"].usage.failures) == (
        threshold,
        threshold,
    )


def test_d_a_redis_outage_mid_run_costs_no_call(fleet: Fleet, server: LoopbackServer) -> None:
    """Redis (this test's own) killed mid-run: every call is answered, one warning per
    process; started again on the same port, the workers' state is shared again: usage
    is recorded there once more."""
    before, during, after = 3, 5, 4
    with RedisServer() as redis:
        store = RedisStore(redis.url)
        settings = settings_for(
            server, redis.url, breaker_failures=3, rate_limits="openrouter=1000/min"
        )
        fleet.start(
            "outage",
            settings=settings,
            providers=["openrouter", "ollama"],
            before=before,
            during=during,
            after=after,
            resume_timeout_s=10.0,
        )
        fleet.sync()  # go
        fleet.sync()  # the calls with Redis up are done
        recorded_up = rows_by_provider(store)["openrouter"].usage.calls
        redis.kill()
        fleet.sync()
        fleet.sync()  # the calls with Redis down are done
        redis.start()  # same port, empty
        fleet.sync()
        reports = fleet.reports()
        rows_after = rows_by_provider(store)
        store.close()
    errors = total(reports, "errors")
    calls = sum(r["calls"] for r in reports)
    resuming = [r["resuming"] for r in reports]
    warnings = [len(r["warnings"]) for r in reports]
    recorded_after = rows_after["openrouter"].usage.calls if "openrouter" in rows_after else 0
    print(
        f"\nd: {PROCESSES} workers: {before} calls each with Redis up ({recorded_up} recorded), "
        f"{during} each after the kill, then {resuming} until shared again and {after} more; "
        f"{calls} calls, {sum(total(reports, 'answered').values())} answered, errors "
        f"{dict(errors)}; warnings per process {warnings}; after the restart "
        f"{recorded_after} calls recorded in Redis"
    )
    assert recorded_up == PROCESSES * before
    assert not errors
    assert total(reports, "answered") == {"openrouter": calls}
    assert server.request_count("openrouter") == calls
    assert warnings == [1] * PROCESSES
    assert all("unreachable" in r["warnings"][0] for r in reports)
    assert all(not r["down"]["shared"] for r in reports)
    assert all(r["shared_again"] for r in reports)
    # Recorded in Redis again: the call that found it back, and every call after it.
    assert recorded_after == PROCESSES * (after + 1)


def test_e_fleet_usage_is_the_sum_of_the_workers_calls(
    fleet: Fleet, state: RedisStore, redis_url: str, server: LoopbackServer
) -> None:
    """Workers make 3, 4, 5 and 6 calls at once; two OpenRouter 503s fall back to Ollama.
    The store's usage rows add up to what the workers report and the server saw."""
    counts = [3 + index for index in range(PROCESSES)]
    server.script("openrouter", [Fault.ok(), Fault.status(503), Fault.ok(), Fault.status(503)])
    settings = settings_for(server, redis_url)
    fleet.start("calls", settings=settings, providers=["openrouter", "ollama"], count=counts)
    fleet.sync()
    reports = fleet.reports()
    answered, errors = total(reports, "answered"), total(reports, "errors")
    rows = rows_by_provider(state)
    openrouter, ollama = rows["openrouter"].usage, rows["ollama"].usage
    answered_calls = (openrouter.calls - openrouter.failures) + ollama.calls
    cost = openrouter.cost_usd + ollama.cost_usd
    print(
        f"\ne: workers made {[r['calls'] for r in reports]} = {sum(counts)} calls; usage rows: "
        f"openrouter {openrouter.calls} calls ({openrouter.failures} failed) "
        f"${openrouter.cost_usd:.4f}, ollama {ollama.calls} calls ${ollama.cost_usd:.4f}; "
        f"answered {answered_calls}, cost ${cost:.4f}"
    )
    assert not errors
    assert [r["calls"] for r in reports] == counts
    assert answered_calls == sum(counts) == sum(answered.values())
    assert openrouter.calls == server.request_count("openrouter") == answered["openrouter"] + 2
    assert openrouter.failures == 2
    assert ollama.calls == server.request_count("ollama") == answered["ollama"] == 2
    assert cost == pytest.approx(answered["openrouter"] * COST)
    assert fleet_usage(redis_url) == state.usage_rows()  # what `pygent-lc usage` prints
