"""The ``pygent-lc`` entry point, run in a subprocess as a user would run it.

"OpenRouter" and "Ollama" are the loopback server (in this process, on
127.0.0.1); its responder plays the Game of 24, so ``solve`` really solves.
The key is a canary that must never appear in any output.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import os
import pty
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis

from benchmarks.game24_model import scripted_game24_reply
from pygent_lc import ProviderSkippedWarning, cli
from pygent_lc.cli.commands import NO_SHARED_STORE
from pygent_lc.cli.parser import build_parser
from pygent_lc.limits import open_store
from pygent_lc.tot import check_24
from tests.helpers import CANARY_KEY, ROOT, cli_env, closed_port
from tests.limits.steps import record_usage
from tests.loopback_server import LoopbackServer
from tests.loopback_server.answers import last_user_text
from tests.redis_server import RedisServer

EXE = Path(sys.executable).with_name("pygent-lc")
#: Tests of the local provider's own checks need the ``local`` extra (xllamacpp), which
#: the README's test command installs and the lowest-versions step does not.
NEEDS_LOCAL_EXTRA = pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None, reason='needs pip install ".[local]"'
)
REDIS_PASSWORD = "redis-pw-canary"
JSON_KEYS = {
    "problem",
    "task",
    "solved",
    "answer",
    "best",
    "solutions",
    "tree",
    "stats",
    "config",
    "providers",
    "served_by",
    "usage",
}


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), *args],
        capture_output=True,
        text=True,
        # This checkout's pygent_lc, whatever the venv has installed.
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        timeout=180,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int, kind: str) -> str:
    """One ``error:`` line and one ``hint:`` line, no traceback, no key; returns the error."""
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith(f"error: {kind}: ")
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in proc.stderr
    assert CANARY_KEY not in proc.stdout + proc.stderr
    return lines[0]


def test_missing_key_and_bad_options_exit_2_with_a_hint() -> None:
    proc = run_cli("solve", "What is 2 + 2?", "--provider", "openrouter")
    error = assert_clean_failure(proc, 2, "AgentError")
    assert "OPENROUTER_API_KEY" in error
    assert proc.stdout == ""
    proc = run_cli(
        "solve", "x", "--provider", "openrouter", "--depth", "0",
        env={"OPENROUTER_API_KEY": CANARY_KEY},
    )  # fmt: skip
    assert "--depth" in assert_clean_failure(proc, 2, "AgentError")


def test_reads_dotenv_in_the_working_directory() -> None:
    Path(".env").write_text("DEBUG=1\nPYGENT_PROVIDERS=ollama,bogus\n")
    proc = run_cli("doctor")
    error = assert_clean_failure(proc, 2, "ConfigurationError")
    assert "providers (PYGENT_PROVIDERS).1 from .env line 2: " in error


def test_malformed_dotenv_is_one_error_naming_the_file_and_line() -> None:
    Path(".env").write_text(f"OPENROUTER_API_KEY={CANARY_KEY}\nOLLAMA_MODEL='llama3.2\n")
    proc = run_cli("doctor")
    error = assert_clean_failure(proc, 2, "ConfigurationError")
    assert error == "error: ConfigurationError: .env line 2: cannot parse this line " + (
        "(an unterminated quote? expected NAME=value)"
    )
    Path(".env").write_bytes(b"OLLAMA_MODEL=caf\xe9\n")
    error = assert_clean_failure(run_cli("doctor"), 2, "ConfigurationError")
    assert error.startswith("error: ConfigurationError: .env line 1: not valid utf-8 text")


def test_key_over_plain_http_is_a_configuration_error() -> None:
    proc = run_cli(
        "chat", "hi", "--provider", "openrouter",
        env={"OPENROUTER_API_KEY": CANARY_KEY, "OPENROUTER_BASE_URL": "http://example.com/v1"},
    )  # fmt: skip
    error = assert_clean_failure(proc, 2, "ConfigurationError")
    assert "plain http to example.com" in error


def test_a_dotenv_that_allows_plain_http_is_refused() -> None:
    """Before anything is sent: `doctor --provider local` would contact nobody else."""
    Path(".env").write_text(
        "OPENROUTER_BASE_URL=http://example.com/v1\nPYGENT_ALLOW_INSECURE_HTTP=1\n"
    )
    proc = run_cli("doctor", "--provider", "local", env={"OPENROUTER_API_KEY": CANARY_KEY})
    error = assert_clean_failure(proc, 2, "ConfigurationError")
    assert ".env line 2: PYGENT_ALLOW_INSECURE_HTTP may not be set in a .env file" in error


@pytest.fixture
def pygent_logger() -> Iterator[logging.Logger]:
    """The ``pygent_lc`` logger, restored after ``cli`` configured it in this process."""
    logger = logging.getLogger("pygent_lc")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.mark.parametrize("verbose", [False, True])
def test_library_log_shows_only_with_verbose(
    pygent_logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    verbose: bool,
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", CANARY_KEY)
    before = (list(pygent_logger.handlers), pygent_logger.level, pygent_logger.propagate)
    with ExitStack() as cleanup:
        cli._configure_logging(cleanup, verbose=verbose)
        breaker = logging.getLogger("pygent_lc.limits.breaker")
        breaker.warning("circuit of %s open: %r", "x", CANARY_KEY)
        logging.getLogger("pygent_lc.retry").info("attempt 1 failed")
    # put back as it was: `main` may be called inside a program
    assert (pygent_logger.handlers, pygent_logger.level, pygent_logger.propagate) == before
    err = capsys.readouterr().err
    if verbose:
        assert err.splitlines() == [
            "WARNING pygent_lc.limits.breaker: circuit of x open: '***'",
            "INFO pygent_lc.retry: attempt 1 failed",
        ]
    else:
        assert err == ""


@pytest.mark.parametrize("argv", [["-v", "doctor"], ["doctor", "-v"], ["doctor", "--verbose"]])
def test_verbose_before_or_after_the_command(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).verbose is True
    assert build_parser().parse_args(["doctor"]).verbose is False


def test_python_dash_m_runs_the_same_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pygent_lc.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: pygent-lc ")


#: What ``--help`` must not import: LangChain, pydantic, the provider SDKs, HTTP clients.
HEAVY_MODULES = ("langchain_core", "langchain_openai", "langchain_ollama", "openai", "pydantic")


@pytest.mark.parametrize("argv", [["--help"], ["chat", "--help"], ["solve", "--bogus"]])
def test_help_and_usage_errors_import_no_langchain(argv: list[str]) -> None:
    """Start-up time: the parser is built from light modules (not a timing test)."""
    script = (
        "import sys\n"
        "from pygent_lc.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, file=sys.stderr)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY_MODULES!r})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert "exit 0" in proc.stderr if argv[-1] == "--help" else "exit 2" in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_main_hides_only_skipped_provider_warnings(pygent_logger: logging.Logger) -> None:
    gc.collect()  # what earlier tests left behind warns now, not inside the block
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert cli.main(["models", "--provider", "local", "--json"]) == 0
        warnings.warn("skipped", ProviderSkippedWarning, stacklevel=1)
        warnings.warn("still shown", UserWarning, stacklevel=1)
    assert [str(w.message) for w in shown] == ["still shown"]


# --- against the loopback "OpenRouter" and "Ollama" ----------------------------


def game24_responder(protocol: str, body: Mapping[str, Any]) -> str:
    return scripted_game24_reply(last_user_text(body))


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(
        ollama_models=["llama3.2:latest"], responder=game24_responder, api_key=CANARY_KEY
    ) as live:
        yield live


@pytest.mark.live_local
def test_solve_json_is_the_full_result(server: LoopbackServer, tmp_path: Path) -> None:
    proc = run_cli(
        "solve", "4 9 10 13", "--task", "game24", "--breadth", "2", "--json",
        "--mermaid", str(tmp_path / "tree.mmd"),
        env=cli_env(server),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert CANARY_KEY not in proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= JSON_KEYS
    assert data["solved"] is True
    assert check_24(data["answer"], "4 9 10 13")
    assert data["served_by"] == ["openrouter/openai/gpt-4o-mini"]
    [usage] = data["usage"]
    assert usage["calls"] == data["stats"]["llm_calls"] == server.request_count("openrouter")
    assert usage["cost_usd"] > 0
    assert data["config"]["n_select_sample"] == 2
    assert len(data["tree"]["nodes"]) == data["stats"]["nodes"]
    assert (tmp_path / "tree.mmd").read_text().startswith("flowchart TD")
    assert "served by openrouter/openai/gpt-4o-mini" in proc.stderr


def run_on_a_terminal(*args: str, env: Mapping[str, str]) -> tuple[int, str, str]:
    """The command with stderr on a pseudo-terminal: its exit code, stdout and the screen."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(EXE), *args],
        stdout=subprocess.PIPE,
        stderr=terminal,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        text=True,
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    stdout, _ = proc.communicate(timeout=60)
    return proc.returncode, stdout, screen.decode()


