"""CostBudget: reservations for calls in flight, limits, bad configuration; under
concurrency (asyncio tasks, threads, streams, no sockets); with estimates from OpenRouter's
catalog prices on the loopback server.

Every call of :class:`SlowBilledModel` costs $0.004 and takes a little time,
so calls admitted together really are in flight together.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.build import state_of, with_provider_policy
from pygent_lc.chain import ProviderChain
from pygent_lc.errors import (
    BudgetExceededError,
    ConfigurationError,
    InvalidInputError,
    ProviderUnavailableError,
)
from pygent_lc.limits.budget import CostBudget, estimator_from_prices
from pygent_lc.limits.call import STALL_S, Hold
from pygent_lc.policy import ProviderPolicy
from pygent_lc.providers.openrouter.catalog import ModelInfo, find_openrouter_model
from pygent_lc.testing import ScriptedChatModel
from tests.billed_model import BilledModel
from tests.limits.steps import budget_spent
from tests.loopback_server import LoopbackServer


def test_calls_in_flight_reserve_their_estimate() -> None:
    budget = CostBudget(1.0, spent=lambda: 0.0, estimator=lambda prompt, max_tokens: 0.4)
    with (
        Hold(budget, "a", None),
        Hold(budget, "b", None),
        pytest.raises(BudgetExceededError, match="in flight"),
        Hold(budget, "c", None),
    ):
        pass
    with Hold(budget, "d", None):  # released again once the calls finished
        pass


def test_without_estimator_stops_once_spend_reaches_the_limit() -> None:
    spent = [0.0]
    budget = CostBudget(0.5, spent=lambda: spent[0])
    with Hold(budget, "a", None):
        spent[0] = 0.5
    with pytest.raises(BudgetExceededError), Hold(budget, "b", None):
        pass


@pytest.mark.parametrize("limit", [-1.0, float("nan"), float("inf")])
def test_bad_limits_are_configuration_errors(limit: float) -> None:
    with pytest.raises(ConfigurationError):
        CostBudget(limit, spent=lambda: 0.0)


# --- under concurrency: asyncio tasks, threads, streams -----------------------


LIMIT = 0.01


COST = 0.004


DELAY = 0.02


class SlowBilledModel(ScriptedChatModel):
    """A scripted model whose requests take ``DELAY`` seconds; records peak concurrency."""

    cost_per_call: float = COST
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _running: int = PrivateAttr(default=0)
    _peak: int = PrivateAttr(default=0)
    _events: list[str] = PrivateAttr(default_factory=list)

    @property
    def peak(self) -> int:
        return self._peak

    @property
    def events(self) -> list[str]:
        """``"start"`` and ``"end"`` of every request, in order."""
        return self._events

    def _enter(self) -> None:
        with self._lock:
            self._running += 1
            self._peak = max(self._peak, self._running)
            self._events.append("start")

    def _leave(self) -> None:
        with self._lock:
            self._running -= 1
            self._events.append("end")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._enter()
        try:
            time.sleep(DELAY)
            return super()._generate(messages, stop, run_manager, **kwargs)
        finally:
            self._leave()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._enter()
        try:
            await asyncio.sleep(DELAY)
            return super()._generate(messages, stop, None, **kwargs)
        finally:
            self._leave()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        self._enter()
        try:
            await asyncio.sleep(DELAY)
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk
        finally:
            self._leave()


def _spent(backend: LangChainBackend) -> float:
    return backend.usage_totals().cost_usd


def _budget(backend: LangChainBackend) -> CostBudget:
    assert backend.budget is not None
    return backend.budget


def _check_outcomes(results: list[Any], model: SlowBilledModel, backend: LangChainBackend) -> int:
    """Successes and refusals only; spend within one call of the limit. Returns requests."""
    done = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(done) + len(refused) == len(results), results
    requests = len(model.calls)
    assert requests == len(done)
    assert _spent(backend) == pytest.approx(COST * requests)
    assert _spent(backend) <= LIMIT + COST + 1e-12
    assert refused, "some calls must be refused"
    return requests


async def test_concurrent_generate_without_estimator_overshoots_by_at_most_one_call() -> None:
    model = SlowBilledModel()
    backend = LangChainBackend(model, max_cost_usd=LIMIT)
    results = await asyncio.gather(
        *(backend.generate(f"prompt {i}") for i in range(20)), return_exceptions=True
    )
    requests = _check_outcomes(list(results), model, backend)
    # The same as one call after another: calls run while spend is under the limit.
    assert requests == 3
    assert _budget(backend).status().reserved_usd == 0.0


def test_generate_sync_from_threads_overshoots_by_at_most_one_call() -> None:
    model = SlowBilledModel()
    backend = LangChainBackend(model, max_cost_usd=LIMIT)
    start = threading.Barrier(8)

    def call(i: int) -> str | BaseException:
        start.wait()
        try:
            return backend.generate_sync(f"prompt {i}")
        except BudgetExceededError as exc:
            return exc

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    assert _check_outcomes(results, model, backend) == 3


def test_event_loops_in_several_threads_share_one_budget() -> None:
    model = SlowBilledModel()
    backend = LangChainBackend(model, max_cost_usd=LIMIT)
    start = threading.Barrier(4)

    async def many(thread: int) -> list[str | BaseException]:
        calls = (backend.generate(f"prompt {thread}.{i}") for i in range(5))
        return list(await asyncio.gather(*calls, return_exceptions=True))

    def run(thread: int) -> list[str | BaseException]:
        start.wait()
        return asyncio.run(many(thread))

    with ThreadPoolExecutor(4) as pool:
        results = [r for rs in pool.map(run, range(4)) for r in rs]
    assert _check_outcomes(results, model, backend) == 3


async def test_concurrent_streams_overshoot_by_at_most_one_call() -> None:
    model = SlowBilledModel(outcomes=["one two"] * 20)
    backend = LangChainBackend(model, max_cost_usd=LIMIT)

    async def read(i: int) -> str:
        return "".join([p async for p in backend.stream(f"prompt {i}")])

    results = await asyncio.gather(*(read(i) for i in range(20)), return_exceptions=True)
    assert _check_outcomes(list(results), model, backend) == 3


async def test_callers_without_a_bound_wait_their_turn_rather_than_fail() -> None:
    model = SlowBilledModel()
    backend = LangChainBackend(model, max_cost_usd=1.0)
    results = await asyncio.gather(*(backend.generate(f"prompt {i}") for i in range(20)))
    assert results == ["ok"] * 20  # nobody refused while a call of unknown cost ran
    assert model.events[:4] == ["start", "end", "start", "end"]  # one at a time
    assert model.peak == 1  # known costs of earlier calls bound nothing
    assert _spent(backend) == pytest.approx(20 * COST)


async def test_with_an_estimator_calls_reserve_their_estimate_concurrently() -> None:
    model = SlowBilledModel()
    backend = LangChainBackend(
        model, max_cost_usd=LIMIT, cost_estimator=lambda prompt, max_tokens: COST
    )
    results = await asyncio.gather(
        *(backend.generate(f"prompt {i}") for i in range(20)), return_exceptions=True
    )
    assert _check_outcomes(list(results), model, backend) == 2  # 2 * 0.004 fits, 3 does not
    assert model.peak == 2  # no waiting for a first call: the estimate is known up front
    assert all("in flight" in str(r) for r in results if isinstance(r, BudgetExceededError))
    assert _spent(backend) <= LIMIT


async def test_abandoned_stream_releases_its_reservation_at_once() -> None:
    backend = LangChainBackend(
        SlowBilledModel(outcomes=["one two three"]),
        max_cost_usd=LIMIT,
        cost_estimator=lambda prompt, max_tokens: COST,
    )
    budget = _budget(backend)
    async for piece in backend.stream("hi"):
        assert piece == "one"
        assert budget.status().reserved_usd == pytest.approx(COST)
        break
    assert budget.status().reserved_usd == 0.0
    assert budget.status().in_flight == 0


async def test_abandoned_stream_without_estimator_lets_the_next_call_in_at_once() -> None:
    backend = LangChainBackend(SlowBilledModel(outcomes=["one two three"]), max_cost_usd=LIMIT)
    async for _ in backend.stream("hi"):
        assert _budget(backend).status().in_flight == 1
        break
    assert _budget(backend).status().in_flight == 0
    assert await asyncio.wait_for(backend.generate("next"), timeout=1.0) == "ok"


async def test_stream_closed_with_aclose_releases_its_reservation() -> None:
    backend = LangChainBackend(
        SlowBilledModel(outcomes=["one two three"]),
        max_cost_usd=LIMIT,
        cost_estimator=lambda prompt, max_tokens: COST,
    )
    stream = backend.stream("hi")
    assert await anext(stream) == "one"
    assert _budget(backend).status().reserved_usd == pytest.approx(COST)
    await stream.aclose()  # type: ignore[attr-defined]
    assert _budget(backend).status().reserved_usd == 0.0
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_a_failed_call_releases_its_reservation() -> None:
    model = SlowBilledModel(outcomes=[ProviderUnavailableError("down", provider="fake")])
    backend = LangChainBackend(
        model, max_cost_usd=LIMIT, cost_estimator=lambda prompt, max_tokens: COST
    )
    with pytest.raises(ProviderUnavailableError):
        await backend.generate("hi")
    assert _budget(backend).status().reserved_usd == 0.0
    assert _budget(backend).status().in_flight == 0
    assert await backend.generate("again") == "ok"


async def test_a_failed_first_call_lets_the_waiting_callers_in() -> None:
    model = SlowBilledModel(outcomes=[ProviderUnavailableError("down", provider="fake")])
    backend = LangChainBackend(model, max_cost_usd=LIMIT)
    results = await asyncio.gather(
        *(backend.generate(f"prompt {i}") for i in range(5)), return_exceptions=True
    )
    assert isinstance(results[0], ProviderUnavailableError)
    assert all(isinstance(r, str | BudgetExceededError) for r in results[1:])
    assert _spent(backend) <= LIMIT + COST + 1e-12
    assert _budget(backend).status().in_flight == 0


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    backend = LangChainBackend(SlowBilledModel(), max_cost_usd=LIMIT)
    first = asyncio.create_task(backend.generate("first"))
    await asyncio.sleep(DELAY / 4)  # the first call is in flight, its cost unknown
    waiter = asyncio.create_task(backend.generate("second"))
    await asyncio.sleep(DELAY / 4)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await first == "ok"
    assert _budget(backend).status().in_flight == 0
    assert await backend.generate("third") == "ok"


def test_a_thread_waits_for_the_unknown_cost_call_of_another_thread() -> None:
    spent = [0.0]
    budget = CostBudget(1.0, spent=lambda: spent[0])
    entered = threading.Event()
    with Hold(budget, "first", None):

        def second() -> None:
            with Hold(budget, "second", None):
                entered.set()

        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(0.05)  # waiting, not refused
        spent[0] = 0.1
    thread.join(timeout=1.0)
    assert entered.is_set()


def test_waiting_on_a_call_of_the_same_thread_is_refused_not_a_deadlock() -> None:
    budget = CostBudget(1.0, spent=lambda: 0.0)
    with (
        Hold(budget, "outer", None),
        pytest.raises(BudgetExceededError, match="this thread"),
        Hold(budget, "inner", None),
    ):
        pass


def test_a_call_without_a_bound_reserves_the_largest_call_cost_so_far() -> None:
    spent = [0.0]
    budget = CostBudget(
        1.0, spent=lambda: spent[0], estimator=lambda prompt, m: None if prompt == "?" else 0.1
    )
    with Hold(budget, "?", None):
        spent[0] = 0.3  # the first call measures the cost of one call
    with Hold(budget, "?", None), Hold(budget, "bounded", None):
        assert budget.status().reserved_usd == pytest.approx(0.3 + 0.1)
        assert budget.status().in_flight == 2
    assert budget.status().reserved_usd == 0.0


# --- with catalog prices, on the loopback server ------------------------------


def settings_for(server: LoopbackServer, **values: object) -> Settings:
    defaults: dict[str, object] = {
        "openrouter_api_key": "sk-or-v1-catalog-test",
        "openrouter_base_url": server.openrouter_base_url,
        "openrouter_model": "openai/gpt-4o-mini",
    }
    return Settings(**{**defaults, **values})


@pytest.mark.live_local
async def test_cost_budget_stops_calls_before_they_pass_it(loopback: LoopbackServer) -> None:
    settings = settings_for(loopback)
    price = find_openrouter_model(settings)  # $0.15 / $0.60 per million tokens
    backend = LangChainBackend(
        build_chat_model(settings, ["openrouter"]),
        max_cost_usd=1e-4,
        cost_estimator=estimator_from_prices(price),
    )
    # estimate per call: 4 prompt tokens + up to 100 output tokens at list price = $6.06e-5;
    # the loopback bills $1.1e-5 per call. Call n+1 runs while n * 1.1e-5 + 6.06e-5 <= 1e-4.
    calls = 0
    with pytest.raises(BudgetExceededError, match="would be passed"):
        for _ in range(10):
            await backend.generate("one two three", max_tokens=100)
            calls += 1
    assert calls == 4
    assert loopback.request_count("openrouter") == 4


@pytest.mark.live_local
async def test_spend_limit_without_estimates_uses_tracked_cost(loopback: LoopbackServer) -> None:
    backend = LangChainBackend(
        build_chat_model(settings_for(loopback), ["openrouter"]), max_cost_usd=1.5e-5
    )
    await backend.generate("one two three")  # bills 1.1e-5
    await backend.generate("one two three")  # 2.2e-5 now: the next one is refused
    with pytest.raises(BudgetExceededError):
        await backend.generate("one two three")
    assert loopback.request_count("openrouter") == 2


# --- whatever the replies say: bounds, calls of unknown cost, implausible costs ----------

CHEAP = 0.0001


def _backend_over_chain(model: BilledModel, **backend: Any) -> LangChainBackend:
    """``model`` under the chain's policy (no budget there), the budget on the backend."""
    return LangChainBackend(ProviderChain(providers=[ProviderPolicy(bound=model)]), **backend)


