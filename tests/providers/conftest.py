"""Fixtures of the provider module tests: a scripted server on ``httpx.MockTransport``."""

from __future__ import annotations

import pytest

from tests.providers.mock_http import MockServer


@pytest.fixture
def wire() -> MockServer:
    """A server with nothing scripted yet: script it, then hand its clients to a model."""
    return MockServer()
