"""Bad input not covered elsewhere: a clear error before any network call (sockets are off).

Prompts and the common absurd parameters are in ``test_langchain_backend.py``;
``Settings`` field errors in ``test_settings.py``. Here: provider names given
to ``build_chat_model``, malformed ``PYGENT_PROVIDERS``, more absurd
parameters and settings, and bad input on every entry point (``generate``,
``generate_sync``, ``stream``).
"""

from __future__ import annotations

from typing import Any

import pytest

from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.errors import ConfigurationError, InvalidInputError
from pygent_lc.testing import ScriptedChatModel
from pygent_lc.tot import ToTConfig
from pygent_lc.validation import MAX_PROMPT_CHARS, MAX_TOKENS_LIMIT, validate_chat_call

CONFIGURED = {"openrouter_api_key": "sk-or-v1-x", "ollama_model": "llama3.2"}


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        (["bogus"], "unknown provider 'bogus'; choose from openrouter, ollama, local"),
        (["openrouter", "anthropic"], "unknown provider 'anthropic'"),
        ("openrouter, gpt-4", "unknown provider 'gpt-4'"),
        ([""], "unknown provider ''"),
        ([None], "unknown provider None"),
        ([42], "unknown provider 42"),
        ([], "at least one provider"),
        (["ollama", "OLLAMA"], "listed twice"),
    ],
)
def test_build_chat_model_rejects_bad_provider_names(providers: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        build_chat_model(Settings(**CONFIGURED), providers)
    assert caught.value.field == "providers"


def test_provider_names_are_normalised() -> None:
    chain = build_chat_model(Settings(**CONFIGURED), [" OpenRouter ", "Ollama"])
    assert chain is not None


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        ",",
        "openrouter;ollama",
        '["openrouter", "ollama"]',
        "openrouter ollama",
        "open router",
    ],
)
def test_malformed_pygent_providers(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PYGENT_PROVIDERS", value)
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert caught.value.field is not None
    assert caught.value.field.startswith("providers")


def test_no_usable_provider_names_each_reason() -> None:
    with pytest.raises(ConfigurationError) as caught:
        build_chat_model(Settings(), ["openrouter", "ollama"])
    assert "OPENROUTER_API_KEY" in str(caught.value)
    assert "OLLAMA_MODEL" in str(caught.value)
    with pytest.raises(ConfigurationError, match="OPENROUTER_API_KEY"):
        build_chat_model(Settings(), ["openrouter"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"temperature": float("inf")},
        {"temperature": None, "max_tokens": 10**9},
        {"max_tokens": "100"},
        {"max_tokens": -(10**6)},
        {"top_p": -0.1},
        {"seed": 1.5},
        {"seed": "42"},
        {"stop": ""},
        {"stop": {"a": 1}},
        {"stop": ["ok", None]},
        {"n": 5},
    ],
)
async def test_absurd_parameters_on_every_entry_point(kwargs: dict[str, Any]) -> None:
    model = ScriptedChatModel()
    backend = LangChainBackend(model)
    with pytest.raises(InvalidInputError):
        await backend.generate("hi", **kwargs)
    with pytest.raises(InvalidInputError):
        backend.generate_sync("hi", **kwargs)
    with pytest.raises(InvalidInputError):
        _ = [part async for part in backend.stream("hi", **kwargs)]
    assert model.calls == []


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


async def test_bad_input_through_a_built_chain_makes_no_request() -> None:
    """The whole stack (sockets disabled): a bad call fails before any client is used."""
    backend = LangChainBackend(build_chat_model(Settings(**CONFIGURED), ["openrouter", "ollama"]))
    for bad in ("", "  ", None):
        with pytest.raises(InvalidInputError):
            await backend.generate(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await backend.generate("hi", max_tokens=-1)
    with pytest.raises(InvalidInputError):
        await backend.generate("hi", temperature=5)
    assert backend.usage.totals().calls == 0


UNENCODABLE = "hi \ud800 there"


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"temperature": 5}, "temperature must be between"),
        ({"max_tokens": -5}, "max_tokens must be between"),
        ({"top_p": float("nan")}, "top_p must be a finite number"),
        ({"temprature": 0.5}, r"unknown call keyword\(s\) \['temprature'\]"),
    ],
)
@pytest.mark.parametrize("method", ["invoke", "ainvoke", "stream", "astream"])
async def test_the_chain_itself_checks_call_keywords(
    keywords: dict[str, Any], message: str, method: str
) -> None:
    chain = build_chat_model(Settings(**CONFIGURED), ["openrouter", "ollama"])
    with pytest.raises(InvalidInputError, match=message):
        await _call(chain, method, "hi", **keywords)


@pytest.mark.parametrize(
    "chat_input",
    [
        UNENCODABLE,
        [("human", UNENCODABLE)],
        [{"role": "user", "content": [{"type": "text", "text": UNENCODABLE}]}],
    ],
)
@pytest.mark.parametrize("method", ["invoke", "ainvoke", "stream", "astream"])
async def test_the_chain_rejects_text_that_cannot_be_sent(chat_input: Any, method: str) -> None:
    chain = build_chat_model(Settings(**CONFIGURED), ["openrouter", "ollama"])
    with pytest.raises(InvalidInputError, match="surrogates not allowed at character 3"):
        await _call(chain, method, chat_input)


async def test_the_backend_rejects_text_that_cannot_be_sent() -> None:
    model = ScriptedChatModel()
    backend = LangChainBackend(model)
    with pytest.raises(InvalidInputError, match="prompt cannot be sent"):
        await backend.generate(UNENCODABLE)
    with pytest.raises(InvalidInputError, match="prompt cannot be sent"):
        backend.generate_sync(UNENCODABLE)
    with pytest.raises(InvalidInputError, match="prompt cannot be sent"):
        await anext(aiter(backend.stream(UNENCODABLE)))
    assert model.calls == []


async def _call(chain: Any, method: str, chat_input: Any, **keywords: Any) -> Any:
    if method == "invoke":
        return chain.invoke(chat_input, **keywords)
    if method == "ainvoke":
        return await chain.ainvoke(chat_input, **keywords)
    if method == "stream":
        return list(chain.stream(chat_input, **keywords))
    return [chunk async for chunk in chain.astream(chat_input, **keywords)]
