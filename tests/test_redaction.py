"""``pygent_lc.redaction``: values in messages, credentials masked and long values cut."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from pygent_lc.errors import ConfigurationError
from pygent_lc.redaction import mask_credentials, redact_text, shown_value

KEYS = [
    "sk-or-v1-" + "0123456789abcdef" * 4,
    "sk-ant-api03-" + "Zx9" * 20,
    "sk-proj-" + "a1B2" * 12,
    "ghp_" + "A1b2C3d4" * 5,
    "hf_" + "q8W7e6R5t4Y3u2I1o0" * 2,
    "AKIA" + "7Q2X9Z4K5L1M8N3P",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "q8W7e6R5t4Y3u2I1o0PzXc9VbN",  # no known prefix, but random
]
NOT_KEYS = [
    "http://localhost:11434",
    "https://openrouter.ai/api/v1",
    "mistralai/mistral-small-24b-instruct-2501",
    "/home/me/models/SmolLM2-135M-Instruct.Q4_1.gguf",
    "openrouter=120/min,ollama=10/s",
    "deepseek/deepseek-r1-distill-llama-70b:free",
]


@pytest.mark.parametrize("key", KEYS)
def test_a_credential_is_masked_wherever_it_is_quoted(key: str) -> None:
    assert mask_credentials(key) != key
    for shown in (shown_value(key), redact_text(f"got {key!r} in a setting")):
        assert key not in shown
        assert key[4:20] not in shown
        assert f"{len(key)} chars" in shown


@pytest.mark.parametrize("text", NOT_KEYS)
def test_urls_paths_and_model_names_are_shown_as_they_are(text: str) -> None:
    assert mask_credentials(text) == text
    assert shown_value(text) == repr(text)
    assert redact_text(f"got {text!r}") == f"got {text!r}"


def test_a_long_value_is_cut() -> None:
    value = "not a url " * 1000
    shown = shown_value(value)
    assert len(shown) < 120
    assert "10000 chars" in shown


def test_pydantic_input_value_is_masked() -> None:
    """pydantic quotes the input (its first and last characters when long)."""

    class Model(BaseModel):
        count: int

    with pytest.raises(ValidationError) as caught:
        Model(count=KEYS[0])  # type: ignore[arg-type]
    raw = str(caught.value)
    assert KEYS[0][:20] in raw and KEYS[0][-16:] in raw
    cleaned = redact_text(raw)
    assert KEYS[0][:20] not in cleaned and KEYS[0][-16:] not in cleaned
    assert "input_value='sk-or-…" in cleaned


def test_a_configuration_error_never_holds_a_credential() -> None:
    error = ConfigurationError(f"file not found ({KEYS[0]})", field=KEYS[0])
    assert KEYS[0] not in f"{error} {error!r} {error.field}"
    assert "sk-or-…" in str(error)
