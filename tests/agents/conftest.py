"""Fixtures of the agents' tests: the loopback server, playing the Game of 24."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agents.fakes import KEY, game24_responder
from tests.loopback_server import LoopbackServer


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(
        ollama_models=["llama3.2:latest", "qwen2.5:0.5b"], responder=game24_responder, api_key=KEY
    ) as live:
        yield live
