"""What the caller's input does to a real chain, against the loopback server.

Bad input (text that cannot be encoded, a prompt longer than the model's
context) is the caller's problem: it must never retry, never fall back and
never count against a breaker, or a few bad prompts would shut every
provider. An empty completion is the opposite: the provider failed, so the
chain falls back and the breaker counts it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from pygent_lc import LangChainBackend, build_chat_model
from pygent_lc.errors import (
    AllProvidersFailedError,
    ContextLengthError,
    InvalidInputError,
    ProviderUnavailableError,
)
from pygent_lc.limits.breaker import CircuitBreaker
from tests.helpers import loopback_settings
from tests.loopback_server import Fault, LoopbackServer
from tests.loopback_server.answers import echo_responder, last_user_text

pytestmark = pytest.mark.live_local

UNENCODABLE = "hi \ud800"
OVERFLOW = (
    "This model's maximum context length is 8192 tokens. However, you requested "
    "9000 tokens. Please reduce the length of the messages."
)


def empty_for_silence(protocol: str, body: Mapping[str, Any]) -> str:
    """Answers nothing at all to the prompt ``silence``; echoes anything else."""
    return "" if last_user_text(body) == "silence" else echo_responder(protocol, body)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(responder=empty_for_silence) as live:
        yield live


def breakers(chain: Any) -> list[CircuitBreaker]:
    found = [policy.circuit for policy in chain.providers]
    assert all(isinstance(circuit, CircuitBreaker) for circuit in found)
    return found


@pytest.mark.parametrize("order", [["openrouter", "ollama"], ["ollama", "openrouter"]])
async def test_unencodable_prompts_never_open_a_breaker(
    server: LoopbackServer, order: list[str]
) -> None:
    chain = build_chat_model(loopback_settings(server, breaker_failures=3), order)
    backend = LangChainBackend(chain)
    for _ in range(5):
        with pytest.raises(InvalidInputError):
            await backend.generate(UNENCODABLE)
        with pytest.raises(InvalidInputError):
            await chain.ainvoke([("human", UNENCODABLE)])
    assert server.all_requests() == []
    assert [b.state for b in breakers(chain)] == ["closed", "closed"]
    assert await backend.generate("a valid prompt") == "echo: a valid prompt"
    assert server.request_count(order[0]) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("primary", ["openrouter", "ollama"])
@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_context_overflow_is_typed_not_retried_and_does_not_fall_back(
    server: LoopbackServer, primary: str, mode: str
) -> None:
    other = "ollama" if primary == "openrouter" else "openrouter"
    server.script(primary, [Fault.status(400, message=OVERFLOW)] * 3)  # type: ignore[arg-type]
    chain = build_chat_model(loopback_settings(server, breaker_failures=1), [primary, other])
    backend = LangChainBackend(chain)
    with pytest.raises(ContextLengthError, match="maximum context length") as raised:
        if mode == "invoke":
            await backend.generate("a long prompt")
        else:
            async for _ in backend.stream("a long prompt"):
                pass
    assert raised.value.provider == primary
    assert isinstance(raised.value, InvalidInputError)
    assert server.request_count(primary) == 1  # type: ignore[arg-type]
    assert server.request_count(other) == 0  # type: ignore[arg-type]
    assert [b.state for b in breakers(chain)] == ["closed", "closed"]


@pytest.mark.parametrize("primary", ["openrouter", "ollama"])
@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_an_empty_reply_falls_back_and_counts_for_the_breaker(
    server: LoopbackServer, primary: str, mode: str
) -> None:
    other = "ollama" if primary == "openrouter" else "openrouter"
    with LoopbackServer() as answering:  # the fallback echoes every prompt
        urls = {
            f"{other}_base_url": getattr(answering, f"{other}_base_url"),
            f"{primary}_base_url": getattr(server, f"{primary}_base_url"),
        }
        settings = loopback_settings(server, breaker_failures=1, **urls)
        chain = build_chat_model(settings, [primary, other])
        backend = LangChainBackend(chain)
        if mode == "invoke":
            reply = await backend.generate("silence")
        else:
            reply = "".join([part async for part in backend.stream("silence")])
        assert reply == "echo: silence"
        assert server.request_count(primary) == 1  # type: ignore[arg-type]
        assert answering.request_count(other) == 1  # type: ignore[arg-type]
    assert breakers(chain)[0].state == "open"  # the empty reply counted


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_an_empty_reply_everywhere_names_each_real_provider(
    server: LoopbackServer, mode: str
) -> None:
    backend = LangChainBackend(
        build_chat_model(loopback_settings(server), ["openrouter", "ollama"])
    )
    with pytest.raises(AllProvidersFailedError, match="empty reply") as raised:
        if mode == "invoke":
            await backend.generate("silence")
        else:
            async for _ in backend.stream("silence"):
                pass
    errors = list(raised.value.errors.values())
    assert [error.provider for error in errors] == ["openrouter", "ollama"]
    assert all(type(error) is ProviderUnavailableError for error in errors)
    assert server.request_count("openrouter") == server.request_count("ollama") == 1
