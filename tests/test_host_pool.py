"""The Ollama host pool: several ``OLLAMA_BASE_URL`` hosts behind one provider of the chain.

Settings and the pool's wiring are unit tests. The routing, failover,
breakers and in-flight counts run against two ``LoopbackServer`` instances as
Ollama hosts (``live_local``); "OpenRouter", the chain's next provider, is the
second host's OpenRouter endpoint, so a call it serves is visible there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from typing import Any, Literal

import pytest
from langchain_core.tracers.context import collect_runs
from pydantic import BaseModel

from pygent_lc import Settings, build_chat_model
from pygent_lc.chain import ProviderChain, fallback_notices
from pygent_lc.closing import chat_models_in
from pygent_lc.errors import ConfigurationError, ModelNotFoundError, ProviderUnavailableError
from pygent_lc.host_pool import AllHostsFailedError, Count, Enter, HostPool, HostSlot
from pygent_lc.limits import MemoryStore, open_store
from pygent_lc.policy import ProviderPolicy
from pygent_lc.providers.ollama import check_ollama, ollama_listing
from pygent_lc.testing import ScriptedChatModel
from tests.helpers import closed_port, loopback_settings
from tests.loopback_server import Fault, LoopbackServer

Mode = Literal["invoke", "ainvoke", "stream", "astream"]
MODES: tuple[Mode, ...] = ("invoke", "ainvoke", "stream", "astream")
live = pytest.mark.live_local


def dead_url() -> str:
    return f"http://127.0.0.1:{closed_port()}"


def pool_of(chain: ProviderChain) -> HostPool:
    pool = chain.providers[0]
    assert isinstance(pool, HostPool)
    return pool


def slot(pool: HostPool, host: str) -> HostSlot:
    (found,) = [p for p in pool.providers if isinstance(p, HostSlot) and p.host == host]
    return found


def policy(pool: HostPool, host: str) -> ProviderPolicy:
    bound = slot(pool, host).bound
    assert isinstance(bound, ProviderPolicy)
    return bound


def states(pool: HostPool) -> list[str]:
    """Each host's circuit state, in the configured order."""
    circuits = [policy(pool, host).circuit for host in pool.hosts]
    return [circuit.state if circuit is not None else "none" for circuit in circuits]


async def await_for(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def ask(chain: ProviderChain, mode: Mode, prompt: str = "hi") -> str:
    if mode == "invoke":
        return str(chain.invoke(prompt).content)
    if mode == "ainvoke":
        return str((await chain.ainvoke(prompt)).content)
    if mode == "stream":
        return "".join(str(chunk.content) for chunk in chain.stream(prompt))
    return "".join([str(chunk.content) async for chunk in chain.astream(prompt)])


# --- settings ----------------------------------------------------------------------------


def test_several_urls_are_one_setting_and_one_url_is_unchanged() -> None:
    one = Settings(ollama_base_url="http://gpu1:11434/")
    assert one.ollama.base_url == "http://gpu1:11434"
    assert one.ollama.base_urls == ("http://gpu1:11434",)
    several = Settings(ollama_base_url=" http://gpu1:11434/ , https://gpu2:11434")
    assert several.ollama.base_urls == ("http://gpu1:11434", "https://gpu2:11434")
    assert several.ollama.base_url == "http://gpu1:11434,https://gpu2:11434"
    assert Settings().ollama.base_urls == ("http://localhost:11434",)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "http://gpu1:11434,gpu2:11434",
            "URL 2 of 2 expected a URL starting with http:// or https://",
        ),
        ("http://gpu1:11434,,http://gpu2:11434", "URL 2 of 3 is empty"),
        ("http://gpu1:11434,http://gpu1:11434/", "URL 2 of 2 is listed twice"),
        ("gpu1:11434", "expected a URL starting with http:// or https://"),
    ],
)
def test_a_bad_url_in_the_list_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", value)
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert caught.value.field == "ollama_base_url (OLLAMA_BASE_URL)"
    message = str(caught.value)
    assert "ollama_base_url (OLLAMA_BASE_URL) from the environment variable" in message
    assert problem in message


# --- the pool's wiring (no network) ------------------------------------------------------


