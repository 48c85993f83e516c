"""``AgentFactory``: a validated, ready agent. Each provider named is checked offline (its
chat model builds), then as its ``ProviderSpec.check`` says (Ollama has the model)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel

from pygent_lc.agents.chat import ChatAgent
from pygent_lc.agents.reasoning import ReasoningAgent
from pygent_lc.agents.spec import TASKS, parse_spec
from pygent_lc.build import build_chat_model
from pygent_lc.closing import Closable
from pygent_lc.errors import AgentError, ConfigurationError, InvalidInputError
from pygent_lc.providers.registry import PROVIDERS
from pygent_lc.settings import ProviderName, Settings
from pygent_lc.tot.config import ToTConfig

Agent = ReasoningAgent | ChatAgent


def configured_model(name: ProviderName, settings: Settings) -> BaseChatModel:
    """The provider's chat model, or an :class:`AgentError` saying what is missing."""
    try:
        return PROVIDERS[name].factory(settings)
    except ConfigurationError as exc:
        raise AgentError(f"{name}: {exc}", field=exc.field) from exc


def usable_providers(names: list[ProviderName], settings: Settings) -> list[ProviderName]:
    """Those of ``names`` that are configured (no network); none is an ``AgentError``."""
    skipped: dict[str, AgentError] = {}
    for name in names:
        try:
            configured_model(name, settings)
        except AgentError as exc:
            skipped[name] = exc
    if not (usable := [name for name in names if name not in skipped]):
        reasons = "; ".join(str(why) for why in skipped.values())
        raise AgentError(f"no provider is usable ({reasons})", field="providers")
    return usable


class AgentFactory(Closable):
    """Creates agents and keeps them by name. ``provider="auto"`` skips the providers not
    configured, offline; a named provider is also checked (``ProviderSpec.check``)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.agents: dict[str, Agent] = {}
        self._ids = itertools.count(1)

    async def create_agent(
        self,
        agent_type: str,
        name: str | None = None,
        custom_config: Mapping[str, Any] | None = None,
    ) -> Agent:
        spec = parse_spec(agent_type, custom_config)
        name = name or f"{spec.agent_type}-{next(self._ids)}"
        if name in self.agents:
            raise AgentError(f"an agent named {name!r} already exists", field="name")
        settings = spec.settings(self.settings)
        providers = list(settings.providers)
        if spec.provider == "auto":
            providers = usable_providers(providers, settings)
        else:
            for provider in providers:  # blocking checks, in a thread
                await asyncio.to_thread(configured_model, provider, settings)
                await asyncio.to_thread(PROVIDERS[provider].check, settings, spec.check_model)
        chain = build_chat_model(settings, providers)
        common: dict[str, Any] = {"name": name, "providers": providers}
        try:
            if spec.agent_type == "chat":
                agent: Agent = ChatAgent(
                    chain, system_prompt=spec.system_prompt, **common, **spec.tot
                )
            else:
                config = ToTConfig.for_provider(providers[0], **spec.tot)
                agent = ReasoningAgent(chain, config=config, task=TASKS[spec.task](), **common)
        except (ConfigurationError, InvalidInputError) as exc:
            raise AgentError(str(exc), field=getattr(exc, "field", None)) from exc
        self.agents[name] = agent
        return agent

    def get_agent(self, name: str) -> Agent:
        try:
            return self.agents[name]
        except KeyError:
            raise AgentError(f"no agent named {name!r}", field="name") from None

    def remove_agent(self, name: str) -> None:
        self.get_agent(name)
        del self.agents[name]

    def close(self) -> None:
        """Close every agent made here (they stay usable)."""
        for agent in self.agents.values():
            agent.close()

    async def aclose(self) -> None:
        for agent in self.agents.values():
            await agent.aclose()