def _chain_with_budget(model: BilledModel, **settings: Any) -> LangChainBackend:
    """``model`` under the chain's policy with its own budget (``Settings.max_cost_usd``)."""
    policy = with_provider_policy(model, Settings(max_cost_usd=LIMIT, **settings))
    return LangChainBackend(ProviderChain(providers=[policy]))


async def _twenty_at_once(backend: LangChainBackend) -> list[str | BaseException]:
    return list(
        await asyncio.gather(
            *(backend.generate(f"prompt {i}") for i in range(20)), return_exceptions=True
        )
    )


@pytest.mark.parametrize("where", ["backend", "chain"])
async def test_a_cheap_first_call_does_not_let_twenty_dear_calls_pass_the_limit(
    where: str,
) -> None:
    model = BilledModel(costs=[CHEAP, COST])
    if where == "backend":
        backend = _backend_over_chain(model, max_cost_usd=LIMIT)
    else:
        backend = _chain_with_budget(model)
    await backend.generate("first")  # $0.0001: says nothing about what the next calls cost
    results = await _twenty_at_once(backend)
    assert all(isinstance(r, str | BudgetExceededError) for r in results), results
    assert any(isinstance(r, BudgetExceededError) for r in results)
    # Calls of no known bound run one at a time: the limit is passed by at most one call.
    assert _spent(backend) <= LIMIT + COST + 1e-12
    assert model.peak == 1


