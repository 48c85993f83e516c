"""``tot.solve`` and ``tot.level`` spans, with each call's spans under its level."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from pygent_lc import LangChainBackend
from pygent_lc.chain import with_provider_policy
from pygent_lc.fallbacks import ProviderChain
from pygent_lc.tot import ToTConfig, ToTEngine
from tests.telemetry.recording import Telemetry, everything_recorded
from tests.tot.conftest import ladder_reply


class LadderChatModel(BaseChatModel):
    """Answers the generic task's prompts like the ToT tests' ladder backend."""

    @property
    def _llm_type(self) -> str:
        return "ladder"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        text = ladder_reply(messages[-1].text)
        reply = AIMessage(
            content=text,
            usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            response_metadata={"model_name": "ladder-1", "finish_reason": "stop", "cost": 0.001},
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _get_ls_params(self, stop: Any = None, **kwargs: Any) -> Any:
        return {"ls_provider": "ladder", "ls_model_name": "ladder-1", "ls_model_type": "chat"}


def _tot_settings() -> Any:
    from pygent_lc import Settings

    return Settings(max_retries=0, breaker_failures=0)


async def test_tot_solve_has_a_span_per_level(otel: Telemetry) -> None:
    model = LadderChatModel()
    chain = ProviderChain(providers=[with_provider_policy(model, _tot_settings())])
    config = ToTConfig(
        n_generate_sample=1,
        n_evaluate_sample=2,
        n_select_sample=2,
        max_depth=3,
        temperature=0.7,
        seed=0,
    )
    result = await ToTEngine(config, LangChainBackend(chain)).solve("What is the answer?")
    assert result.solved

    (solve,) = otel.spans("tot.solve")
    assert solve.attributes["tot.task"] == "generic"
    assert solve.attributes["tot.llm_calls"] == result.stats.llm_calls
    assert solve.attributes["tot.nodes"] == result.stats.nodes == 16
    assert solve.attributes["tot.solved"] is True
    levels = sorted(otel.spans("tot.level"), key=lambda s: s.attributes["tot.depth"])
    assert [s.attributes["tot.depth"] for s in levels] == [1, 2, 3]
    assert all(s.parent.span_id == solve.context.span_id for s in levels)
    assert [s.attributes["tot.states.generated"] for s in levels] == [3, 6, 6]
    assert [s.attributes["tot.states.valued"] for s in levels] == [3, 6, 6]
    assert [s.attributes["tot.states.kept"] for s in levels] == [2, 2, 2]
    assert [s.attributes["tot.states.expanded"] for s in levels] == [1, 2, 2]
    assert sum(s.attributes["tot.llm_calls"] for s in levels) == result.stats.llm_calls
    assert sum(s.attributes["tot.cache_hits"] for s in levels) == result.stats.cache_hits

    # every call's spans sit under its level: chain span, then the chat attempt
    level_ids = {s.context.span_id: s.attributes["tot.depth"] for s in levels}
    chains = otel.spans("pygent.chain")
    assert len(chains) == result.stats.llm_calls
    assert all(c.parent.span_id in level_ids for c in chains)
    chats = otel.chats()
    assert len(chats) == result.stats.llm_calls
    chain_ids = {c.context.span_id for c in chains}
    assert all(c.parent.span_id in chain_ids for c in chats)
    assert all(c.attributes["gen_ai.usage.output_tokens"] == 5 for c in chats)
    assert "What is the answer?" not in everything_recorded(otel.spans())