def test_several_hosts_make_a_pool_of_one_policy_and_breaker_per_host() -> None:
    hosts = ["http://gpu1:11434", "http://gpu2:11434", "http://gpu3:11434"]
    settings = Settings(ollama_base_url=",".join(hosts), ollama_model="llama3.2")
    chain = build_chat_model(settings, ["ollama"])
    pool = pool_of(chain)
    assert pool.hosts == hosts
    slots = [slot for slot in pool.providers if isinstance(slot, HostSlot)]
    assert [slot.key for slot in slots] == [f"ollama|{host}" for host in hosts]
    policies = [policy(pool, host) for host in hosts]
    assert [getattr(p.bound, "base_url", None) for p in policies] == hosts
    circuits = {id(p.circuit) for p in policies if p.circuit is not None}
    assert len(circuits) == 3  # each host behind its own breaker
    assert pool.in_flight() == dict.fromkeys(hosts, 0)
    single = build_chat_model(Settings(ollama_model="llama3.2"), ["ollama"])
    assert isinstance(single.providers[0], ProviderPolicy)  # one host: no pool


class Answer(BaseModel):
    text: str


def test_tools_structured_output_and_close_reach_every_host() -> None:
    settings = Settings(ollama_base_url="http://a:1,http://b:2", ollama_model="llama3.2")
    chain = build_chat_model(settings, ["ollama"])
    pool = pool_of(chain)

    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    for changed in (chain.bind_tools([lookup]), chain.with_structured_output(Answer)):
        copy = pool_of(changed)
        assert type(copy) is HostPool
        assert copy.hosts == pool.hosts
        assert copy.store is pool.store
        for host in pool.hosts:  # same breaker, a changed model
            assert policy(copy, host).circuit is policy(pool, host).circuit
            assert policy(copy, host).bound is not policy(pool, host).bound
    models = chat_models_in(chain)
    assert sorted(getattr(model, "base_url", "") for model in models) == pool.hosts
    chain.close()  # closes each host's model; still usable after


def scripted_pool(**outcomes: list[Any]) -> tuple[HostPool, dict[str, ScriptedChatModel]]:
    models = {f"http://{name}": ScriptedChatModel(outcomes=o) for name, o in outcomes.items()}
    pool = HostPool.of(
        {host: ProviderPolicy(bound=model, max_attempts=1) for host, model in models.items()},
        provider="scripted",
        store=MemoryStore(),
    )
    return pool, models


def test_idle_hosts_take_turns_and_a_busy_one_is_passed_over() -> None:
    pool, models = scripted_pool(a=[], b=[], c=[])
    for _ in range(6):
        pool.invoke("hi")
    assert [len(model.calls) for model in models.values()] == [2, 2, 2]
    # Calls another process has in flight on a and b (same store): c takes the next ones.
    held = [
        Enter(key, pool.store.clock()) for key in ["scripted|http://a"] * 2 + ["scripted|http://b"]
    ]
    for ticket in held:
        pool.store.run(ticket)
    for _ in range(3):
        pool.invoke("hi")
    assert [len(model.calls) for model in models.values()] == [2, 2, 5]
    for ticket in held:
        pool.store.run(ticket.exit(pool.store.clock()))
    assert pool.in_flight() == {"http://a": 0, "http://b": 0, "http://c": 0}


def test_a_host_error_moves_to_the_next_host_and_all_failing_is_one_provider_error() -> None:
    down = ProviderUnavailableError("503", provider="scripted")
    pool, models = scripted_pool(a=[down, down], b=["fine", down])
    assert pool.invoke("hi").content == "fine"  # a failed, b answered
    with pytest.raises(AllHostsFailedError) as caught:
        pool.invoke("hi")  # b's turn first: b failed, then a
    error = caught.value
    assert isinstance(error, ProviderUnavailableError)
    assert list(error.errors) == ["http://b", "http://a"]
    assert "all 2 hosts failed: http://b: ProviderUnavailableError: 503;" in str(error)
    assert not error.retryable
    assert [len(model.calls) for model in models.values()] == [2, 2]


def test_a_host_that_answers_after_another_failed_logs_which_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fallback_notices.reset()
    down = ProviderUnavailableError("503", provider="scripted", status_code=503)
    pool, _ = scripted_pool(a=[down], b=["fine"])
    with caplog.at_level(logging.WARNING, logger="pygent_lc.fallbacks"):
        assert pool.invoke("hi").content == "fine"
    fallback_notices.reset()
    assert [r.getMessage() for r in caplog.records] == [
        "fell back: scripted at http://a failed (503 unavailable); scripted at http://b answered"
    ]


