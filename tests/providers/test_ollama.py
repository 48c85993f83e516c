"""``pygent_lc.providers.ollama``: Ollama's native API on the wire, and what comes back.

The model's ollama clients get a scripted server on ``httpx.MockTransport``
(``client_kwargs={"transport": ...}``). ``installed_ollama_models`` calls
``httpx.get`` itself, with no client to hand in: those tests route
``httpx.get`` through the same transport (fixture ``tags``).
"""

from __future__ import annotations

import email.utils
import socket
import time
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from pygent_lc import Settings
from pygent_lc.errors import (
    ConfigurationError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
)
from pygent_lc.providers.ollama import (
    OllamaChatModel,
    check_ollama,
    check_ollama_model,
    installed_ollama_models,
    ollama_model,
)
from tests.providers.mock_http import (
    MockServer,
    Mode,
    Reply,
    call,
    json_reply,
    ndjson_reply,
    proxy_page,
    streamed_parts,
    text_reply,
)

MODEL = "llama3.2"
BASE_URL = "http://localhost:11434"
MODES: list[Mode] = ["invoke", "ainvoke", "stream", "astream"]


# ---------------------------------------------------------------- Ollama's replies
def line(content: str, **message: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "created_at": "2025-01-01T00:00:00.000000Z",
        "message": {"role": "assistant", "content": content, **message},
        "done": False,
    }


def final(content: str = "", *, done_reason: str = "stop", **message: Any) -> dict[str, Any]:
    """Ollama's last line: ``done: true`` with the counts and timings."""
    return {
        **line(content, **message),
        "done": True,
        "done_reason": done_reason,
        "total_duration": 1_000_000,
        "load_duration": 100_000,
        "prompt_eval_count": 3,
        "prompt_eval_duration": 200_000,
        "eval_count": 4,
        "eval_duration": 700_000,
    }


def streamed(*words: str) -> Reply:
    return ndjson_reply([*(line(word) for word in words), final()])


ECHO = streamed("echo:", " one", " two", " three")


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply({"error": message}, status, headers)


def not_found(model: str = MODEL) -> Reply:
    return error_reply(404, f'model "{model}" not found, try pulling it first')


# ---------------------------------------------------------------- the model, on the wire
def model_on(wire: MockServer, **values: Any) -> OllamaChatModel:
    settings = Settings(ollama_model=MODEL, **values)
    kwargs = wire.ollama_client_kwargs(timeout=settings.request_timeout)
    return ollama_model(settings, client_kwargs=kwargs)


# ---------------------------------------------------------------- request
@pytest.mark.parametrize("mode", MODES)
async def test_chat_request_on_the_wire(wire: MockServer, mode: Mode) -> None:
    wire.script(ECHO)
    await call(
        model_on(wire),
        mode,
        temperature=0.2,
        max_tokens=7,
        stop=["\n"],
        top_p=0.9,
        top_k=40,
        seed=1,
    )
    [request] = wire.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE_URL}/api/chat")
    assert request.headers["user-agent"].startswith("ollama-python/")
    assert request.headers["content-type"] == "application/json"
    body = wire.body()
    assert body["model"] == MODEL
    assert body["messages"] == [{"role": "user", "content": "one two three"}]
    assert body["stream"] is True  # invoke streams too, and aggregates
    assert body["options"] == {
        "num_ctx": 8192,  # explicit: Ollama's own default silently truncates
        "temperature": 0.2,
        "num_predict": 7,
        "stop": ["\n"],
        "top_p": 0.9,
        "top_k": 40,
        "seed": 1,
    }
    # Only inside options, where Ollama reads them.
    assert not {"temperature", "max_tokens", "num_predict", "top_p", "top_k", "seed"} & body.keys()
    assert body.get("format") in (None, "")


def test_base_url_num_ctx_and_per_call_overrides(wire: MockServer) -> None:
    wire.script(ECHO)
    model = model_on(wire, ollama_base_url="http://gpu-box:11434", ollama_num_ctx=4096)
    model.invoke("hi", num_ctx=2048, model="qwen2.5:7b")
    assert str(wire.requests[0].url) == "http://gpu-box:11434/api/chat"
    body = wire.body()
    assert body["options"]["num_ctx"] == 2048
    assert body["model"] == "qwen2.5:7b"
    assert model._get_ls_params(model="qwen2.5:7b")["ls_model_name"] == "qwen2.5:7b"


def test_the_model_keeps_its_own_num_ctx_and_temperature(wire: MockServer) -> None:
    wire.script(ECHO)
    model = ollama_model(
        Settings(ollama_model=MODEL, ollama_num_ctx=4096),
        temperature=0.5,
        client_kwargs=wire.ollama_client_kwargs(),
    )
    model.invoke("hi")
    assert wire.body()["options"] == {"num_ctx": 4096, "temperature": 0.5}


