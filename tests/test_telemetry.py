"""OpenTelemetry spans and metrics: provider attempts, fallback chains, ToT levels.

Against the loopback server (real HTTP through the SDKs) with the SDK's
in-memory span exporter and metric reader.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import ROOT, loopback_settings
from langchain_core.callbacks import AsyncCallbackManager, CallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from loopback_server import Fault, LoopbackServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from tot.conftest import ladder_reply

from pygent_lc import LangChainBackend, build_chat_model, cli, telemetry
from pygent_lc.chain import with_provider_policy
from pygent_lc.errors import AllProvidersFailedError
from pygent_lc.fallbacks import ProviderChain
from pygent_lc.telemetry import names
from pygent_lc.telemetry.handler import OtelCallbackHandler
from pygent_lc.tot import ToTConfig, ToTEngine
from pygent_lc.tot import observe as tot_observe

PROMPT = "the secret recipe is forty two"
KEY = "sk-or-v1-test-key-for-loopback"


class Telemetry:
    def __init__(self) -> None:
        self.spans_out = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.spans_out.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def chats(self) -> list[ReadableSpan]:
        return sorted(
            (s for s in self.spans() if s.name.startswith("chat")), key=lambda s: s.start_time or 0
        )

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    seen = Telemetry()
    telemetry.instrument(seen.tracer_provider, seen.meter_provider, capture_content=False)
    try:
        yield seen
    finally:
        telemetry.uninstrument()


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(ollama_models=["llama3.2:latest"]) as srv:
        yield srv


@pytest.fixture
def loop_server(server: LoopbackServer) -> LoopbackServer:
    server.reset()
    return server


def everything_recorded(spans: list[ReadableSpan]) -> str:
    """Every name, attribute, event and status text of ``spans``, as one string."""
    parts: list[str] = []
    for span in spans:
        parts.append(span.name)
        parts.append(json.dumps(dict(span.attributes or {}), default=str))
        parts.append(str(span.status.description))
        for event in span.events:
            parts.append(json.dumps(dict(event.attributes or {}), default=str))
    return "\n".join(parts)


def chain_backend(server: LoopbackServer, **overrides: Any) -> LangChainBackend:
    """Ollama first (no retries), then OpenRouter, which reports cost and routing."""
    settings = loopback_settings(server, max_retries=0, **overrides)
    return LangChainBackend(build_chat_model(settings, ["ollama", "openrouter"]))


# provider attempts and fallback chains ----------------------------------------


@pytest.mark.live_local
async def test_fallback_chain_has_one_span_per_attempt(otel: Telemetry, loop_server):
    loop_server.script("ollama", [Fault.status(503)])
    reply = await chain_backend(loop_server).generate(PROMPT)
    assert reply

    failed, answered = otel.chats()
    assert failed.name == "chat llama3.2"
    assert failed.attributes[names.OPERATION_NAME] == "chat"
    assert failed.attributes[names.PROVIDER_NAME] == "ollama"
    assert failed.attributes[names.REQUEST_MODEL] == "llama3.2"
    assert failed.attributes[names.ERROR_TYPE] == "ProviderUnavailableError"
    assert failed.attributes[names.FALLBACK_INDEX] == 0
    assert failed.status.status_code is StatusCode.ERROR
    assert names.USAGE_INPUT_TOKENS not in failed.attributes

    assert answered.name == "chat openai/gpt-4o-mini"
    attrs = answered.attributes
    assert attrs[names.PROVIDER_NAME] == "openrouter"
    assert attrs[names.REQUEST_MODEL] == "openai/gpt-4o-mini"
    assert attrs[names.RESPONSE_MODEL] == "openai/gpt-4o-mini"
    assert attrs[names.USAGE_INPUT_TOKENS] > 0
    assert attrs[names.USAGE_OUTPUT_TOKENS] > 0
    assert attrs[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[names.COST_USD] > 0
    assert attrs[names.UPSTREAM_PROVIDER] == loop_server.provider
    assert attrs[names.GENERATION_ID] == attrs[names.RESPONSE_ID]
    assert attrs[names.FALLBACK_INDEX] == 1
    assert attrs[names.RETRY_ATTEMPT] == 1
    assert names.ERROR_TYPE not in attrs

    (chain,) = otel.spans(names.CHAIN_SPAN)
    assert failed.parent.span_id == chain.context.span_id
    assert answered.parent.span_id == chain.context.span_id
    assert chain.attributes[names.CHAIN_ATTEMPTS] == 2
    assert chain.attributes[names.CHAIN_FALLBACKS] == 1
    assert chain.attributes[names.CHAIN_PROVIDERS] == ("ollama", "openrouter")
    assert chain.status.status_code is not StatusCode.ERROR

    recorded = everything_recorded(otel.spans())
    assert KEY not in recorded
    assert PROMPT not in recorded
    assert "forty two" not in recorded


@pytest.mark.live_local
async def test_metrics_have_the_conventions_names_and_units(otel: Telemetry, loop_server):
    loop_server.script("ollama", [Fault.status(503)])
    await chain_backend(loop_server, breaker_failures=3).generate(PROMPT)
    metrics = otel.metrics()

    duration = metrics[names.OPERATION_DURATION]
    assert duration.unit == "s"
    points = list(duration.data.data_points)
    by_error = {p.attributes.get(names.ERROR_TYPE): p for p in points}
    assert set(by_error) == {"ProviderUnavailableError", None}
    assert by_error[None].attributes[names.PROVIDER_NAME] == "openrouter"
    assert by_error[None].attributes[names.RESPONSE_MODEL] == "openai/gpt-4o-mini"

    tokens = metrics[names.TOKEN_USAGE]
    assert tokens.unit == "{token}"
    types = {p.attributes[names.TOKEN_TYPE]: p for p in tokens.data.data_points}
    assert set(types) == {"input", "output"}
    assert all(p.sum > 0 and p.count == 1 for p in types.values())

    cost = metrics[names.COST]
    assert cost.unit == "USD"
    (spent,) = cost.data.data_points
    assert spent.value > 0
    assert spent.attributes == {
        names.PROVIDER_NAME: "openrouter",
        names.REQUEST_MODEL: "openai/gpt-4o-mini",
    }

    (failure,) = metrics[names.FAILURES].data.data_points
    assert failure.value == 1
    assert failure.attributes[names.ERROR_TYPE] == "ProviderUnavailableError"
    assert failure.attributes[names.PROVIDER_NAME] == "ollama"

    states = {
        p.attributes[names.PROVIDER_NAME]: p.value
        for p in metrics[names.BREAKER_STATE].data.data_points
    }
    assert states["ollama"] == names.BREAKER_STATES["closed"]  # one failure of three
    assert states["openrouter"] == names.BREAKER_STATES["closed"]


@pytest.mark.live_local
async def test_breaker_gauge_reports_an_open_circuit(otel: Telemetry, loop_server):
    loop_server.script("ollama", [Fault.status(503)])
    await chain_backend(loop_server, breaker_failures=1, breaker_cooldown=60).generate(PROMPT)
    states = {
        (p.attributes[names.PROVIDER_NAME], p.attributes.get(names.REQUEST_MODEL)): p.value
        for p in otel.metrics()[names.BREAKER_STATE].data.data_points
    }
    assert states[("ollama", "llama3.2")] == names.BREAKER_STATES["open"]


@pytest.mark.live_local
async def test_each_retry_attempt_is_a_span_under_the_chain(otel: Telemetry, loop_server):
    loop_server.script("openrouter", [Fault.status(503)])
    settings = loopback_settings(loop_server, max_retries=2)
    await build_chat_model(settings, ["openrouter", "ollama"]).ainvoke(PROMPT)

    first, second = otel.chats()
    assert first.attributes[names.RETRY_ATTEMPT] == 1
    assert first.attributes[names.ERROR_TYPE] == "ProviderUnavailableError"
    assert second.attributes[names.RETRY_ATTEMPT] == 2
    assert second.attributes[names.PROVIDER_NAME] == "openrouter"
    assert names.ERROR_TYPE not in second.attributes
    (chain,) = otel.spans(names.CHAIN_SPAN)
    assert chain.attributes[names.CHAIN_RETRIES] == 1
    assert chain.attributes[names.CHAIN_FALLBACKS] == 0


@pytest.mark.live_local
def test_a_chain_where_every_provider_fails_marks_the_chain(otel: Telemetry, loop_server):
    loop_server.script("ollama", [Fault.status(503)])
    loop_server.script("openrouter", [Fault.status(401)])
    settings = loopback_settings(loop_server, max_retries=0)
    with pytest.raises(AllProvidersFailedError):
        build_chat_model(settings, ["ollama", "openrouter"]).invoke(PROMPT)
    (chain,) = otel.spans(names.CHAIN_SPAN)
    assert chain.status.status_code is StatusCode.ERROR
    # the chain run ends with the error its caller sees
    assert chain.attributes[names.ERROR_TYPE] == "AllProvidersFailedError"
    assert [s.attributes[names.ERROR_TYPE] for s in otel.chats()] == [
        "ProviderUnavailableError",
        "AuthenticationError",
    ]


@pytest.mark.live_local
async def test_content_is_recorded_only_when_asked(loop_server):
    seen = Telemetry()
    telemetry.instrument(seen.tracer_provider, seen.meter_provider, capture_content=True)
    try:
        await chain_backend(loop_server).generate(PROMPT)
    finally:
        telemetry.uninstrument()
    (chat,) = seen.chats()
    sent = json.loads(chat.attributes[names.INPUT_MESSAGES])
    assert sent == [{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
    answer = json.loads(chat.attributes[names.OUTPUT_MESSAGES])
    assert answer[0]["role"] == "assistant"
    assert PROMPT in answer[0]["parts"][0]["content"]  # the loopback server echoes
    assert KEY not in everything_recorded(seen.spans())


def test_capture_content_follows_the_environment(monkeypatch):
    monkeypatch.setenv(telemetry.CAPTURE_CONTENT_ENV, "1")
    seen = Telemetry()
    telemetry.instrument(seen.tracer_provider, seen.meter_provider)
    try:
        handler = _handler_in(CallbackManager.configure())
        assert handler is not None and handler.capture_content
    finally:
        telemetry.uninstrument()


# Tree-of-Thought ---------------------------------------------------------------


class LadderChatModel(BaseChatModel):
    """Answers the generic task's prompts like the ToT tests' ladder backend."""

    @property
    def _llm_type(self) -> str:
        return "ladder"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        text = ladder_reply(messages[-1].text)
        reply = AIMessage(
            content=text,
            usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            response_metadata={"model_name": "ladder-1", "finish_reason": "stop", "cost": 0.001},
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _get_ls_params(self, stop: Any = None, **kwargs: Any) -> Any:
        return {"ls_provider": "ladder", "ls_model_name": "ladder-1", "ls_model_type": "chat"}


async def test_tot_solve_has_a_span_per_level(otel: Telemetry):
    model = LadderChatModel()
    chain = ProviderChain(providers=[with_provider_policy(model, _tot_settings())])
    config = ToTConfig(
        n_generate_sample=1,
        n_evaluate_sample=2,
        n_select_sample=2,
        max_depth=3,
        temperature=0.7,
        seed=0,
    )
    result = await ToTEngine(config, LangChainBackend(chain)).solve("What is the answer?")
    assert result.solved

    (solve,) = otel.spans(names.TOT_SOLVE)
    assert solve.attributes[names.TOT_TASK] == "generic"
    assert solve.attributes[names.TOT_LLM_CALLS] == result.stats.llm_calls
    assert solve.attributes[names.TOT_NODES] == result.stats.nodes == 16
    assert solve.attributes[names.TOT_SOLVED] is True
    levels = sorted(otel.spans(names.TOT_LEVEL), key=lambda s: s.attributes[names.TOT_DEPTH])
    assert [s.attributes[names.TOT_DEPTH] for s in levels] == [1, 2, 3]
    assert all(s.parent.span_id == solve.context.span_id for s in levels)
    assert [s.attributes[names.TOT_GENERATED] for s in levels] == [3, 6, 6]
    assert [s.attributes[names.TOT_VALUED] for s in levels] == [3, 6, 6]
    assert [s.attributes[names.TOT_KEPT] for s in levels] == [2, 2, 2]
    assert [s.attributes[names.TOT_EXPANDED] for s in levels] == [1, 2, 2]
    assert sum(s.attributes[names.TOT_LLM_CALLS] for s in levels) == result.stats.llm_calls
    assert sum(s.attributes[names.TOT_CACHE_HITS] for s in levels) == result.stats.cache_hits

    # every call's spans sit under its level: chain span, then the chat attempt
    level_ids = {s.context.span_id: s.attributes[names.TOT_DEPTH] for s in levels}
    chains = otel.spans(names.CHAIN_SPAN)
    assert len(chains) == result.stats.llm_calls
    assert all(c.parent.span_id in level_ids for c in chains)
    chats = otel.chats()
    assert len(chats) == result.stats.llm_calls
    chain_ids = {c.context.span_id for c in chains}
    assert all(c.parent.span_id in chain_ids for c in chats)
    assert all(c.attributes[names.USAGE_OUTPUT_TOKENS] == 5 for c in chats)
    assert "What is the answer?" not in everything_recorded(otel.spans())


def _tot_settings() -> Any:
    from pygent_lc import Settings

    return Settings(max_retries=0, breaker_failures=0)


# off by default, and uninstrument --------------------------------------------------


def _handler_in(manager: CallbackManager | AsyncCallbackManager) -> OtelCallbackHandler | None:
    found = [h for h in manager.handlers if isinstance(h, OtelCallbackHandler)]
    return found[0] if found else None


def test_off_by_default_nothing_is_registered():
    assert not telemetry.is_instrumented()
    assert _handler_in(CallbackManager.configure()) is None
    assert _handler_in(AsyncCallbackManager.configure()) is None
    assert tot_observe.current_observer() is None


def test_instrument_registers_for_every_thread_and_uninstrument_removes_it(otel: Telemetry):
    import threading

    assert _handler_in(CallbackManager.configure()) is not None
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(_handler_in(CallbackManager.configure())))
    thread.start()
    thread.join()
    assert seen[0] is not None
    assert tot_observe.current_observer() is not None

    telemetry.uninstrument()
    assert not telemetry.is_instrumented()
    assert _handler_in(CallbackManager.configure()) is None
    assert tot_observe.current_observer() is None
    assert names.BREAKER_STATE not in otel.metrics() or not list(
        otel.metrics()[names.BREAKER_STATE].data.data_points
    )


def test_instrument_twice_keeps_one_handler(otel: Telemetry):
    telemetry.instrument(otel.tracer_provider, otel.meter_provider)
    handlers = [
        h for h in CallbackManager.configure().handlers if isinstance(h, OtelCallbackHandler)
    ]
    assert len(handlers) == 1


def test_importing_the_package_imports_no_telemetry_code():
    code = (
        "import sys, pygent_lc\n"
        "assert 'pygent_lc.telemetry.handler' not in sys.modules\n"
        "assert 'pygent_lc.telemetry.metrics' not in sys.modules\n"
    )
    env = {"PATH": "", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def test_pygent_otel_env_instruments_on_import():
    code = "import pygent_lc\nfrom pygent_lc import telemetry\nassert telemetry.is_instrumented()\n"
    env = {"PATH": "", "PYTHONPATH": str(ROOT), "PYGENT_OTEL": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


# the CLI's --otel ------------------------------------------------------------------


@pytest.fixture
def cli_logger() -> Iterator[None]:
    """The ``pygent_lc`` logger, restored after ``cli.main`` configured it."""
    logger = logging.getLogger("pygent_lc")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers, logger.level, logger.propagate = saved


def test_cli_otel_without_the_exporter_is_a_clear_error(monkeypatch, capsys, cli_logger):
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    assert cli.main(["--otel", "doctor"]) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert "pip install opentelemetry-exporter-otlp-proto-http" in error
    assert not telemetry.is_instrumented()


@pytest.mark.live_local
def test_cli_otel_exports_the_run_and_flushes_at_exit(monkeypatch, capsys, loop_server, cli_logger):
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    exported = InMemorySpanExporter()
    monkeypatch.setattr(trace_exporter, "OTLPSpanExporter", lambda: exported)
    monkeypatch.setenv("OLLAMA_BASE_URL", loop_server.ollama_base_url)
    monkeypatch.setenv("OLLAMA_MODEL", "llama3.2")
    monkeypatch.chdir(ROOT / "tests")  # no .env here
    assert cli.main(["--otel", "chat", "hi", "--provider", "ollama"]) == 0
    assert not telemetry.is_instrumented()
    chats = [s for s in exported.get_finished_spans() if s.name == "chat llama3.2"]
    assert len(chats) == 1
    assert chats[0].resource.attributes["service.name"] == "pygent-lc"
