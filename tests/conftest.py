"""Test tiers and the cassette harness.

- unit: no sockets (pytest-socket); everything else is marked.
- cassette (``@pytest.mark.vcr``): replays ``cassettes/<module>/<test>.yaml``
  offline; ``--record-mode=rewrite`` re-records against the real servers.
- live_local: the real llama.cpp server and the loopback server, on 127.0.0.1.
- live_cloud: real OpenRouter / Ollama, skipped without a key or server.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback_server import LoopbackServer  # noqa: E402

from pygent_lc import Settings  # noqa: E402

# Header and query names whose values must never be written to a cassette.
SECRET_HEADERS = (
    "authorization",
    "api-key",
    "x-api-key",
    "cookie",
    "set-cookie",
    "openai-organization",
    "openai-project",
)
SECRET_QUERY = ("key", "api_key", "apikey", "token")
CANARY_KEY = "sk-or-v1-canary0000000000000000000000000000000000000000000000000000"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vcr: replays a cassette from cassettes/")


def _recording(config: pytest.Config) -> bool:
    return str(config.getoption("--record-mode", default="none")) != "none"


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


def _scrub_request(request: Any) -> Any:
    for name in list(request.headers):
        if name.lower() in SECRET_HEADERS:
            del request.headers[name]
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers", {})
    for name in list(headers):
        if name.lower() in SECRET_HEADERS:
            del headers[name]
    return response


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": list(SECRET_HEADERS),
        "filter_query_parameters": list(SECRET_QUERY),
        "before_record_request": _scrub_request,
        "before_record_response": _scrub_response,
        "decode_compressed_response": True,
        # Recorded against servers on random loopback ports: the port never matches.
        "match_on": ("method", "scheme", "host", "path", "query", "body"),
    }


@pytest.fixture
def recording(request: pytest.FixtureRequest) -> bool:
    """Whether this run records cassettes (and so needs the real servers)."""
    return _recording(request.config)


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    with LoopbackServer(ollama_models=["llama3.2:latest"]) as server:
        yield server


def loopback_settings(server: LoopbackServer, **overrides: Any) -> Settings:
    """Settings pointing both protocols at ``server``, with waits short enough for tests.

    The breaker is off: fault tests count requests; the breaker has its own tests.
    """
    values: dict[str, Any] = {
        "openrouter_api_key": "sk-or-v1-test-key-for-loopback",
        "openrouter_base_url": server.openrouter_base_url,
        "openrouter_model": "openai/gpt-4o-mini",
        "ollama_base_url": server.ollama_base_url,
        "ollama_model": "llama3.2",
        "request_timeout": 5,
        "max_retries": 2,
        "retry_initial_wait": 0.001,
        "retry_max_wait": 1,
        "breaker_failures": 0,
    }
    values.update(overrides)
    return Settings(**values)


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request_json(cassette: Any, index: int = 0) -> dict[str, Any]:
    """The JSON body of a cassette's ``index``-th request."""
    body = cassette.requests[index].body
    return json.loads(body.decode() if isinstance(body, bytes) else body)


def exchanged(cassette: Any) -> list[Any]:
    """The requests this test made: those replayed, or those just recorded."""
    if cassette.rewound:  # loaded from disk: replaying
        return [cassette.requests[index] for index in sorted(cassette.play_counts)]
    return list(cassette.requests)
