"""``instrument`` and ``uninstrument``: off by default, one handler for every thread,
``PYGENT_OTEL`` and content capture from the environment, no OpenTelemetry import
until asked.
"""

from __future__ import annotations

import subprocess
import sys

from langchain_core.callbacks import AsyncCallbackManager, CallbackManager

from pygent_lc import telemetry
from pygent_lc.telemetry.handler import OtelCallbackHandler
from pygent_lc.tot import observe as tot_observe
from tests.helpers import ROOT
from tests.telemetry.recording import Telemetry


def _handler_in(manager: CallbackManager | AsyncCallbackManager) -> OtelCallbackHandler | None:
    found = [h for h in manager.handlers if isinstance(h, OtelCallbackHandler)]
    return found[0] if found else None


def test_capture_content_follows_the_environment(monkeypatch):
    monkeypatch.setenv(telemetry.CAPTURE_CONTENT_ENV, "1")
    seen = Telemetry()
    telemetry.instrument(seen.tracer_provider, seen.meter_provider)
    try:
        handler = _handler_in(CallbackManager.configure())
        assert handler is not None and handler.capture_content
    finally:
        telemetry.uninstrument()


def test_off_by_default_nothing_is_registered():
    assert not telemetry.is_instrumented()
    assert _handler_in(CallbackManager.configure()) is None
    assert _handler_in(AsyncCallbackManager.configure()) is None
    assert tot_observe.current_observer() is None


def test_instrument_registers_for_every_thread_and_uninstrument_removes_it(otel: Telemetry) -> None:
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
    assert "pygent.breaker.state" not in otel.metrics() or not list(
        otel.metrics()["pygent.breaker.state"].data.data_points
    )


def test_instrument_twice_keeps_one_handler(otel: Telemetry) -> None:
    telemetry.instrument(otel.tracer_provider, otel.meter_provider)
    handlers = [
        h for h in CallbackManager.configure().handlers if isinstance(h, OtelCallbackHandler)
    ]
    assert len(handlers) == 1


def test_importing_the_package_imports_no_telemetry_code():
    code = (
        "import sys, pygent_lc, pygent_lc.telemetry\n"
        "assert 'pygent_lc.telemetry.handler' not in sys.modules\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]\n"
    )
    env = {"PATH": "", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def test_pygent_otel_env_instruments_where_a_chain_is_built_not_on_import():
    code = (
        "import pygent_lc\n"
        "from pygent_lc import telemetry\n"
        "assert not telemetry.is_instrumented()\n"
        "pygent_lc.Settings(), pygent_lc.LangChainBackend\n"
        "assert not telemetry.is_instrumented()\n"
        "pygent_lc.build_chat_model('ollama:llama3.2')\n"
        "assert telemetry.is_instrumented()\n"
    )
    env = {"PATH": "", "PYTHONPATH": str(ROOT), "PYGENT_OTEL": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def test_pygent_otel_env_instruments_every_command(monkeypatch, capsys):
    from pygent_lc import cli

    monkeypatch.setenv("PYGENT_OTEL", "1")
    try:
        cli.main(["usage"])  # nothing to show: it still ran
        assert telemetry.is_instrumented()
    finally:
        telemetry.uninstrument()
