"""OpenTelemetry traces and metrics for every call, fallback and thought, on request.

``instrument()`` registers one LangChain callback handler as a configure hook (as
LangSmith's tracer is) and a search observer. Importing this imports no OpenTelemetry.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pygent_lc.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

ENABLE_ENV = "PYGENT_OTEL"
CAPTURE_CONTENT_ENV = "PYGENT_OTEL_CAPTURE_CONTENT"

_uninstall: Callable[[], None] | None = None
_lock = threading.RLock()  # instrument() uninstruments under it


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def instrument(
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    *,
    capture_content: bool | None = None,
) -> None:
    """Spans and metrics of every chat call and search (the global providers unless
    given); ``capture_content`` (default ``PYGENT_OTEL_CAPTURE_CONTENT``) adds the text."""
    try:
        from opentelemetry import metrics, trace
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "telemetry needs OpenTelemetry: pip install 'pygent-lc[otel]'"
        ) from exc
    from langchain_core.tracers import context as lc_context

    from pygent_lc.telemetry.handler import OtelCallbackHandler, TracingSearchObserver
    from pygent_lc.tot import observe

    global _uninstall
    capture = _env_flag(CAPTURE_CONTENT_ENV) if capture_content is None else capture_content
    tracer = trace.get_tracer("pygent_lc", tracer_provider=tracer_provider)
    meter = metrics.get_meter("pygent_lc", meter_provider=meter_provider)
    with _lock:
        uninstrument()
        handler = OtelCallbackHandler(tracer, meter, capture_content=capture)
        # The hook's variable has the handler as its default, so every thread
        # and task sees it, not only the context that called instrument().
        hook: ContextVar[Any] = ContextVar("pygent_otel_handler", default=handler)
        lc_context.register_configure_hook(hook, True)
        observe.set_observer(TracingSearchObserver(tracer, capture_content=capture))

        def undo() -> None:
            # LangChain has no public way to unregister a configure hook.
            hooks = lc_context._configure_hooks
            hooks[:] = [h for h in hooks if h[0] is not hook]
            observe.set_observer(None)
            handler.active = False

        _uninstall = undo


def uninstrument() -> None:
    global _uninstall
    with _lock:
        if _uninstall is not None:
            _uninstall()
            _uninstall = None


def is_instrumented() -> bool:
    return _uninstall is not None


def instrument_from_env() -> None:
    """``instrument()`` when ``PYGENT_OTEL=1``; a warning if OpenTelemetry is missing."""
    if not _env_flag(ENABLE_ENV) or is_instrumented():
        return
    try:
        instrument()
    except ConfigurationError as exc:
        warnings.warn(f"{ENABLE_ENV} is set but {exc}", RuntimeWarning, stacklevel=2)


def start_otlp_export() -> Callable[[], None]:
    """The CLI's ``--otel``: spans over OTLP/HTTP (``OTEL_EXPORTER_OTLP_*``); returns what
    flushes them and uninstruments."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigurationError(
            "--otel needs OpenTelemetry ('pygent-lc[otel]') and its OTLP exporter: "
            "pip install opentelemetry-exporter-otlp-proto-http"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": "pygent-lc"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    instrument(tracer_provider=provider)

    def stop() -> None:
        uninstrument()
        provider.shutdown()  # flushes the batch

    return stop
