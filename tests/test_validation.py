"""The limits checked before any network call: one ``max_tokens`` limit on every entry
point, and the prompt's size (sockets are off).
"""

from __future__ import annotations

import pytest

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.errors import ConfigurationError, InvalidInputError
from pygent_lc.testing import ScriptedChatModel
from pygent_lc.tot import ToTConfig
from pygent_lc.validation import (
    MAX_PROMPT_CHARS,
    MAX_TOKENS_LIMIT,
    checked,
    validate_chat_call,
)

CONFIGURED = {"openrouter_api_key": "sk-or-v1-x", "ollama_model": "llama3.2"}


async def test_one_max_tokens_limit_on_every_entry_point() -> None:
    model = ScriptedChatModel()
    backend = LangChainBackend(model)
    chain = build_chat_model(Settings(**CONFIGURED), ["openrouter", "ollama"])
    assert validate_chat_call("hi", {"max_tokens": MAX_TOKENS_LIMIT}) == {
        "max_tokens": MAX_TOKENS_LIMIT
    }
    assert await backend.generate("hi", max_tokens=MAX_TOKENS_LIMIT) == "ok"
    assert ToTConfig(max_tokens=MAX_TOKENS_LIMIT).max_tokens == MAX_TOKENS_LIMIT
    too_many = MAX_TOKENS_LIMIT + 1
    message = f"max_tokens must be between 1 and {MAX_TOKENS_LIMIT}, got {too_many}"
    with pytest.raises(InvalidInputError, match=message):
        validate_chat_call("hi", {"max_tokens": too_many})
    with pytest.raises(InvalidInputError, match=message):
        await chain.ainvoke("hi", max_tokens=too_many)
    with pytest.raises(InvalidInputError, match=message):
        await backend.generate("hi", max_tokens=too_many)
    with pytest.raises(InvalidInputError, match=message):
        _ = [part async for part in backend.stream("hi", max_tokens=too_many)]
    with pytest.raises(ConfigurationError) as caught:
        ToTConfig(max_tokens=too_many)
    assert caught.value.field == "max_tokens"
    assert len(model.calls) == 1


async def test_oversized_prompt_is_rejected_before_the_model() -> None:
    model = ScriptedChatModel()
    with pytest.raises(InvalidInputError, match="characters"):
        await LangChainBackend(model).generate("x" * (MAX_PROMPT_CHARS + 1))
    assert model.calls == []


def test_a_call_marked_checked_is_not_checked_again_and_nothing_else_passes() -> None:
    from langchain_core.messages import HumanMessage

    bad = [HumanMessage(content="\ud800")]
    marked = checked({}, bad, {"temperature": 0.5})
    # The very input and keywords the caller checked: taken as they are.
    assert validate_chat_call(bad, {"temperature": 0.5}, marked) == {"temperature": 0.5}
    # An equal input that is another object, other keywords, no mark: checked.
    for input, kwargs, config in [
        ([HumanMessage(content="\ud800")], {"temperature": 0.5}, marked),
        (bad, {"temperature": 0.5, "max_tokens": -1}, marked),
        (bad, {"temperature": 0.5}, {}),
        (bad, {"temperature": 0.5}, None),
    ]:
        with pytest.raises(InvalidInputError):
            validate_chat_call(input, kwargs, config)  # type: ignore[arg-type]
    good = [HumanMessage(content="hi")]
    with pytest.raises(InvalidInputError):
        validate_chat_call(good, {"temperature": 9}, checked({}, good, {"temperature": 0.5}))