def test_telemetry_counts_host_attempts_under_the_chain_span() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from pygent_lc import telemetry

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry.instrument(tracer_provider, MeterProvider(), capture_content=False)
    try:
        down = ProviderUnavailableError("503", provider="scripted")
        pool, _ = scripted_pool(a=[down], b=[])
        ProviderChain(providers=[pool]).invoke("hi")
    finally:
        telemetry.uninstrument()
    (chain,) = [span for span in spans.get_finished_spans() if span.name == "pygent.chain"]
    chats = [span for span in spans.get_finished_spans() if span.name.startswith("chat")]
    assert len(chats) == 2  # a failed, b answered: no span of the pool's own
    assert all(span.parent is not None for span in chats)
    assert {span.parent.span_id for span in chats if span.parent} == {chain.context.span_id}
    assert chain.attributes is not None
    assert chain.attributes["pygent.chain.attempts"] == 2
    assert chain.attributes["pygent.chain.providers"] == ("scripted",)


# --- on loopback Ollama hosts ------------------------------------------------------------


@pytest.fixture
def host_a() -> Iterator[LoopbackServer]:
    with LoopbackServer(ollama_models=["llama3.2:latest"], max_hang=10) as server:
        yield server


@pytest.fixture
def host_b() -> Iterator[LoopbackServer]:
    with LoopbackServer(ollama_models=["llama3.2:latest"], max_hang=10) as server:
        yield server


def chain_over(
    hosts: list[str], fallback: LoopbackServer, *providers: str, **overrides: Any
) -> ProviderChain:
    """The chain ollama (a pool of ``hosts``) then openrouter (``fallback``'s endpoint)."""
    settings = loopback_settings(
        fallback, ollama_base_url=",".join(hosts), max_retries=0, **overrides
    )
    return build_chat_model(settings, list(providers or ("ollama", "openrouter")))


@live
@pytest.mark.timeout(30)
async def test_calls_go_to_the_host_with_fewest_calls_in_flight(
    host_a: LoopbackServer, host_b: LoopbackServer
) -> None:
    a, b = host_a.ollama_base_url, host_b.ollama_base_url
    chain = chain_over([a, b], host_b)
    pool = pool_of(chain)
    host_a.script("ollama", [Fault.latency(1.5)])
    slow = asyncio.create_task(chain.ainvoke("slow"))  # first turn: a, held there
    await await_for(lambda: pool.in_flight() == {a: 1, b: 0})
    for _ in range(3):  # turns alone would send the second of these to a
        assert (await chain.ainvoke("quick")).content == "echo: quick"
    assert host_b.request_count("ollama") == 3
    assert (await slow).content == "echo: slow"
    assert host_a.request_count("ollama") == 1
    assert pool.in_flight() == {a: 0, b: 0}


@live
@pytest.mark.timeout(30)
async def test_in_flight_counts_are_shared_through_redis(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, host_a: LoopbackServer, host_b: LoopbackServer
) -> None:
    """Another process's calls on a host (another client of the same Redis) count here."""
    monkeypatch.setenv("PYGENT_STATE_URL", redis_url)
    a, b = host_a.ollama_base_url, host_b.ollama_base_url
    keys = [f"ollama|{a}", f"ollama|{b}"]
    chain = chain_over([a, b], host_b, "ollama")
    other_process = open_store(redis_url)
    try:
        await other_process.arun(ticket := Enter(keys[0], other_process.clock()))
        for _ in range(2):  # sync and async: both pass over a, busy elsewhere
            chain.invoke("hi")
            await chain.ainvoke("hi")
        assert (host_a.request_count("ollama"), host_b.request_count("ollama")) == (0, 4)
        await other_process.arun(ticket.exit(other_process.clock()))
        host_a.script("ollama", [Fault.latency(1.5)])
        slow = asyncio.create_task(chain.ainvoke("slow"))  # a's turn, seen over there
        await await_for(lambda: host_a.request_count("ollama") == 1)
        assert await other_process.arun(Count(tuple(keys), other_process.clock())) == [1, 0]
        await slow
        assert await other_process.arun(Count(tuple(keys), other_process.clock())) == [0, 0]
    finally:
        await other_process.aclose()


@live
@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", MODES)
async def test_a_dead_host_is_skipped_within_the_call(host_b: LoopbackServer, mode: Mode) -> None:
    dead, b = dead_url(), host_b.ollama_base_url
    chain = chain_over([dead, b], host_b)  # first turn: the dead host
    with collect_runs() as runs:
        assert await ask(chain, mode) == "echo: hi"
    assert host_b.request_count("ollama") == 1
    assert host_b.request_count("openrouter") == 0  # the chain's next provider was not asked
    assert pool_of(chain).in_flight() == {dead: 0, b: 0}
    (top,) = runs.traced_runs  # chain -> pool -> one run per host attempt
    (pool_run,) = top.child_runs
    assert (top.name, pool_run.name) == ("ProviderChain", "HostPool")
    attempts = pool_run.child_runs
    assert [run.tags or [] for run in attempts] == [[f"host:{dead}"], [f"host:{b}"]]
    assert attempts[0].error is not None and attempts[1].error is None


