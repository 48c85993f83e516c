"""``ProviderChain``: providers tried in order, every failure collected, streams and
batches; bad input refused before any request; structured output and tools across the
chain (the loopback server).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from langchain_core.tools import tool
from pydantic import BaseModel

from pygent_lc import Settings, build_chat_model
from pygent_lc.build import with_provider_policy
from pygent_lc.chain import (
    FALLBACK_WARNING_INTERVAL_S,
    FallbackNotice,
    ProviderChain,
    fallback_notices,
    short_reason,
)
from pygent_lc.errors import (
    AllProvidersFailedError,
    AuthenticationError,
    InvalidInputError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
)
from pygent_lc.limits.breaker import CircuitOpenError
from pygent_lc.limits.rate import LocalRateLimitError
from pygent_lc.testing import ScriptedChatModel
from tests.loopback_server import Fault, LoopbackServer
from tests.providers.mock_http import Mode, call

MODES: tuple[Mode, ...] = ("invoke", "ainvoke", "stream", "astream")
FAST = Settings(max_retries=2, retry_initial_wait=0.0, retry_max_wait=0.05)


def unavailable(provider: str = "a") -> ProviderUnavailableError:
    return ProviderUnavailableError("503", provider=provider, status_code=503)


def chain(*models: ScriptedChatModel, settings: Settings = FAST) -> ProviderChain:
    retried = [with_provider_policy(m, settings, breaker=False) for m in models]
    return ProviderChain(providers=list(retried))


async def test_fallback_runs_after_primary_retries_are_used_up() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[unavailable()] * 3)
    backup = ScriptedChatModel(provider="b", outcomes=["from b"])
    assert (await chain(primary, backup).ainvoke("hi")).content == "from b"
    assert (len(primary.calls), len(backup.calls)) == (3, 1)


async def test_non_retryable_primary_falls_back_at_once() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[AuthenticationError("x", provider="a")])
    backup = ScriptedChatModel(provider="b", outcomes=["from b"])
    assert (await chain(primary, backup).ainvoke("hi")).content == "from b"
    assert len(primary.calls) == 1


async def test_all_failed_carries_every_providers_error() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[AuthenticationError("x", provider="a")])
    backup = ScriptedChatModel(provider="b", outcomes=[unavailable("b")] * 3)
    with pytest.raises(AllProvidersFailedError) as caught:
        await chain(primary, backup).ainvoke("hi")
    errors = list(caught.value.errors.values())
    assert [type(e) for e in errors] == [AuthenticationError, ProviderUnavailableError]
    assert [e.provider for e in errors] == ["a", "b"]


def test_all_failed_in_sync_invoke() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[AuthenticationError("x", provider="a")])
    backup = ScriptedChatModel(provider="b", outcomes=[AuthenticationError("y", provider="b")])
    with pytest.raises(AllProvidersFailedError):
        chain(primary, backup).invoke("hi")


async def test_non_provider_errors_do_not_fall_back() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[RuntimeError("a bug")])
    backup = ScriptedChatModel(provider="b", outcomes=["from b"])
    with pytest.raises(RuntimeError):
        await chain(primary, backup).ainvoke("hi")
    assert backup.calls == []


async def test_stream_failing_before_first_chunk_is_retried_then_falls_back() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[("", unavailable())] * 3)
    backup = ScriptedChatModel(provider="b", outcomes=["streamed from b"])
    chunks = [c.content async for c in chain(primary, backup).astream("hi")]
    assert "".join(chunks) == "streamed from b"
    assert len(primary.calls) == 3


async def test_stream_failing_after_text_is_not_retried_nor_fallen_back() -> None:
    broken = StreamInterruptedError("cut", partial_text="one two", provider="a")
    primary = ScriptedChatModel(provider="a", outcomes=[("one two", broken)])
    backup = ScriptedChatModel(provider="b", outcomes=["from b"])
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError):
        async for chunk in chain(primary, backup).astream("hi"):
            seen.append(str(chunk.content))
    assert "".join(seen) == "one two"
    assert (len(primary.calls), backup.calls) == (1, [])


def test_sync_stream_falls_back() -> None:
    primary = ScriptedChatModel(
        provider="a", outcomes=[("", AuthenticationError("x", provider="a"))]
    )
    backup = ScriptedChatModel(provider="b", outcomes=["b streams"])
    assert "".join(str(c.content) for c in chain(primary, backup).stream("hi")) == "b streams"


async def test_batch_reports_all_failed_per_input() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[AuthenticationError("x", provider="a")] * 2)
    backup = ScriptedChatModel(
        provider="b", outcomes=["ok", AuthenticationError("y", provider="b")]
    )
    results = await chain(primary, backup).abatch(["one", "two"], return_exceptions=True)
    kinds = sorted(type(r).__name__ for r in results)
    assert kinds == ["AIMessage", "AllProvidersFailedError"]


async def test_fallback_that_breaks_mid_stream_raises_its_own_error() -> None:
    primary = ScriptedChatModel(provider="a", outcomes=[("", unavailable("a"))] * 3)
    broken = StreamInterruptedError("cut", partial_text="one", provider="b")
    backup = ScriptedChatModel(provider="b", outcomes=[("one", broken)])
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        async for chunk in chain(primary, backup).astream("hi"):
            seen.append(str(chunk.content))
    assert caught.value.provider == "b"
    assert seen == ["one"]


# --- bad input, before any request --------------------------------------------


CONFIGURED = {"openrouter_api_key": "sk-or-v1-x", "ollama_model": "llama3.2"}


UNENCODABLE = "hi \ud800 there"


async def _call(chain: Any, method: str, chat_input: Any, **keywords: Any) -> Any:
    if method == "invoke":
        return chain.invoke(chat_input, **keywords)
    if method == "ainvoke":
        return await chain.ainvoke(chat_input, **keywords)
    if method == "stream":
        return list(chain.stream(chat_input, **keywords))
    return [chunk async for chunk in chain.astream(chat_input, **keywords)]


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"temperature": 5}, "temperature must be between"),
        ({"max_tokens": -5}, "max_tokens must be between"),
        ({"top_p": float("nan")}, "top_p must be a finite number"),
        ({"temprature": 0.5}, r"unknown call keyword\(s\) \['temprature'\]"),
    ],
)
@pytest.mark.parametrize("method", ["invoke", "ainvoke", "stream", "astream"])
async def test_the_chain_itself_checks_call_keywords(
    keywords: dict[str, Any], message: str, method: str
) -> None:
    chain = build_chat_model(Settings(**CONFIGURED), ["openrouter", "ollama"])
    with pytest.raises(InvalidInputError, match=message):
        await _call(chain, method, "hi", **keywords)


@pytest.mark.parametrize(
    "chat_input",
    [
        UNENCODABLE,
        [("human", UNENCODABLE)],
        [{"role": "user", "content": [{"type": "text", "text": UNENCODABLE}]}],
    ],
)
@pytest.mark.parametrize("method", ["invoke", "ainvoke", "stream", "astream"])
async def test_the_chain_rejects_text_that_cannot_be_sent(chat_input: Any, method: str) -> None:
    chain = build_chat_model(Settings(**CONFIGURED), ["openrouter", "ollama"])
    with pytest.raises(InvalidInputError, match="surrogates not allowed at character 3"):
        await _call(chain, method, chat_input)


# --- structured output and tools ----------------------------------------------


def settings_for(server: LoopbackServer, **values: object) -> Settings:
    return Settings(
        openrouter_api_key="sk-or-v1-feature-test",
        openrouter_base_url=server.openrouter_base_url,
        openrouter_model="deepseek/deepseek-r1",
        **values,
    )


class Answer(BaseModel):
    value: int


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def json_when_asked(protocol: str, body: Mapping[str, Any]) -> str:
    return '{"value": 42}' if body.get("response_format") or body.get("format") else "plain"


@pytest.mark.live_local
async def test_structured_output_on_the_fallback_chain() -> None:
    with LoopbackServer(ollama_models=["llama3.2:latest"], responder=json_when_asked) as server:
        settings = settings_for(
            server, ollama_base_url=server.ollama_base_url, ollama_model="llama3.2"
        )
        chain = build_chat_model(settings, ["openrouter", "ollama"])
        structured = chain.with_structured_output(Answer)
        assert await structured.ainvoke("what is six times seven?") == Answer(value=42)
        body = server.requests("openrouter")[0].json
        assert body["response_format"]["type"] == "json_schema"
        assert body["provider"] == {"require_parameters": True}
        server.script("openrouter", [Fault.status(503)] * 3)  # then Ollama answers
        assert await structured.ainvoke("again?") == Answer(value=42)
        assert server.requests("ollama")[0].json["format"]["properties"] == {
            "value": {"title": "Value", "type": "integer"}
        }


@pytest.mark.live_local
async def test_bind_tools_on_the_fallback_chain(loopback: LoopbackServer) -> None:
    settings = settings_for(
        loopback, ollama_base_url=loopback.ollama_base_url, ollama_model="llama3.2"
    )
    with_tools = build_chat_model(settings, ["openrouter", "ollama"]).bind_tools([add])
    loopback.script("openrouter", [Fault.status(401)])
    await with_tools.ainvoke("add 1 and 2")
    assert loopback.requests("openrouter")[0].json["tools"][0]["function"]["name"] == "add"
    assert loopback.requests("ollama")[0].json["tools"][0]["function"]["name"] == "add"


@pytest.mark.live_local
async def test_structured_output_and_tools_with_a_single_provider() -> None:
    with LoopbackServer(responder=json_when_asked) as server:
        chain = build_chat_model(settings_for(server), ["openrouter"])
        assert await chain.with_structured_output(Answer).ainvoke("q") == Answer(value=42)
        await chain.bind_tools([add]).ainvoke("add 1 and 2")
        assert server.requests("openrouter")[1].json["tools"][0]["function"]["name"] == "add"


# -- no chain run when nothing listens ------------------------------------------------------


def _two_providers(first: Any) -> ProviderChain:
    settings = Settings()
    return ProviderChain(
        providers=[
            with_provider_policy(ScriptedChatModel(outcomes=[first]), settings, breaker=False),
            with_provider_policy(ScriptedChatModel(provider="second"), settings, breaker=False),
        ]
    )


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "message", call().model_dump(exclude={"id"})
    except Exception as exc:  # compared across the two paths
        return "error", (type(exc), str(exc))


@pytest.mark.parametrize(
    "first",
    ["hi", ProviderUnavailableError("down", provider="scripted", retryable=False)],
    ids=["answers", "falls back"],
)
@pytest.mark.parametrize("asynchronous", [False, True])
async def test_an_unobserved_call_gives_what_an_observed_one_gives(first, asynchronous):
    from langchain_core.callbacks import BaseCallbackHandler

    class Listener(BaseCallbackHandler):
        def __init__(self) -> None:
            self.chains: list[str] = []

        def on_chain_start(self, serialized, inputs, **kwargs):
            self.chains.append(str(kwargs.get("name")))

    results = []
    for callbacks in ([], [Listener()]):
        chain = _two_providers(first)
        config: Any = {"callbacks": callbacks}
        if asynchronous:
            reply = await chain.ainvoke("x", config)
            results.append(("message", reply.model_dump(exclude={"id"})))
        else:
            results.append(_outcome(lambda chain=chain, config=config: chain.invoke("x", config)))
    assert results[0] == results[1]
    assert results[0][0] == "message"


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_chain_run_starts_only_when_a_handler_listens(monkeypatch, asynchronous):
    import pygent_lc.chain as chain_module

    started: list[object] = []
    getters = ("get_callback_manager_for_config", "get_async_callback_manager_for_config")
    for getter in getters:
        original = getattr(chain_module, getter)

        def counted(config: Any, original: Any = original) -> Any:
            manager = original(config)
            start = manager.on_chain_start

            def on_chain_start(*args: Any, **kwargs: Any) -> Any:
                started.append(args)
                return start(*args, **kwargs)

            manager.on_chain_start = on_chain_start
            return manager

        monkeypatch.setattr(chain_module, getter, counted)
    chain = _two_providers("hi")
    reply = await chain.ainvoke("x") if asynchronous else chain.invoke("x")
    assert reply.text == "hi"
    assert started == []


# --- fallbacks are logged ------------------------------------------------------


@pytest.fixture
def fallback_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The ``pygent_lc.fallbacks`` log from DEBUG, with the process's rate limit reset."""
    fallback_notices.reset()
    with caplog.at_level(logging.DEBUG, logger="pygent_lc.fallbacks"):
        yield caplog
    fallback_notices.reset()


