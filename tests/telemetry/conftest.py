"""Fixtures of the telemetry tests: instrumentation into memory, the loopback server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pygent_lc import telemetry
from tests.loopback_server import LoopbackServer
from tests.telemetry.recording import Telemetry


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