async def test_an_estimate_without_max_tokens_is_no_bound() -> None:
    # List prices far below the bill, and no max_tokens: the estimate bounds nothing.
    cheap = ModelInfo("cheap/model", None, 0.01, 0.01, 0.0, ())
    model = BilledModel(costs=[CHEAP, COST])
    backend = _backend_over_chain(
        model, max_cost_usd=LIMIT, cost_estimator=estimator_from_prices(cheap)
    )
    await backend.generate("first")
    results = await _twenty_at_once(backend)
    assert any(isinstance(r, BudgetExceededError) for r in results)
    assert _spent(backend) <= LIMIT + COST + 1e-12


@pytest.mark.live_local
@pytest.mark.parametrize("where", ["backend", "chain"])
async def test_twenty_calls_bounded_by_max_tokens_and_prices_never_pass_the_limit(
    loopback: LoopbackServer, where: str
) -> None:
    loopback.latency = 0.05  # the calls admitted together are in flight together
    settings = settings_for(loopback, openrouter_model="loopback/echo")
    price = find_openrouter_model(settings)  # priced as the loopback server bills
    # A call's bound: (199 prompt bytes + 16) tokens at $1e-6 and 50 at $2e-6, $3.15e-4;
    # it costs 40 words at $1e-6 and 41 at $2e-6 ("echo: word ..."), $1.22e-4.
    limit = 1e-3
    budget = CostBudget(limit, estimator=estimator_from_prices(price))
    if where == "backend":
        backend = LangChainBackend(build_chat_model(settings, ["openrouter"]), budget=budget)
    else:  # the same budget object, given to the chain instead
        backend = LangChainBackend(build_chat_model(settings, ["openrouter"], budget=budget))
    prompt = " ".join(["word"] * 40)
    results = await asyncio.gather(
        *(backend.generate(prompt, max_tokens=50) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, str | BudgetExceededError) for r in results), results
    done = sum(isinstance(r, str) for r in results)
    assert loopback.request_count("openrouter") == done
    assert done >= 3  # three bounds fit at once, and more as calls cost less than theirs
    assert 0 < _spent(backend) <= limit
    assert _spent(backend) == pytest.approx(done * 1.22e-4)
    assert budget.status().in_flight == 0


