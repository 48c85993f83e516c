"""Test tiers and the cassette harness.

- unit: no sockets (pytest-socket); everything else is marked.
- cassette (``@pytest.mark.vcr``): replays ``cassettes/<module>/<test>.yaml``
  offline; ``--record-mode=rewrite`` re-records against the real servers.
- live_local: the real llama.cpp server and the loopback server, on 127.0.0.1.
- live_cloud: real OpenRouter / Ollama, skipped without a key or server.

The helper modules of tests/ import by their full name (``tests.helpers``,
``tests.loopback_server``), as benchmarks import the loopback server and as mypy
checks them: pyproject's pytest ``pythonpath`` puts the repository root on the
path, for them, ``benchmarks`` and this checkout's ``pygent_lc``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pygent_lc.limits import shared_store
from tests.helpers import ROOT, cassette_config
from tests.loopback_server import LoopbackServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vcr: replays a cassette from cassettes/")


def _recording(config: pytest.Config) -> bool:
    # pytest-recording's default is None, which means "none" (replay only).
    return (config.getoption("--record-mode", default=None) or "none") != "none"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        live = item.get_closest_marker("live_local") or item.get_closest_marker("live_cloud")
        if live or (item.get_closest_marker("vcr") and _recording(config)):
            item.add_marker(pytest.mark.enable_socket)


@pytest.fixture(autouse=True)
def _no_ambient_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see only the configuration they set: no developer's .env or keys."""
    for name in list(os.environ):
        if name.startswith(("OPENROUTER_", "OLLAMA_", "PYGENT_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    group = request.module.__name__.removeprefix("test_").removeprefix("cassettes_")
    return str(ROOT / "cassettes" / group)


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    return cassette_config()


@pytest.fixture
def recording(request: pytest.FixtureRequest) -> bool:
    """Whether this run records cassettes (and so needs the real servers)."""
    return _recording(request.config)


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    with LoopbackServer(ollama_models=["llama3.2:latest"]) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for ``live_local`` tests: ``$PYGENT_TEST_REDIS_URL``, else one started here."""
    from tests.redis_server import redis_for_tests

    with redis_for_tests() as url:
        yield url


@pytest.fixture(autouse=True)
def _fresh_process_state() -> None:
    """Each test starts with this process's breakers, limits and budgets empty."""
    shared_store().clear()
