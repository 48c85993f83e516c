"""LangChainBackend over scripted models: validation on every entry point, text, streams,
usage, ``cache_prefix`` (no sockets).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableLambda
from pydantic import Field

from pygent_lc import LangChainBackend, LLMBackend, Settings, UsageTotals, build_chat_model
from pygent_lc.build import with_provider_policy
from pygent_lc.chain import ProviderChain
from pygent_lc.errors import (
    AllProvidersFailedError,
    BudgetExceededError,
    InvalidInputError,
    ProviderUnavailableError,
    StreamInterruptedError,
)
from pygent_lc.host_pool import HostPool
from pygent_lc.limits import MemoryStore
from pygent_lc.providers.ollama import ollama_model
from pygent_lc.providers.openrouter.model import openrouter_model
from pygent_lc.testing import ScriptedChatModel
from tests.providers.mock_http import MockServer, ndjson_reply

FAST = Settings(max_retries=1, retry_initial_wait=0.0)


def backend(*models: ScriptedChatModel) -> LangChainBackend:
    retried = [with_provider_policy(m, FAST, breaker=False) for m in models]
    if len(retried) == 1:
        return LangChainBackend(retried[0])
    return LangChainBackend(ProviderChain(providers=list(retried)))


def test_is_an_llm_backend() -> None:
    assert isinstance(backend(ScriptedChatModel()), LLMBackend)


async def test_generate_returns_text_and_passes_generation_keywords() -> None:
    model = ScriptedChatModel(outcomes=["four"])
    text = await backend(model).generate("2+2?", temperature=0.2, max_tokens=7, stop=["\n"])
    assert text == "four"
    assert model.calls == [{"stop": ["\n"], "temperature": 0.2, "max_tokens": 7}]


def test_generate_sync() -> None:
    assert backend(ScriptedChatModel(outcomes=["sync"])).generate_sync("hi") == "sync"


async def test_works_over_any_chat_runnable() -> None:
    fake = GenericFakeChatModel(messages=iter([AIMessage(content="from a plain fake")]))
    assert await LangChainBackend(fake).generate("hi") == "from a plain fake"


@pytest.mark.parametrize("prompt", ["", "   \n\t", None, 42, b"bytes", ["list"]])
async def test_bad_prompts_raise_before_the_model_is_called(prompt: Any) -> None:
    model = ScriptedChatModel()
    with pytest.raises(InvalidInputError) as caught:
        await backend(model).generate(prompt)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(InvalidInputError):
        backend(model).generate_sync(prompt)
    with pytest.raises(InvalidInputError):
        [t async for t in backend(model).stream(prompt)]
    assert model.calls == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_tokens": -1},
        {"max_tokens": 0},
        {"max_tokens": 2.5},
        {"max_tokens": True},
        {"temperature": 5},
        {"temperature": float("nan")},
        {"temperature": "hot"},
        {"stop": [""]},
        {"stop": [1]},
        {"top_p": 1.5},
        {"frobnicate": 1},
    ],
)
async def test_absurd_parameters_raise_before_the_model_is_called(kwargs: dict[str, Any]) -> None:
    model = ScriptedChatModel()
    with pytest.raises(InvalidInputError):
        await backend(model).generate("hi", **kwargs)
    assert model.calls == []


async def test_empty_reply_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(ProviderUnavailableError, match="no text"):
        await backend(ScriptedChatModel(outcomes=["   "])).generate("hi")


async def test_all_providers_failed_surfaces_from_generate() -> None:
    a = ScriptedChatModel(provider="a", outcomes=[ProviderUnavailableError("x", provider="a")] * 2)
    b = ScriptedChatModel(provider="b", outcomes=[ProviderUnavailableError("y", provider="b")] * 2)
    with pytest.raises(AllProvidersFailedError) as caught:
        await backend(a, b).generate("hi")
    assert len(caught.value.errors) == 2


async def test_stream_yields_text() -> None:
    parts = [p async for p in backend(ScriptedChatModel(outcomes=["one two three"])).stream("hi")]
    assert parts == ["one", " two", " three"]


async def test_stream_failure_after_text_carries_the_partial_text() -> None:
    failing = ScriptedChatModel(
        outcomes=[("one two", ProviderUnavailableError("gone", provider="fake"))]
    )
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        async for part in backend(failing).stream("hi"):
            seen.append(part)
    assert caught.value.partial_text == "".join(seen) == "one two"


async def test_stream_failure_before_text_falls_back() -> None:
    a = ScriptedChatModel(
        provider="a", outcomes=[("", ProviderUnavailableError("x", provider="a"))] * 2
    )
    b = ScriptedChatModel(provider="b", outcomes=["from b"])
    assert "".join([p async for p in backend(a, b).stream("hi")]) == "from b"


async def test_usage_is_tracked_per_provider_including_failures() -> None:
    a = ScriptedChatModel(provider="a", outcomes=[ProviderUnavailableError("x", provider="a")] * 2)
    b = ScriptedChatModel(provider="b", cost_per_call=0.25)
    shim = backend(a, b)
    await shim.generate("hi there")
    summary = shim.usage.summary()
    assert summary[("a", "a-model")].usage.calls == 2
    assert summary[("a", "a-model")].usage.failures == 2
    assert summary[("b", "b-model")].usage.calls == 1
    assert summary[("b", "b-model")].usage.cost_usd == 0.25
    assert summary[("b", "b-model")].usage.output_tokens == 1
    assert shim.usage_totals().calls == 3


async def test_usage_is_exact_under_concurrency() -> None:
    model = ScriptedChatModel(cost_per_call=0.001)
    shim = backend(model)
    await asyncio.gather(*(shim.generate(f"prompt {i}") for i in range(50)))
    [entry] = shim.usage.summary().values()
    assert entry.usage.calls == 50
    assert entry.usage.cost_usd == pytest.approx(0.05)
    assert entry.usage.output_tokens == 50


async def test_usage_counts_streams() -> None:
    shim = backend(ScriptedChatModel(cost_per_call=0.5))
    _ = [p async for p in shim.stream("hi")]
    assert shim.usage_totals().cost_usd == 0.5
    assert shim.usage_totals().calls == 1


async def test_calls_inside_a_runnable_nest_under_its_run() -> None:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.runnables import RunnableLambda

    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.parents: list[object] = []

        def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kw):
            self.parents.append(parent_run_id)

    shim = backend(ScriptedChatModel(outcomes=["inner"]))
    recorder = Recorder()

    async def outer(question: str) -> str:
        return await shim.generate(question)

    assert await RunnableLambda(outer).ainvoke("q", {"callbacks": [recorder]}) == "inner"
    assert len(recorder.parents) == 1
    assert recorder.parents[0] is not None  # nested under the outer run
    assert shim.usage_totals().calls == 1  # and still tracked by the backend


# --- bad input on every entry point -------------------------------------------


CONFIGURED = {"openrouter_api_key": "sk-or-v1-x", "ollama_model": "llama3.2"}


UNENCODABLE = "hi \ud800 there"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"temperature": float("inf")},
        {"temperature": None, "max_tokens": 10**9},
        {"max_tokens": "100"},
        {"max_tokens": -(10**6)},
        {"top_p": -0.1},
        {"seed": 1.5},
        {"seed": "42"},
        {"stop": ""},
        {"stop": {"a": 1}},
        {"stop": ["ok", None]},
        {"n": 5},
    ],
)
async def test_absurd_parameters_on_every_entry_point(kwargs: dict[str, Any]) -> None:
    model = ScriptedChatModel()
    backend = LangChainBackend(model)
    with pytest.raises(InvalidInputError):
        await backend.generate("hi", **kwargs)
    with pytest.raises(InvalidInputError):
        backend.generate_sync("hi", **kwargs)
    with pytest.raises(InvalidInputError):
        _ = [part async for part in backend.stream("hi", **kwargs)]
    assert model.calls == []


async def test_bad_input_through_a_built_chain_makes_no_request() -> None:
    """The whole stack (sockets disabled): a bad call fails before any client is used."""
    backend = LangChainBackend(build_chat_model(Settings(**CONFIGURED), ["openrouter", "ollama"]))
    for bad in ("", "  ", None):
        with pytest.raises(InvalidInputError):
            await backend.generate(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await backend.generate("hi", max_tokens=-1)
    with pytest.raises(InvalidInputError):
        await backend.generate("hi", temperature=5)
    assert backend.usage.totals().calls == 0


async def test_the_backend_rejects_text_that_cannot_be_sent() -> None:
    model = ScriptedChatModel()
    backend = LangChainBackend(model)
    with pytest.raises(InvalidInputError, match="prompt cannot be sent"):
        await backend.generate(UNENCODABLE)
    with pytest.raises(InvalidInputError, match="prompt cannot be sent"):
        backend.generate_sync(UNENCODABLE)
    with pytest.raises(InvalidInputError, match="prompt cannot be sent"):
        await anext(aiter(backend.stream(UNENCODABLE)))
    assert model.calls == []


# --- cache_prefix -------------------------------------------------------------


PREFIX = "Examples:\nalpha beta gamma delta\nepsilon zeta eta theta\n"


REST = "Input: one two\n"


async def test_other_runnables_get_the_plain_prompt() -> None:
    seen: list[list[BaseMessage]] = []

    def reply(messages: list[BaseMessage], **_: Any) -> AIMessage:
        seen.append(messages)
        return AIMessage(content="ok")

    backend = LangChainBackend(RunnableLambda(reply))
    assert await backend.generate(PREFIX + REST, cache_prefix=PREFIX) == "ok"
    assert await LangChainBackend(ScriptedChatModel()).generate(PREFIX + REST, cache_prefix=PREFIX)
    [messages] = seen
    assert [m.content for m in messages] == [PREFIX + REST]


async def test_a_prefix_the_prompt_does_not_start_with_is_refused() -> None:
    backend = LangChainBackend(ScriptedChatModel())
    with pytest.raises(InvalidInputError):
        await backend.generate(REST, cache_prefix=PREFIX)


# ---------------------------------------------------------------- n samples in one request
# The real provider classes on a scripted wire (``tests.providers.mock_http``): an
# OpenAI-wire server that answers ``n`` choices as OpenAI does, and Ollama, which has no ``n``.

SAMPLE_USAGE = {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49, "cost": 0.003}


def choices_reply(request: httpx.Request) -> httpx.Response:
    """A Chat Completions reply with as many choices as the request's ``n`` (1 without)."""
    n = json.loads(request.content).get("n") or 1
    body = {
        "id": "gen-1",
        "object": "chat.completion",
        "created": 1,
        "model": "openai/gpt-4o-mini",
        "choices": [
            {
                "index": i,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": f"sample {i}"},
            }
            for i in range(n)
        ],
        "usage": SAMPLE_USAGE,
    }
    return httpx.Response(200, json=body)


