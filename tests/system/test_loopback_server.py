"""Tests of the loopback OpenRouter/Ollama server used by the library's tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.loopback_server import Fault, LoopbackServer

pytestmark = pytest.mark.live_local

AUTH = {"Authorization": "Bearer sk-or-v1-test"}
CHAT = "/chat/completions"


def _msgs(text: str, system: str | None = None) -> list[dict[str, str]]:
    out = [{"role": "system", "content": system}] if system else []
    return [*out, {"role": "user", "content": text}]


def _or_body(text: str = "hello big world", **extra: Any) -> dict[str, Any]:
    return {"model": "loopback/echo", "messages": _msgs(text), **extra}


def _sse_events(raw: str) -> tuple[list[str], list[Any]]:
    """(comment lines, data payloads: parsed JSON or the raw string when not JSON)."""
    comments: list[str] = []
    data: list[Any] = []
    for line in raw.split("\n"):
        if line.startswith(":"):
            comments.append(line)
        elif line.startswith("data: "):
            payload = line[len("data: ") :]
            try:
                data.append(json.loads(payload))
            except ValueError:
                data.append(payload)
    return comments, data


@pytest.fixture
def srv() -> Iterator[LoopbackServer]:
    with LoopbackServer(ollama_models=["llama3.2:latest", "qwen2.5:0.5b"]) as server:
        yield server
        assert server.errors == []


@pytest.fixture
def orc(srv: LoopbackServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.openrouter_base_url, headers=AUTH, timeout=10) as client:
        yield client


@pytest.fixture
def olc(srv: LoopbackServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.ollama_base_url, timeout=10) as client:
        yield client


# --------------------------------------------------------------------------- lifecycle
def test_urls_and_lifecycle() -> None:
    server = LoopbackServer()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    try:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.openrouter_base_url == server.base_url + "/api/v1"
        assert server.ollama_base_url == server.base_url
        port = server.port
        assert httpx.get(server.base_url + "/api/version").json() == {"version": "0.6.0"}
    finally:
        server.stop()
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=2)
    server.stop()  # idempotent


def test_listens_on_loopback_only(srv: LoopbackServer) -> None:
    assert srv._httpd is not None
    assert srv._httpd.server_address[0] == "127.0.0.1"


# --------------------------------------------------------------------------- OpenRouter
def test_openrouter_answer_shape_cost_and_generation_id(
    srv: LoopbackServer, orc: httpx.Client
) -> None:
    r = orc.post(CHAT, json=_or_body("hello big world"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert r.headers["x-generation-id"] == body["id"]
    assert body["id"].startswith("gen-")
    assert body["provider"] == "LoopbackAI"
    assert body["model"] == "loopback/echo"
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "echo: hello big world",
        "refusal": None,
        "reasoning": None,
    }
    assert choice["finish_reason"] == "stop"
    assert choice["native_finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == 3
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == 7
    assert usage["cost"] == pytest.approx(3 * 1e-6 + 4 * 2e-6)
    assert usage["is_byok"] is False
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    assert "upstream_inference_cost" in usage["cost_details"]


def test_openrouter_ids_unique_and_prompt_counts_all_messages(orc: httpx.Client) -> None:
    body = {"model": "m", "messages": _msgs("one two", system="you are terse")}
    a, b = orc.post(CHAT, json=body).json(), orc.post(CHAT, json=body).json()
    assert a["id"] != b["id"]
    assert a["usage"]["prompt_tokens"] == 5


def test_openrouter_custom_prices_provider_and_responder() -> None:
    def responder(protocol: str, body: Any) -> str:
        return f"{protocol} says 42"

    with (
        LoopbackServer(responder=responder, provider="DeepInfra", price_in=0.5, price_out=1.0) as s,
        httpx.Client(base_url=s.openrouter_base_url, headers=AUTH) as c,
    ):
        body = c.post(CHAT, json=_or_body("x y")).json()
        assert body["choices"][0]["message"]["content"] == "openrouter says 42"
        assert body["provider"] == "DeepInfra"
        assert body["usage"]["cost"] == pytest.approx(2 * 0.5 + 3 * 1.0)
        o = httpx.post(s.ollama_base_url + "/api/chat", json={**_or_body(), "model": "llama3.2"})
        assert o.text.splitlines()[0]  # ollama streams by default
        assert "ollama" in "".join(json.loads(x)["message"]["content"] for x in o.text.splitlines())


def test_openrouter_models_fallback_reports_first_model(orc: httpx.Client) -> None:
    body = orc.post(CHAT, json=_or_body(models=["a/first", "b/second"])).json()
    assert body["model"] == "a/first"


def test_openrouter_stream_shape(srv: LoopbackServer, orc: httpx.Client) -> None:
    with orc.stream("POST", CHAT, json=_or_body("hello big world", stream=True)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        gen_id = r.headers["x-generation-id"]
        raw = r.read().decode()
    assert raw.startswith(": OPENROUTER PROCESSING\n\n")
    comments, events = _sse_events(raw)
    assert comments == [": OPENROUTER PROCESSING"]
    assert events[-1] == "[DONE]"
    chunks, usage_chunk = events[:-2], events[-2]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == [
        "echo:",
        " hello",
        " big",
        " world",
    ]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == gen_id for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert chunks[-1]["choices"][0]["native_finish_reason"] == "stop"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 4
    assert usage_chunk["usage"]["cost"] == pytest.approx(3e-6 + 8e-6)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("extra", "content", "finish"),
    [
        ({"max_tokens": 2}, "echo: alpha", "length"),
        ({"max_completion_tokens": 3}, "echo: alpha beta", "length"),
        ({"max_tokens": 0}, "", "length"),
        ({"max_tokens": 50}, "echo: alpha beta gamma delta", "stop"),
        ({"stop": "gamma"}, "echo: alpha beta ", "stop"),
        ({"stop": ["zzz", " beta"]}, "echo: alpha", "stop"),
        ({"stop": " beta", "max_tokens": 1}, "echo:", "length"),
    ],
)
def test_openrouter_max_tokens_and_stop(
    orc: httpx.Client, stream: bool, extra: dict[str, Any], content: str, finish: str
) -> None:
    body = _or_body("alpha beta gamma delta", stream=stream, **extra)
    if stream:
        _, events = _sse_events(orc.post(CHAT, json=body).text)
        chunks, usage = events[:-2], events[-2]["usage"]
        got = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
        got_finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        data = orc.post(CHAT, json=body).json()
        got, got_finish, usage = (
            data["choices"][0]["message"]["content"],
            data["choices"][0]["finish_reason"],
            data["usage"],
        )
    assert got == content
    assert got_finish == finish
    assert usage["completion_tokens"] == len(content.split())


def test_openrouter_requires_auth(srv: LoopbackServer) -> None:
    r = httpx.post(srv.openrouter_base_url + CHAT, json=_or_body())
    assert r.status_code == 401
    assert r.json()["error"]["code"] == 401
    assert "x-generation-id" in r.headers
    assert srv.request_count("openrouter") == 1
    assert srv.requests("openrouter")[0].fault is None
    r = httpx.get(srv.openrouter_base_url + "/key")
    assert r.status_code == 401


def test_openrouter_specific_api_key() -> None:
    with LoopbackServer(api_key="sk-right") as s:
        url = s.openrouter_base_url + CHAT
        wrong = httpx.post(url, json=_or_body(), headers={"Authorization": "Bearer sk-wrong"})
        assert wrong.status_code == 401
        right = httpx.post(url, json=_or_body(), headers={"Authorization": "Bearer sk-right"})
        assert right.status_code == 200


def test_openrouter_models_endpoint(orc: httpx.Client) -> None:
    r = orc.get("/models")
    assert r.status_code == 200
    data = r.json()["data"]
    assert len(data) >= 3
    assert any(m["id"].endswith(":free") for m in data)
    for m in data:
        assert {"id", "canonical_slug", "name", "context_length", "supported_parameters"} <= set(m)
        assert set(m["pricing"]) >= {"prompt", "completion", "request", "image"}
        assert all(isinstance(v, str) for v in m["pricing"].values())
        assert set(m["top_provider"]) == {"context_length", "max_completion_tokens", "is_moderated"}
    echo = next(m for m in data if m["id"] == "loopback/echo")
    assert float(echo["pricing"]["prompt"]) == pytest.approx(1e-6)
    assert "e" not in echo["pricing"]["prompt"]


def test_openrouter_custom_catalog() -> None:
    catalog = [{"id": "x/y", "pricing": {"prompt": 0.25, "completion": "0.5"}}]
    with LoopbackServer(models_catalog=catalog) as s:
        data = httpx.get(s.openrouter_base_url + "/models").json()["data"]
    assert [m["id"] for m in data] == ["x/y"]
    assert data[0]["pricing"] == {
        "prompt": "0.25",
        "completion": "0.5",
        "request": "0",
        "image": "0",
    }


def test_openrouter_key_and_generation(srv: LoopbackServer, orc: httpx.Client) -> None:
    first = orc.post(CHAT, json=_or_body("a b c")).json()
    with orc.stream("POST", CHAT, json=_or_body("d e", stream=True)) as r:
        streamed_id = r.headers["x-generation-id"]
        _, events = _sse_events(r.read().decode())
    streamed_cost = events[-2]["usage"]["cost"]

    key = orc.get("/key")
    assert key.status_code == 200
    info = key.json()["data"]
    assert {"label", "limit", "limit_remaining", "usage", "is_free_tier"} <= set(info)
    assert info["usage"] == pytest.approx(first["usage"]["cost"] + streamed_cost)

    gen = orc.get("/generation", params={"id": first["id"]})
    assert gen.status_code == 200
    data = gen.json()["data"]
    assert data["id"] == first["id"]
    assert data["total_cost"] == pytest.approx(first["usage"]["cost"])
    assert data["provider_name"] == "LoopbackAI"
    assert data["model"] == "loopback/echo"
    assert isinstance(data["latency"], int)
    assert data["native_tokens_prompt"] == 3
    assert data["native_tokens_completion"] == 4
    assert orc.get("/generation", params={"id": streamed_id}).json()["data"]["streamed"] is True
    missing = orc.get("/generation", params={"id": "gen-nope"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == 404


def test_key_limit_remaining() -> None:
    with LoopbackServer(key_limit=1.0, price_in=0.1, price_out=0.0) as s:
        c = httpx.Client(base_url=s.openrouter_base_url, headers=AUTH)
        c.post(CHAT, json=_or_body("a b"))
        info = c.get("/key").json()["data"]
    assert info["limit"] == 1.0
    assert info["limit_remaining"] == pytest.approx(0.8)


# --------------------------------------------------------------------------- faults
@pytest.mark.parametrize("stream", [False, True])
def test_fault_status_with_retry_after_then_ok(
    srv: LoopbackServer, orc: httpx.Client, stream: bool
) -> None:
    srv.script("openrouter", [Fault.status(429, retry_after=1), Fault.ok()])
    assert srv.pending("openrouter") == 2
    r = orc.post(CHAT, json=_or_body(stream=stream))
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == 429
    assert isinstance(r.json()["error"]["message"], str)
    assert "x-generation-id" in r.headers
    assert orc.post(CHAT, json=_or_body(stream=stream)).status_code == 200
    assert orc.post(CHAT, json=_or_body(stream=stream)).status_code == 200
    assert srv.pending("openrouter") == 0
    assert [q.fault for q in srv.requests("openrouter")] == ["status", "ok", "ok"]


def test_fault_status_message_and_metadata(srv: LoopbackServer, orc: httpx.Client) -> None:
    meta = {"reasons": ["violence"], "flagged_input": "...", "provider_name": "X"}
    srv.script("openrouter", [Fault.status(403, message="flagged", metadata=meta)])
    srv.script("openrouter", [Fault.status(402)])  # script() appends
    r = orc.post(CHAT, json=_or_body())
    assert r.status_code == 403
    assert r.json() == {"error": {"code": 403, "message": "flagged", "metadata": meta}}
    assert "retry-after" not in r.headers
    r = orc.post(CHAT, json=_or_body())
    assert r.status_code == 402
    assert r.json()["error"]["code"] == 402


def test_fault_error_in_200(srv: LoopbackServer, orc: httpx.Client) -> None:
    srv.script("openrouter", [Fault.error_in_200(), Fault.error_in_200(code=502, message="boom")])
    r = orc.post(CHAT, json=_or_body())
    assert r.status_code == 200
    assert r.json() == {
        "error": {
            "code": 429,
            "message": "Provider returned error",
            "metadata": {"raw": "Too Many Requests", "provider_name": "Hyperbolic"},
        }
    }
    r = orc.post(CHAT, json=_or_body(stream=True))
    assert r.status_code == 200
    comments, events = _sse_events(r.text)
    assert comments == [": OPENROUTER PROCESSING"]
    assert len(events) == 1
    assert events[0]["error"]["code"] == 502
    assert events[0]["error"]["message"] == "boom"
    assert events[0]["choices"][0]["finish_reason"] == "error"


def test_fault_mid_stream_error_openrouter(srv: LoopbackServer, orc: httpx.Client) -> None:
    srv.script("openrouter", [Fault.mid_stream_error(after_chunks=2, code=502, message="gone")])
    r = orc.post(CHAT, json=_or_body("hello big world", stream=True))
    assert r.status_code == 200
    _, events = _sse_events(r.text)
    assert [e["choices"][0]["delta"]["content"] for e in events[:2]] == ["echo:", " hello"]
    assert all("error" not in e for e in events[:2])
    err = events[2]
    assert err["error"] == {"code": 502, "message": "gone"}
    assert err["choices"] == [
        {
            "index": 0,
            "delta": {"content": ""},
            "finish_reason": "error",
            "native_finish_reason": None,
        }
    ]
    assert len(events) == 3  # no usage, no [DONE]


def test_fault_mid_stream_error_pads_short_answers(srv: LoopbackServer, orc: httpx.Client) -> None:
    srv.script("openrouter", [Fault.mid_stream_error(after_chunks=5)])
    _, events = _sse_events(orc.post(CHAT, json=_or_body("hi", stream=True)).text)
    assert len(events) == 6
    assert "error" in events[5]


def test_fault_mid_stream_error_non_stream_is_error_in_200(
    srv: LoopbackServer, orc: httpx.Client
) -> None:
    srv.script("openrouter", [Fault.mid_stream_error(code=502, message="gone")])
    r = orc.post(CHAT, json=_or_body())
    assert r.status_code == 200
    assert r.json() == {"error": {"code": 502, "message": "gone"}}


def test_fault_malformed_json(srv: LoopbackServer, orc: httpx.Client, olc: httpx.Client) -> None:
    srv.script("openrouter", [Fault.malformed_json(), Fault.malformed_json()])
    r = orc.post(CHAT, json=_or_body())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        r.json()
    r = orc.post(CHAT, json=_or_body(stream=True))
    assert "data: {not json\n" in r.text
    srv.script("ollama", [Fault.malformed_json(), Fault.malformed_json()])
    r = olc.post("/api/chat", json={"model": "llama3.2", "messages": _msgs("x"), "stream": False})
    with pytest.raises(json.JSONDecodeError):
        r.json()
    r = olc.post("/api/chat", json={"model": "llama3.2", "messages": _msgs("x")})
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text.splitlines()[0])


def test_fault_truncated_stream(srv: LoopbackServer, orc: httpx.Client) -> None:
    srv.script("openrouter", [Fault.truncated_stream(after_chunks=2)])
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        orc.stream("POST", CHAT, json=_or_body("a b c d", stream=True)) as r,
    ):
        received.extend(r.iter_lines())  # keeps the lines read before the error
    _, events = _sse_events("\n".join(received))
    assert len(events) == 2
    assert "[DONE]" not in events
    assert orc.post(CHAT, json=_or_body()).status_code == 200  # pool recovers


def test_fault_truncated_non_stream(srv: LoopbackServer, orc: httpx.Client) -> None:
    srv.script("openrouter", [Fault.truncated_stream()])
    with pytest.raises(httpx.RemoteProtocolError):
        orc.post(CHAT, json=_or_body())


def test_fault_hang_times_out_client_then_serves(srv: LoopbackServer, orc: httpx.Client) -> None:
    srv.script("openrouter", [Fault.hang(5)])
    t0 = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        orc.post(CHAT, json=_or_body(), timeout=0.3)
    assert time.monotonic() - t0 < 2
    assert orc.post(CHAT, json=_or_body()).status_code == 200


def test_fault_hang_short_then_closes(srv: LoopbackServer, orc: httpx.Client) -> None:
    srv.script("openrouter", [Fault.hang(0.2)])
    with pytest.raises(httpx.RemoteProtocolError):
        orc.post(CHAT, json=_or_body())


def test_hang_capped_by_max_hang() -> None:
    with LoopbackServer(max_hang=0.3) as s:
        s.script("ollama", [Fault.hang(60)])
        t0 = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(s.base_url + "/api/chat", json={"model": "llama3.2"}, timeout=10)
        assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("protocol", ["openrouter", "ollama"])
def test_fault_reset(srv: LoopbackServer, protocol: str) -> None:
    srv.script(protocol, [Fault.reset()])  # type: ignore[arg-type]
    url = srv.openrouter_base_url + CHAT if protocol == "openrouter" else srv.base_url + "/api/chat"
    body = _or_body() if protocol == "openrouter" else {"model": "llama3.2", "messages": _msgs("x")}
    with pytest.raises(httpx.ReadError) as info:
        httpx.post(url, json=body, headers=AUTH)
    assert isinstance(info.value.__context__, ConnectionResetError) or "reset" in str(info.value)
    assert httpx.post(url, json=body, headers=AUTH).status_code == 200


def test_fault_latency_and_constructor_latency(srv: LoopbackServer, orc: httpx.Client) -> None:
    srv.script("openrouter", [Fault.latency(0.3)])
    t0 = time.monotonic()
    assert orc.post(CHAT, json=_or_body()).status_code == 200
    assert time.monotonic() - t0 >= 0.3
    with LoopbackServer(latency=0.2) as slow:
        t0 = time.monotonic()
        r = httpx.post(slow.base_url + "/api/chat", json={"model": "llama3.2", "stream": False})
        assert r.status_code == 200
        assert time.monotonic() - t0 >= 0.2


def test_stop_releases_hang_quickly() -> None:
    server = LoopbackServer().start()
    server.script("openrouter", [Fault.hang(60)])
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            httpx.post(server.openrouter_base_url + CHAT, json=_or_body(), headers=AUTH, timeout=30)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    deadline = time.monotonic() + 5
    while server.request_count("openrouter") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.request_count("openrouter") == 1
    t0 = time.monotonic()
    server.stop()
    worker.join(5)
    assert time.monotonic() - t0 < 2
    assert not worker.is_alive()
    assert isinstance(outcome[0], httpx.TransportError)
    assert not any(t.name.startswith("loopback-server") for t in threading.enumerate())


def test_stop_closes_idle_keepalive_connections() -> None:
    server = LoopbackServer().start()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = b""
    while b"0.6.0" not in reply:
        chunk = sock.recv(4096)
        assert chunk, reply
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 2
    assert sock.recv(4096) == b""  # server closed its side
    sock.close()


# --------------------------------------------------------------------------- Ollama
def test_ollama_version_tags_show(olc: httpx.Client) -> None:
    assert olc.get("/api/version").json() == {"version": "0.6.0"}
    assert olc.get("/").text == "Ollama is running"
    models = olc.get("/api/tags").json()["models"]
    assert [m["name"] for m in models] == ["llama3.2:latest", "qwen2.5:0.5b"]
    for m in models:
        assert {"name", "model", "modified_at", "size", "digest", "details"} <= set(m)
        assert m["details"]["format"] == "gguf"
        assert {"family", "parameter_size", "quantization_level"} <= set(m["details"])
    assert models[1]["details"]["parameter_size"] == "0.5B"
    show = olc.post("/api/show", json={"model": "llama3.2"})
    assert show.status_code == 200
    assert show.json()["capabilities"] == ["completion"]
    assert show.json()["details"]["family"] == "llama"
    assert olc.post("/api/show", json={"model": "nope"}).status_code == 404


def test_ollama_chat_non_stream(srv: LoopbackServer, olc: httpx.Client) -> None:
    body = {"model": "llama3.2", "messages": _msgs("hi there", system="be brief"), "stream": False}
    r = olc.post("/api/chat", json=body)
    assert r.status_code == 200
    data = r.json()
    assert data["model"] == "llama3.2"
    assert data["message"] == {"role": "assistant", "content": "echo: hi there"}
    assert data["done"] is True
    assert data["done_reason"] == "stop"
    assert data["prompt_eval_count"] == 4
    assert data["eval_count"] == 3
    for key in ("created_at", "total_duration", "load_duration", "prompt_eval_duration"):
        assert key in data
    assert isinstance(data["eval_duration"], int)


def test_ollama_chat_streams_by_default(olc: httpx.Client) -> None:
    r = olc.post("/api/chat", json={"model": "llama3.2:latest", "messages": _msgs("hi there")})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["message"]["content"] for x in lines[:-1]] == ["echo:", " hi", " there"]
    assert all(x["done"] is False for x in lines[:-1])
    final = lines[-1]
    assert final["done"] is True
    assert final["message"]["content"] == ""
    assert final["done_reason"] == "stop"
    assert final["eval_count"] == 3
    assert final["prompt_eval_count"] == 2


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_num_predict_and_stop(olc: httpx.Client, stream: bool) -> None:
    def run(options: dict[str, Any]) -> tuple[str, str]:
        body = {"model": "llama3.2", "messages": _msgs("a b c d"), "stream": stream}
        r = olc.post("/api/chat", json={**body, "options": options})
        if not stream:
            return r.json()["message"]["content"], r.json()["done_reason"]
        lines = [json.loads(x) for x in r.text.splitlines()]
        return "".join(x["message"]["content"] for x in lines), lines[-1]["done_reason"]

    assert run({"num_predict": 2}) == ("echo: a", "length")
    assert run({"num_predict": -1}) == ("echo: a b c d", "stop")
    assert run({"stop": [" c"]}) == ("echo: a b", "stop")


def test_ollama_model_not_installed(srv: LoopbackServer, olc: httpx.Client) -> None:
    for stream in (False, True):
        r = olc.post(
            "/api/chat", json={"model": "mistral", "messages": _msgs("x"), "stream": stream}
        )
        assert r.status_code == 404
        assert r.json() == {"error": 'model "mistral" not found, try pulling it first'}
    assert olc.post("/api/chat", json={"model": "qwen2.5:0.5b", "stream": False}).status_code == 200
    assert olc.post("/api/chat", json={"model": "qwen2.5", "stream": False}).status_code == 404


def test_ollama_faults(srv: LoopbackServer, olc: httpx.Client) -> None:
    srv.script(
        "ollama",
        [
            Fault.status(404),
            Fault.status(500, message="llama runner process has terminated"),
            Fault.status(503, retry_after=2.5),
            Fault.mid_stream_error(after_chunks=1, message="broken"),
            Fault.error_in_200(message="nope"),
            Fault.mid_stream_error(message="x"),
        ],
    )
    body = {"model": "llama3.2", "messages": _msgs("a b c")}
    r = olc.post("/api/chat", json=body)
    assert (r.status_code, r.json()) == (
        404,
        {"error": 'model "llama3.2" not found, try pulling it first'},
    )
    r = olc.post("/api/chat", json=body)
    assert (r.status_code, r.json()) == (500, {"error": "llama runner process has terminated"})
    r = olc.post("/api/chat", json=body)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2.5"
    lines = [json.loads(x) for x in olc.post("/api/chat", json=body).text.splitlines()]
    assert lines == [lines[0], {"error": "broken"}]
    assert lines[0]["message"]["content"] == "echo:"
    lines = [json.loads(x) for x in olc.post("/api/chat", json=body).text.splitlines()]
    assert lines == [{"error": "nope"}]
    r = olc.post("/api/chat", json={**body, "stream": False})
    assert (r.status_code, r.json()) == (200, {"error": "x"})


def test_ollama_truncated_stream(srv: LoopbackServer, olc: httpx.Client) -> None:
    srv.script("ollama", [Fault.truncated_stream(after_chunks=1), Fault.truncated_stream()])
    lines: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        olc.stream("POST", "/api/chat", json={"model": "llama3.2", "messages": _msgs("a b")}) as r,
    ):
        lines.extend(r.iter_lines())
    assert len(lines) == 1
    assert json.loads(lines[0])["done"] is False
    with pytest.raises(httpx.RemoteProtocolError):
        olc.post("/api/chat", json={"model": "llama3.2", "stream": False})


# --------------------------------------------------------------------------- recording
def test_request_recording_and_reset(srv: LoopbackServer) -> None:
    headers = {**AUTH, "HTTP-Referer": "https://example.test", "X-Title": "pygent"}
    with httpx.Client(base_url=srv.openrouter_base_url, headers=headers) as c:
        c.post(CHAT, json=_or_body("one"))
        c.post(CHAT, json=_or_body("two", stream=True))
        c.get("/models")  # not a chat request: not recorded
    httpx.post(srv.base_url + "/api/chat", json={"model": "llama3.2", "stream": False})
    recs = srv.requests("openrouter")
    assert srv.request_count("openrouter") == 2
    assert srv.request_count("ollama") == 1
    first = recs[0]
    assert (first.method, first.path) == ("POST", "/api/v1/chat/completions")
    assert first.headers["authorization"] == "Bearer sk-or-v1-test"
    assert first.headers["http-referer"] == "https://example.test"
    assert first.headers["x-title"] == "pygent"
    assert all(k == k.lower() for k in first.headers)
    assert first.json["messages"][0]["content"] == "one"
    assert recs[1].json["stream"] is True
    assert recs[0].client[1] == recs[1].client[1]  # same keep-alive connection
    assert srv.requests("ollama")[0].path == "/api/chat"
    assert [(q.protocol, q.path) for q in srv.all_requests()] == [
        ("openrouter", "/api/v1/chat/completions"),
        ("openrouter", "/api/v1/chat/completions"),
        ("openrouter", "/api/v1/models"),
        ("ollama", "/api/chat"),
    ]
    srv.script("openrouter", [Fault.status(500)])
    srv.reset()
    assert srv.request_count("openrouter") == srv.request_count("ollama") == 0
    assert srv.pending("openrouter") == 0
    assert srv.all_requests() == []


def test_chunked_request_body(srv: LoopbackServer, orc: httpx.Client) -> None:
    def parts() -> Iterator[bytes]:
        yield b'{"model": "m", "messages": [{"role": "user", '
        yield b'"content": "chunked body"}]}'

    r = orc.post(CHAT, content=parts(), headers={"Content-Type": "application/json"})
    assert r.json()["choices"][0]["message"]["content"] == "echo: chunked body"
    assert srv.requests("openrouter")[0].headers["transfer-encoding"] == "chunked"


def test_chunk_delay_spaces_stream_chunks() -> None:
    with LoopbackServer(chunk_delay=0.05) as s:
        t0 = time.monotonic()
        body = {"model": "m", "messages": _msgs("a b c"), "stream": True}
        r = httpx.post(s.openrouter_base_url + CHAT, json=body, headers=AUTH)
        assert r.status_code == 200
        assert time.monotonic() - t0 >= 0.15  # 4 tokens, 3 gaps


def test_invalid_json_body(srv: LoopbackServer, orc: httpx.Client) -> None:
    srv.script("openrouter", [Fault.status(500)])
    r = orc.post(CHAT, content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == 400
    assert srv.requests("openrouter")[0].json is None
    assert srv.pending("openrouter") == 1  # rejected requests do not consume the script


def test_unknown_protocol_rejected(srv: LoopbackServer) -> None:
    with pytest.raises(ValueError, match="protocol"):
        srv.script("openai", [Fault.ok()])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        Fault.status(200)


# --------------------------------------------------------------------------- load
async def test_300_concurrent_calls() -> None:
    with LoopbackServer() as s:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(
            base_url=s.openrouter_base_url, headers=AUTH, limits=limits, timeout=30
        ) as client:

            async def one(i: int) -> str:
                r = await client.post(CHAT, json=_or_body(f"n{i}", stream=i % 2 == 0))
                r.raise_for_status()
                return r.text

            texts = await asyncio.gather(*(one(i) for i in range(300)))
        assert all(f"n{i}" in t for i, t in enumerate(texts))
        assert s.request_count("openrouter") == 300
        assert s.errors == []


# --------------------------------------------------------------------------- real clients
def test_openai_sdk_against_server(srv: LoopbackServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=srv.openrouter_base_url, api_key="sk-test", max_retries=0)
    reply = client.chat.completions.create(
        model="loopback/echo", messages=_msgs("ping pong"), max_tokens=2
    )
    assert reply.choices[0].message.content == "echo: ping"
    assert reply.choices[0].finish_reason == "length"
    stream = client.chat.completions.create(
        model="loopback/echo", messages=_msgs("ping pong"), stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: ping pong"
    srv.script("openrouter", [Fault.status(429, retry_after=1), Fault.mid_stream_error()])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=_msgs("x"))
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="m", messages=_msgs("x"), stream=True):
            pass


def test_ollama_client_against_server(srv: LoopbackServer) -> None:
    ollama = pytest.importorskip("ollama")
    client = ollama.Client(host=srv.ollama_base_url, timeout=10)
    assert [m.model for m in client.list().models] == ["llama3.2:latest", "qwen2.5:0.5b"]
    reply = client.chat(model="llama3.2", messages=_msgs("hi"), options={"num_predict": 5})
    assert reply.message.content == "echo: hi"
    assert reply.eval_count == 2
    text = "".join(
        p.message.content or "" for p in client.chat("llama3.2", _msgs("a b"), stream=True)
    )
    assert text == "echo: a b"
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="missing", messages=_msgs("x"))
    assert info.value.status_code == 404
    srv.script("ollama", [Fault.mid_stream_error(after_chunks=1, message="runner died")])
    with pytest.raises(ollama.ResponseError, match="runner died"):
        for _ in client.chat("llama3.2", _msgs("a b"), stream=True):
            pass


def test_langchain_chat_models_against_server(srv: LoopbackServer) -> None:
    lc_openai = pytest.importorskip("langchain_openai")
    lc_ollama = pytest.importorskip("langchain_ollama")
    chat = lc_openai.ChatOpenAI(
        model="loopback/echo", base_url=srv.openrouter_base_url, api_key="sk-test", max_retries=0
    )
    assert chat.invoke("three little pigs").content == "echo: three little pigs"
    sent = srv.requests("openrouter")[-1]
    assert sent.headers["authorization"] == "Bearer sk-test"
    local = lc_ollama.ChatOllama(model="llama3.2", base_url=srv.ollama_base_url, num_predict=2)
    assert local.invoke("three little pigs").content == "echo: three"
    assert srv.requests("ollama")[-1].json["options"]["num_predict"] == 2


def test_fault_split_surrogates_sends_each_half_in_its_own_chunk(
    srv: LoopbackServer, orc: httpx.Client, olc: httpx.Client
) -> None:
    srv.responder = lambda protocol, body: "hi \U0001f600 there \ud800"
    srv.script("openrouter", [Fault.split_surrogates()])
    with orc.stream("POST", CHAT, json=_or_body(stream=True)) as r:
        raw = r.read().decode()
    _, events = _sse_events(raw)
    assert [e["choices"][0]["delta"]["content"] for e in events[:-2]] == [
        "hi",
        " \ud83d",
        "\ude00",
        " there",
        " \ud800",
    ]
    assert '" \\ud83d"' in raw  # as JSON escapes, the halves in separate events
    srv.script("ollama", [Fault.split_surrogates()])
    with olc.stream("POST", "/api/chat", json={"model": "llama3.2", "messages": _msgs("x")}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [line["message"]["content"] for line in lines][1:3] == [" \ud83d", "\ude00"]
    srv.script("openrouter", [Fault.split_surrogates()])
    whole = orc.post(CHAT, json=_or_body()).json()  # not streamed: JSON joins the halves
    assert whole["choices"][0]["message"]["content"] == "hi \U0001f600 there \ud800"
