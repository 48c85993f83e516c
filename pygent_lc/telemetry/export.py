"""The CLI's ``--otel``: a run's spans to the OTLP endpoint the environment configures.

The endpoint, headers and service name come from the standard variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_SERVICE_NAME``, ...), read by the exporter and the SDK themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pygent_lc.errors import ConfigurationError
from pygent_lc.telemetry import instrument, uninstrument

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

OTLP_PACKAGE = "opentelemetry-exporter-otlp-proto-http"


def start_otlp_export(exporter: SpanExporter | None = None) -> Callable[[], None]:
    """Instrument with a tracer provider that sends spans over OTLP/HTTP.

    Returns the function that flushes the spans and undoes the instrumentation.
    ``exporter`` replaces the OTLP exporter (for tests).
    """
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigurationError(
            "--otel needs OpenTelemetry: pip install 'pygent-lc[otel]' " + OTLP_PACKAGE
        ) from exc
    if exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigurationError(
                f"--otel needs the OTLP exporter: pip install {OTLP_PACKAGE}"
            ) from exc
        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "pygent-lc"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrument(tracer_provider=provider)

    def stop() -> None:
        uninstrument()
        provider.shutdown()  # flushes the batch

    return stop