def openrouter_backend(wire: MockServer, **backend_kwargs: Any) -> LangChainBackend:
    model = openrouter_model(
        Settings(openrouter_api_key="sk-or-v1-unit", max_retries=0), **wire.openai_clients()
    )
    return LangChainBackend(with_provider_policy(model, FAST, breaker=False), **backend_kwargs)


def ollama_backend(wire: MockServer) -> LangChainBackend:
    model = ollama_model(
        Settings(ollama_model="llama3.2"), client_kwargs=wire.ollama_client_kwargs()
    )
    return LangChainBackend(with_provider_policy(model, FAST, breaker=False))


async def test_generate_samples_reads_every_choice_of_one_request() -> None:
    wire = MockServer(default=choices_reply)
    sampler = openrouter_backend(wire)
    texts = await sampler.generate_samples("Value this state.", 3, temperature=0.7)
    assert texts == ["sample 0", "sample 1", "sample 2"]
    assert wire.count == 1
    assert wire.body()["n"] == 3
    # One request: one call, and the reply's usage (which covers every choice) once.
    usage = sampler.usage_totals()
    assert (usage.calls, usage.input_tokens, usage.output_tokens) == (1, 40, 9)
    assert usage.cost_usd == pytest.approx(0.003)


async def test_generate_samples_of_one_is_a_plain_request() -> None:
    wire = MockServer(default=choices_reply)
    assert await openrouter_backend(wire).generate_samples("Say hi.", 1) == ["sample 0"]
    assert "n" not in wire.body()


