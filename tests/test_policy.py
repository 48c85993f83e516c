"""``ProviderPolicy``, on scripted models (no sockets): the sync path retries as the async
one does.
"""

from __future__ import annotations

from pygent_lc import Settings
from pygent_lc.chain import with_provider_policy
from pygent_lc.errors import ProviderUnavailableError
from pygent_lc.testing import ScriptedChatModel

FAST = Settings(max_retries=2, retry_initial_wait=0.0, retry_max_wait=0.05)


def unavailable(provider: str = "a") -> ProviderUnavailableError:
    return ProviderUnavailableError("503", provider=provider, status_code=503)


def test_sync_invoke_uses_the_same_policy() -> None:
    model = ScriptedChatModel(outcomes=[unavailable(), "fine"])
    assert with_provider_policy(model, FAST, breaker=False).invoke("hi").content == "fine"
    assert len(model.calls) == 2
