"""``ChatAgent``: a plain LCEL chain, prompt | provider chain, with a conversation history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable, RunnableConfig

from pygent_lc.closing import Closable, aclose_runnable, close_runnable
from pygent_lc.langchain_backend import ChatRunnable, reply_text, stream_text
from pygent_lc.limits.usage import UsageTracker
from pygent_lc.validation import validate_generation_params, validate_prompt

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer clearly and briefly."


class ChatAgent(Closable):
    """``system prompt + history + message | chain``, remembering each exchange."""

    agent_type = "chat"

    def __init__(
        self,
        chain: ChatRunnable,
        *,
        name: str = "chat",
        system_prompt: str | None = None,
        providers: list[str] | None = None,
        **generation: Any,
    ) -> None:
        self.name = name
        self.providers = list(providers or [])
        self.system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT
        self.generation = validate_generation_params(generation)
        prompt = ChatPromptTemplate(
            [("system", "{system}"), MessagesPlaceholder("history"), ("human", "{message}")]
        )
        self.chain: Runnable[dict[str, Any], BaseMessage] = prompt | chain.bind(**self.generation)
        self.usage = UsageTracker()
        self.history: list[BaseMessage] = []
        self._config: RunnableConfig = {"callbacks": [self.usage]}

    def _inputs(self, message: str) -> dict[str, Any]:
        return {
            "system": self.system_prompt,
            "history": list(self.history),
            "message": validate_prompt(message),
        }

    def _remember(self, message: str, reply: str) -> None:
        self.history += [HumanMessage(content=message), AIMessage(content=reply)]

    async def process(self, message: str) -> str:
        """The reply to ``message`` (never empty: an empty reply is an error)."""
        reply = reply_text(await self.chain.ainvoke(self._inputs(message), self._config))
        self._remember(message, reply)
        return reply

    async def stream(self, message: str) -> AsyncIterator[str]:
        """The reply as it arrives; a failure after the first text carries the text so far."""
        parts: list[str] = []
        async for text in stream_text(self.chain, self._inputs(message), self._config):
            parts.append(text)
            yield text
        self._remember(message, "".join(parts))

    def reset(self) -> None:
        self.history.clear()

    def close(self) -> None:
        close_runnable(self.chain)

    async def aclose(self) -> None:
        await aclose_runnable(self.chain)
