"""pygent_lc: the LLM layer of PyGent Factory on LangChain. The public names are imported
on first use (PEP 562): ``import pygent_lc`` pays for no LangChain and switches nothing on."""

from __future__ import annotations

from pygent_lc import _cli_start

if _cli_start.started_as_command():  # Ctrl-C exits 130 from the very first import
    _cli_start.exit_quietly_on_interrupt()

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # ``as``: exported (mypy), as ``__all__`` is built
    from pygent_lc import errors as errors
    from pygent_lc.backend import LLMBackend as LLMBackend
    from pygent_lc.backend import UsageTotals as UsageTotals
    from pygent_lc.build import ProviderSkippedWarning as ProviderSkippedWarning
    from pygent_lc.build import build_chat_model as build_chat_model
    from pygent_lc.chain import ProviderChain as ProviderChain
    from pygent_lc.langchain_backend import LangChainBackend as LangChainBackend
    from pygent_lc.limits.usage import UsageSummary as UsageSummary
    from pygent_lc.limits.usage import UsageTracker as UsageTracker
    from pygent_lc.providers.local import LocalChatModel as LocalChatModel
    from pygent_lc.providers.ollama import OllamaChatModel as OllamaChatModel
    from pygent_lc.providers.openrouter.model import OpenRouterChatModel as OpenRouterChatModel
    from pygent_lc.settings import Settings as Settings

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
__all__ = [*_HOMES, "__version__", "errors"]


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
