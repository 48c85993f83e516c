"""Breakers and usage kept in a shared state store: what one chain learns, the next one knows.

Two chains on one store stand for two processes: on the in-process store
they are two chains of one process, on a real Redis two workers of a fleet.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pygent_lc import Settings
from pygent_lc.build import with_provider_policy
from pygent_lc.chain import ProviderChain
from pygent_lc.errors import BudgetExceededError, ProviderUnavailableError
from pygent_lc.limits import StateStore, open_store, shared_store
from pygent_lc.testing import ScriptedChatModel

FAST = {"max_retries": 0, "retry_initial_wait": 0.0, "breaker_failures": 2}


def down() -> ProviderUnavailableError:
    return ProviderUnavailableError("503", provider="openrouter", status_code=503)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.live_local)])
def state_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "memory":
        yield None
        return
    url: str = request.getfixturevalue("redis_url")
    store = open_store(url, prefix="pygent-test:")
    store.clear()
    yield url
    shared_store(url).clear()
    store.close()


def worker(
    state_url: str | None, primary: ScriptedChatModel
) -> tuple[ProviderChain, ScriptedChatModel]:
    """One worker's chain: ``primary``, then a backup that always answers."""
    settings = Settings(state_url=state_url, **FAST)
    backup = ScriptedChatModel(provider="ollama")
    chain = ProviderChain(
        providers=[with_provider_policy(primary, settings), with_provider_policy(backup, settings)]
    )
    return chain, backup


def store_of(chain: ProviderChain) -> StateStore:
    return chain.providers[0].state  # type: ignore[attr-defined, no-any-return]


async def test_a_breaker_opened_by_one_worker_keeps_the_next_off_the_primary(
    state_url: str | None,
) -> None:
    failing = ScriptedChatModel(provider="openrouter", outcomes=[down(), down()])
    first, _ = worker(state_url, failing)
    for _ in range(2):
        assert (await first.ainvoke("hi")).content == "ok"  # the backup answered
    assert len(failing.prompts) == 2
    fresh_primary = ScriptedChatModel(provider="openrouter")
    second, backup = worker(state_url, fresh_primary)
    assert (await second.ainvoke("hi")).content == "ok"
    second.invoke("hi")
    assert fresh_primary.prompts == []  # the shared circuit is open
    assert len(backup.prompts) == 2


async def test_usage_is_totalled_in_the_store_once_a_state_url_is_set(
    state_url: str | None,
) -> None:
    priced = ScriptedChatModel(provider="openrouter", cost_per_call=0.002)
    chain, _ = worker(state_url, priced)
    await chain.ainvoke("one two")
    chain.invoke("three four")
    async for _ in chain.astream("five six"):
        pass
    rows = {(row.provider, row.model): row for row in store_of(chain).usage_rows()}
    if state_url is None:
        assert rows == {}  # per-process usage stays with the UsageTracker
        return
    (row,) = rows.values()
    assert (row.provider, row.usage.calls, row.usage.failures) == ("openrouter", 3, 0)
    assert row.usage.cost_usd == pytest.approx(0.006)
    assert row.usage.input_tokens > 0 and row.usage.output_tokens > 0
    assert row.p95_latency_s > 0


async def test_a_budget_in_the_settings_holds_across_workers(state_url: str | None) -> None:
    """$0.01 with $0.004 calls: the third call is admitted (spend $0.008 < $0.01), then no more."""
    settings = Settings(state_url=state_url, max_cost_usd=0.01, **FAST)
    first = ScriptedChatModel(provider="openrouter", cost_per_call=0.004)
    second = ScriptedChatModel(provider="openrouter", cost_per_call=0.004)
    chains = [ProviderChain(providers=[with_provider_policy(m, settings)]) for m in (first, second)]
    answered = refused = 0
    messages: set[str] = set()
    for turn in range(8):
        try:
            await chains[turn % 2].ainvoke("hi")
            answered += 1
        except BudgetExceededError as exc:
            messages.add(str(exc).split(":")[0])
            refused += 1
    assert (answered, refused) == (3, 5)
    assert messages == {"cost budget $0.0100 would be passed"}
    assert len(first.prompts) + len(second.prompts) == 3
    with pytest.raises(BudgetExceededError):
        chains[0].invoke("hi")