class Answer(BaseModel):
    value: int


def test_structured_output_sends_the_schema_as_format(wire: MockServer) -> None:
    wire.script(ndjson_reply([line('{"value": '), line("42}"), final()]))
    structured = model_on(wire).with_structured_output(Answer)
    assert structured.invoke("six times seven?") == Answer(value=42)
    fmt = wire.body()["format"]
    assert fmt["type"] == "object"
    assert fmt["properties"] == {"value": {"title": "Value", "type": "integer"}}
    assert fmt["required"] == ["value"]


def test_json_mode_sends_format_json(wire: MockServer) -> None:
    wire.script(ndjson_reply([line('{"value": 1}'), final()]))
    assert model_on(wire).with_structured_output(Answer, method="json_mode").invoke("1?") == Answer(
        value=1
    )
    assert wire.body()["format"] == "json"


def test_bound_tools_on_the_wire_and_the_tool_call_back(wire: MockServer) -> None:
    call_ = {"function": {"name": "Answer", "arguments": {"value": 3}}}
    wire.script(ndjson_reply([final("", tool_calls=[call_])]))
    reply = model_on(wire).bind_tools([Answer]).invoke("1+2?")
    tools = wire.body()["tools"]
    assert [tool["function"]["name"] for tool in tools] == ["Answer"]
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("Answer", {"value": 3})]


# ---------------------------------------------------------------- reply
@pytest.mark.parametrize("mode", MODES)
async def test_ndjson_reply_text_usage_and_metadata(wire: MockServer, mode: Mode) -> None:
    wire.script(ECHO)
    reply = await call(model_on(wire), mode)
    assert reply.content == "echo: one two three"
    assert reply.usage_metadata is not None
    usage = reply.usage_metadata
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (3, 4, 7)
    meta = reply.response_metadata
    assert meta["done_reason"] == "stop"
    assert meta["model_name"] == MODEL
    assert meta["model_provider"] == "ollama"


def test_a_stream_delivers_each_line_as_it_comes(wire: MockServer) -> None:
    wire.script(ECHO)
    parts = [str(chunk.content) for chunk in model_on(wire).stream("one two three")]
    assert [part for part in parts if part] == ["echo:", " one", " two", " three"]


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_a_reply_without_the_final_line_is_an_outage(wire: MockServer, mode: Mode) -> None:
    wire.script(ndjson_reply([line("echo:"), line(" one")]))
    with pytest.raises(ProviderUnavailableError, match="before Ollama's final line") as caught:
        await call(model_on(wire), mode)
    assert caught.value.retryable
    assert (caught.value.provider, caught.value.model) == ("ollama", MODEL)


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_stream_without_the_final_line_keeps_the_partial_text(
    wire: MockServer, mode: Mode
) -> None:
    wire.script(ndjson_reply([line("echo:"), line(" one")]))
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError, match="before the provider marked it finished") as c:
        await streamed_parts(model_on(wire), mode, seen)
    assert c.value.partial_text == "".join(seen) == "echo: one"
    assert c.value.provider == "ollama"


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_an_error_line_mid_stream_keeps_the_partial_text(
    wire: MockServer, mode: Mode
) -> None:
    wire.script(ndjson_reply([line("echo:"), line(" one"), {"error": "an error was encountered"}]))
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError, match="an error was encountered") as caught:
        await streamed_parts(model_on(wire), mode, seen)
    assert caught.value.partial_text == "".join(seen) == "echo: one"
    assert caught.value.retryable is False


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_an_error_line_in_an_invoke_is_a_retryable_outage(
    wire: MockServer, mode: Mode
) -> None:
    """invoke aggregates a stream: nothing reached the caller, so it can be retried."""
    wire.script(ndjson_reply([line("echo:"), {"error": "an error was encountered"}]))
    with pytest.raises(ProviderUnavailableError, match="an error was encountered") as caught:
        await call(model_on(wire), mode)
    assert type(caught.value) is ProviderUnavailableError
    assert (caught.value.status_code, caught.value.retryable) == (None, True)


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_connection_lost_mid_stream_keeps_the_partial_text(
    wire: MockServer, mode: Mode
) -> None:
    wire.script(ndjson_reply([line("echo:"), line(" one"), line(" two"), final()], broken_after=2))
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError, match="RemoteProtocolError") as caught:
        await streamed_parts(model_on(wire), mode, seen)
    assert caught.value.partial_text == "echo: one"


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