async def test_a_server_that_ignores_n_gives_one_sample() -> None:
    # OpenRouter's most routes answer one choice whatever n says.
    wire = MockServer(default=lambda request: choices_reply(_without_n(request)))
    assert await openrouter_backend(wire).generate_samples("Value this.", 3) == ["sample 0"]
    assert wire.count == 1


def _without_n(request: httpx.Request) -> httpx.Request:
    body = {k: v for k, v in json.loads(request.content).items() if k != "n"}
    return httpx.Request("POST", request.url, json=body)


async def test_ollama_gets_no_n_and_answers_one_sample() -> None:
    final = {
        "model": "llama3.2",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "one sample"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 12,
        "eval_count": 3,
    }
    wire = MockServer(default=ndjson_reply([final]))
    sampler = ollama_backend(wire)
    assert await sampler.generate_samples("Value this.", 3) == ["one sample"]
    assert wire.count == 1
    assert "n" not in wire.body() and "n" not in (wire.body().get("options") or {})
    assert sampler.usage_totals().calls == 1


async def test_blank_choices_are_dropped_and_all_blank_is_an_error() -> None:
    def some_blank(request: httpx.Request) -> httpx.Response:
        reply = choices_reply(request)
        body = reply.json()
        body["choices"][0]["message"]["content"] = ""
        return httpx.Response(200, json=body)

    wire = MockServer(default=some_blank)
    assert await openrouter_backend(wire).generate_samples("Value.", 3) == ["sample 1", "sample 2"]

    def all_blank(request: httpx.Request) -> httpx.Response:
        body = choices_reply(request).json()
        for choice in body["choices"]:
            choice["message"]["content"] = " "
        return httpx.Response(200, json=body)

    with pytest.raises(ProviderUnavailableError, match="empty reply"):
        await openrouter_backend(MockServer(default=all_blank)).generate_samples("Value.", 3)


