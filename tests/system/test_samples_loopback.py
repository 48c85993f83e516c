"""``n`` samples through the whole stack on the loopback server's two protocols.

The ToT engine asks its value samples as one request with ``n``; the real
classes (engine, ``LangChainBackend``, chain, policy, provider model) carry
``n`` to the wire and every choice back. Where the route honours ``n`` (an
OpenRouter model in the server's ``n_models``, as OpenAI's own routes do) one
request answers them all; where it does not (OpenRouter's other routes,
Ollama, whose API has no ``n``) the engine learns it from the first reply
and asks one request a sample from then on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from pygent_lc import LangChainBackend, build_chat_model
from pygent_lc.tot import ToTConfig, ToTEngine
from tests.helpers import loopback_settings
from tests.loopback_server import LoopbackServer
from tests.loopback_server.answers import last_user_text
from tests.tot.conftest import ladder_reply, prompt_kind

pytestmark = pytest.mark.live_local

MODEL = "openai/gpt-4o-mini"
CONFIG = ToTConfig(n_generate_sample=1, n_evaluate_sample=3, n_select_sample=2, max_depth=3)


def ladder(protocol: str, body: Mapping[str, Any]) -> str:
    return ladder_reply(last_user_text(body))


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[LoopbackServer]:
    with LoopbackServer(responder=ladder, n_models=getattr(request, "param", ())) as srv:
        yield srv


def value_requests(server: LoopbackServer, protocol: str) -> list[dict[str, Any]]:
    bodies = [r.json for r in server.requests(protocol) if isinstance(r.json, dict)]  # type: ignore[arg-type]
    return [b for b in bodies if prompt_kind(last_user_text(b)) == "value"]


async def solve(server: LoopbackServer, provider: str) -> tuple[ToTEngine, Any]:
    backend = LangChainBackend(build_chat_model(loopback_settings(server), [provider]))
    engine = ToTEngine(CONFIG, backend)
    return engine, await engine.solve("What is the answer?")


@pytest.mark.parametrize("server", [(MODEL,)], indirect=True)
async def test_a_route_that_honours_n_answers_all_samples_in_one_request(
    server: LoopbackServer,
) -> None:
    engine, result = await solve(server, "openrouter")
    assert result.solved
    assert engine.samples_support.honoured is True
    values = value_requests(server, "openrouter")
    assert values and all(body["n"] == 3 for body in values)
    assert result.stats.llm_calls == server.request_count("openrouter")
    # One request's usage covers its 3 choices: the prompt is paid for once.
    usage = result.stats.usage
    assert usage is not None and usage.calls == result.stats.llm_calls


@pytest.mark.parametrize("provider", ["openrouter", "ollama"])
async def test_a_route_that_ignores_n_is_learnt_and_asked_a_sample_a_request(
    server: LoopbackServer, provider: str
) -> None:
    engine, result = await solve(server, provider)
    assert result.solved
    assert engine.samples_support.honoured is False
    values = value_requests(server, provider)
    asked_with_n = [body for body in values if body.get("n") == 3]
    if provider == "ollama":
        assert not asked_with_n  # Ollama's API has no n: it never reaches the wire
    else:
        assert len(asked_with_n) >= 1  # asked until the first reply said "one choice"
    # Each value state got its 3 samples: the one that came back, then the rest alone.
    assert result.stats.llm_calls == server.request_count(provider)  # type: ignore[arg-type]


async def test_honoured_n_costs_fewer_requests_and_prompt_tokens_for_the_same_search() -> None:
    found: dict[str, tuple[int, int, str]] = {}
    for n_models in ((MODEL,), ()):
        with LoopbackServer(responder=ladder, n_models=n_models) as srv:
            _, result = await solve(srv, "openrouter")
            assert result.stats.usage is not None and result.best is not None
            found[str(bool(n_models))] = (
                result.stats.llm_calls,
                result.stats.usage.input_tokens,
                result.best.text,
            )
    honoured, ignored = found["True"], found["False"]
    assert honoured[2] == ignored[2]  # the same answer
    assert honoured[0] < ignored[0]
    assert honoured[1] < ignored[1]
