"""``ProviderPolicy``, on scripted models (no sockets): the sync path retries as the async
one does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableConfig

from pygent_lc import Settings, UsageTotals
from pygent_lc.build import with_provider_policy
from pygent_lc.errors import ConfigurationError, ProviderError, ProviderUnavailableError
from pygent_lc.limits import MemoryStore, RateSpec
from pygent_lc.limits.breaker import CircuitBreaker
from pygent_lc.limits.budget import CostBudget
from pygent_lc.limits.rate import LocalRateLimitError
from pygent_lc.limits.script import Step
from pygent_lc.limits.usage import UsageTracker, feeding
from pygent_lc.policy import ProviderPolicy
from pygent_lc.testing import ScriptedChatModel

FAST = Settings(max_retries=2, retry_initial_wait=0.0, retry_max_wait=0.05)


def unavailable(provider: str = "a") -> ProviderUnavailableError:
    return ProviderUnavailableError("503", provider=provider, status_code=503)


def test_sync_invoke_uses_the_same_policy() -> None:
    model = ScriptedChatModel(outcomes=[unavailable(), "fine"])
    assert with_provider_policy(model, FAST, breaker=False).invoke("hi").content == "fine"
    assert len(model.calls) == 2


@pytest.mark.parametrize("parsed", [False, True], ids=["messages", "parsed output"])
async def test_usage_and_cost_of_a_call_reach_the_store(parsed: bool) -> None:
    """From the replies themselves, or (when the Runnable parses them) from the callbacks."""
    model = ScriptedChatModel(
        provider="acme",
        outcomes=[ProviderUnavailableError("503", provider="acme"), "four"],
        cost_per_call=0.002,
    )
    store = MemoryStore()
    bound = (model | StrOutputParser()) if parsed else model
    policy = ProviderPolicy(
        bound=bound,
        provider="acme",
        model_name="acme-1",
        store=store,
        record_usage=True,
        max_attempts=2,
        initial_wait=0.0,
    )
    reply = await policy.ainvoke("2 + 2?")
    assert (reply if parsed else reply.content) == "four"
    async for _ in policy.astream("again"):
        pass
    (row,) = store.usage_rows()
    assert (row.provider, row.model) == ("acme", "acme-1")
    assert (row.usage.calls, row.usage.failures) == (3, 1)
    assert row.usage.cost_usd == pytest.approx(0.004)
    assert row.usage.output_tokens > 0


def test_a_breaker_and_budget_built_without_a_store_keep_their_state_in_the_policys() -> None:
    """``ProviderPolicy(store=shared, circuit=CircuitBreaker(...))``: the rate limit,
    budget and breaker all live in ``shared``, so a second policy on it shares them."""
    shared = MemoryStore()

    def policy() -> ProviderPolicy:
        return ProviderPolicy(
            bound=ScriptedChatModel(provider="p", outcomes=["ok"] * 3),
            provider="p",
            store=shared,
            circuit=CircuitBreaker(3, 30.0, provider="p"),
            budget=CostBudget(1.0),
            rate=RateSpec("rate|p", 1, 60.0),
            rate_mode="raise",
        )

    first, second = policy(), policy()
    assert first.circuit is not None and first.circuit.store is shared
    assert first.budget is not None and first.budget.store is shared
    first.invoke("hi")
    with pytest.raises(LocalRateLimitError):
        second.invoke("hi")  # the one slot a minute was the first policy's


def test_a_breaker_on_another_chosen_store_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="another store"):
        ProviderPolicy(
            bound=ScriptedChatModel(provider="p", outcomes=["ok"]),
            store=MemoryStore(),
            circuit=CircuitBreaker(3, 30.0, store=MemoryStore()),
        )


def test_retries_are_the_policys_own_settings_and_an_unknown_one_is_refused() -> None:
    policy = ProviderPolicy(bound=ScriptedChatModel(), max_attempts=1, initial_wait=0.0)
    assert (policy.max_attempts, policy.initial_wait, policy.deadline) == (1, 0.0, None)
    with pytest.raises(ConfigurationError, match="no setting 'retry'") as caught:
        ProviderPolicy(bound=ScriptedChatModel(), retry={"max_attempts": 1})
    assert caught.value.field == "retry"


# -- the first attempt, made before the retry loop ------------------------------------------


class _NoLoop:
    """Stands in for tenacity's loop: a call that needs no retry must never build one."""

    def __init__(self, **kwargs: object) -> None:
        raise AssertionError("a retry loop was built for a call that needed none")


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
async def test_a_call_answered_at_once_builds_no_retry_loop(monkeypatch, mode):
    import pygent_lc.policy as policy_module

    monkeypatch.setattr(policy_module, "Retrying", _NoLoop)
    monkeypatch.setattr(policy_module, "AsyncRetrying", _NoLoop)
    policy = with_provider_policy(ScriptedChatModel(outcomes=["hi there"]), Settings())
    if mode == "invoke":
        text = policy.invoke("x").text
    elif mode == "ainvoke":
        text = (await policy.ainvoke("x")).text
    elif mode == "stream":
        text = "".join(chunk.text for chunk in policy.stream("x"))
    else:
        text = "".join([chunk.text async for chunk in policy.astream("x")])
    assert text == "hi there"


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
async def test_a_failed_first_attempt_is_retried_with_the_loops_numbering(mode):
    """Attempts 2 and 3 are tagged as before; the last error has no other as context."""
    from langchain_core.callbacks import BaseCallbackHandler

    class Tags(BaseCallbackHandler):
        def __init__(self) -> None:
            self.seen: list[list[str]] = []

        def on_chat_model_start(self, serialized, messages, *, tags=None, **kwargs):
            self.seen.append(list(tags or []))

    failure = ProviderUnavailableError("down", provider="scripted")
    model = ScriptedChatModel(outcomes=[failure, failure, failure])
    policy = ProviderPolicy(bound=model, max_attempts=3, initial_wait=0.001)
    tags = Tags()
    with pytest.raises(ProviderUnavailableError) as caught:
        await call(policy, mode, {"callbacks": [tags]})
    assert len(model.calls) == 3
    assert [t for t in tags.seen] == [[], ["retry:attempt:2"], ["retry:attempt:3"]]
    assert caught.value.__context__ is None


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_the_deadline_counts_the_first_attempt(asynchronous):
    """A retry whose wait would end past the deadline, counted from the call's start
    (the first attempt's time included), is not made."""
    import asyncio
    import time

    failure = ProviderUnavailableError("down", provider="scripted")

    class Slow(ScriptedChatModel):
        def _generate(self, *args, **kwargs):
            time.sleep(0.3)
            return super()._generate(*args, **kwargs)

        async def _agenerate(self, *args, **kwargs):
            await asyncio.sleep(0.3)
            return await super()._agenerate(*args, **kwargs)

    model = Slow(outcomes=[failure, "late"])
    policy = ProviderPolicy(
        bound=model, max_attempts=3, initial_wait=0.15, max_wait=0.15, deadline=0.4
    )
    with pytest.raises(ProviderUnavailableError):
        await policy.ainvoke("x") if asynchronous else policy.invoke("x")
    assert len(model.calls) == 1