async def test_samples_are_not_streamed_when_a_streaming_callback_listens() -> None:
    # Inside astream_events (or LangGraph's message stream) invoke streams; a stream
    # carries one choice's text, so a request for n choices goes whole.
    from langchain_core.runnables import RunnableLambda

    wire = MockServer(default=choices_reply)
    sampler = openrouter_backend(wire)

    async def solve(_: object) -> list[str]:
        return await sampler.generate_samples("Value.", 2)

    events = [event async for event in RunnableLambda(solve).astream_events(None, version="v2")]
    [end] = [event for event in events if event["event"] == "on_chain_end"]
    assert end["data"]["output"] == ["sample 0", "sample 1"]
    assert wire.body()["n"] == 2
    assert not wire.body().get("stream")


@pytest.mark.parametrize("n", [0, 17, -1, True, 2.5, "3", None])
async def test_a_bad_n_is_refused_before_any_request(n: Any) -> None:
    wire = MockServer(default=choices_reply)
    with pytest.raises(InvalidInputError, match="n must be"):
        await openrouter_backend(wire).generate_samples("Value.", n)
    assert wire.count == 0


async def test_one_request_for_n_samples_reserves_n_completions_on_the_budget() -> None:
    # Each completion is bounded at $0.004 (prompt and max_tokens); the budget of $0.01
    # lets two through, not three: n=3 in one request is refused before it is sent.
    wire = MockServer(default=choices_reply)
    sampler = openrouter_backend(
        wire, max_cost_usd=0.01, cost_estimator=lambda prompt, max_tokens: 0.004
    )
    with pytest.raises(BudgetExceededError):
        await sampler.generate_samples("Value.", 3, max_tokens=50)
    assert wire.count == 0
    assert await sampler.generate_samples("Value.", 2, max_tokens=50) == ["sample 0", "sample 1"]
    assert wire.count == 1