@pytest.mark.live_local
def test_solve_shows_live_progress_on_a_terminal(server: LoopbackServer) -> None:
    code, stdout, shown = run_on_a_terminal(
        "solve", "4 9 10 13", "--task", "game24", "--provider", "ollama", env=cli_env(server)
    )
    assert code == 0
    assert "\r\x1b[2Klevel 1/4 · " in shown  # the status line, rewritten in place
    assert "served by ollama/llama3.2" in shown
    assert stdout.startswith("Answer: ")
    assert check_24(stdout.removeprefix("Answer: "), "4 9 10 13")


@pytest.mark.live_local
def test_the_progress_line_ticks_while_a_slow_call_runs(server: LoopbackServer) -> None:
    """Not only when a call starts or ends: its time goes on while the model works."""
    server.latency = 1.6
    code, _, shown = run_on_a_terminal(
        "solve", "Name a colour.", "--provider", "ollama", "--depth", "1", "--breadth", "1",
        env=cli_env(server),
    )  # fmt: skip
    assert code == 0, shown
    times_by_state: dict[str, set[str]] = {}
    for frame in shown.split("\r\x1b[2K"):
        state, _, seconds = frame.strip().rpartition(" · ")
        if state.startswith("level ") and "running" in state:
            times_by_state.setdefault(state, set()).add(seconds)
    assert times_by_state, shown
    assert max(len(times) for times in times_by_state.values()) >= 3, times_by_state


