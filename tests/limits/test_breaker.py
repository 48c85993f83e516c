"""The circuit breaker, on scripted models (no sockets) and a fake clock."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.runnables import RunnableBinding, RunnableConfig

from pygent_lc import Settings, build_chat_model
from pygent_lc.build import with_provider_policy
from pygent_lc.chain import ProviderChain
from pygent_lc.errors import (
    AllProvidersFailedError,
    AuthenticationError,
    ConfigurationError,
    ContentRefusedError,
    InsufficientCreditsError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
)
from pygent_lc.limits.breaker import (
    CircuitBreaker,
    CircuitOpenError,
    live_breakers,
)
from pygent_lc.policy import ProviderPolicy
from pygent_lc.testing import ScriptedChatModel
from tests.limits.steps import admit, record, release

pytestmark = pytest.mark.timeout(10)

NO_RETRY = Settings(max_retries=0, retry_initial_wait=0.0, retry_max_wait=0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def down(provider: str = "a") -> ProviderUnavailableError:
    return ProviderUnavailableError("503", provider=provider, status_code=503)


def guarded(
    model: ScriptedChatModel,
    clock: Clock,
    failures: int = 3,
    cooldown: float = 30.0,
    settings: Settings = NO_RETRY,
) -> ProviderPolicy:
    circuit = CircuitBreaker(failures, cooldown, provider=model.provider, clock=clock)
    return with_provider_policy(model, settings, breaker=False).model_copy(
        update={"circuit": circuit}
    )


def circuit_of(runnable: ProviderPolicy) -> CircuitBreaker:
    """The breaker ``guarded`` put ``runnable`` behind, read afresh at each call."""
    assert runnable.circuit is not None
    return runnable.circuit


def chain(*runnables: ProviderPolicy) -> ProviderChain:
    return ProviderChain(providers=list(runnables))


async def fail_times(runnable: ProviderPolicy, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ProviderError):
            await runnable.ainvoke("hi")


@pytest.mark.parametrize(
    ("threshold", "cooldown", "named"),
    [
        (-1, 30.0, "failure_threshold"),
        ("3", 30.0, "failure_threshold"),
        (3, -0.5, "cooldown"),
        (3, math.nan, "cooldown"),
        (3, math.inf, "cooldown"),
    ],
)
def test_a_negative_threshold_or_cooldown_is_a_configuration_error(
    threshold: Any, cooldown: Any, named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named) as raised:
        CircuitBreaker(failure_threshold=threshold, cooldown=cooldown)
    assert raised.value.field == named


async def test_opens_after_n_consecutive_failures() -> None:
    clock = Clock()
    model = ScriptedChatModel(provider="a", outcomes=[down()] * 3)
    runnable = guarded(model, clock)
    await fail_times(runnable, 2)
    assert circuit_of(runnable).state == "closed"
    assert circuit_of(runnable).status().failures == 2
    await fail_times(runnable, 1)
    assert circuit_of(runnable).state == "open"
    assert len(model.calls) == 3


async def test_skips_the_provider_during_cooldown_without_calling_it() -> None:
    clock = Clock()
    model = ScriptedChatModel(provider="a", outcomes=[down()] * 3)
    runnable = guarded(model, clock)
    await fail_times(runnable, 3)
    clock.now += 10
    with pytest.raises(CircuitOpenError, match=r"cooling down for 20\.0s") as caught:
        await runnable.ainvoke("hi")
    error = caught.value
    assert isinstance(error, ProviderUnavailableError)
    assert (error.provider, error.retryable, error.retry_after) == ("a", False, 20.0)
    assert "ProviderUnavailableError" in str(error)  # names the last real failure
    assert len(model.calls) == 3
    with pytest.raises(CircuitOpenError):
        runnable.invoke("hi")
    with pytest.raises(CircuitOpenError):
        list(runnable.stream("hi"))
    with pytest.raises(CircuitOpenError):
        [c async for c in runnable.astream("hi")]
    assert len(model.calls) == 3


async def test_half_open_lets_one_probe_through_and_success_closes() -> None:
    clock = Clock()
    model = ScriptedChatModel(provider="a", outcomes=[down()] * 3 + ["back"])
    runnable = guarded(model, clock)
    await fail_times(runnable, 3)
    clock.now += 30
    assert circuit_of(runnable).state == "half_open"
    assert (await runnable.ainvoke("hi")).content == "back"
    assert circuit_of(runnable).state == "closed"
    assert circuit_of(runnable).status().failures == 0
    assert (await runnable.ainvoke("hi")).content == "ok"
    assert len(model.calls) == 5


async def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = Clock()
    model = ScriptedChatModel(provider="a", outcomes=[down()] * 4)
    runnable = guarded(model, clock)
    await fail_times(runnable, 3)
    clock.now += 31
    await fail_times(runnable, 1)  # the probe
    assert circuit_of(runnable).state == "open"
    clock.now += 29
    with pytest.raises(CircuitOpenError):
        await runnable.ainvoke("hi")
    assert len(model.calls) == 4


def test_only_one_probe_while_it_is_in_flight() -> None:
    clock = Clock()
    circuit = CircuitBreaker(1, 5.0, clock=clock)
    first = admit(circuit)
    record(circuit, first, down())
    clock.now += 5
    probe = admit(circuit)
    assert probe.allowed
    assert probe.probe_id is not None
    others = [admit(circuit) for _ in range(3)]
    assert not any(o.allowed for o in others)
    assert "probe call is in flight" in str(circuit.open_error(others[0]))
    clock.now += 5  # a probe slower than the cooldown does not block the slot
    assert admit(circuit).allowed


def test_released_probe_frees_the_slot() -> None:
    clock = Clock()
    circuit = CircuitBreaker(1, 5.0, clock=clock)
    record(circuit, admit(circuit), down())
    clock.now += 5
    probe = admit(circuit)
    release(circuit, probe)
    assert admit(circuit).allowed
    assert circuit.state == "half_open"


def test_failure_of_a_call_admitted_before_opening_is_not_counted_again() -> None:
    clock = Clock()
    circuit = CircuitBreaker(2, 5.0, clock=clock)
    early = [admit(circuit) for _ in range(3)]
    record(circuit, early[0], down())
    record(circuit, early[1], down())
    opened_at_state = circuit.state
    clock.now += 4
    record(circuit, early[2], down())  # stale: must not extend the cooldown
    clock.now += 1
    assert (opened_at_state, circuit.state) == ("open", "half_open")


@pytest.mark.parametrize(
    "error",
    [
        down(),
        RateLimitError("429", provider="a", status_code=429),
        AuthenticationError("401", provider="a", status_code=401),
        InsufficientCreditsError("402", provider="a", status_code=402),
        ModelNotFoundError("404", provider="a", status_code=404),
        ProviderUnavailableError("connection refused", provider="a", retryable=False),
    ],
    ids=["503", "429", "401", "402", "404", "refused"],
)
def test_counted_errors(error: ProviderError) -> None:
    circuit = CircuitBreaker(1, 5.0, clock=Clock())
    record(circuit, admit(circuit), error)
    assert circuit.state == "open"


@pytest.mark.parametrize(
    "error",
    [
        ProviderError("400 bad request", provider="a", status_code=400),
        ContentRefusedError("403 flagged", provider="a", status_code=403),
        StreamInterruptedError("cut", partial_text="one", provider="a"),
    ],
    ids=["400", "403", "stream-interrupted"],
)
def test_errors_that_prove_the_provider_answered_reset_the_count(error: ProviderError) -> None:
    clock = Clock()
    circuit = CircuitBreaker(2, 5.0, clock=clock)
    record(circuit, admit(circuit), down())
    record(circuit, admit(circuit), error)
    assert circuit.status().failures == 0
    record(circuit, admit(circuit), down())
    assert circuit.state == "closed"
    record(circuit, admit(circuit), down())
    clock.now += 5
    probe = admit(circuit)
    record(circuit, probe, error)  # the probe got an answer: closed
    assert circuit.state == "closed"


async def test_disabled_with_zero() -> None:
    for failures, cooldown in [(0, 30.0), (3, 0.0)]:
        circuit = CircuitBreaker(failures, cooldown, clock=Clock())
        for _ in range(10):
            record(circuit, admit(circuit), down())
        assert circuit.state == "closed"
        assert admit(circuit).allowed
    for env in ({"breaker_failures": 0}, {"breaker_cooldown": 0}):
        settings = Settings(ollama_model="llama3.2", **env)
        built = build_chat_model(settings, ["ollama"])
        assert isinstance(built, ProviderChain)
        (policy,) = built.providers
        assert isinstance(policy, ProviderPolicy)
        assert policy.circuit is None


def test_build_chat_model_puts_each_provider_behind_its_own_breaker() -> None:
    settings = Settings(openrouter_api_key="sk-or-v1-x", ollama_model="llama3.2")
    built = build_chat_model(settings, ["openrouter", "ollama"])
    assert isinstance(built, ProviderChain)
    policies = built.providers
    assert all(isinstance(p, ProviderPolicy) for p in policies)
    circuits = [p.circuit for p in policies if isinstance(p, ProviderPolicy) and p.circuit]
    assert [c.provider for c in circuits] == ["openrouter", "ollama"]
    assert [c.model for c in circuits] == ["anthropic/claude-3.5-sonnet", "llama3.2"]
    assert circuits[0] is not circuits[1]
    assert (circuits[0].failure_threshold, circuits[0].cooldown) == (3, 30.0)
    (alone,) = build_chat_model(settings, ["ollama"]).providers
    assert isinstance(alone, ProviderPolicy)
    binding = alone.bind(stop=["x"])
    assert isinstance(binding, RunnableBinding)
    assert binding.bound is alone  # bindings share the breaker


async def test_chain_falls_over_fast_while_the_primary_is_open() -> None:
    clock = Clock()
    primary = ScriptedChatModel(provider="a", outcomes=[down()] * 3)
    backup = ScriptedChatModel(provider="b")
    runnable = chain(guarded(primary, clock), guarded(backup, clock))
    for _ in range(3):
        assert (await runnable.ainvoke("hi")).content == "ok"
    started = time.perf_counter()
    for _ in range(100):
        assert (await runnable.ainvoke("hi")).content == "ok"
    per_call = (time.perf_counter() - started) / 100
    assert len(primary.calls) == 3
    assert len(backup.calls) == 103
    assert per_call < 0.01  # the scripted backup dominates; the skip itself is microseconds


async def test_with_every_circuit_open_the_last_provider_is_still_tried() -> None:
    """A breaker moves calls on to the next provider; with none left, the last one
    is asked past its open circuit (as a probe) instead of locking the caller out."""
    clock = Clock()
    a = ScriptedChatModel(provider="a", outcomes=[down("a")] * 3)
    b = ScriptedChatModel(provider="b", outcomes=[down("b")] * 6 + ["b is back"] * 2)
    runnable = chain(guarded(a, clock), guarded(b, clock))
    for _ in range(3):
        with pytest.raises(AllProvidersFailedError):
            await runnable.ainvoke("hi")
    with pytest.raises(AllProvidersFailedError) as caught:
        await runnable.ainvoke("hi")
    errors = list(caught.value.errors.values())
    assert [type(e) for e in errors] == [CircuitOpenError, ProviderUnavailableError]
    assert [e.provider for e in errors] == ["a", "b"]
    with pytest.raises(AllProvidersFailedError):
        runnable.invoke("hi")
    with pytest.raises(AllProvidersFailedError):
        [c async for c in runnable.astream("hi")]
    assert (len(a.calls), len(b.calls)) == (3, 6)  # a stays shut; b is asked each time
    assert (await runnable.ainvoke("hi")).content == "b is back"  # before its cooldown ends
    second = runnable.providers[1]
    assert isinstance(second, ProviderPolicy)
    assert circuit_of(second).state == "closed"
    assert len(a.calls) == 3


def test_sync_stream_falls_back_while_open() -> None:
    clock = Clock()
    primary = ScriptedChatModel(provider="a", outcomes=[("", down())] * 3)
    backup = ScriptedChatModel(provider="b", outcomes=["b streams"] * 4)
    runnable = chain(guarded(primary, clock), guarded(backup, clock))
    for _ in range(4):
        assert "".join(str(c.content) for c in runnable.stream("hi")) == "b streams"
    assert len(primary.calls) == 3


async def test_one_breaker_decision_per_call_after_retries() -> None:
    clock = Clock()
    settings = Settings(max_retries=2, retry_initial_wait=0.0, retry_max_wait=0.0)
    model = ScriptedChatModel(provider="a", outcomes=[down(), down(), "fine"] + [down()] * 3)
    runnable = guarded(model, clock, failures=1, settings=settings)
    assert (await runnable.ainvoke("hi")).content == "fine"  # retried: one successful call
    assert circuit_of(runnable).state == "closed"
    await fail_times(runnable, 1)  # three attempts, one counted failure
    assert circuit_of(runnable).state == "open"
    assert len(model.calls) == 6


async def test_abandoned_stream_probe_is_released_or_counted_as_success() -> None:
    clock = Clock()
    model = ScriptedChatModel(provider="a", outcomes=[down(), "one two three"])
    runnable = guarded(model, clock, failures=1)
    await fail_times(runnable, 1)
    clock.now += 30
    stream = runnable.astream("hi")
    assert isinstance(stream, AsyncGenerator)
    first = await anext(stream)
    await stream.aclose()  # the consumer stopped after text arrived: the provider is up
    assert first.content == "one"
    assert circuit_of(runnable).state == "closed"


async def test_cancelled_probe_frees_the_slot() -> None:
    clock = Clock()
    gate = asyncio.Event()

    class Slow(ScriptedChatModel):
        async def _agenerate(self, *args, **kwargs):
            await gate.wait()
            return self._generate(*args, **kwargs)

    model = Slow(provider="a", outcomes=[down()])
    runnable = guarded(model, clock, failures=1)
    gate.set()
    await fail_times(runnable, 1)
    gate.clear()
    clock.now += 30
    probe = asyncio.ensure_future(runnable.ainvoke("hi"))
    await asyncio.sleep(0.01)
    with pytest.raises(CircuitOpenError, match="probe"):
        await runnable.ainvoke("hi")
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    gate.set()
    assert (await runnable.ainvoke("hi")).content == "ok"
    assert circuit_of(runnable).state == "closed"


def test_batch_goes_through_the_breaker() -> None:
    clock = Clock()
    model = ScriptedChatModel(provider="a", outcomes=[down()])
    runnable = guarded(model, clock, failures=1)
    # One at a time: calls admitted together while the circuit is still closed would
    # reach the model after its one scripted failure and answer.
    config: RunnableConfig = {"max_concurrency": 1}
    results = runnable.batch(["x", "y", "z"], config, return_exceptions=True)
    assert sum(isinstance(r, ProviderError) for r in results) == 3
    assert sum(isinstance(r, CircuitOpenError) for r in results) >= 1
    assert len(model.calls) < 3


def test_state_is_consistent_under_threads() -> None:
    circuit = CircuitBreaker(5, 60.0)
    barrier = threading.Barrier(16)

    def hammer(_: int) -> int:
        barrier.wait()
        admitted = 0
        for _ in range(500):
            admission = admit(circuit)
            if admission.allowed:
                admitted += 1
                record(circuit, admission, down())
        return admitted

    with ThreadPoolExecutor(16) as pool:
        admitted = sum(pool.map(hammer, range(16)))
    # Every call admitted before the circuit opened failed; the opening is exact.
    assert circuit.state == "open"
    assert circuit.status().failures == 5
    assert 5 <= admitted < 16 * 500


async def test_concurrent_async_probe_is_single() -> None:
    clock = Clock()
    release = asyncio.Event()
    calls = 0

    class Gated(ScriptedChatModel):
        async def _agenerate(self, *args, **kwargs):
            nonlocal calls
            calls += 1
            await release.wait()
            return self._generate(*args, **kwargs)

    runnable = guarded(Gated(provider="a", outcomes=[down()]), clock, failures=1)
    release.set()
    await fail_times(runnable, 1)
    release.clear()
    clock.now += 30
    tasks = [asyncio.ensure_future(runnable.ainvoke("hi")) for _ in range(50)]
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 2  # the failure, then exactly one probe
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, CircuitOpenError) for r in results if isinstance(r, BaseException))


def test_settings_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().breaker_failures, Settings().breaker_cooldown) == (3, 30.0)
    monkeypatch.setenv("PYGENT_BREAKER_FAILURES", "5")
    monkeypatch.setenv("PYGENT_BREAKER_COOLDOWN", "2.5")
    assert (Settings().breaker_failures, Settings().breaker_cooldown) == (5, 2.5)
    circuit = with_provider_policy(ScriptedChatModel(provider="p"), Settings()).circuit
    assert circuit is not None
    assert (circuit.failure_threshold, circuit.cooldown) == (5, 2.5)


def test_the_live_breakers_can_be_listed_while_another_thread_builds_breakers() -> None:
    """Telemetry lists them while agents are built in other threads: never a RuntimeError."""
    stop = threading.Event()
    kept: list[CircuitBreaker] = []

    def build() -> None:
        while not stop.is_set():
            kept.append(CircuitBreaker(provider="p"))
            if len(kept) > 500:
                kept.clear()  # the set also shrinks as breakers are collected

    builder = threading.Thread(target=build)
    builder.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert all(isinstance(b, CircuitBreaker) for b in live_breakers())
    finally:
        stop.set()
        builder.join()
