"""Replies with surrogates from the loopback server, through the whole stack.

The server sends a lone surrogate (JSON ``"\\ud800"``) and an emoji split into
its UTF-16 halves across stream chunks (``Fault.split_surrogates``); the chain,
the ToT engine and ``pygent-lc chat`` must hand on encodable text, and never
blame the caller for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pygent_lc import LangChainBackend, build_chat_model
from pygent_lc.tot import ToTConfig, ToTEngine
from tests.helpers import ROOT, loopback_settings
from tests.loopback_server import Fault, LoopbackServer
from tests.loopback_server.answers import last_user_text
from tests.providers.mock_http import Mode, call
from tests.tot.conftest import ladder_reply, prompt_kind

pytestmark = pytest.mark.live_local

SMILE = "\U0001f600"
SENT = f"smile {SMILE} lone \ud800 end {SMILE}"
RECEIVED = f"smile {SMILE} lone \ufffd end {SMILE}"
MODES: list[Mode] = ["invoke", "ainvoke", "stream", "astream"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", ["openrouter", "ollama"])
async def test_the_chain_hands_on_encodable_text(
    loopback: LoopbackServer, provider: str, mode: Mode
) -> None:
    loopback.responder = lambda protocol, body: SENT
    loopback.script(provider, [Fault.split_surrogates()])  # type: ignore[arg-type]
    chain = build_chat_model(loopback_settings(loopback), [provider])
    reply = await call(chain, mode, "hi")
    assert reply.content == RECEIVED
    reply.text.encode("utf-8")


@pytest.mark.parametrize("provider", ["openrouter", "ollama"])
async def test_a_tot_solve_on_such_replies_is_not_blamed_on_the_caller(
    loopback: LoopbackServer, provider: str
) -> None:
    def responder(protocol: str, body: Mapping[str, Any]) -> str:
        prompt = last_user_text(body)
        text = ladder_reply(prompt)
        if prompt_kind(prompt) in ("propose", "sample"):
            return text.replace("step ", f"step \ud800{SMILE} ")
        return text

    loopback.responder = responder
    loopback.script(provider, [Fault.split_surrogates()] * 200)  # type: ignore[arg-type]
    backend = LangChainBackend(build_chat_model(loopback_settings(loopback), [provider]))
    config = ToTConfig(n_generate_sample=1, n_evaluate_sample=1, n_select_sample=2, max_depth=3)
    result = await ToTEngine(config, backend).solve("What is the answer?")
    assert result.solved
    assert result.best is not None
    assert result.best.path[0] == f"step \ufffd{SMILE} a"


@pytest.mark.parametrize("provider", ["openrouter", "ollama"])
def test_chat_prints_such_a_reply(loopback: LoopbackServer, provider: str) -> None:
    loopback.responder = lambda protocol, body: SENT
    loopback.script(provider, [Fault.split_surrogates()])  # type: ignore[arg-type]
    settings = loopback_settings(loopback)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # this checkout's package, not the installed one
        "OPENROUTER_API_KEY": settings.openrouter.api_key.get_secret_value(),  # type: ignore[union-attr]
        "OPENROUTER_BASE_URL": loopback.openrouter_base_url,
        "OPENROUTER_MODEL": "openai/gpt-4o-mini",
        "OLLAMA_BASE_URL": loopback.ollama_base_url,
        "OLLAMA_MODEL": "llama3.2",
        "PYGENT_MAX_RETRIES": "0",
    }
    exe = Path(sys.executable).with_name("pygent-lc")
    proc = subprocess.run(
        [str(exe), "chat", "hi", "--provider", provider],
        capture_output=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert proc.stdout.decode("utf-8") == RECEIVED + "\n"