@pytest.mark.live_local
def test_chat_says_it_waits_for_the_model_until_the_first_token(server: LoopbackServer) -> None:
    server.latency = 1.6
    server.responder = lambda protocol, body: "hello"
    code, stdout, shown = run_on_a_terminal(
        "chat", "hi", "--provider", "ollama", env=cli_env(server)
    )
    assert code == 0, shown
    assert stdout == "hello\n"
    waiting = [f for f in shown.split("\r\x1b[2K") if "loading the model or thinking" in f]
    assert len(waiting) >= 2  # it ticks
    assert waiting[0].startswith("ollama: ")
    # erased before the answer's summary: the summary starts on a clean line
    summary = shown.index("ollama/llama3.2: 1 call(s)")
    assert shown.rindex("\r\x1b[2K", 0, summary) > shown.rindex("thinking", 0, summary)


@pytest.mark.live_local
@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["chat", "hi"], 0),
        (["chat", "hi", "--provider", "ollama", "--json"], 0),
        (["chat", "hi", "--provider", "openrouter", "--fallback", "ollama"], 0),
        (["solve", "4 9 10 13", "--task", "game24", "--depth", "1", "--breadth", "1"], 0),
        (["solve", "4 9 10 13", "--task", "game24", "--provider", "ollama", "--json"], 0),
        (["models"], 0),
        (["models", "--provider", "ollama"], 0),
        (["doctor"], 0),
        (["doctor", "--probe"], 0),
    ],
)
def test_no_resource_warning_at_exit(server: LoopbackServer, argv: list[str], code: int) -> None:
    """Every socket and transport a command opened is closed before the interpreter ends."""
    env = cli_env(server)
    if "--fallback" in argv:  # a failed provider's connection is closed too
        env["OPENROUTER_API_KEY"] = CANARY_KEY[:-4] + "beef"
    proc = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-X", "tracemalloc", "-m",
         "pygent_lc.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    assert "ResourceWarning" not in proc.stderr, proc.stderr
    assert "unclosed" not in proc.stderr, proc.stderr


