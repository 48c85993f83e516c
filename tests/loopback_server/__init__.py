"""Loopback HTTP server speaking Ollama's native API and OpenRouter's chat API.

Usage::

    from tests.loopback_server import Fault, LoopbackServer

    with LoopbackServer(ollama_models=["llama3.2:latest"]) as srv:
        srv.script("openrouter", [Fault.status(429, retry_after=1), Fault.ok()])
        ...  # point clients at srv.openrouter_base_url / srv.ollama_base_url
        assert srv.request_count("openrouter") == 2
"""

from .answers import Answer, Responder, build_answer, echo_responder, tokenize
from .faults import Fault, FaultKind
from .server import PROTOCOLS, LoopbackServer, Protocol, RecordedRequest

__all__ = [
    "PROTOCOLS",
    "Answer",
    "Fault",
    "FaultKind",
    "LoopbackServer",
    "Protocol",
    "RecordedRequest",
    "Responder",
    "build_answer",
    "echo_responder",
    "tokenize",
]
