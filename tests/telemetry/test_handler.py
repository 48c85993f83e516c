"""The callback handler's spans: one per provider attempt under the chain's span, the
chain's outcome, content only when asked. Against the loopback server (real HTTP
through the SDKs), with the SDK's in-memory span exporter.
"""

from __future__ import annotations

import json

import pytest
from opentelemetry.trace import StatusCode

from pygent_lc import build_chat_model, telemetry
from pygent_lc.errors import AllProvidersFailedError
from tests.helpers import loopback_settings
from tests.loopback_server import Fault, LoopbackServer
from tests.telemetry.recording import KEY, PROMPT, Telemetry, chain_backend, everything_recorded


@pytest.mark.live_local
async def test_fallback_chain_has_one_span_per_attempt(
    otel: Telemetry, loop_server: LoopbackServer
) -> None:
    loop_server.script("ollama", [Fault.status(503)])
    reply = await chain_backend(loop_server).generate(PROMPT)
    assert reply

    failed, answered = otel.chats()
    assert failed.name == "chat llama3.2"
    assert failed.attributes["gen_ai.operation.name"] == "chat"
    assert failed.attributes["gen_ai.provider.name"] == "ollama"
    assert failed.attributes["gen_ai.request.model"] == "llama3.2"
    assert failed.attributes["error.type"] == "ProviderUnavailableError"
    assert failed.attributes["pygent.fallback.index"] == 0
    assert failed.status.status_code is StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in failed.attributes

    assert answered.name == "chat openai/gpt-4o-mini"
    attrs = answered.attributes
    assert attrs["gen_ai.provider.name"] == "openrouter"
    assert attrs["gen_ai.request.model"] == "openai/gpt-4o-mini"
    assert attrs["gen_ai.response.model"] == "openai/gpt-4o-mini"
    assert attrs["gen_ai.usage.input_tokens"] > 0
    assert attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["pygent.cost_usd"] > 0
    assert attrs["pygent.openrouter.provider"] == loop_server.provider
    assert attrs["pygent.openrouter.generation_id"] == attrs["gen_ai.response.id"]
    assert attrs["pygent.fallback.index"] == 1
    assert attrs["pygent.retry.attempt"] == 1
    assert "error.type" not in attrs

    (chain,) = otel.spans("pygent.chain")
    assert failed.parent.span_id == chain.context.span_id
    assert answered.parent.span_id == chain.context.span_id
    assert chain.attributes["pygent.chain.attempts"] == 2
    assert chain.attributes["pygent.chain.fallbacks"] == 1
    assert chain.attributes["pygent.chain.providers"] == ("ollama", "openrouter")
    assert chain.status.status_code is not StatusCode.ERROR

    recorded = everything_recorded(otel.spans())
    assert KEY not in recorded
    assert PROMPT not in recorded
    assert "forty two" not in recorded


@pytest.mark.live_local
async def test_each_retry_attempt_is_a_span_under_the_chain(
    otel: Telemetry, loop_server: LoopbackServer
) -> None:
    loop_server.script("openrouter", [Fault.status(503)])
    settings = loopback_settings(loop_server, max_retries=2)
    await build_chat_model(settings, ["openrouter", "ollama"]).ainvoke(PROMPT)

    first, second = otel.chats()
    assert first.attributes["pygent.retry.attempt"] == 1
    assert first.attributes["error.type"] == "ProviderUnavailableError"
    assert second.attributes["pygent.retry.attempt"] == 2
    assert second.attributes["gen_ai.provider.name"] == "openrouter"
    assert "error.type" not in second.attributes
    (chain,) = otel.spans("pygent.chain")
    assert chain.attributes["pygent.chain.retries"] == 1
    assert chain.attributes["pygent.chain.fallbacks"] == 0


@pytest.mark.live_local
def test_a_chain_where_every_provider_fails_marks_the_chain(
    otel: Telemetry, loop_server: LoopbackServer
) -> None:
    loop_server.script("ollama", [Fault.status(503)])
    loop_server.script("openrouter", [Fault.status(401)])
    settings = loopback_settings(loop_server, max_retries=0)
    with pytest.raises(AllProvidersFailedError):
        build_chat_model(settings, ["ollama", "openrouter"]).invoke(PROMPT)
    (chain,) = otel.spans("pygent.chain")
    assert chain.status.status_code is StatusCode.ERROR
    # the chain run ends with the error its caller sees
    assert chain.attributes["error.type"] == "AllProvidersFailedError"
    assert [s.attributes["error.type"] for s in otel.chats()] == [
        "ProviderUnavailableError",
        "AuthenticationError",
    ]


@pytest.mark.live_local
async def test_content_is_recorded_only_when_asked(loop_server):
    seen = Telemetry()
    telemetry.instrument(seen.tracer_provider, seen.meter_provider, capture_content=True)
    try:
        await chain_backend(loop_server).generate(PROMPT)
    finally:
        telemetry.uninstrument()
    (chat,) = seen.chats()
    sent = json.loads(chat.attributes["gen_ai.input.messages"])
    assert sent == [{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
    answer = json.loads(chat.attributes["gen_ai.output.messages"])
    assert answer[0]["role"] == "assistant"
    assert PROMPT in answer[0]["parts"][0]["content"]  # the loopback server echoes
    assert KEY not in everything_recorded(seen.spans())
