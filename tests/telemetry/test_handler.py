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
from pygent_lc.telemetry import names
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
    assert failed.attributes[names.OPERATION_NAME] == "chat"
    assert failed.attributes[names.PROVIDER_NAME] == "ollama"
    assert failed.attributes[names.REQUEST_MODEL] == "llama3.2"
    assert failed.attributes[names.ERROR_TYPE] == "ProviderUnavailableError"
    assert failed.attributes[names.FALLBACK_INDEX] == 0
    assert failed.status.status_code is StatusCode.ERROR
    assert names.USAGE_INPUT_TOKENS not in failed.attributes

    assert answered.name == "chat openai/gpt-4o-mini"
    attrs = answered.attributes
    assert attrs[names.PROVIDER_NAME] == "openrouter"
    assert attrs[names.REQUEST_MODEL] == "openai/gpt-4o-mini"
    assert attrs[names.RESPONSE_MODEL] == "openai/gpt-4o-mini"
    assert attrs[names.USAGE_INPUT_TOKENS] > 0
    assert attrs[names.USAGE_OUTPUT_TOKENS] > 0
    assert attrs[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[names.COST_USD] > 0
    assert attrs[names.UPSTREAM_PROVIDER] == loop_server.provider
    assert attrs[names.GENERATION_ID] == attrs[names.RESPONSE_ID]
    assert attrs[names.FALLBACK_INDEX] == 1
    assert attrs[names.RETRY_ATTEMPT] == 1
    assert names.ERROR_TYPE not in attrs

    (chain,) = otel.spans(names.CHAIN_SPAN)
    assert failed.parent.span_id == chain.context.span_id
    assert answered.parent.span_id == chain.context.span_id
    assert chain.attributes[names.CHAIN_ATTEMPTS] == 2
    assert chain.attributes[names.CHAIN_FALLBACKS] == 1
    assert chain.attributes[names.CHAIN_PROVIDERS] == ("ollama", "openrouter")
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
    assert first.attributes[names.RETRY_ATTEMPT] == 1
    assert first.attributes[names.ERROR_TYPE] == "ProviderUnavailableError"
    assert second.attributes[names.RETRY_ATTEMPT] == 2
    assert second.attributes[names.PROVIDER_NAME] == "openrouter"
    assert names.ERROR_TYPE not in second.attributes
    (chain,) = otel.spans(names.CHAIN_SPAN)
    assert chain.attributes[names.CHAIN_RETRIES] == 1
    assert chain.attributes[names.CHAIN_FALLBACKS] == 0


@pytest.mark.live_local
def test_a_chain_where_every_provider_fails_marks_the_chain(
    otel: Telemetry, loop_server: LoopbackServer
) -> None:
    loop_server.script("ollama", [Fault.status(503)])
    loop_server.script("openrouter", [Fault.status(401)])
    settings = loopback_settings(loop_server, max_retries=0)
    with pytest.raises(AllProvidersFailedError):
        build_chat_model(settings, ["ollama", "openrouter"]).invoke(PROMPT)
    (chain,) = otel.spans(names.CHAIN_SPAN)
    assert chain.status.status_code is StatusCode.ERROR
    # the chain run ends with the error its caller sees
    assert chain.attributes[names.ERROR_TYPE] == "AllProvidersFailedError"
    assert [s.attributes[names.ERROR_TYPE] for s in otel.chats()] == [
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
    sent = json.loads(chat.attributes[names.INPUT_MESSAGES])
    assert sent == [{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
    answer = json.loads(chat.attributes[names.OUTPUT_MESSAGES])
    assert answer[0]["role"] == "assistant"
    assert PROMPT in answer[0]["parts"][0]["content"]  # the loopback server echoes
    assert KEY not in everything_recorded(seen.spans())