# (reply, typed error, status, retry_after)
STATUSES = [
    pytest.param(not_found(), ModelNotFoundError, 404, None, id="404-model-not-found"),
    pytest.param(text_reply("404 page not found", 404), ModelNotFoundError, 404, None, id="404"),
    pytest.param(
        error_reply(429, "server busy", {"Retry-After": "2"}),
        RateLimitError,
        429,
        2.0,
        id="429-retry-after-seconds",
    ),
    pytest.param(error_reply(429, "server busy"), RateLimitError, 429, None, id="429"),
    pytest.param(error_reply(400, 'invalid option "num_ctxx"'), ProviderError, 400, None, id="400"),
    pytest.param(
        error_reply(500, "llama runner process has terminated"),
        ProviderUnavailableError,
        500,
        None,
        id="500",
    ),
    pytest.param(proxy_page(502), ProviderUnavailableError, 502, None, id="502-html-page"),
    pytest.param(
        error_reply(503, "loading model", {"Retry-After": "1"}),
        ProviderUnavailableError,
        503,
        1.0,
        id="503-retry-after",
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("reply", "error", "status", "retry_after"), STATUSES)
async def test_http_errors_are_typed(
    wire: MockServer,
    mode: Mode,
    reply: Reply,
    error: type[ProviderError],
    status: int,
    retry_after: float | None,
) -> None:
    wire.script(reply)
    with pytest.raises(error) as caught:
        await call(model_on(wire), mode)
    typed = caught.value
    assert type(typed) is error
    assert (typed.provider, typed.model, typed.status_code) == ("ollama", MODEL, status)
    assert typed.retry_after == retry_after
    if status == 502:
        assert typed.message == "HTML error page: 502 Bad Gateway"
    if reply is STATUSES[0].values[0]:
        assert typed.message == 'model "llama3.2" not found, try pulling it first'
    assert wire.count == 1


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_retry_after_as_an_http_date(wire: MockServer, mode: Mode) -> None:
    wire.script(error_reply(429, "server busy", {"Retry-After": http_date(30)}))
    with pytest.raises(RateLimitError) as caught:
        await call(model_on(wire), mode)
    assert caught.value.retry_after == pytest.approx(30, abs=1.5)


@pytest.mark.parametrize("mode", MODES)
async def test_an_empty_reply_is_a_typed_failure(wire: MockServer, mode: Mode) -> None:
    wire.script(ndjson_reply([line(""), final("")]))
    with pytest.raises(ProviderUnavailableError, match="empty reply") as caught:
        await call(model_on(wire), mode)
    assert caught.value.retryable is False


@pytest.mark.parametrize("mode", MODES)
async def test_a_malformed_line_is_a_retryable_outage(wire: MockServer, mode: Mode) -> None:
    wire.script(Reply(200, (b"{not json\n",), {"content-type": "application/x-ndjson"}))
    with pytest.raises(ProviderUnavailableError, match="malformed response") as caught:
        await call(model_on(wire), mode)
    assert caught.value.retryable


# ---------------------------------------------------------------- the factory
def test_ollama_model_from_settings() -> None:
    model = ollama_model(Settings(ollama_model=MODEL, request_timeout=12))
    assert (model.model, model.base_url, model.num_ctx) == (MODEL, BASE_URL, 8192)
    assert model.client_kwargs == {"timeout": 12.0}
    assert model.http_pools is not None  # the package's own deadline-aware transports
    assert model.http_pools.timeout == 12.0


def test_a_transport_of_the_callers_replaces_the_packages(wire: MockServer) -> None:
    assert model_on(wire).http_pools is None


def test_ollama_model_needs_a_model_name() -> None:
    with pytest.raises(ConfigurationError, match="OLLAMA_MODEL") as caught:
        ollama_model(Settings())
    assert caught.value.field == "ollama_model"
    assert ollama_model(Settings(), model="qwen2.5:7b").model == "qwen2.5:7b"


# ---------------------------------------------------------------- /api/tags
def tag(name: str) -> dict[str, Any]:
    return {"name": name, "model": name, "size": 1, "digest": "sha256:0", "details": {}}


@pytest.fixture
def tags(wire: MockServer, monkeypatch: pytest.MonkeyPatch) -> MockServer:
    """``httpx.get`` answered by ``wire`` (``installed_ollama_models`` takes no client)."""

    def get(url: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(transport=wire.transport) as client:
            response = client.get(url, **kwargs)
            response.read()
            return response

    monkeypatch.setattr(httpx, "get", get)
    return wire


def test_installed_models_from_api_tags(tags: MockServer) -> None:
    tags.script(json_reply({"models": [tag("llama3.2:latest"), tag("qwen2.5:7b")]}))
    settings = Settings(ollama_base_url="http://gpu-box:11434", request_timeout=60)
    assert installed_ollama_models(settings) == ["llama3.2:latest", "qwen2.5:7b"]
    [request] = tags.requests
    assert (request.method, str(request.url)) == ("GET", "http://gpu-box:11434/api/tags")
    assert request.extensions["timeout"]["read"] == 10.0  # capped: a check, not a chat


@pytest.mark.parametrize(
    ("wanted", "found"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("llama3.2:latest", "llama3.2:latest"),
        ("qwen2.5:7b", "qwen2.5:7b"),
    ],
)
def test_check_ollama_model_finds_the_installed_name(
    tags: MockServer, wanted: str, found: str
) -> None:
    tags.script(json_reply({"models": [tag("llama3.2:latest"), tag("qwen2.5:7b")]}))
    assert check_ollama_model(Settings(), wanted) == found


def test_check_ollama_model_names_what_is_installed_and_how_to_pull(tags: MockServer) -> None:
    tags.script(json_reply({"models": [tag("llama3.2:latest"), tag("qwen2.5:7b")]}))
    with pytest.raises(ModelNotFoundError) as caught:
        check_ollama_model(Settings(), "mistral")
    error = caught.value
    assert (error.provider, error.model, error.status_code) == ("ollama", "mistral", 404)
    assert "installed: llama3.2:latest, qwen2.5:7b" in error.message
    assert "run `ollama pull mistral`" in error.message
    tags.script(json_reply({"models": []}))
    with pytest.raises(ModelNotFoundError, match=r"installed: none"):
        check_ollama_model(Settings(ollama_model="qwen2.5:7b"), "qwen2.5")


def test_check_ollama_model_uses_the_configured_model_or_says_it_is_missing(
    tags: MockServer,
) -> None:
    tags.script(json_reply({"models": [tag("llama3.2:latest")]}))
    assert check_ollama_model(Settings(ollama_model=MODEL)) == "llama3.2:latest"
    with pytest.raises(ConfigurationError, match="OLLAMA_MODEL"):
        check_ollama_model(Settings())
    assert tags.count == 1  # nothing asked without a model name


def test_check_ollama_model_on_a_host_that_does_not_answer_says_what_to_do(
    tags: MockServer,
) -> None:
    """The hint comes with the model check itself, not only with the chain's check."""
    tags.script(httpx.ConnectError("[Errno 111] Connection refused"))
    settings = Settings(ollama_base_url="http://gpu-box:11434", ollama_model=MODEL)
    with pytest.raises(ProviderUnavailableError) as caught:
        check_ollama_model(settings)
    error = caught.value
    assert "Ollama at http://gpu-box:11434 did not answer (connection refused" in error.message
    assert "start it with `ollama serve` or set OLLAMA_BASE_URL" in error.message
    assert (error.provider, error.model, error.retryable) == ("ollama", MODEL, False)


@pytest.mark.parametrize(
    ("reply", "error", "text"),
    [
        pytest.param(
            error_reply(500, "boom"), ProviderUnavailableError, '{"error": "boom"}', id="500"
        ),
        pytest.param(
            proxy_page(502), ProviderUnavailableError, "HTML error page: 502 Bad Gateway", id="html"
        ),
        pytest.param(
            text_reply("{not json", 200, "application/json"),
            ProviderUnavailableError,
            "malformed response",
            id="malformed-json",
        ),
        pytest.param(
            json_reply({"models": [{"size": 1}]}),
            ProviderUnavailableError,
            "malformed response: 'name'",
            id="entry-without-name",
        ),
        pytest.param(
            json_reply({"models": 5}),
            ProviderUnavailableError,
            "malformed response",
            id="models-not-a-list",
        ),
        pytest.param(
            httpx.ConnectError("[Errno 111] Connection refused"),
            ProviderUnavailableError,
            "connection refused",
            id="refused",
        ),
    ],
)
def test_api_tags_failures_are_typed(
    tags: MockServer, reply: Reply | Exception, error: type[ProviderError], text: str
) -> None:
    tags.script(reply)
    with pytest.raises(error) as caught:
        installed_ollama_models(Settings())
    assert type(caught.value) is error
    assert text in caught.value.message
    assert caught.value.provider == "ollama"


# --- a real refused connection ------------------------------------------------


@pytest.mark.live_local
def test_check_ollama_model_server_down() -> None:
    settings = Settings(ollama_base_url="http://127.0.0.1:9", ollama_model="llama3.2")
    with pytest.raises(ProviderUnavailableError):
        check_ollama_model(settings)


def test_a_host_name_that_does_not_resolve_is_named_with_a_hint_that_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not "connection refused, run `ollama serve`": the name never became an address.
    (The lookup fails inside the process: no packet leaves the machine.)"""

    def no_such_name(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    settings = Settings(ollama_base_url="http://ollama.example:11434", ollama_model="llama3.2")
    with pytest.raises(ProviderUnavailableError) as raised:
        check_ollama(settings)
    message = str(raised.value)
    assert "host name not found (DNS)" in message
    assert "check the host name in OLLAMA_BASE_URL" in message
    assert "ollama serve" not in message and "refused" not in message
