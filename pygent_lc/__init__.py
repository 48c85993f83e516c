"""pygent_lc: the LLM layer of PyGent Factory on LangChain.

OpenRouter, Ollama and an embedded llama.cpp model behind one retry policy and
runnable fallbacks, the ``LLMBackend`` shim PyGent's reasoning engine asks for
text, typed errors and usage tracking. The public names are imported on first
use (PEP 562), so ``import pygent_lc`` and ``pygent-lc --help`` do not pay for
LangChain; importing switches nothing on (telemetry: :mod:`pygent_lc.telemetry`).
"""

from __future__ import annotations

from pygent_lc import _cli_start

if _cli_start.started_as_command():  # Ctrl-C exits 130 from the very first import
    _cli_start.exit_quietly_on_interrupt()

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pygent_lc import errors
    from pygent_lc.backend import LLMBackend, UsageTotals
    from pygent_lc.build import ProviderSkippedWarning, build_chat_model
    from pygent_lc.chain import ProviderChain
    from pygent_lc.langchain_backend import LangChainBackend
    from pygent_lc.limits.usage import UsageSummary, UsageTracker
    from pygent_lc.providers.local import LocalChatModel
    from pygent_lc.providers.ollama import OllamaChatModel
    from pygent_lc.providers.openrouter.model import OpenRouterChatModel
    from pygent_lc.settings import Settings

    __version__: str

#: Where each public name lives.
_HOMES = {
    "LLMBackend": "pygent_lc.backend",
    "LangChainBackend": "pygent_lc.langchain_backend",
    "LocalChatModel": "pygent_lc.providers.local",
    "OllamaChatModel": "pygent_lc.providers.ollama",
    "OpenRouterChatModel": "pygent_lc.providers.openrouter.model",
    "ProviderChain": "pygent_lc.chain",
    "ProviderSkippedWarning": "pygent_lc.build",
    "Settings": "pygent_lc.settings",
    "UsageSummary": "pygent_lc.limits.usage",
    "UsageTotals": "pygent_lc.backend",
    "UsageTracker": "pygent_lc.limits.usage",
    "build_chat_model": "pygent_lc.build",
}


def __getattr__(name: str) -> Any:
    if name == "errors":
        return importlib.import_module("pygent_lc.errors")
    value: Any
    if name == "__version__":
        from importlib.metadata import version  # only when asked: keeps the import fast

        value = version("pygent-lc")
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'pygent_lc' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "LLMBackend",
    "LangChainBackend",
    "LocalChatModel",
    "OllamaChatModel",
    "OpenRouterChatModel",
    "ProviderChain",
    "ProviderSkippedWarning",
    "Settings",
    "UsageSummary",
    "UsageTotals",
    "UsageTracker",
    "__version__",
    "build_chat_model",
    "errors",
]
