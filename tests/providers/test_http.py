"""``pygent_lc.providers.http``: the package's own transports, without a socket.

A deadline that has passed fails a request before any connection is tried
(pytest-socket would fail the test on any socket), on the transports alone and
through each provider model built with them. The deadline under a live
server (drips, hangs, stream gaps, pools per event loop) is in
``tests/test_provider_http.py``: the transports build their connection pools
themselves and take no inner transport, so a ``MockTransport`` cannot be put
under them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from pygent_lc import Settings
from pygent_lc.errors import ProviderUnavailableError
from pygent_lc.providers.boundary import ProviderBoundary
from pygent_lc.providers.http import (
    Deadline,
    DeadlineTransport,
    LoopBoundTransport,
    ProviderHttp,
    current_deadline,
)
from pygent_lc.providers.local import LocalChatModel
from pygent_lc.providers.ollama import ollama_model
from pygent_lc.providers.openrouter import openrouter_model

URL = "http://127.0.0.1:9/v1/chat/completions"
PASSED = r"the deadline \(request_timeout=2s\) passed before the request"


@pytest.fixture
def passed_deadline() -> Iterator[Deadline]:
    """A deadline of 2 s that has already run out, current for the test."""
    deadline = Deadline(2)
    deadline.expires_at = time.monotonic() - 0.001
    token = current_deadline.set(deadline)
    yield deadline
    current_deadline.reset(token)


def test_deadline_remaining_and_restart() -> None:
    deadline = Deadline(5)
    assert 4.9 < deadline.remaining() <= 5
    deadline.expires_at -= 10
    assert deadline.remaining() < 0
    deadline.restart()  # a stream's next chunk gets the full time again
    assert 4.9 < deadline.remaining() <= 5
    assert current_deadline.get() is None  # none unless a call sets one


def test_the_sync_transport_fails_before_connecting(passed_deadline: Deadline) -> None:
    transport = DeadlineTransport()
    with pytest.raises(httpx.ConnectTimeout, match=PASSED):
        transport.handle_request(httpx.Request("POST", URL))


async def test_the_async_transport_fails_before_connecting(passed_deadline: Deadline) -> None:
    transport = LoopBoundTransport()
    with pytest.raises(httpx.ConnectTimeout, match=PASSED):
        await transport.handle_async_request(httpx.Request("POST", URL))
    await transport.aclose()


def test_provider_http_clients_use_the_transports_and_the_timeout(
    passed_deadline: Deadline,
) -> None:
    pools = ProviderHttp(timeout=7.5)
    client = pools.sync_client(headers={"x-test": "1"})
    async_client = pools.async_client()
    assert client.timeout == httpx.Timeout(7.5) == async_client.timeout
    assert client.follow_redirects and async_client.follow_redirects
    assert client.headers["x-test"] == "1"
    with pytest.raises(httpx.ConnectTimeout, match=PASSED):  # through the deadline transport
        client.post(URL)

    async def post() -> None:
        await async_client.post(URL)

    with pytest.raises(httpx.ConnectTimeout, match=PASSED):
        asyncio.run(post())
    pools.close()  # nothing opened: nothing to release, and no error
    asyncio.run(pools.aclose())


def test_closing_keeps_the_clients_usable(passed_deadline: Deadline) -> None:
    pools = ProviderHttp(timeout=None)
    client = pools.sync_client()
    pools.close()
    with pytest.raises(httpx.ConnectTimeout, match=PASSED):  # not "client closed"
        client.post(URL)


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
@pytest.mark.parametrize("provider", ["openrouter", "ollama", "local"])
async def test_each_model_built_with_its_own_clients_honours_the_deadline(
    passed_deadline: Deadline, provider: str, mode: str
) -> None:
    model: ProviderBoundary
    if provider == "openrouter":
        model = openrouter_model(Settings(openrouter_api_key=SecretStr("sk-or-v1-x")))
    elif provider == "ollama":
        model = ollama_model(Settings(ollama_model="llama3.2"))
    else:
        model = LocalChatModel(
            model="m", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k"), max_retries=0
        )
    assert model.http_pools is not None
    with pytest.raises(ProviderUnavailableError) as caught:
        if mode == "invoke":
            model.invoke("hi")
        elif mode == "ainvoke":
            await model.ainvoke("hi")
        elif mode == "stream":
            list(model.stream("hi"))
        else:
            _ = [chunk async for chunk in model.astream("hi")]
    error = caught.value
    assert error.message == (
        "request timed out: the deadline (request_timeout=2s) passed before the request"
    )
    assert (error.provider, error.retryable) == (provider, True)


async def test_a_closed_model_stays_usable(passed_deadline: Deadline) -> None:
    model = openrouter_model(Settings(openrouter_api_key=SecretStr("sk-or-v1-x")))
    model.close()
    await model.aclose()
    with pytest.raises(ProviderUnavailableError, match="deadline"):  # not "client closed"
        await model.ainvoke("hi")
    with pytest.raises(ProviderUnavailableError, match="deadline"):
        model.invoke("hi")
