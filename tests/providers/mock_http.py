"""A scripted HTTP server behind ``httpx.MockTransport``: the provider tests' wire, no sockets.

Each request takes the next scripted reply (or the default one) and is
recorded. The provider classes take the clients as constructor keywords:
``http_client``/``http_async_client`` for the OpenAI-wire models,
``client_kwargs={"transport": ...}`` for Ollama. Either replaces the
package's own transports (:mod:`pygent_lc.providers.http`) as a whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from langchain_core.messages import AIMessage
from langchain_openai.chat_models.base import BaseChatOpenAI

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass(frozen=True)
class Reply:
    """One HTTP response, built afresh for every request it answers."""

    status: int = 200
    parts: tuple[bytes, ...] = ()
    """The body, in the parts a server would write (SSE events, NDJSON lines)."""
    headers: dict[str, str] = field(default_factory=dict)
    broken_after: int | None = None
    """Deliver only this many parts, then fail as a connection reset mid-body does."""

    def build(self, request: httpx.Request) -> httpx.Response:
        if self.broken_after is None:
            return httpx.Response(self.status, content=b"".join(self.parts), headers=self.headers)
        stream = BrokenStream(list(self.parts[: self.broken_after]), request)
        return httpx.Response(self.status, headers=self.headers, stream=stream)


class BrokenStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that ends with the error httpx raises when the peer goes away mid-reply."""

    def __init__(self, parts: list[bytes], request: httpx.Request) -> None:
        self._parts = parts
        self._request = request

    def _error(self) -> httpx.RemoteProtocolError:
        return httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body "
            "(incomplete chunked read)",
            request=self._request,
        )

    def __iter__(self) -> Iterator[bytes]:
        yield from self._parts
        raise self._error()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part
        raise self._error()


Scripted = Reply | BaseException | Handler


class MockServer:
    """Scripted replies in order, then ``default``; every request kept in :attr:`requests`."""

    def __init__(self, *script: Scripted, default: Scripted | None = None) -> None:
        self._script: list[Scripted] = list(script)
        self.default = default
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def script(self, *replies: Scripted) -> None:
        self._script.extend(replies)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self._script.pop(0) if self._script else self.default
        if reply is None:
            raise AssertionError(f"unscripted request: {request.method} {request.url}")
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Reply):
            return reply.build(request)
        return reply(request)

    # ------------------------------------------------------------------ clients
    def openai_clients(self) -> dict[str, Any]:
        """Constructor keywords of an OpenAI-wire model: both clients on this server."""
        clients: dict[str, Any] = {
            "http_client": httpx.Client(transport=self.transport),
            "http_async_client": httpx.AsyncClient(transport=self.transport),
        }
        if "http_socket_options" in BaseChatOpenAI.model_fields:  # langchain-openai >= 1.2
            clients["http_socket_options"] = ()  # else it probes the options with a socket
        return clients

    def ollama_client_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        """``client_kwargs`` of an Ollama model: its sync and async clients on this server."""
        return {"transport": self.transport, **kwargs}

    # ------------------------------------------------------------------ requests
    def body(self, index: int = -1) -> dict[str, Any]:
        """The JSON body of a recorded request (the last by default)."""
        parsed = json.loads(self.requests[index].content)
        assert isinstance(parsed, dict)
        return parsed

    @property
    def count(self) -> int:
        return len(self.requests)


# ---------------------------------------------------------------------- replies
def json_reply(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status,
        (json.dumps(body).encode(),),
        {"content-type": "application/json", **(headers or {})},
    )


def text_reply(text: str, status: int, content_type: str = "text/plain") -> Reply:
    return Reply(status, (text.encode(),), {"content-type": content_type})


def sse_reply(
    events: Iterable[object],
    *,
    done: bool = True,
    comment: str | None = ": OPENROUTER PROCESSING",
    broken_after: int | None = None,
) -> Reply:
    """A ``text/event-stream`` body: an optional keep-alive comment, ``data:`` events,
    then ``data: [DONE]``; ``broken_after`` counts the events delivered before a reset."""
    head = [] if comment is None else [f"{comment}\n\n".encode()]
    parts = [b"data: " + json.dumps(event).encode() + b"\n\n" for event in events]
    if done:
        parts.append(b"data: [DONE]\n\n")
    return Reply(
        200,
        (*head, *parts),
        {"content-type": "text/event-stream", "cache-control": "no-cache"},
        broken_after=None if broken_after is None else len(head) + broken_after,
    )


def ndjson_reply(lines: Iterable[object], *, broken_after: int | None = None) -> Reply:
    """Ollama's ``application/x-ndjson`` stream: one JSON object a line."""
    parts = tuple(json.dumps(line).encode() + b"\n" for line in lines)
    return Reply(200, parts, {"content-type": "application/x-ndjson"}, broken_after=broken_after)


def proxy_page(status: int = 502) -> Reply:
    """An error page as nginx in front of a server sends it: HTML, not the API's JSON."""
    page = (
        f"<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} Bad Gateway</h1></center>\r\n"
        "<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
    )
    return text_reply(page, status, "text/html")


Mode = Literal["invoke", "ainvoke", "stream", "astream"]
"""The four ways a chat model is called; a provider's tests run each."""


async def call(model: Any, mode: Mode, prompt: Any = "one two three", **kwargs: Any) -> AIMessage:
    """One call in ``mode``; a stream's chunks merged into one message."""
    if mode == "invoke":
        reply = model.invoke(prompt, **kwargs)
    elif mode == "ainvoke":
        reply = await model.ainvoke(prompt, **kwargs)
    else:
        chunks = (
            list(model.stream(prompt, **kwargs))
            if mode == "stream"
            else [c async for c in model.astream(prompt, **kwargs)]
        )
        assert chunks, "the stream delivered nothing"
        reply = chunks[0]
        for more in chunks[1:]:
            reply = reply + more
    assert isinstance(reply, AIMessage)
    return reply


async def streamed_parts(model: Any, mode: Mode, seen: list[str]) -> None:
    """Stream (``stream`` or ``astream``) into ``seen``, part by part, until it ends or raises."""
    if mode == "stream":
        for part in model.stream("one two three"):
            seen.append(str(part.content))
    else:
        async for part in model.astream("one two three"):
            seen.append(str(part.content))
