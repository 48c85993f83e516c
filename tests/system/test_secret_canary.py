"""A canary key must appear in no log line, repr, exception text or cassette."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest
import vcr

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.errors import PygentError
from pygent_lc.providers import openrouter_model
from tests.helpers import CANARY_KEY, ROOT, cassette_config, closed_port, secret_holders
from tests.loopback_server import Fault, LoopbackServer

pytestmark = pytest.mark.live_local


def canary_settings(server: LoopbackServer) -> Settings:
    return Settings(
        openrouter_api_key=CANARY_KEY,
        openrouter_base_url=server.openrouter_base_url,
        ollama_base_url=server.ollama_base_url,
        ollama_model="llama3.2",
        max_retries=1,
        retry_initial_wait=0.0,
        request_timeout=0.5,
    )


async def test_canary_key_in_no_log_repr_or_exception(
    loopback: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = canary_settings(loopback)
    backend = LangChainBackend(build_chat_model(settings, ["openrouter", "ollama"]))
    alone = LangChainBackend(build_chat_model(settings, ["openrouter"]))
    texts = [repr(settings), str(settings.model_dump()), repr(openrouter_model(settings))]
    texts.append(await backend.generate("hello"))
    texts.extend([part async for part in backend.stream("hello")])
    faults = [
        Fault.status(401, message=f"invalid key {CANARY_KEY}"),
        Fault.status(429),
        Fault.error_in_200(message=f"upstream saw {CANARY_KEY}"),
        Fault.mid_stream_error(after_chunks=1, message=f"broken for {CANARY_KEY}"),
        Fault.malformed_json(),
        Fault.hang(2),
    ]
    for fault in faults:
        loopback.script("openrouter", [fault, fault])
        try:
            texts.extend([part async for part in alone.stream("one two three")])
        except PygentError as exc:
            texts.extend([str(exc), repr(exc), repr(exc.__cause__), str(exc.__cause__)])
    logged = [record.getMessage() for record in caplog.records]
    logged += [str(record.args) for record in caplog.records]
    assert len(logged) > 10  # DEBUG logging really was on
    leaks = [text for text in texts + logged if CANARY_KEY in text]
    assert leaks == []


def test_recorded_cassette_holds_no_key(loopback: LoopbackServer, tmp_path: Path) -> None:
    recorder = vcr.VCR(**cassette_config(), record_mode="all")
    cassette = tmp_path / "canary.yaml"
    with recorder.use_cassette(str(cassette)):
        openrouter_model(canary_settings(loopback)).invoke("hello")
    written = cassette.read_text()
    assert "hello" in written  # it really recorded the exchange
    assert CANARY_KEY not in written
    assert "authorization" not in written.lower()


def test_committed_cassettes_hold_no_key_or_bearer_token() -> None:
    for path in (ROOT / "cassettes").rglob("*.yaml"):
        text = path.read_text()
        assert "Bearer " not in text, path
        assert "sk-or-v1-" not in text, path


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it was raised from or during (cause and context)."""
    chain: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is seen for seen in chain):
            continue
        chain.append(current)
        pending += [current.__cause__, current.__context__]
    return chain


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(402),
        Fault.status(401, message=f"invalid key {CANARY_KEY}"),
        Fault.status(500, message=f"upstream saw {CANARY_KEY}"),
        Fault.error_in_200(message=f"upstream saw {CANARY_KEY}"),
        Fault.mid_stream_error(after_chunks=1, message=f"broken for {CANARY_KEY}"),
    ],
    ids=["402", "401-echo", "500-echo", "error-in-200-echo", "mid-stream-echo"],
)
@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_key_in_no_exception_chain_or_traceback_local(
    loopback: LoopbackServer, fault: Fault, mode: str
) -> None:
    """What Sentry or loguru's diagnose mode would record: every exception of the
    chain, with the local variables of every frame."""
    loopback.script("openrouter", [fault] * 3)
    backend = LangChainBackend(build_chat_model(canary_settings(loopback), ["openrouter"]))
    failure = await failure_of(backend, mode)
    for exc in exception_chain(failure):
        shown = f"{exc!s} {exc!r} {getattr(exc, 'body', '')!r} {vars(exc)!r}"
        assert CANARY_KEY not in shown, type(exc).__name__
    recorded = traceback.TracebackException.from_exception(failure, capture_locals=True)
    assert CANARY_KEY not in "".join(recorded.format())


async def failure_of(backend: LangChainBackend, mode: str) -> PygentError:
    """The error of one call; its traceback starts here, not in a test holding the canary."""
    try:
        if mode == "invoke":
            await backend.generate("one two three")
        else:
            async for _ in backend.stream("one two three"):
                pass
    except PygentError as exc:
        return exc
    raise AssertionError("the call did not fail")


# Every fault the loopback server plays, and a refused connection.
ALL_FAULTS = {
    **{str(code): Fault.status(code) for code in (400, 401, 402, 403, 404, 408, 429)},
    **{str(code): Fault.status(code) for code in (500, 502, 503)},
    "401-echo": Fault.status(401, message=f"invalid key {CANARY_KEY}"),
    "error-in-200": Fault.error_in_200(),
    "error-in-200-echo": Fault.error_in_200(message=f"upstream saw {CANARY_KEY}"),
    "mid-stream-error": Fault.mid_stream_error(after_chunks=1),
    "malformed-json": Fault.malformed_json(),
    "truncated-before-text": Fault.truncated_stream(after_chunks=0),
    "truncated-after-text": Fault.truncated_stream(after_chunks=2),
    "hang": Fault.hang(2),
    "reset": Fault.reset(),
    "html-error": Fault.html_error(),
    "refused": None,
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", list(ALL_FAULTS))
@pytest.mark.parametrize("mode", ["invoke", "stream"])
@pytest.mark.parametrize("chain", ["alone", "chain"])
async def test_nothing_reachable_from_the_error_holds_the_key(
    loopback: LoopbackServer, fault: str, mode: str, chain: str
) -> None:
    """Every object an error tracker could read from the error we raise (causes,
    contexts, the group's errors, their requests and responses), and the pickle of
    every exception among them: no canary key. Asserted on our error's object graph,
    whatever the SDKs keep on theirs."""
    settings = canary_settings(loopback).updated(max_retries=0, breaker_failures=0)
    scripted = ALL_FAULTS[fault]
    if scripted is None:
        settings = settings.updated(openrouter_base_url=f"http://127.0.0.1:{closed_port()}/v1")
    else:
        loopback.script("openrouter", [scripted])
    loopback.script("ollama", [Fault.status(500)])
    providers = ["openrouter", "ollama"] if chain == "chain" else ["openrouter"]
    failure = await failure_of(LangChainBackend(build_chat_model(settings, providers)), mode)
    assert secret_holders(failure, CANARY_KEY) == []