@live
@pytest.mark.timeout(30)
async def test_each_host_has_its_own_breaker(
    host_a: LoopbackServer, host_b: LoopbackServer
) -> None:
    a, b = host_a.ollama_base_url, host_b.ollama_base_url
    chain = chain_over([a, b], host_b, breaker_failures=1, breaker_cooldown=60)
    pool = pool_of(chain)
    host_a.script("ollama", [Fault.status(503)])
    assert await ask(chain, "ainvoke") == "echo: hi"  # a failed (its circuit opens), b answered
    assert states(pool) == ["open", "closed"]
    for mode in ("invoke", "stream", "astream"):  # a's turns fail fast, without a request
        assert await ask(chain, mode) == "echo: hi"
    assert host_a.request_count("ollama") == 1
    assert host_b.request_count("ollama") == 4
    host_b.script("ollama", [Fault.status(503)])
    assert await ask(chain, "invoke") == "echo: hi"  # both circuits open: openrouter answers
    assert states(pool) == ["open", "open"]
    assert host_b.request_count("openrouter") == 1
    assert pool.in_flight() == {a: 0, b: 0}


@live
@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", MODES)
async def test_every_host_dead_falls_back_to_the_next_provider(
    host_b: LoopbackServer, mode: Mode
) -> None:
    hosts = [dead_url(), dead_url()]
    chain = chain_over(hosts, host_b)
    assert await ask(chain, mode) == "echo: hi"
    assert host_b.request_count("openrouter") == 1
    assert pool_of(chain).in_flight() == dict.fromkeys(hosts, 0)
    alone = chain_over(hosts, host_b, "ollama")
    with pytest.raises(AllHostsFailedError) as caught:
        await ask(alone, mode)
    assert set(caught.value.errors) == set(hosts)
    assert all(f"{host}: ProviderUnavailableError:" in str(caught.value) for host in hosts)


@live
@pytest.mark.timeout(30)
async def test_in_flight_counts_return_to_zero_after_cancellation(
    host_a: LoopbackServer, host_b: LoopbackServer
) -> None:
    a, b = host_a.ollama_base_url, host_b.ollama_base_url
    chain = chain_over([a, b], host_b, request_timeout=20)
    pool = pool_of(chain)
    idle = {a: 0, b: 0}
    host_a.script("ollama", [Fault.hang(10)])
    hung = asyncio.create_task(chain.ainvoke("hi"))
    await await_for(lambda: host_a.request_count("ollama") == 1)  # a has it, and hangs
    assert pool.in_flight() == {a: 1, b: 0}
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    assert pool.in_flight() == idle

    # b's turn: a stream dropped after its first chunk
    stream = chain.astream("one two three four")
    assert isinstance(stream, AsyncGenerator)
    await anext(stream)
    assert pool.in_flight() == {a: 0, b: 1}
    await stream.aclose()
    await await_for(lambda: pool.in_flight() == idle)

    # a's turn, sync
    chunks = chain.stream("one two three four")
    assert isinstance(chunks, Generator)
    next(chunks)
    assert pool.in_flight() == {a: 1, b: 0}
    chunks.close()
    assert pool.in_flight() == idle


@live
def test_model_checks_and_listing_over_several_hosts(
    host_a: LoopbackServer, host_b: LoopbackServer
) -> None:
    dead, a = dead_url(), host_a.ollama_base_url

    def settings(*hosts: str, model: str = "llama3.2") -> Settings:
        return Settings(ollama_base_url=",".join(hosts), ollama_model=model)

    assert check_ollama(settings(dead, a)) == "llama3.2:latest"  # one host serving is enough
    with pytest.raises(ProviderUnavailableError) as caught:
        check_ollama(settings(dead, dead_url()))
    assert str(caught.value).count("did not answer") == 2
    with pytest.raises(ModelNotFoundError) as missing:
        check_ollama(settings(a, host_b.ollama_base_url, model="mistral"))
    assert str(missing.value).count("is not installed on") == 2
    assert ollama_listing(settings(dead, a)).lines == ["llama3.2:latest"]
    with pytest.raises(ProviderUnavailableError):
        ollama_listing(settings(dead, dead_url()))
