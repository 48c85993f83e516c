"""The README's first command on a busy machine: how often it answers, and how fast.

    python -m benchmarks.first_run_under_load --runs 10

Runs ``pygent-lc solve "Name three primary colours."`` (the README's first
command, on the embedded model: no key, no Ollama) ``--runs`` times while the
machine is kept busy the way a developer's laptop is:

- ``--busy-per-core`` busy loops per CPU (a build, a test run);
- unless ``--no-neighbour``: a second application decoding on its own embedded
  model all the while (``pygent-lc chat`` asked for a long story, in a loop).

Each run's exit code, wall time and first line of output are printed, then a
summary: answered N of M, median and worst time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

PROMPT = "Name three primary colours."
NEIGHBOUR_PROMPT = "Tell me a long story about a lighthouse keeper."


def _environment() -> dict[str, str]:
    """No key and no Ollama: the embedded default answers, as on a fresh machine."""
    prefixes = ("OPENROUTER_", "OLLAMA_", "PYGENT_")
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


def _cli() -> list[str]:
    found = shutil.which("pygent-lc")
    return [found] if found else [sys.executable, "-m", "pygent_lc.cli"]


@contextmanager
def busy_machine(per_core: int, neighbour: bool) -> Iterator[None]:
    """Busy loops on every CPU, and a neighbour decoding on its own model."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(per_core * (cpus or 1))
    ]
    neighbour_loop = None
    if neighbour:
        script = (
            "import subprocess, sys\n"
            "while True:\n"
            f"    subprocess.run({[*_cli(), 'chat', NEIGHBOUR_PROMPT]!r},\n"
            "                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        )
        neighbour_loop = subprocess.Popen(
            [sys.executable, "-c", script], env=_environment(), start_new_session=True
        )
        time.sleep(5)  # its model is loaded and decoding
    try:
        yield
    finally:
        for process in loops:
            process.kill()
        if neighbour_loop is not None:
            os.killpg(neighbour_loop.pid, 9)
        for process in [*loops, *([neighbour_loop] if neighbour_loop else [])]:
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--busy-per-core", type=int, default=1)
    parser.add_argument("--no-neighbour", action="store_true")
    parser.add_argument("--limit-s", type=float, default=600.0, help="give up on one run")
    args = parser.parse_args()
    # Killed, it still stops its busy loops and its neighbour (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    times: list[float] = []
    answered = 0
    with busy_machine(args.busy_per_core, not args.no_neighbour):
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            try:
                done = subprocess.run(
                    [*_cli(), "solve", PROMPT],
                    capture_output=True,
                    text=True,
                    env=_environment(),
                    timeout=args.limit_s,
                )
                code, output = done.returncode, (done.stdout or done.stderr).strip()
            except subprocess.TimeoutExpired:
                code, output = -1, f"no answer within {args.limit_s:g}s"
            took = time.monotonic() - started
            times.append(took)
            answered += code == 0
            first = output.splitlines()[0][:70] if output else ""
            print(f"run {run:2d}: exit {code:3d} {took:6.1f}s  {first}", flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nanswered {answered} of {args.runs}; median {statistics.median(times):.1f}s, "
        f"worst {max(times):.1f}s; busy loops {args.busy_per_core}/core, "
        f"neighbour {'off' if args.no_neighbour else 'on'}; load average at the end {load}"
    )


if __name__ == "__main__":
    main()