async def test_a_request_for_n_samples_reserves_n_completions() -> None:
    """One call, one reservation: ``n`` times a completion's bound ($0.004 each here),
    so n=3 does not fit a $0.01 budget and is refused before the model is asked."""
    from pygent_lc.errors import BudgetExceededError

    model = ScriptedChatModel(outcomes=["two", "one"])
    budget = CostBudget(0.01, estimator=lambda prompt, max_tokens: 0.004)
    policy = ProviderPolicy(bound=model, provider="acme", budget=budget)
    with pytest.raises(BudgetExceededError, match=r"next call ~\$0\.0120"):
        await policy.ainvoke("value?", n=3)
    assert model.calls == []
    assert (await policy.ainvoke("value?", n=2)).content == "two"
    assert policy.invoke("value?").content == "one"


# --- the tracker a call's config carries (``feeding``) ----------------------------------


def pairs(tracker: UsageTracker) -> dict[tuple[str, str], UsageTotals]:
    return {key: entry.usage for key, entry in tracker.summary().items()}


async def call(policy: ProviderPolicy, mode: str, config: RunnableConfig) -> None:
    if mode == "invoke":
        policy.invoke("one two", config)
    elif mode == "ainvoke":
        await policy.ainvoke("one two", config)
    elif mode == "stream":
        list(policy.stream("one two", config))
    else:
        _ = [chunk async for chunk in policy.astream("one two", config)]


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
@pytest.mark.parametrize("parsed", [False, True], ids=["messages", "parsed output"])
async def test_a_fed_tracker_counts_each_attempt_as_a_listening_one(
    mode: str, parsed: bool
) -> None:
    """A policy counts each attempt in the tracker its config carries, as that tracker
    counts them when it listens as a callback (when the Runnable parses the replies,
    the policy hands it to the model's callbacks)."""
    totals = []
    for fed in (True, False):
        model = ScriptedChatModel(
            provider="acme", outcomes=[unavailable("acme"), "four five"], cost_per_call=0.002
        )
        bound = (model | StrOutputParser()) if parsed else model
        policy = ProviderPolicy(bound=bound, provider="acme", max_attempts=2, initial_wait=0.0)
        tracker = UsageTracker()
        config: RunnableConfig = feeding({}, tracker) if fed else {"callbacks": [tracker]}
        await call(policy, mode, config)
        totals.append(pairs(tracker))
    assert totals[0] == totals[1]
    [usage] = totals[0].values()
    assert (usage.calls, usage.failures, usage.cost_usd) == (2, 1, 0.002)


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_stream_that_fails_or_is_closed_counts_a_failed_request(mode: str) -> None:
    broken = ("one two", unavailable("acme"))
    model = ScriptedChatModel(provider="acme", outcomes=[broken, "three four"], cost_per_call=0.5)
    policy = with_provider_policy(model, FAST, breaker=False)
    tracker = UsageTracker()
    if mode == "stream":
        with pytest.raises(ProviderUnavailableError):
            list(policy.stream("hi", feeding({}, tracker)))
        chunks = policy.stream("hi", feeding({}, tracker))
        next(chunks)
        chunks.close()  # type: ignore[attr-defined]  # a generator
    else:
        with pytest.raises(ProviderUnavailableError):
            _ = [chunk async for chunk in policy.astream("hi", feeding({}, tracker))]
        achunks = policy.astream("hi", feeding({}, tracker))
        await anext(achunks)
        await achunks.aclose()  # type: ignore[attr-defined]  # an async generator
    assert pairs(tracker) == {("acme", "acme-model"): UsageTotals(calls=2, failures=2)}


