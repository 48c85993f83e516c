"""Helpers the test modules import (conftest.py is for fixtures and hooks only)."""

from __future__ import annotations

import gc
import json
import pickle
import socket
import types
from pathlib import Path
from typing import Any

from pygent_lc import Settings
from tests.loopback_server import LoopbackServer

ROOT = Path(__file__).resolve().parent.parent

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


def cassette_config() -> dict[str, Any]:
    """vcrpy settings: secrets scrubbed before writing, the port ignored when matching."""
    return {
        "filter_headers": list(SECRET_HEADERS),
        "filter_query_parameters": list(SECRET_QUERY),
        "before_record_request": _scrub_request,
        "before_record_response": _scrub_response,
        "decode_compressed_response": True,
        # Recorded against servers on random loopback ports: the port never matches.
        "match_on": ("method", "scheme", "host", "path", "query", "body"),
    }


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


def cli_env(server: LoopbackServer, **changes: str) -> dict[str, str]:
    """The variables of a ``pygent-lc`` run against ``server``: both providers, no retries."""
    env = {
        "OPENROUTER_API_KEY": CANARY_KEY,
        "OPENROUTER_BASE_URL": server.openrouter_base_url,
        "OPENROUTER_MODEL": "openai/gpt-4o-mini",
        "OLLAMA_BASE_URL": server.ollama_base_url,
        "OLLAMA_MODEL": "llama3.2",
        "PYGENT_PROVIDERS": "openrouter,ollama",
        "PYGENT_MAX_RETRIES": "0",
    }
    return {**env, **changes}


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request_json(cassette: Any, index: int = 0) -> dict[str, Any]:
    """The JSON body of a cassette's ``index``-th request."""
    body = cassette.requests[index].body
    data: dict[str, Any] = json.loads(body.decode() if isinstance(body, bytes) else body)
    return data


def exchanged(cassette: Any) -> list[Any]:
    """The requests this test made: those replayed, or those just recorded."""
    if cassette.rewound:  # loaded from disk: replaying
        return [cassette.requests[index] for index in sorted(cassette.play_counts)]
    return list(cassette.requests)


# Objects a reachability walk does not enter: code and namespaces (a function's
# globals reach every module), and frames (a traceback's locals are checked by
# rendering them, as Sentry does, not by walking them).
_NOT_DATA = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    types.FrameType,
    types.TracebackType,
)


def reachable_objects(root: object, limit: int = 200_000) -> list[object]:
    """Every object ``root`` holds, directly or not (``gc.get_referents``), code and
    frames left out: what a debugger or an error tracker can read from ``root``."""
    seen: dict[int, object] = {}
    pending = [root]
    while pending:
        current = pending.pop()
        if id(current) in seen or isinstance(current, _NOT_DATA):
            continue
        seen[id(current)] = current
        assert len(seen) < limit, "the walk does not end: something reaches everything"
        pending.extend(gc.get_referents(current))
    return list(seen.values())


def secret_holders(root: BaseException, secret: str) -> list[str]:
    """What, reachable from ``root`` (or in the pickle of an exception reachable from
    it), holds ``secret``: empty when nothing does."""
    found: list[str] = []
    encoded = secret.encode()
    for item in reachable_objects(root):
        if isinstance(item, str) and secret in item:
            found.append(f"str {item[:60]!r}")
        elif isinstance(item, bytes | bytearray) and encoded in item:
            found.append(f"bytes {bytes(item[:60])!r}")
        elif isinstance(item, BaseException):
            try:
                pickled = pickle.dumps(item)
            except Exception:  # not picklable: nothing to carry across
                continue
            if encoded in pickled:
                found.append(f"pickle of {type(item).__name__}")
    return found
