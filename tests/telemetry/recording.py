"""What the telemetry tests share: spans and metrics recorded in memory, and a chain on
the loopback server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, Status

from pygent_lc import LangChainBackend, build_chat_model
from tests.helpers import loopback_settings
from tests.loopback_server import LoopbackServer

PROMPT = "the secret recipe is forty two"
KEY = "sk-or-v1-test-key-for-loopback"


class FinishedSpan:
    """A finished span as the tests read it.

    The SDK types a span's attributes and its parent as optional, and each
    attribute value as a union to narrow before comparing: a finished span has
    attributes, the spans whose parent the tests read have one, and the tests
    compare values as what they know them to be.
    """

    def __init__(self, span: ReadableSpan) -> None:
        self.span = span
        self.name: str = span.name
        self.status: Status = span.status
        self.start_time: int | None = span.start_time
        self.events: Sequence[Event] = span.events

    @property
    def attributes(self) -> Mapping[str, Any]:
        assert self.span.attributes is not None
        return self.span.attributes

    @property
    def context(self) -> SpanContext:
        context: SpanContext = self.span.context  # the SDK leaves this property unannotated
        return context

    @property
    def parent(self) -> SpanContext:
        assert self.span.parent is not None, f"{self.name} has no parent"
        return self.span.parent


class Telemetry:
    def __init__(self) -> None:
        self.spans_out = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str | None = None) -> list[FinishedSpan]:
        found = [FinishedSpan(s) for s in self.spans_out.get_finished_spans()]
        return [s for s in found if name is None or s.name == name]

    def chats(self) -> list[FinishedSpan]:
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


def everything_recorded(spans: list[FinishedSpan]) -> str:
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
