"""``pygent-lc`` shows fallbacks and failures: the WARNING line on stderr, the
``fallbacks`` list and the error object under ``--json`` (``pygent_lc.cli.output``).

"OpenRouter" and "Ollama" are the loopback server; OpenRouter is given a wrong
key (a real 401 from the server), so the chain falls back to Ollama.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from pygent_lc import cli
from pygent_lc.chain import FallbackNotices
from pygent_lc.cli.output import FallbackRecorder, error_json
from pygent_lc.errors import AllProvidersFailedError, AuthenticationError, ProviderUnavailableError
from tests.helpers import CANARY_KEY, ROOT, cli_env
from tests.loopback_server import LoopbackServer

EXE = Path(sys.executable).with_name("pygent-lc")
WRONG_KEY = CANARY_KEY[:-4] + "beef"
FELL_BACK = (
    "WARNING pygent_lc.fallbacks: fell back: openrouter failed (401 unauthorized); ollama answered"
)
live = pytest.mark.live_local


def run_cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), *args],
        capture_output=True,
        text=True,
        # This checkout's package, whichever one the entry point was installed from.
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.DEVNULL,
        timeout=180,
    )


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(
        ollama_models=["llama3.2:latest"],
        responder=lambda protocol, body: f"{protocol} says hello",
        api_key=CANARY_KEY,
    ) as live_server:
        yield live_server


def env_for(server: LoopbackServer, **changes: str) -> dict[str, str]:
    return cli_env(server, **{"OPENROUTER_API_KEY": WRONG_KEY, **changes})


def no_secret(proc: subprocess.CompletedProcess[str]) -> None:
    for key in (CANARY_KEY, WRONG_KEY, CANARY_KEY[:-4]):
        assert key not in proc.stdout + proc.stderr


@live
def test_chat_that_falls_back_says_so_on_stderr(server: LoopbackServer) -> None:
    proc = run_cli("chat", "hi", env=env_for(server))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ollama says hello\n"
    assert proc.stderr.splitlines()[0] == FELL_BACK
    assert "DEBUG" not in proc.stderr
    no_secret(proc)


@live
def test_verbose_adds_each_failed_attempt(server: LoopbackServer) -> None:
    proc = run_cli("chat", "hi", "-v", env=env_for(server))
    assert proc.returncode == 0, proc.stderr
    debug = [
        line for line in proc.stderr.splitlines() if line.startswith("DEBUG pygent_lc.fallbacks")
    ]
    assert [line.split(":")[1].strip() for line in debug] == [
        "openrouter failed (401 unauthorized)"
    ]
    assert FELL_BACK in proc.stderr.splitlines()
    no_secret(proc)


@live
def test_chat_json_carries_the_answer_and_the_fallbacks(server: LoopbackServer) -> None:
    proc = run_cli("chat", "hi", "--json", env=env_for(server))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"] == "ollama says hello"
    assert data["served_by"] == ["ollama/llama3.2"]
    [fallback] = data["fallbacks"]
    assert fallback["failed"] == [{"provider": "openrouter", "reason": "401 unauthorized"}]
    assert fallback["served_by"] == "ollama"
    no_secret(proc)
    healthy = run_cli("chat", "hi", "--json", env=env_for(server, OPENROUTER_API_KEY=CANARY_KEY))
    assert json.loads(healthy.stdout)["fallbacks"] == []
    assert healthy.stderr.count("WARNING") == 0


@live
def test_solve_json_carries_the_fallbacks(server: LoopbackServer) -> None:
    proc = run_cli("solve", "Name a colour.", "--depth", "1", "--json", env=env_for(server))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["fallbacks"], proc.stderr
    assert {f["served_by"] for f in data["fallbacks"]} == {"ollama"}
    assert FELL_BACK in proc.stderr.splitlines()
    no_secret(proc)


@live
@pytest.mark.parametrize("command", ["chat", "solve"])
def test_json_failure_prints_an_error_object_and_keeps_the_exit_code(
    server: LoopbackServer, command: str
) -> None:
    proc = run_cli(command, "hi", "--provider", "openrouter", "--json", env=env_for(server))
    assert proc.returncode == 1
    error = json.loads(proc.stdout)["error"]
    assert error["type"] == "AuthenticationError"
    assert (error["provider"], error["status"]) == ("openrouter", 401)
    assert error["message"]
    assert "OPENROUTER_API_KEY" in error["hint"]
    assert proc.stderr.startswith("error: AuthenticationError: ")  # stderr as without --json
    no_secret(proc)


@live
def test_json_failure_of_every_provider_lists_each_error(server: LoopbackServer) -> None:
    env = env_for(server, OLLAMA_MODEL="mistral")
    proc = run_cli("chat", "hi", "--json", env=env)
    assert proc.returncode == 1
    error = json.loads(proc.stdout)["error"]
    assert error["type"] == "AllProvidersFailedError"
    assert error["provider"] is None
    assert [(e["provider"], e["type"]) for e in error["errors"]] == [
        ("openrouter", "AuthenticationError"),
        ("ollama", "ModelNotFoundError"),
    ]
    no_secret(proc)


def test_configuration_errors_are_json_too() -> None:
    proc = run_cli("chat", "hi", "--provider", "openrouter", "--json", env={})
    assert proc.returncode == 2
    error = json.loads(proc.stdout)["error"]
    assert error["type"] == "AgentError"
    assert (error["provider"], error["status"]) == (None, None)
    assert error["hint"]


def test_error_json_never_shows_a_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", CANARY_KEY)
    leak = AuthenticationError(f"bad key {CANARY_KEY}", provider="openrouter", status_code=401)
    group = AllProvidersFailedError(
        {"1:openrouter": leak, "2:ollama": ProviderUnavailableError("down", provider="ollama")}
    )
    text = json.dumps(error_json(group))
    assert CANARY_KEY not in text
    assert json.loads(text)["error"]["errors"][1]["reason"] == "unavailable"


def test_recorder_keeps_what_the_fallback_log_says() -> None:
    notices = FallbackNotices()
    with FallbackRecorder() as recorder:
        notices.fell_back([("openrouter", "timeout")], "local")
    notices.fell_back([("openrouter", "timeout")], "ollama")  # after: not recorded
    assert recorder.fallbacks == [
        {
            "failed": [{"provider": "openrouter", "reason": "timeout"}],
            "served_by": "local",
            "suppressed": 0,
            "message": "fell back: openrouter failed (timeout); local answered",
        }
    ]


@pytest.fixture
def cli_loggers() -> Iterator[None]:
    """The ``pygent_lc`` loggers, restored after ``cli`` configured them in this process."""
    loggers = [logging.getLogger(name) for name in ("pygent_lc", "pygent_lc.fallbacks")]
    saved: list[Any] = [(list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers, logger.level, logger.propagate = handlers, level, propagate


@pytest.mark.parametrize("verbose", [False, True])
def test_fallback_warnings_show_without_verbose_and_debug_with_it(
    cli_loggers: None, capsys: pytest.CaptureFixture[str], verbose: bool
) -> None:
    cli._configure_logging(ExitStack(), verbose=verbose)
    logging.getLogger("pygent_lc.fallbacks").warning("fell back: a failed (timeout); b answered")
    logging.getLogger("pygent_lc.fallbacks").debug("a failed (timeout): ...")
    logging.getLogger("pygent_lc.limits.breaker").warning("circuit of a open")
    lines = capsys.readouterr().err.splitlines()
    shown = ["WARNING pygent_lc.fallbacks: fell back: a failed (timeout); b answered"]
    if verbose:
        shown += [
            "DEBUG pygent_lc.fallbacks: a failed (timeout): ...",
            "WARNING pygent_lc.limits.breaker: circuit of a open",
        ]
    assert lines == shown