# ---------------------------------------------------------------- usage fed by the policies
# Over provider policies the backend's tracker is fed by the policies (one count per
# request they make) instead of listening as a callback, so a call nothing else listens
# to runs without callbacks. Every scenario runs on both paths: unobserved (no handler),
# and observed by a user's handler, itself a callback-fed UsageTracker (the old path),
# and all three must total the same per (provider, model).


class Watched(ScriptedChatModel):
    """A scripted model that notes how many callback handlers each of its invoked runs
    has (LangChain hands a stream no run manager)."""

    handlers: list[int] = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.handlers.append(len(run_manager.handlers) if run_manager else 0)
        return super()._generate(messages, stop, run_manager, **kwargs)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        self.handlers.append(len(run_manager.handlers) if run_manager else 0)
        return await super()._agenerate(messages, stop, run_manager, **kwargs)


def chat_models_in_runnable(runnable: Any) -> list[Watched]:
    from pygent_lc.closing import runnable_parts

    found = [part for part in runnable_parts(runnable) if isinstance(part, Watched)]
    assert found
    return [model for model in found if model.handlers]


def per_pair(tracker: Any) -> dict[tuple[str, str], tuple[Any, int]]:
    """Usage per (provider, model), and how many latencies each pair has (> 0 each)."""
    summary = tracker.summary()
    assert all(entry.mean_latency_s > 0 for entry in summary.values())
    return {
        key: (entry.usage, len(tracker._buckets[key].latencies)) for key, entry in summary.items()
    }


async def test_a_call_nothing_listens_to_runs_without_callbacks() -> None:
    model = Watched(cost_per_call=0.25)
    shim = backend(model)
    assert await shim.generate("hi") == "ok"
    assert shim.generate_sync("hi") == "ok"
    assert [p async for p in shim.stream("hi")] == ["ok"]
    assert model.handlers == [0, 0]  # not even the backend's own tracker listens
    assert shim.usage_totals().calls == 3
    assert shim.usage_totals().cost_usd == 0.75


async def test_a_users_handler_still_sees_every_run() -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    class Starts(BaseCallbackHandler):
        def __init__(self) -> None:
            self.chains = self.models = 0

        def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
            self.chains += 1

        def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            self.models += 1

    starts = Starts()
    model = Watched()
    shim = LangChainBackend(
        ProviderChain(providers=[with_provider_policy(model, FAST, breaker=False)]),
        callbacks=[starts],
    )
    await shim.generate("hi")
    assert (starts.chains, starts.models) == (1, 1)
    assert model.handlers == [1]  # the user's handler, not the tracker
    assert shim.usage_totals().calls == 1


def failing(provider: str, times: int, cost: float = 0.0) -> Watched:
    error = ProviderUnavailableError("down", provider=provider)
    return Watched(provider=provider, outcomes=[error] * times, cost_per_call=cost)


async def scenario_retries_and_fallback(make: Any) -> None:
    shim = make(failing("a", 2), Watched(provider="b", cost_per_call=0.25, outcomes=["b one"]))
    assert await shim.generate("hi there") == "b one"
    shim = make(failing("a", 1), Watched(provider="a", cost_per_call=0.5))  # a's retry answers
    assert shim.generate_sync("hi there") == "ok"


async def scenario_streams(make: Any) -> None:
    shim = make(failing("a", 2), Watched(provider="b", cost_per_call=0.5, outcomes=["b says"]))
    assert "".join([p async for p in shim.stream("hi")]) == "b says"
    broken = ("one two", ProviderUnavailableError("gone", provider="c"))
    shim = make(Watched(provider="c", cost_per_call=0.5, outcomes=[broken]))
    with pytest.raises(StreamInterruptedError):
        _ = [p async for p in shim.stream("hi")]


async def scenario_concurrent_calls(make: Any) -> None:
    shim = make(Watched(provider="d", cost_per_call=0.001))
    await asyncio.gather(*(shim.generate(f"prompt {i}") for i in range(20)))


