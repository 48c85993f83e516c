"""What each spawned worker of test_fleet.py runs (a module of its own, so a spawned child
imports only this, not the test module).

A worker is started once for the whole module and then runs one scenario per test:
the test sends ``(scenario, keywords)`` on the worker's command queue, the worker
builds its own chain with ``build_chat_model(Settings(**settings), providers)``,
makes its calls and puts a :data:`Report` on the results queue. The test process
is the fifth party of a shared barrier (:meth:`Worker.sync`), so it can act between
a scenario's phases (kill Redis, start it again) while the workers wait.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from pygent_lc import Settings
from pygent_lc.build import build_chat_model
from pygent_lc.chain import ProviderChain
from pygent_lc.limits import ResilientStore, shared_store

PROCESSES = 4
SYNC_TIMEOUT_S = 60.0  # the first scenario's first sync waits for the workers' imports
PROMPT = "hi"  # "echo: hi" back: 1 prompt token, 2 completion tokens

Report = dict[str, Any]
"""What a worker tells the test: plain values only (it crosses a process boundary)."""


class WarningCounter(logging.Handler):
    """Counts the warnings of ``pygent_lc.limits`` (a Redis outage logs one per process)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.messages.append(record.getMessage())


class Worker:
    """One worker's side of a scenario: its index, the shared barrier, its tally."""

    def __init__(self, index: int, barrier: Barrier, warnings: WarningCounter) -> None:
        self.index = index
        self._barrier = barrier
        self.warnings = warnings
        self.answered: Counter[str] = Counter()  # provider that answered -> calls
        self.errors: Counter[str] = Counter()  # error type -> calls

    def sync(self) -> None:
        """Wait until every worker and the test process got here."""
        self._barrier.wait(SYNC_TIMEOUT_S)

    def chain(self, settings: dict[str, Any], providers: list[str]) -> ProviderChain:
        return build_chat_model(Settings(**settings), providers)

    def ask(self, chain: ProviderChain) -> None:
        """One call: counted under the provider that answered, or under its error's type."""
        try:
            answer = chain.invoke(PROMPT)
        except Exception as exc:
            self.errors[type(exc).__name__] += 1
            return
        self.answered[str(answer.response_metadata.get("model_provider", "?"))] += 1

    def report(self, **extra: Any) -> Report:
        return {
            "index": self.index,
            "calls": sum(self.answered.values()) + sum(self.errors.values()),
            "answered": dict(self.answered),
            "errors": dict(self.errors),
            "warnings": list(self.warnings.messages),
            **extra,
        }


# --- scenarios ----------------------------------------------------------------------------


def calls(
    worker: Worker, settings: dict[str, Any], providers: list[str], count: list[int]
) -> Report:
    """All workers start together; worker ``i`` makes ``count[i]`` calls."""
    chain = worker.chain(settings, providers)
    worker.sync()
    for _ in range(count[worker.index]):
        worker.ask(chain)
    chain.close()
    return worker.report()


def breaker(
    worker: Worker, settings: dict[str, Any], providers: list[str], opening: int, count: int
) -> Report:
    """Worker 0 makes ``opening`` calls alone (the failing primary opens its breaker);
    then every worker makes ``count`` calls."""
    chain = worker.chain(settings, providers)
    worker.sync()
    if worker.index == 0:
        for _ in range(opening):
            worker.ask(chain)
    first = worker.report()
    worker.sync()
    for _ in range(count):
        worker.ask(chain)
    chain.close()
    return worker.report(opening=first)


def outage(
    worker: Worker,
    settings: dict[str, Any],
    providers: list[str],
    before: int,
    during: int,
    after: int,
    resume_timeout_s: float,
) -> Report:
    """Calls with Redis up, then killed, then started again (the test does both between
    the syncs). After the restart the worker calls until its store is shared again (the
    call that found Redis back is recorded there too), then makes ``after`` more calls."""
    store = shared_store(settings["state_url"])
    assert isinstance(store, ResilientStore)
    chain = worker.chain(settings, providers)
    worker.sync()  # go
    for _ in range(before):
        worker.ask(chain)
    up = worker.report()
    worker.sync()  # the test reads the usage, kills Redis
    worker.sync()
    for _ in range(during):
        worker.ask(chain)
    down = worker.report(shared=store.shared)
    worker.sync()  # the test starts Redis again
    worker.sync()
    resuming = 0
    deadline = time.monotonic() + resume_timeout_s
    while time.monotonic() < deadline:
        worker.ask(chain)
        resuming += 1
        if store.shared:
            break
        time.sleep(0.05)
    shared_again = store.shared
    for _ in range(after):
        worker.ask(chain)
    chain.close()
    return worker.report(
        up=up, down=down, resuming=resuming, shared_again=shared_again, after=after
    )


SCENARIOS: dict[str, Callable[..., Report]] = {
    "calls": calls,
    "breaker": breaker,
    "outage": outage,
}


# --- the process --------------------------------------------------------------------------


def serve(
    index: int,
    commands: Queue[tuple[str, dict[str, Any]] | None],
    results: Queue[tuple[int, Report | str]],
    barrier: Barrier,
) -> None:
    """Run scenarios until told to stop (``None``); a failed one reports its traceback."""
    for name in list(os.environ):  # no developer's configuration, as in the test process
        if name.startswith(("OPENROUTER_", "OLLAMA_", "PYGENT_")):
            del os.environ[name]
    counter = WarningCounter()
    logging.getLogger("pygent_lc.limits").addHandler(counter)
    while (command := commands.get()) is not None:
        scenario, keywords = command
        counter.messages.clear()
        try:
            result: Report | str = SCENARIOS[scenario](Worker(index, barrier, counter), **keywords)
        except BaseException:
            result = traceback.format_exc()
            barrier.abort()  # the others stop waiting for this worker
        results.put((index, result))