BAD_COSTS = [float("nan"), float("inf"), float("-inf"), -1e308, 1e308, -0.001, 1e9]


@pytest.mark.parametrize("bad", BAD_COSTS)
@pytest.mark.parametrize("where", ["backend", "chain"])
async def test_an_implausible_cost_is_a_provider_fault_never_spend(
    bad: float, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = BilledModel(costs=[COST, bad, COST], delay_s=0.0)
    if where == "backend":
        backend = _backend_over_chain(model, max_cost_usd=LIMIT)
    else:
        backend = _chain_with_budget(model)
    calls = 0
    with caplog.at_level(logging.WARNING), pytest.raises(BudgetExceededError):
        for _ in range(20):
            await backend.generate("hi")
            calls += 1
    # $0.004, the fault, $0.004, $0.004: $0.012 spent, the next call is refused
    assert calls == 4
    totals = backend.usage_totals()
    assert totals.cost_usd == pytest.approx(3 * COST)
    assert totals.cost_faults == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cost" in warnings[0].getMessage()


async def test_an_implausible_cost_in_a_stream_is_a_fault_too() -> None:
    model = BilledModel(costs=[float("nan"), COST], delay_s=0.0)
    backend = _chain_with_budget(model)
    assert [p async for p in backend.stream("hi")] == ["ok"]
    assert [p async for p in backend.stream("hi")] == ["ok"]
    totals = backend.usage_totals()
    assert totals.cost_usd == pytest.approx(COST)
    assert totals.cost_faults == 1


def test_settling_a_hold_with_an_implausible_cost_is_refused() -> None:
    budget = CostBudget(LIMIT)
    hold = Hold(budget, "a", None)
    with pytest.raises(InvalidInputError), hold:
        hold.settle(float("nan"))
    assert budget.status().in_flight == 0


@pytest.mark.live_local
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e308, 1e308])
async def test_a_fault_reaches_redis_as_a_count_never_as_a_number(
    redis_url: str, bad: float, caplog: pytest.LogCaptureFixture
) -> None:
    tag = uuid.uuid4().hex[:8]
    model = BilledModel(costs=[COST, bad, COST], delay_s=0.0, provider=f"billed-{tag}")
    settings = Settings(max_cost_usd=LIMIT, state_url=redis_url, budget_key=tag)
    backend = LangChainBackend(ProviderChain(providers=[with_provider_policy(model, settings)]))
    with caplog.at_level(logging.WARNING):
        for _ in range(4):  # $0.004, the fault, $0.004, $0.004
            await backend.generate("hi")
        with pytest.raises(BudgetExceededError):  # $0.012 spent
            await backend.generate("hi")
    store = state_of(settings)
    assert budget_spent(store, tag) == pytest.approx(3 * COST)
    [row] = [r for r in store.usage_rows() if r.provider == f"billed-{tag}"]
    assert (row.usage.calls, row.usage.cost_faults) == (4, 1)
    assert row.usage.cost_usd == pytest.approx(3 * COST)
    # One warning, the fault's: Redis took every step (no fall back to per-process state).
    assert [r.name for r in caplog.records if r.levelno >= logging.WARNING] == [
        "pygent_lc.limits.usage"
    ]


