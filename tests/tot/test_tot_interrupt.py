"""Ctrl-C during ``solve_sync`` cancels the calls in flight and returns within a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, threading, time, warnings
    from pygent_lc.tot import Game24Task, ToTConfig, ToTEngine
    from benchmarks.game24_model import ScriptedGame24Backend

    warnings.simplefilter("ignore")
    backend = ScriptedGame24Backend(latency_s=0.05)
    # max_concurrency 1: the whole search would take many seconds
    engine = ToTEngine(ToTConfig(max_concurrency=1), backend, task=Game24Task())
    sent = {}

    def interrupt():
        time.sleep(0.4)
        sent["at"] = time.perf_counter()
        os.kill(os.getpid(), signal.SIGINT)

    def solve():
        return engine.solve_sync("4 9 10 13")

    async def under_a_loop():
        return solve()

    threading.Thread(target=interrupt, daemon=True).start()
    outcome = "returned"
    try:
        if sys.argv[1] == "loop":
            asyncio.run(under_a_loop())
        else:
            solve()
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        outcome = type(exc).__name__
    took = time.perf_counter() - sent["at"]
    calls = backend.calls
    time.sleep(0.3)  # nothing may go on in the background
    print(json.dumps({"outcome": outcome, "took": took, "in_flight": backend.in_flight,
                      "calls": calls, "calls_later": backend.calls}))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT via os.kill is POSIX")
@pytest.mark.parametrize("where", ["plain", "loop"])
def test_ctrl_c_cancels_in_flight_calls_and_returns_within_a_second(where: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, where],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "KeyboardInterrupt"
    assert report["took"] < 1.0
    assert report["in_flight"] == 0
    assert report["calls_later"] == report["calls"]
    assert report["calls"] < 40  # stopped early: the search makes ~90 calls
