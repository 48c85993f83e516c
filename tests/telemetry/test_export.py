"""The CLI's ``--otel``: a clear error without the exporter; a run's spans exported and
flushed at exit.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pygent_lc import cli, telemetry
from tests.helpers import ROOT


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