# --- bounds from list prices ---------------------------------------------------------------


def _priced(**fields: Any) -> ModelInfo:
    """$1 per million prompt tokens, $2 per million completion tokens."""
    values: dict[str, Any] = {
        "id": "m",
        "context_length": None,
        "prompt_price": 1.0,
        "completion_price": 2.0,
        "request_price": 0.0,
        "supported_parameters": (),
    }
    return ModelInfo(**{**values, **fields})


def test_a_bound_counts_a_token_per_prompt_byte_and_max_tokens() -> None:
    bound = estimator_from_prices(_priced())
    # "héllo": 6 UTF-8 bytes + 16 template tokens at $1/M, 100 reply tokens at $2/M
    assert bound("héllo", 100) == pytest.approx((6 + 16) * 1e-6 + 100 * 2e-6)


def test_without_max_tokens_the_models_limits_bound_the_reply() -> None:
    assert estimator_from_prices(_priced())("hi", None) is None  # no bound known
    limited = estimator_from_prices(_priced(max_completion_tokens=1000))
    assert limited("hi", None) == pytest.approx((2 + 16) * 1e-6 + 1000 * 2e-6)
    context = estimator_from_prices(_priced(context_length=50))
    # the prompt is cut at the context (the provider refuses a longer one); the reply too
    assert context("x" * 1000, None) == pytest.approx(50 * 1e-6 + 50 * 2e-6)
    assert estimator_from_prices(_priced(), default_output_tokens=10)("", None) == pytest.approx(
        16 * 1e-6 + 10 * 2e-6
    )


