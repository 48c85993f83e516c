"""Start-up time of the command line: ``pygent-lc --help``, ``import pygent_lc``, ``doctor``.

Each command runs as a fresh process, as hyperfine would run it: one warm-up
run each, then ``--runs`` rounds in which every command runs once, in turn
(interleaved, so a burst of load elsewhere hits all of them alike); the table
gives the median, the fastest and the slowest wall time. ``--checkout`` times
another copy of the repository (its ``pygent_lc`` first on ``PYTHONPATH``), to
compare a change with the code before it.

``doctor`` runs without any configuration (no key, no ``.env``, Ollama not
configured), so it contacts no server: what it costs is the imports and the
checks themselves.

    python -m benchmarks.cli_start                        # --runs 10
    python -m benchmarks.cli_start --checkout . --checkout /tmp/before
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._bench import ROOT, machine, median, table

PYGENT_LC = str(Path(sys.executable).with_name("pygent-lc"))

COMMANDS: dict[str, list[str]] = {
    "pygent-lc --help": [PYGENT_LC, "--help"],
    'python -c "import pygent_lc"': [sys.executable, "-c", "import pygent_lc"],
    "pygent-lc doctor": [PYGENT_LC, "doctor"],
}


def clean_env(checkout: Path) -> dict[str, str]:
    """The environment without any provider's configuration, ``checkout`` on the path."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENROUTER_", "OLLAMA_", "PYGENT_"))
    }
    env["PYTHONPATH"] = str(checkout)
    return env


def run_once(argv: list[str], env: dict[str, str], cwd: str) -> float:
    """Wall seconds of one run; a failed run (other than ``doctor``'s exit 1) stops the bench."""
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def measure(checkouts: list[Path], runs: int) -> dict[tuple[Path, str], list[float]]:
    """Wall times of each command of each checkout, ``runs`` interleaved rounds."""
    times: dict[tuple[Path, str], list[float]] = {
        (checkout, name): [] for checkout in checkouts for name in COMMANDS
    }
    envs = {checkout: clean_env(checkout) for checkout in checkouts}
    with tempfile.TemporaryDirectory() as empty:  # no ./.env to read
        for checkout, name in times:  # warm-up: the file cache, .pyc files
            run_once(COMMANDS[name], envs[checkout], empty)
        for _ in range(runs):
            for (checkout, name), values in times.items():
                values.append(run_once(COMMANDS[name], envs[checkout], empty))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--checkout",
        type=Path,
        action="append",
        help="a copy of the repository to time (repeatable; default: this one)",
    )
    args = parser.parse_args()
    checkouts = [path.resolve() for path in args.checkout or [ROOT]]
    times = measure(checkouts, args.runs)
    print(f"    {args.runs} runs of each, interleaved; machine: {machine()}\n")
    rows = [
        (str(checkout), f"`{name}`", median(values), min(values), max(values))
        for (checkout, name), values in times.items()
    ]
    print(table(["checkout", "command", "median s", "min s", "max s"], rows))


if __name__ == "__main__":
    main()