@pytest.mark.live_local
def test_provider_failures_exit_1_with_one_line(server: LoopbackServer) -> None:
    wrong_key = run_cli(
        "chat", "hi", "--provider", "openrouter",
        env=cli_env(server, OPENROUTER_API_KEY=CANARY_KEY[:-4] + "beef"),
    )  # fmt: skip
    error = assert_clean_failure(wrong_key, 1, "AuthenticationError")
    assert CANARY_KEY[:-4] + "beef" not in wrong_key.stderr
    assert "[401]" in error
    missing = run_cli(
        "chat", "hi", "--provider", "ollama", "--model", "mistral", env=cli_env(server)
    )
    error = assert_clean_failure(missing, 1, "ModelNotFoundError")
    assert "installed: llama3.2:latest" in error
    assert "pygent-lc models --provider ollama" in missing.stderr


@pytest.mark.live_local
def test_chat_streams_the_reply(server: LoopbackServer) -> None:
    server.responder = lambda protocol, body: f"{protocol} says hello"
    proc = run_cli("chat", "hi", "--provider", "ollama", env=cli_env(server))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ollama says hello\n"
    assert "thinking" not in proc.stderr  # no status line when stderr is not a terminal
    assert "ollama/llama3.2: 1 call(s)" in proc.stderr