SCENARIOS = [scenario_retries_and_fallback, scenario_streams, scenario_concurrent_calls]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_usage_is_the_same_observed_or_not(scenario: Any) -> None:
    from pygent_lc.limits.usage import UsageTracker

    unobserved: list[LangChainBackend] = []
    observed: list[LangChainBackend] = []
    listening = UsageTracker()  # the old way: a callback on every request

    def chain(models: tuple[Watched, ...], tools: list[Any] | None, pool: bool) -> Any:
        policies: list[Any] = [with_provider_policy(m, FAST, breaker=False) for m in models]
        if pool:  # one provider's hosts
            hosts = {f"http://host{i}": p for i, p in enumerate(policies)}
            policies = [HostPool.of(hosts, provider="scripted", store=MemoryStore())]
        built = ProviderChain(providers=policies)
        return built.bind_tools(tools) if tools else built

    def make_unobserved(
        *models: Watched, tools: list[Any] | None = None, pool: bool = False
    ) -> LangChainBackend:
        unobserved.append(LangChainBackend(chain(models, tools, pool)))
        return unobserved[-1]

    def make_observed(
        *models: Watched, tools: list[Any] | None = None, pool: bool = False
    ) -> LangChainBackend:
        observed.append(LangChainBackend(chain(models, tools, pool), callbacks=[listening]))
        return observed[-1]

    await scenario(make_unobserved)
    await scenario(make_observed)
    for shim in unobserved:
        assert all(set(m.handlers) == {0} for m in chat_models_in_runnable(shim.runnable))
    for shim in observed:
        assert all(0 not in m.handlers for m in chat_models_in_runnable(shim.runnable))

    def merged(backends: list[LangChainBackend]) -> dict[Any, Any]:
        pairs: dict[Any, Any] = {}
        for b in backends:
            for key, (usage, samples) in per_pair(b.usage).items():
                before, count = pairs.get(key, (None, 0))
                pairs[key] = (usage if before is None else before + usage, count + samples)
        return pairs

    assert merged(unobserved) == merged(observed) == per_pair(listening)
    assert merged(unobserved)  # something was counted


async def scenario_bound_tools(make: Any) -> None:
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    shim = make(failing("e", 1, 0.5), Watched(provider="f", cost_per_call=0.5), tools=[tool])
    assert await shim.generate("hi") == "ok"


SCENARIOS.append(scenario_bound_tools)


async def scenario_host_pool(make: Any) -> None:
    shim = make(failing("g", 2), Watched(provider="g", cost_per_call=0.5), pool=True)
    assert await shim.generate("hi") == "ok"
    assert "".join([p async for p in shim.stream("hi")]) == "ok"


SCENARIOS.append(scenario_host_pool)


# The real OpenRouter model on a scripted wire: a 500 retried, then a reply naming the
# model that served (not the one configured), with cost, cached tokens, and n choices.

WIRE_USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 4,
    "total_tokens": 16,
    "cost": 1.1e-05,
    "prompt_tokens_details": {"cached_tokens": 8},
}


def served(request: httpx.Request, cost: object = 1.1e-05) -> httpx.Response:
    """A reply (or an SSE stream, when asked for one) from ``openai/gpt-4o-mini``."""
    asked = json.loads(request.content)
    usage = {**WIRE_USAGE, "cost": cost}
    head = {"id": "gen-1", "created": 1, "model": "openai/gpt-4o-mini"}
    if not asked.get("stream"):
        choices = [
            {
                "index": i,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": f"s{i}"},
            }
            for i in range(asked.get("n") or 1)
        ]
        body = {**head, "object": "chat.completion", "choices": choices, "usage": usage}
        return httpx.Response(200, json=body)
    events = [
        {
            **head,
            "object": "chat.completion.chunk",
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": word}, "finish_reason": None}
            ],
        }
        for word in ("one", " two")
    ]
    events.append(
        {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
    )
    events.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    text = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})


async def wire_calls(shim: LangChainBackend) -> None:
    assert await shim.generate("hi") == "s0"
    assert await asyncio.to_thread(shim.generate_sync, "hi") == "s0"
    assert "".join([p async for p in shim.stream("hi")]) == "one two"
    assert await shim.generate_samples("hi", 3) == ["s0", "s1", "s2"]