def fallback_records(log: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in log.records if r.name == "pygent_lc.fallbacks" and r.levelno == level]


@pytest.mark.parametrize("mode", MODES)
async def test_a_fallback_that_answers_logs_one_warning_naming_who_failed_why_and_who_answered(
    fallback_log: pytest.LogCaptureFixture, mode: Mode
) -> None:
    secret = "sk-or-v1-" + "f" * 40
    refused = AuthenticationError(
        f"no auth credentials found for {secret}", provider="a", status_code=401
    )
    primary = ScriptedChatModel(provider="a", outcomes=[refused])
    backup = ScriptedChatModel(provider="b", outcomes=["from b"])
    assert (await call(chain(primary, backup), mode, "hi")).content == "from b"
    [warning] = fallback_records(fallback_log, logging.WARNING)
    assert warning.getMessage() == "fell back: a failed (401 unauthorized); b answered"
    notice = warning.__dict__["fallback"]
    assert isinstance(notice, FallbackNotice)
    assert notice.as_dict()["failed"] == [{"provider": "a", "reason": "401 unauthorized"}]
    assert notice.served_by == "b"
    [debug] = fallback_records(fallback_log, logging.DEBUG)
    assert debug.getMessage().startswith(
        "a failed (401 unauthorized): AuthenticationError: a [401]"
    )
    assert secret not in warning.getMessage()


