"""``AgentFactory``: what PyGent Factory calls to get a validated, ready agent.

Before it returns an agent, the factory checks each provider the agent names.
Configuration first (no network): the provider's chat model must build (a key
for OpenRouter, a model for Ollama, the extra and the model file for the local
model). Then what only the server can tell, as the provider registry says
(``ProviderSpec.check``): Ollama must answer and have the model; OpenRouter's
model must be in ``/models`` when the caller asks (``check_model``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel

from pygent_lc.agents.chat import ChatAgent
from pygent_lc.agents.reasoning import ReasoningAgent, make_task, tot_config_for
from pygent_lc.agents.spec import AgentSpec, agent_settings, parse_spec
from pygent_lc.build import build_chat_model
from pygent_lc.closing import Closable
from pygent_lc.errors import AgentError, ConfigurationError, InvalidInputError
from pygent_lc.langchain_backend import ChatRunnable
from pygent_lc.providers.registry import PROVIDERS
from pygent_lc.settings import ProviderName, Settings

Agent = ReasoningAgent | ChatAgent


def configured_model(name: ProviderName, settings: Settings) -> BaseChatModel:
    """The provider's chat model, or an :class:`AgentError` saying what is missing."""
    try:
        return PROVIDERS[name].factory(settings)
    except AgentError:
        raise
    except ConfigurationError as exc:
        raise AgentError(f"{name}: {exc}", field=exc.field) from exc


def check_provider(name: ProviderName, settings: Settings, *, check_model: bool) -> None:
    """Every check for one provider the agent names explicitly (blocking: run in a thread)."""
    configured_model(name, settings)
    PROVIDERS[name].check(settings, check_model)


def usable_providers(
    names: list[ProviderName], settings: Settings
) -> tuple[list[ProviderName], dict[str, AgentError]]:
    """Split ``names`` into those configured and those skipped (with why); no network."""
    usable: list[ProviderName] = []
    skipped: dict[str, AgentError] = {}
    for name in names:
        try:
            configured_model(name, settings)
        except AgentError as exc:
            skipped[name] = exc
        else:
            usable.append(name)
    if not usable:
        reasons = "; ".join(str(why) for why in skipped.values())
        raise AgentError(f"no provider is usable ({reasons})", field="providers")
    return usable, skipped


class AgentFactory(Closable):
    """Creates agents over the provider chain and keeps them by name.

    ``await create_agent("reasoning", custom_config={"provider": "ollama",
    "model_name": "llama3.2"})`` checks everything it can before returning:
    the keys of ``custom_config``, the provider's configuration, that Ollama
    answers and has the model, and (with ``check_model``) that OpenRouter
    lists the model. ``provider="auto"`` (the default) uses the configured
    chain (``fallbacks``, else ``settings.providers``), skipping providers
    that are not configured, and checks nothing on the network.

    Raises :class:`AgentError` for anything wrong in the request or the
    configuration, :class:`~pygent_lc.errors.ProviderUnavailableError` when
    Ollama does not answer, and :class:`~pygent_lc.errors.ModelNotFoundError`
    when the model is not there.
    """

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
        """A new agent of ``agent_type`` (``reasoning`` or ``chat``), validated."""
        spec = parse_spec(agent_type, custom_config)
        name = name or f"{spec.agent_type}-{next(self._ids)}"
        if name in self.agents:
            raise AgentError(f"an agent named {name!r} already exists", field="name")
        settings = agent_settings(spec, self.settings)
        providers = await self._checked_providers(spec, settings)
        chain = build_chat_model(settings, providers)
        agent = self._build(spec, name, chain, providers)
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
        """Close every agent this factory made (they stay usable)."""
        for agent in self.agents.values():
            agent.close()

    async def aclose(self) -> None:
        for agent in self.agents.values():
            await agent.aclose()

    async def _checked_providers(self, spec: AgentSpec, settings: Settings) -> list[ProviderName]:
        names = spec.provider_names(settings)
        if spec.provider == "auto":
            return usable_providers(names, settings)[0]
        for provider in names:
            await asyncio.to_thread(
                check_provider, provider, settings, check_model=spec.check_model
            )
        return names

    def _build(
        self, spec: AgentSpec, name: str, chain: ChatRunnable, providers: list[ProviderName]
    ) -> Agent:
        try:
            if spec.agent_type == "chat":
                return ChatAgent(
                    chain,
                    name=name,
                    system_prompt=spec.system_prompt,
                    providers=list(providers),
                    **spec.tot,
                )
            config = tot_config_for(providers[0], spec.task, spec.tot)
        except (ConfigurationError, InvalidInputError) as exc:
            raise AgentError(str(exc), field=getattr(exc, "field", None)) from exc
        return ReasoningAgent(
            chain, name=name, config=config, task=make_task(spec.task), providers=list(providers)
        )
