"""OpenTelemetry traces and metrics for every call, fallback and thought, on request.

``instrument()`` registers one LangChain callback handler globally (a
configure hook, as LangSmith's tracer is) and a Tree-of-Thought observer;
``uninstrument()`` removes both. Until then nothing is added to any call, and
importing this module (or ``pygent_lc``) imports no OpenTelemetry package.
``PYGENT_OTEL=1`` instruments where a chain is built and in the CLI
(:func:`instrument_from_env`); ``PYGENT_OTEL_CAPTURE_CONTENT=1`` adds prompt
and completion text to spans. Names: :mod:`pygent_lc.telemetry.names`.
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

    from pygent_lc.telemetry.metrics import Instruments

OTLP_PACKAGE = "opentelemetry-exporter-otlp-proto-http"
ENABLE_ENV = "PYGENT_OTEL"
CAPTURE_CONTENT_ENV = "PYGENT_OTEL_CAPTURE_CONTENT"
SCOPE = "pygent_lc"

#: What :func:`instrument` installed: the configure hook's variable and the instruments.
_installed: tuple[ContextVar[Any], Instruments] | None = None
_lock = threading.Lock()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def instrument(
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    *,
    capture_content: bool | None = None,
) -> None:
    """Send spans and metrics of every chat call and search to OpenTelemetry.

    The global providers are used when none are given. ``capture_content``
    defaults to ``PYGENT_OTEL_CAPTURE_CONTENT``. Calling it again replaces
    the previous instrumentation.
    """
    try:
        from opentelemetry import metrics, trace
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "telemetry needs OpenTelemetry: pip install 'pygent-lc[otel]'"
        ) from exc
    from langchain_core.tracers.context import register_configure_hook

    from pygent_lc.telemetry.handler import OtelCallbackHandler
    from pygent_lc.telemetry.metrics import Instruments
    from pygent_lc.telemetry.tot import TracingSearchObserver
    from pygent_lc.tot import observe

    global _installed
    capture = _env_flag(CAPTURE_CONTENT_ENV) if capture_content is None else capture_content
    tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
    with _lock:
        _uninstall()
        instruments = Instruments(meter)
        handler = OtelCallbackHandler(tracer, instruments, capture_content=capture)
        # The hook's variable has the handler as its default, so every thread
        # and task sees it, not only the context that called instrument().
        hook: ContextVar[Any] = ContextVar("pygent_otel_handler", default=handler)
        register_configure_hook(hook, True)
        observe.set_observer(TracingSearchObserver(tracer, capture_content=capture))
        _installed = (hook, instruments)


def uninstrument() -> None:
    """Undo :func:`instrument`: no handler, no search observer, no breaker readings."""
    with _lock:
        _uninstall()


def is_instrumented() -> bool:
    return _installed is not None


def _uninstall() -> None:
    global _installed
    if _installed is None:
        return
    from langchain_core.tracers import context as lc_context

    from pygent_lc.tot import observe

    hook, instruments = _installed
    # LangChain has no public way to unregister a configure hook.
    lc_context._configure_hooks[:] = [h for h in lc_context._configure_hooks if h[0] is not hook]
    observe.set_observer(None)
    instruments.stop()
    _installed = None


def instrument_from_env() -> None:
    """``instrument()`` when ``PYGENT_OTEL=1``; a warning if OpenTelemetry is missing."""
    if not _env_flag(ENABLE_ENV) or is_instrumented():
        return
    try:
        instrument()
    except ConfigurationError as exc:
        warnings.warn(f"{ENABLE_ENV} is set but {exc}", RuntimeWarning, stacklevel=2)


def start_otlp_export() -> Callable[[], None]:
    """The CLI's ``--otel``: instrument with a tracer provider that sends spans over
    OTLP/HTTP; returns the function that flushes them and undoes the instrumentation.

    The endpoint, headers and service name come from the standard variables
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``, ...), read by
    the exporter and the SDK themselves.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigurationError(
            f"--otel needs OpenTelemetry ('pygent-lc[otel]') and its OTLP exporter: "
            f"pip install {OTLP_PACKAGE}"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": "pygent-lc"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    instrument(tracer_provider=provider)

    def stop() -> None:
        uninstrument()
        provider.shutdown()  # flushes the batch

    return stop


__all__ = [
    "CAPTURE_CONTENT_ENV",
    "ENABLE_ENV",
    "instrument",
    "instrument_from_env",
    "is_instrumented",
    "start_otlp_export",
    "uninstrument",
]