async def test_every_failed_attempt_is_a_debug_line_and_the_warning_names_them_all(
    fallback_log: pytest.LogCaptureFixture,
) -> None:
    a = ScriptedChatModel(provider="a", outcomes=[unavailable("a")] * 3)
    b = ScriptedChatModel(
        provider="b",
        outcomes=[ProviderUnavailableError("connection refused", provider="b", retryable=False)],
    )
    c = ScriptedChatModel(provider="c", outcomes=["from c"])
    assert (await chain(a, b, c).ainvoke("hi")).content == "from c"
    debug = [r.getMessage() for r in fallback_records(fallback_log, logging.DEBUG)]
    assert [line.split(":")[0] for line in debug] == [
        "a failed (503 unavailable)",
        "b failed (connection refused)",
    ]
    [warning] = fallback_records(fallback_log, logging.WARNING)
    assert warning.getMessage() == (
        "fell back: a failed (503 unavailable), b failed (connection refused); c answered"
    )


async def test_no_warning_when_the_first_answers_or_when_all_fail(
    fallback_log: pytest.LogCaptureFixture,
) -> None:
    fine = ScriptedChatModel(provider="a", outcomes=["from a"])
    await chain(fine, ScriptedChatModel(provider="b")).ainvoke("hi")
    assert fallback_log.records == []
    down = [AuthenticationError("x", provider="a", status_code=401)]
    with pytest.raises(AllProvidersFailedError):
        await chain(
            ScriptedChatModel(provider="a", outcomes=down),
            ScriptedChatModel(provider="b", outcomes=[unavailable("b")] * 3),
        ).ainvoke("hi")
    assert fallback_records(fallback_log, logging.WARNING) == []
    assert len(fallback_records(fallback_log, logging.DEBUG)) == 2


