"""What the agents' tests share: a reasoning agent over a scripted chat model, and the
settings for the loopback server that plays the Game of 24.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from benchmarks.game24_model import scripted_game24_reply
from pygent_lc import Settings
from pygent_lc.agents import ReasoningAgent
from pygent_lc.testing import ScriptedChatModel
from pygent_lc.tot import ToTConfig
from tests.helpers import loopback_settings
from tests.loopback_server import LoopbackServer
from tests.loopback_server.answers import last_user_text


def generic_reply(prompt: str) -> str:
    if "Possible next steps:" in prompt:
        return "Add the numbers.\nFinal answer: 4"
    return "Score: 9" if "Final answer" in prompt else "Score: 3"


def reasoning_agent(reply: Callable[[str], str] = generic_reply, **config: Any) -> ReasoningAgent:
    model = ScriptedChatModel(reply=reply, provider="fake", cost_per_call=0.001)
    tot = ToTConfig(n_evaluate_sample=1, **config)
    return ReasoningAgent(model, name="r", config=tot, providers=["fake"])


# --- the loopback server ------------------------------------------------------


KEY = "sk-or-v1-agents-loopback-key"


def game24_responder(protocol: str, body: Mapping[str, Any]) -> str:
    return scripted_game24_reply(last_user_text(body))


def settings_for(server: LoopbackServer, **changes: Any) -> Settings:
    """The shared loopback settings with this server's key and no retries."""
    values: dict[str, Any] = {
        "openrouter_api_key": KEY,
        "retry_initial_wait": 0.0,
        "retry_max_wait": 0.0,
        "max_retries": 0,
    }
    return loopback_settings(server, **{**values, **changes})