@pytest.mark.live_local
def test_chat_reads_a_long_prompt_from_stdin_or_a_file(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """Past the 128 KiB a single command-line argument may hold."""
    long_prompt = "word " * 60_000 + "end"
    seen: list[str] = []

    def remember(protocol: str, body: Mapping[str, Any]) -> str:
        seen.append(last_user_text(body))
        return "read it"

    server.responder = remember
    from_stdin = run_cli(
        "chat", "-", "--provider", "ollama", env=cli_env(server), stdin=long_prompt
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text(long_prompt, encoding="utf-8")
    from_file = run_cli(
        "chat", "--file", str(prompt_file), "--provider", "ollama", env=cli_env(server)
    )
    assert from_file.returncode == 0, from_file.stderr
    assert seen == [long_prompt, long_prompt]


def test_prompt_sources_are_checked_before_any_request(tmp_path: Path) -> None:
    neither = run_cli("chat")
    assert_clean_failure(neither, 2, "InvalidInputError")
    both = run_cli("solve", "2+2", "--file", str(tmp_path / "p.txt"))
    assert_clean_failure(both, 2, "InvalidInputError")
    missing = run_cli("chat", "--file", str(tmp_path / "nowhere.txt"))
    assert "cannot read" in assert_clean_failure(missing, 2, "InvalidInputError")
    empty = run_cli("chat", "-", stdin="   ")
    assert "prompt is empty" in assert_clean_failure(empty, 2, "InvalidInputError")


def _limit_memory() -> None:
    """The child may map at most 1.5 GB: an unbounded read fails instead of filling RAM."""
    limit = 1536 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize(
    ("args", "source"),
    [
        (["chat", "-"], "/dev/zero"),
        (["chat", "--file", "/dev/zero"], None),
        (["solve", "-"], "yes"),
    ],
    ids=["stdin-zero", "file-zero", "stdin-yes"],
)
def test_an_endless_prompt_is_refused_with_bounded_memory(
    args: list[str], source: str | None
) -> None:
    """The limit is enforced while reading: exit 2 naming it, in bounded memory."""
    feeder = None
    if source == "yes":
        feeder = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
        stdin: Any = feeder.stdout
    else:
        stdin = open(source or os.devnull, "rb")  # noqa: SIM115
    try:
        proc = subprocess.run(
            [str(EXE), *args],
            stdin=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            preexec_fn=_limit_memory,
            timeout=120,
        )
    finally:
        stdin.close()
        if feeder is not None:
            feeder.kill()
            feeder.wait()
    error = assert_clean_failure(proc, 2, "InvalidInputError")
    assert "more than 2000000 characters" in error


@pytest.mark.parametrize("moment", [0.1, 0.3, 0.6, 1.0, 1.5, 2.5, 6.0])
def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(moment: float) -> None:
    """Start-up included (its imports take seconds): `chat -` then waits on stdin. The
    moment counts from when Python reaches the command's code (measured now: on a busy
    machine the interpreter alone can take longer than the first moment)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys"], check=True)
    interpreter_s = time.perf_counter() - started
    proc = subprocess.Popen(
        [str(EXE), "chat", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    time.sleep(interpreter_s + moment)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted"


@NEEDS_LOCAL_EXTRA
def test_a_zero_budget_is_explained_not_called_a_bug() -> None:
    proc = run_cli("chat", "hi", "--provider", "local", env={"PYGENT_MAX_COST_USD": "0"})
    assert_clean_failure(proc, 1, "BudgetExceededError")
    assert "PYGENT_MAX_COST_USD" in proc.stderr
    assert "bug" not in proc.stderr


def test_a_misspelt_variable_is_a_warning_on_stderr() -> None:
    proc = run_cli(
        "doctor", "--provider", "local",
        env={"PYGENT_MAX_COST": "0.0001", "OLLAMA_HOST": "127.0.0.1:1"},
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert lines == [
        "warning: PYGENT_MAX_COST (in the environment) is not a pygent_lc setting and is "
        "ignored; did you mean PYGENT_MAX_COST_USD?"
    ]


@pytest.mark.live_local
def test_models_lists_prices_and_installed_models(server: LoopbackServer) -> None:
    table = run_cli("models", "--search", "gpt", env=cli_env(server))
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.strip().splitlines()
    assert header.split() == ["model", "context", "$/M", "in", "$/M", "out"]
    assert row.split() == ["openai/gpt-4o-mini", "128000", "0.150", "0.600"]
    ollama = run_cli("models", "--provider", "ollama", "--json", env=cli_env(server))
    assert json.loads(ollama.stdout) == [{"id": "llama3.2:latest"}]


@pytest.mark.live_local
def test_models_defaults_to_the_first_configured_provider(server: LoopbackServer) -> None:
    """Not OpenRouter without a key ("connection refused"): Ollama that answers, else local."""
    no_key = {k: v for k, v in cli_env(server).items() if k != "OPENROUTER_API_KEY"}
    for env in (no_key, {**no_key, "OPENROUTER_API_KEY": " "}):  # a blank key is no key
        ollama = run_cli("models", "--json", env=env)
        assert ollama.returncode == 0, ollama.stderr
        assert json.loads(ollama.stdout) == [{"id": "llama3.2:latest"}]
    down = f"http://127.0.0.1:{closed_port()}"
    local = run_cli("models", "--json", env={**no_key, "OLLAMA_BASE_URL": down})
    assert local.returncode == 0, local.stderr
    [row] = json.loads(local.stdout)
    assert set(row) == {"id"}
    keyed = run_cli("models", "--search", "gpt", "--json", env=cli_env(server))
    assert [row["id"] for row in json.loads(keyed.stdout)] == ["openai/gpt-4o-mini"]


@pytest.mark.live_local
def test_doctor_exit_code_follows_the_providers(server: LoopbackServer) -> None:
    healthy = run_cli("doctor", "--json", env=cli_env(server))
    assert healthy.returncode == 0, healthy.stderr
    status = {entry["provider"]: entry["status"] for entry in json.loads(healthy.stdout)}
    assert status["openrouter"] == status["ollama"] == "ok"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    sick = run_cli("doctor", "--provider", "ollama", env=cli_env(server, OLLAMA_BASE_URL=down))
    assert sick.returncode == 1
    assert sick.stdout.startswith("ollama      problem")
    assert "did not answer" in sick.stdout
    assert CANARY_KEY not in healthy.stdout + sick.stdout


@pytest.mark.live_local
def test_circuit_breaker_log_only_with_verbose(server: LoopbackServer) -> None:
    env = cli_env(server, OPENROUTER_API_KEY=CANARY_KEY[:-4] + "beef", PYGENT_BREAKER_FAILURES="1")
    quiet = run_cli("chat", "hi", "--provider", "openrouter", env=env)
    assert_clean_failure(quiet, 1, "AuthenticationError")  # exactly error: and hint:
    verbose = run_cli("chat", "hi", "--provider", "openrouter", "-v", env=env)
    assert verbose.returncode == 1
    assert "WARNING pygent_lc.limits.breaker: circuit of openrouter open" in verbose.stderr
    assert CANARY_KEY[:-4] not in verbose.stderr


# --- on the embedded model ----------------------------------------------------


@pytest.mark.live_local
def test_cli_solve_on_a_fresh_machine_answers_from_the_local_model() -> None:
    """The README's first command, with a smaller search: no key, no Ollama."""
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("pygent-lc")),
            "solve",
            "Name three primary colours.",
            "--depth",
            "1",
            "--breadth",
            "1",
            "--max-tokens",
            "16",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),  # conftest removed every OPENROUTER_/OLLAMA_/PYGENT_ variable
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["providers"] == ["local"]  # openrouter and ollama skipped: not configured
    assert data["served_by"] == [f"local/{data['usage'][0]['model']}"]
    assert data["answer"].strip()
    assert data["stats"]["llm_calls"] == 1 + data["stats"]["evaluation_calls"]
    assert "served by local/" in proc.stderr


