"""pygent_lc: the LLM layer of PyGent Factory on LangChain.

OpenRouter, Ollama and an embedded llama.cpp model behind one retry policy and
runnable fallbacks, the ``LLMBackend`` shim PyGent's reasoning engine asks for
text, typed errors and usage tracking.
"""

from pygent_lc import _cli_start

if _cli_start.started_as_command():  # before the imports that take seconds
    _cli_start.exit_quietly_on_interrupt()

from pygent_lc import errors
from pygent_lc.backend import LLMBackend, UsageTotals
from pygent_lc.chain import ProviderSkippedWarning, build_chat_model
from pygent_lc.langchain_backend import LangChainBackend
from pygent_lc.settings import Settings
from pygent_lc.telemetry import instrument_from_env
from pygent_lc.usage import UsageSummary, UsageTracker

instrument_from_env()  # PYGENT_OTEL=1: OpenTelemetry spans and metrics

__all__ = [
    "LLMBackend",
    "LangChainBackend",
    "ProviderSkippedWarning",
    "Settings",
    "UsageSummary",
    "UsageTotals",
    "UsageTracker",
    "build_chat_model",
    "errors",
]