def test_the_catalog_gives_a_models_reply_limit() -> None:
    from pygent_lc.providers.openrouter.catalog import _model_info

    entry = {"id": "a/b", "pricing": {}, "top_provider": {"max_completion_tokens": 4096}}
    assert _model_info(entry).max_completion_tokens == 4096
    assert _model_info({"id": "a/b"}).max_completion_tokens is None


def test_a_policy_bounds_a_call_by_its_models_max_tokens() -> None:
    seen: list[int | None] = []

    def bound(prompt: str, max_tokens: int | None) -> float:
        seen.append(max_tokens)
        return COST

    model = BilledModel(costs=[COST], delay_s=0.0)
    policy = ProviderPolicy(bound=model.bind(max_tokens=64), budget=CostBudget(LIMIT, None, bound))
    policy.invoke("hi")
    policy.invoke("hi", max_tokens=8)
    assert seen == [64, 8]


# --- one budget object, given once: to a backend, to a chain, to both ---------------------


async def test_one_budget_given_to_two_backends_is_one_limit() -> None:
    budget = CostBudget(LIMIT)
    models = [SlowBilledModel(), SlowBilledModel()]
    backends = [LangChainBackend(model, budget=budget) for model in models]
    results = await asyncio.gather(
        *(backends[i % 2].generate(f"prompt {i}") for i in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, str | BudgetExceededError) for r in results), results
    requests = sum(len(model.calls) for model in models)
    assert requests == 3  # as with one backend: calls of unknown cost one at a time
    assert budget.status().spent_usd == pytest.approx(3 * COST)
    assert budget.status().in_flight == 0