# --- Ollama host pools and fleet-wide usage ------------------------------------


@pytest.mark.live_local
def test_doctor_lists_each_host_of_a_pool(server: LoopbackServer) -> None:
    live = server.ollama_base_url
    alias = live.replace("127.0.0.1", "localhost")  # the same server under another name
    down = f"http://127.0.0.1:{closed_port()}"
    healthy = run_cli(
        "doctor", "--provider", "ollama", env=cli_env(server, OLLAMA_BASE_URL=f"{live},{alias}")
    )
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    lines = healthy.stdout.splitlines()
    assert lines[0].split()[:2] == ["ollama", "ok"]
    assert "2 of 2 hosts answer with llama3.2" in lines[0]
    assert [line.split()[:2] for line in lines[1:]] == [[live, "ok"], [alias, "ok"]]

    pool = f"{live},{down}"
    sick = run_cli("doctor", "--provider", "ollama", env=cli_env(server, OLLAMA_BASE_URL=pool))
    assert sick.returncode == 1
    lines = sick.stdout.splitlines()
    assert lines[0].split()[:2] == ["ollama", "problem"]
    assert "1 of 2 hosts answer with llama3.2" in lines[0]
    assert lines[1].split()[:2] == [live, "ok"]
    assert lines[2].split()[:2] == [down, "problem"]
    assert f"Ollama at {down} did not answer" in lines[2]
    report = run_cli(
        "doctor", "--provider", "ollama", "--json", env=cli_env(server, OLLAMA_BASE_URL=pool)
    )
    [ollama] = json.loads(report.stdout)
    assert ollama["status"] == "problem"
    assert [(h["host"], h["status"]) for h in ollama["hosts"]] == [(live, "ok"), (down, "problem")]


def test_usage_without_a_state_store_says_so_and_exits_2() -> None:
    for argv in (["usage"], ["usage", "--json"]):
        proc = run_cli(*argv)
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert proc.stderr == f"{NO_SHARED_STORE}\n"
        assert "PYGENT_STATE_URL" in proc.stderr


@pytest.mark.live_local
def test_usage_shows_what_every_process_recorded_in_redis(redis_url: str) -> None:
    provider = f"pool-{uuid.uuid4().hex[:8]}"  # this test's rows, whatever else the Redis holds
    for process in range(2):  # two processes' clients of the same store
        store = open_store(redis_url)
        try:
            record_usage(store, provider, "llama3.2", 3, process, 100, 40, 0.5, 0.2 * (process + 1))
        finally:
            store.close()
    proc = run_cli("usage", "--json", env={"PYGENT_STATE_URL": redis_url})
    assert proc.returncode == 0, proc.stderr
    [row] = [row for row in json.loads(proc.stdout) if row["provider"] == provider]
    assert row["model"] == "llama3.2"
    assert (row["calls"], row["failures"]) == (6, 1)
    assert (row["input_tokens"], row["output_tokens"]) == (200, 80)
    assert row["cost_usd"] == pytest.approx(1.0)
    assert row["p95_latency_s"] == pytest.approx(0.4)

    Path(".env").write_text(f"PYGENT_STATE_URL={redis_url}\n")  # read from ./.env too
    table = run_cli("usage")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["provider", "model", "calls", "failed"]
    assert header.split()[4:] == ["tokens", "in", "tokens", "out", "cost", "$", "p95", "s"]
    [mine] = [line.split() for line in rows if line.startswith(provider)]
    assert mine == [provider, "llama3.2", "6", "1", "200", "80", "1.000000", "0.40"]