@pytest.mark.parametrize("cost", [1.1e-05, -1.0, 1e308], ids=["cost", "negative", "huge"])
async def test_usage_on_the_wire_is_the_same_observed_or_not(cost: float) -> None:
    from pygent_lc.limits.usage import UsageTracker

    def on_wire(**backend_kwargs: Any) -> LangChainBackend:
        def error(request: httpx.Request) -> httpx.Response:
            return httpx.Response(500, json={"error": {"code": 500, "message": "upstream"}})

        script = [error, lambda request: served(request, cost)] * 4
        wire = MockServer(*script)
        settings = Settings(
            openrouter_api_key="sk-or-v1-unit", openrouter_model="openrouter/auto", max_retries=0
        )
        model = openrouter_model(settings, **wire.openai_clients())
        chain = ProviderChain(providers=[with_provider_policy(model, FAST, breaker=False)])
        return LangChainBackend(chain, **backend_kwargs)

    listening = UsageTracker()
    unobserved, observed = on_wire(), on_wire(callbacks=[listening])
    await wire_calls(unobserved)
    await wire_calls(observed)
    pairs = per_pair(unobserved.usage)
    assert pairs == per_pair(observed.usage) == per_pair(listening)
    failed = pairs[("openrouter", "openrouter/auto")][0]
    answered = pairs[("openrouter", "openai/gpt-4o-mini")][0]
    assert (failed.calls, failed.failures) == (4, 4)
    assert (answered.calls, answered.failures, answered.input_tokens) == (4, 0, 48)
    assert answered.cached_input_tokens == 32
    assert answered.cost_faults == (0 if cost == 1.1e-05 else 4)


async def test_the_chain_does_not_check_again_what_the_backend_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pygent_lc.validation

    checks: list[object] = []
    check_text = pygent_lc.validation._check_text

    def counted(value: object, where: str) -> None:
        checks.append(value)
        check_text(value, where)

    monkeypatch.setattr(pygent_lc.validation, "_check_text", counted)
    shim = backend(ScriptedChatModel(), ScriptedChatModel())
    assert await shim.generate("hi", temperature=0.5) == "ok"
    assert shim.generate_sync("hi") == "ok"
    assert [p async for p in shim.stream("hi")] == ["ok"]
    assert await shim.generate_samples("hi", 2) == ["ok"]
    assert checks == []  # the backend checked each call itself
    await shim.runnable.ainvoke("hi")  # called directly, the chain checks
    assert checks


async def test_keywords_a_binding_adds_are_still_checked() -> None:
    model = ScriptedChatModel()
    chain = ProviderChain(providers=[with_provider_policy(model, FAST, breaker=False)])
    with pytest.raises(InvalidInputError):
        await LangChainBackend(chain.bind(temperature=9)).generate("hi")
    assert model.calls == []


class Hanging(ScriptedChatModel):
    """A model whose calls and streams hang until cancelled; ``started`` is set then."""

    started: Any = Field(default_factory=asyncio.Event)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        self.started.set()
        await asyncio.Event().wait()

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        self.started.set()
        await asyncio.Event().wait()
        yield  # pragma: no cover


@pytest.mark.parametrize("observed", [False, True])
async def test_cancelled_calls_count_as_the_callbacks_count_them(observed: bool) -> None:
    """A cancelled call is not counted (LangChain's model run ends without an event);
    a cancelled stream is a failed request (its run ends in an error)."""
    from pygent_lc.limits.usage import UsageTracker

    listening = UsageTracker()
    model = Hanging()
    shim = LangChainBackend(
        ProviderChain(providers=[with_provider_policy(model, FAST, breaker=False)]),
        callbacks=[listening] if observed else None,
    )

    async def read() -> None:
        async for _ in shim.stream("hi"):
            pass

    for call in (shim.generate("hi"), read()):
        task = asyncio.ensure_future(call)
        await model.started.wait()
        model.started.clear()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert shim.usage_totals() == UsageTotals(calls=1, failures=1)
    if observed:
        assert listening.totals() == shim.usage_totals()