async def test_a_budget_with_bounds_given_to_the_chain_runs_its_calls_concurrently() -> None:
    model = BilledModel(costs=[COST])
    budget = CostBudget(LIMIT, estimator=lambda prompt, max_tokens: COST)
    backend = LangChainBackend(
        ProviderChain(providers=[with_provider_policy(model, Settings(), budget=budget)])
    )
    results = await _twenty_at_once(backend)
    assert sum(isinstance(r, str) for r in results) == 2  # 2 * 0.004 fits, 3 does not
    assert all(isinstance(r, str | BudgetExceededError) for r in results), results
    assert model.peak == 2  # bounded calls need not wait for each other
    assert _spent(backend) == pytest.approx(2 * COST)
    assert budget.status().spent_usd == pytest.approx(2 * COST)


@pytest.mark.parametrize("bounded", [False, True])
async def test_the_same_budget_on_backend_and_chain_reserves_each_call_once(
    bounded: bool,
) -> None:
    model = BilledModel(costs=[COST], delay_s=0.0)
    estimator = (lambda prompt, max_tokens: COST) if bounded else None
    budget = CostBudget(LIMIT, estimator=estimator)
    chain = ProviderChain(providers=[with_provider_policy(model, Settings(), budget=budget)])
    backend = LangChainBackend(chain, budget=budget)
    calls = 0
    with pytest.raises(BudgetExceededError, match="would be passed"):
        for _ in range(10):
            await backend.generate("hi")
            calls += 1
    # Reserved and settled once per call: a second hold would halve what fits (or, of
    # unknown cost, wait for the first, its own caller).
    assert calls == (2 if bounded else 3)
    assert budget.status().spent_usd == pytest.approx(calls * COST)
    assert budget.status().in_flight == 0


def test_a_budget_and_max_cost_usd_together_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        LangChainBackend(SlowBilledModel(), budget=CostBudget(LIMIT), max_cost_usd=LIMIT)
    with pytest.raises(ConfigurationError, match="not both"):
        with_provider_policy(BilledModel(), Settings(max_cost_usd=LIMIT), budget=CostBudget(LIMIT))


async def test_a_call_made_while_reading_a_stream_on_the_same_budget_reserves_its_own() -> None:
    model = BilledModel(costs=[COST], delay_s=0.0)
    budget = CostBudget(LIMIT, estimator=lambda prompt, max_tokens: COST)
    chain = ProviderChain(providers=[with_provider_policy(model, Settings(), budget=budget)])
    backend = LangChainBackend(chain, budget=budget)
    stream = backend.stream("story")
    assert await anext(stream) == "ok"
    assert budget.status().in_flight == 1  # the stream's call, reserved once
    # The reader's own call is another call: it reserves (and is charged) for itself.
    await chain.ainvoke("another")
    assert budget.status().spent_usd == pytest.approx(COST)
    assert [piece async for piece in stream] == []  # read to its end
    assert budget.status().in_flight == 0
    assert budget.status().spent_usd == pytest.approx(2 * COST)


# --- a blocking wait never hangs: on the loop's own thread, or for a stuck call ------------

HARD_TIMEOUT_S = 10.0