async def test_without_a_tracker_in_the_config_nothing_is_counted() -> None:
    tracker = UsageTracker()
    policy = with_provider_policy(ScriptedChatModel(), FAST, breaker=False)
    await policy.ainvoke("hi", {"configurable": {"other": tracker}})
    assert tracker.totals() == UsageTotals()


async def test_a_fed_tracker_names_the_model_a_call_asked_for() -> None:
    """A per-call ``model`` names the request's model, as LangChain traces it."""
    import httpx

    from pygent_lc.providers.openrouter.model import openrouter_model
    from tests.providers.mock_http import MockServer

    def refused(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"code": 400, "message": "no such model"}})

    found = []
    for fed in (True, False):
        wire = MockServer(default=refused)
        settings = Settings(openrouter_api_key="sk-or-v1-unit", openrouter_model="x/default")
        model = openrouter_model(settings, **wire.openai_clients())
        policy = with_provider_policy(model, FAST, breaker=False)
        tracker = UsageTracker()
        config: RunnableConfig = feeding({}, tracker) if fed else {"callbacks": [tracker]}
        for name in ("x/one", "x/two", "x/one", None):
            with pytest.raises(ProviderError):
                await policy.ainvoke("hi", config, **({"model": name} if name else {}))
        found.append(pairs(tracker))
    assert found[0] == found[1]
    assert {key: usage.failures for key, usage in found[0].items()} == {
        ("openrouter", "x/one"): 2,
        ("openrouter", "x/two"): 1,
        ("openrouter", "x/default"): 1,
    }


class _SlowReplyStore(MemoryStore):
    """A store whose reply is slow, as a Redis round trip's: the step has run when it comes."""

    async def arun(self, step: Step[Any]) -> Any:
        result = self.run(step)
        await asyncio.sleep(0.3)
        return result


async def test_a_call_cancelled_while_its_budget_reserves_gives_the_reservation_back() -> None:
    store = _SlowReplyStore()
    budget = CostBudget(1.0, store=store, estimator=lambda prompt, max_tokens: 0.4)
    policy = ProviderPolicy(bound=ScriptedChatModel(outcomes=["ok"]), budget=budget, store=store)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(policy.ainvoke("hi"), 0.1)
    await asyncio.sleep(0.4)  # the store's reply comes, then the reservation goes back
    status = budget.status()
    assert (status.reserved_usd, status.in_flight, status.spent_usd) == (0.0, 0, 0.0)