@pytest.mark.live_local
def test_usage_from_a_redis_that_does_not_answer_exits_1() -> None:
    proc = run_cli("usage", env={"PYGENT_STATE_URL": f"redis://127.0.0.1:{closed_port()}/0"})
    assert proc.returncode == 1
    error, hint = proc.stderr.splitlines()
    assert error.startswith("error: state store redis://127.0.0.1:")
    assert error.endswith("did not answer")
    assert hint.startswith("hint: ")


@pytest.fixture
def redis_with_password() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        client = redis.Redis(host="127.0.0.1", port=redis_server.port)
        client.config_set("requirepass", REDIS_PASSWORD)
        client.close()
        yield redis_server


@pytest.mark.live_local
@pytest.mark.parametrize("userinfo", [":wrong-redis-pw@", ""], ids=["wrong", "missing"])
def test_a_redis_password_it_rejects_is_named_by_chat_usage_and_doctor(
    server: LoopbackServer, redis_with_password: RedisServer, userinfo: str
) -> None:
    server.responder = lambda protocol, body: f"{protocol} says hello"
    url = f"redis://{userinfo}127.0.0.1:{redis_with_password.port}/0"
    env = cli_env(server, PYGENT_STATE_URL=url)

    chat = run_cli("chat", "hi", "--provider", "ollama", env=env)
    assert chat.returncode == 0, chat.stderr  # answered, under per-process limits
    assert chat.stdout == "ollama says hello\n"
    (named,) = [line for line in chat.stderr.splitlines() if "password" in line]
    assert f"127.0.0.1:{redis_with_password.port}" in named

    usage = run_cli("usage", env=env)
    assert usage.returncode == 1
    error, hint = usage.stderr.splitlines()
    assert error.startswith("error: state store redis://")
    assert "password" in error
    assert hint.startswith("hint: ")

    doctor = run_cli("doctor", "--provider", "ollama", env=env)
    assert doctor.returncode == 1
    (line,) = [line for line in doctor.stdout.splitlines() if line.startswith("state store")]
    assert line.split()[2] == "problem" and "password" in line
    right = cli_env(
        server, PYGENT_STATE_URL=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_with_password.port}/0"
    )
    fine = run_cli("doctor", "--provider", "ollama", env=right)
    assert fine.returncode == 0, fine.stdout
    assert "state store" not in fine.stdout
    for proc in (chat, usage, doctor, fine, run_cli("usage", env=right)):
        assert proc.returncode in (0, 1)
        assert "wrong-redis-pw" not in proc.stdout + proc.stderr
        assert REDIS_PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "variable",
    ["OPENROUTER_BASE_URL", "OLLAMA_BASE_URL", "PYGENT_PROVIDERS", "PYGENT_RATE_LIMITS"],
)
def test_a_key_pasted_into_another_variable_is_not_printed(variable: str) -> None:
    proc = run_cli("chat", "hi", env={variable: CANARY_KEY})
    error = assert_clean_failure(proc, 2, "ConfigurationError")
    assert variable in error
    assert CANARY_KEY[:20] not in proc.stderr


@NEEDS_LOCAL_EXTRA
def test_doctor_does_not_print_a_key_pasted_into_the_model_path() -> None:
    proc = run_cli("doctor", "--provider", "local", env={"PYGENT_LOCAL_MODEL": CANARY_KEY})
    assert proc.returncode == 1
    assert "local model file not found" in proc.stdout
    assert CANARY_KEY[:20] not in proc.stdout + proc.stderr