def test_the_warning_is_rate_limited_per_failure_with_a_count_of_what_was_left_out(
    fallback_log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(fallback_notices, "clock", lambda: now[0])
    key = AuthenticationError("bad key", provider="a", status_code=401)
    primary = ScriptedChatModel(provider="a", outcomes=[key] * 10)
    backup = ScriptedChatModel(provider="b", outcomes=["ok"] * 10)
    broken = chain(primary, backup)
    for _ in range(4):
        broken.invoke("hi")
        now[0] += 10
    # Another reason for the same provider is logged at once.
    other = chain(ScriptedChatModel(provider="a", outcomes=[unavailable("a")] * 3), backup)
    other.invoke("hi")
    now[0] += FALLBACK_WARNING_INTERVAL_S
    broken.invoke("hi")
    warnings = [r.getMessage() for r in fallback_records(fallback_log, logging.WARNING)]
    assert warnings == [
        "fell back: a failed (401 unauthorized); b answered",
        "fell back: a failed (503 unavailable); b answered",
        "fell back: a failed (401 unauthorized); b answered [3 more like this not logged]",
    ]
    # Every failed provider still has its DEBUG line (its retries are the retry log's).
    assert len(fallback_records(fallback_log, logging.DEBUG)) == 6


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (AuthenticationError("x", provider="p", status_code=401), "401 unauthorized"),
        (RateLimitError("slow down", provider="p", status_code=429), "429 rate limited"),
        (LocalRateLimitError("limit", provider="p"), "local rate limit reached"),
        (CircuitOpenError("open", provider="p"), "circuit open"),
        (ProviderUnavailableError("request timed out", provider="p"), "timeout"),
        (
            ProviderUnavailableError(
                "no reply within the deadline (request_timeout=1s)", provider="p"
            ),
            "timeout",
        ),
        (
            ProviderUnavailableError("connection failed (ReadError)", provider="p"),
            "connection failed",
        ),
        (ProviderUnavailableError("bad gateway", provider="p", status_code=502), "502 unavailable"),
        (ModelNotFoundError("no such model", provider="p", status_code=404), "404 model not found"),
        (ProviderError("odd", provider="p"), "provider error"),
    ],
)
def test_short_reason_is_the_kind_and_status_never_the_message(
    error: ProviderError, reason: str
) -> None:
    assert short_reason(error) == reason