def _ended_within(seconds: float, scenario: Callable[[], object]) -> object:
    """What ``scenario()`` returned or raised, run in a daemon thread; a failure (not a
    hang of the test run) when it has not ended after ``seconds``."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(scenario())
        except BaseException as exc:  # the scenario's outcome, checked by the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: a hang"
    return outcome[0]


async def _in_flight(budget: CostBudget) -> None:
    """Until a call holds ``budget`` (it is taken in the store: polling is the signal)."""
    while budget.status().in_flight == 0:  # noqa: ASYNC110
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("where", ["backend", "chain"])
def test_a_sync_call_on_the_loop_a_task_holds_the_budget_on_is_refused_at_once(
    where: str,
) -> None:
    model = BilledModel(costs=[COST])
    budget = CostBudget(LIMIT)  # no estimator: calls of unknown cost, one at a time
    if where == "backend":
        backend = LangChainBackend(model, budget=budget)
        sync_call: Callable[[], object] = lambda: backend.generate_sync("second")  # noqa: E731
    else:
        chain = ProviderChain(providers=[with_provider_policy(model, Settings(), budget=budget)])
        backend = LangChainBackend(chain)
        sync_call = lambda: chain.invoke("second")  # noqa: E731

    async def notebook_cell() -> object:
        first = asyncio.create_task(backend.generate("first"))
        await _in_flight(budget)
        try:
            return sync_call()  # sync code on the loop's thread: the task cannot run meanwhile
        except BudgetExceededError as exc:
            return exc
        finally:
            assert await first == "ok"

    started = time.monotonic()
    refused = _ended_within(HARD_TIMEOUT_S, lambda: asyncio.run(notebook_cell()))
    assert isinstance(refused, BudgetExceededError), refused
    assert "event loop" in str(refused)
    assert time.monotonic() - started < 5.0  # at once, not after a deadline (60 s)
    assert len(model.calls) == 1
    assert budget.status().in_flight == 0


@pytest.mark.parametrize(
    ("max_wait_s", "why"),
    [
        (0.2, "waited 0.2 s"),  # the bound given ends the wait
        (None, "event loop that has not run"),  # the default is minutes: the stall ends it
    ],
)
def test_a_sync_call_waiting_for_the_loop_it_blocks_gives_up(
    max_wait_s: float | None, why: str
) -> None:
    model = BilledModel(costs=[COST])
    budget = CostBudget(LIMIT) if max_wait_s is None else CostBudget(LIMIT, max_wait_s=max_wait_s)
    backend = LangChainBackend(model, budget=budget)

    async def task_joining_a_helper_thread() -> object:
        first = asyncio.create_task(backend.generate("first"))
        await _in_flight(budget)
        # The helper's call waits for `first`, whose loop this join blocks.
        helper = _ended_within(HARD_TIMEOUT_S, lambda: backend.generate_sync("second"))
        assert await first == "ok"
        return helper

    refused = _ended_within(2 * HARD_TIMEOUT_S, lambda: asyncio.run(task_joining_a_helper_thread()))
    assert isinstance(refused, BudgetExceededError), refused
    assert why in str(refused)
    assert len(model.calls) == 1
    assert budget.status().in_flight == 0
    assert backend.generate_sync("third") == "ok"  # nothing left held


def test_a_sync_call_waits_for_a_long_call_on_a_loop_that_runs() -> None:
    model = BilledModel(costs=[COST], delay_s=STALL_S + 0.5)  # longer than a stalled loop's
    budget = CostBudget(1.0)
    backend = LangChainBackend(model, budget=budget)
    taken = threading.Event()

    async def first() -> str:
        call = asyncio.create_task(backend.generate("first"))
        await _in_flight(budget)
        taken.set()
        return await call

    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(asyncio.run, first())
        assert taken.wait(HARD_TIMEOUT_S)
        second = _ended_within(HARD_TIMEOUT_S, lambda: backend.generate_sync("second"))
        assert holder.result() == "ok"
    assert second == "ok"  # its turn came: the loop ran, however long its call took
    assert model.peak == 1


def test_a_wait_bound_that_is_no_duration_is_a_configuration_error() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigurationError, match="max_wait_s"):
            CostBudget(LIMIT, max_wait_s=bad)


async def test_an_async_caller_behind_a_stuck_call_gives_up_after_max_wait_s() -> None:
    budget = CostBudget(LIMIT, spent=lambda: 0.0, max_wait_s=0.2)
    taken, stuck = asyncio.Event(), asyncio.Event()

    async def stuck_call() -> None:
        async with Hold(budget, "first", None):
            taken.set()
            await stuck.wait()

    holder = asyncio.create_task(stuck_call())
    await taken.wait()

    async def second_call() -> None:
        async with Hold(budget, "second", None):
            pass

    with pytest.raises(BudgetExceededError, match=r"waited 0\.2 s"):
        await asyncio.wait_for(second_call(), HARD_TIMEOUT_S)  # a TimeoutError is a hang
    stuck.set()
    await holder
    assert budget.status().in_flight == 0
