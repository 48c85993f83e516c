"""What the telemetry tests share: spans and metrics recorded in memory, and a chain on
the loopback server.
"""

from __future__ import annotations

import json
from typing import Any

from helpers import loopback_settings
from loopback_server import LoopbackServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pygent_lc import LangChainBackend, build_chat_model

PROMPT = "the secret recipe is forty two"
KEY = "sk-or-v1-test-key-for-loopback"


class Telemetry:
    def __init__(self) -> None:
        self.spans_out = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.spans_out.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def chats(self) -> list[ReadableSpan]:
        return sorted(
            (s for s in self.spans() if s.name.startswith("chat")), key=lambda s: s.start_time or 0
        )

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found


def everything_recorded(spans: list[ReadableSpan]) -> str:
    """Every name, attribute, event and status text of ``spans``, as one string."""
    parts: list[str] = []
    for span in spans:
        parts.append(span.name)
        parts.append(json.dumps(dict(span.attributes or {}), default=str))
        parts.append(str(span.status.description))
        for event in span.events:
            parts.append(json.dumps(dict(event.attributes or {}), default=str))
    return "\n".join(parts)


def chain_backend(server: LoopbackServer, **overrides: Any) -> LangChainBackend:
    """Ollama first (no retries), then OpenRouter, which reports cost and routing."""
    settings = loopback_settings(server, max_retries=0, **overrides)
    return LangChainBackend(build_chat_model(settings, ["ollama", "openrouter"]))
