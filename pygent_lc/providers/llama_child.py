"""The child process that hosts llama.cpp's server (xllamacpp) for ``local.LlamaServer``,
run as ``python -P <this file>`` (no ``pygent_lc`` import; this folder, whose ``http.py``
would shadow the stdlib's, off ``sys.path``). Its protocol: ARCHITECTURE.md."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import sys
import urllib.request
from typing import Any


def _serve(config: dict[str, Any]) -> Any:
    # Imported here, so that an ImportError is reported to the parent too.
    xllamacpp = importlib.import_module("xllamacpp")

    params = xllamacpp.CommonParams()
    params.model.path = config["model_path"]
    params.model_alias = {config["alias"]}
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the OS picks a free port; listening_address reports it
    params.n_ctx = config["n_ctx"]
    params.n_parallel = config["n_parallel"]
    params.kv_unified = True
    params.cpuparams.n_threads = config["n_threads"]
    params.cpuparams_batch.n_threads = config["n_threads"]
    # No busy-waiting between steps: spinning threads starve everything else on
    # a small machine (the caller, other servers) and then themselves.
    params.cpuparams.poll = 0
    params.cpuparams_batch.poll = 0
    params.api_keys = [config["api_key"]]
    params.ui = False
    params.verbosity = 1  # errors only (3, its default, logs every request)
    server = xllamacpp.Server(params)
    # Ready once /slots answers: it goes through the server's main loop.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    auth = {"Authorization": f"Bearer {config['api_key']}"}
    slots = urllib.request.Request(f"{server.listening_address}/slots", headers=auth)
    while True:
        with contextlib.suppress(OSError):
            opener.open(slots, timeout=5).close()  # raises unless the answer is 2xx
            return server
        if select.select([sys.stdin], [], [], 0.05)[0]:  # stdin closed: the parent gave up
            os._exit(0)


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent decides
    # what an interrupt means (a notebook keeps running), so the child ignores it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    line = sys.stdin.readline()
    if not line:
        os._exit(0)
    try:
        server = _serve(json.loads(line))
    except Exception as exc:  # reported to the parent, which raises a typed error
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        os._exit(1)
    print(json.dumps({"address": str(server.listening_address)}), flush=True)
    sys.stdin.buffer.read()  # returns when the parent closes stdin or dies
    os._exit(0)


if __name__ == "__main__":
    main()
