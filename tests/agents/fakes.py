"""What the agents' tests share: a chat model answering with a function of the prompt,
and the settings for the loopback server that plays the Game of 24.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from benchmarks.game24_model import scripted_game24_reply
from pygent_lc import Settings
from pygent_lc.agents import ReasoningAgent
from pygent_lc.tot import ToTConfig
from tests.helpers import loopback_settings
from tests.loopback_server import LoopbackServer
from tests.loopback_server.answers import last_user_text


class ReplyChatModel(BaseChatModel):
    """Answers each prompt with ``reply(prompt)``; counts tokens as words, 0.001 $ a call."""

    reply: Callable[[str], str]
    prompts: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "reply"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider="fake", ls_model_name="fake-model")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = messages[-1].text
        self.prompts.append(prompt)
        text = self.reply(prompt)
        message = AIMessage(
            content=text,
            usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
            response_metadata={"cost": 0.001},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def generic_reply(prompt: str) -> str:
    if "Possible next steps:" in prompt:
        return "Add the numbers.\nFinal answer: 4"
    return "Score: 9" if "Final answer" in prompt else "Score: 3"


def reasoning_agent(reply: Callable[[str], str] = generic_reply, **config: Any) -> ReasoningAgent:
    model = ReplyChatModel(reply=reply)
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
