"""Per-call overhead of ``pygent_lc.telemetry``: off, on, and on with content capture.

``LangChainBackend.generate`` over ``build_chat_model(["openrouter"])`` against a
zero-latency loopback server, sequentially and with many calls in flight. "on"
is ``instrument()`` with the SDK's tracer provider (spans batched to an
exporter that drops them, as an OTLP exporter would batch them out) and meter
provider (an in-memory reader). Variants run interleaved, round by round, and
the telemetry is switched on and off around each one, so drift hits them
alike; the figure is the median over rounds. Ratios are against "off".

    python -m benchmarks.telemetry_overhead [--rounds 20] [--calls 50] [--concurrency 300]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from benchmarks._bench import (
    KEY,
    MODEL,
    PROMPT,
    concurrent,
    machine,
    median,
    sequential,
    server_process,
    table,
)
from pygent_lc import LangChainBackend, Settings, build_chat_model, telemetry


class DroppingExporter(SpanExporter):
    """Receives the batches an OTLP exporter would send, and drops them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def switch(mode: str, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
    telemetry.uninstrument()
    if mode != "off":
        telemetry.instrument(
            tracer_provider, meter_provider, capture_content=mode == "on, content captured"
        )


MODES = ("off", "on", "on, content captured")


def backend(base_url: str) -> LangChainBackend:
    settings = Settings(
        openrouter_api_key=KEY,
        openrouter_base_url=f"{base_url}/api/v1",
        openrouter_model=MODEL,
    )
    return LangChainBackend(build_chat_model(settings, ["openrouter"]))


async def main(rounds: int, calls: int, concurrency: int) -> None:
    exporter = DroppingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    seq: dict[str, list[float]] = {mode: [] for mode in MODES}
    conc: dict[str, list[float]] = {mode: [] for mode in MODES}
    # Fresh clients per phase: a pool left with idle connections by a burst
    # slows the sequential calls after it (see adapter_overhead.py).
    with server_process() as base_url:
        ours = backend(base_url)
        for mode in MODES:  # warm-up: imports, first-call setup
            switch(mode, tracer_provider, meter_provider)
            for _ in range(20):
                await ours.generate(PROMPT)
        for _ in range(rounds):
            for mode in MODES:
                switch(mode, tracer_provider, meter_provider)
                seq[mode].append(await sequential(lambda: ours.generate(PROMPT), calls))
        await ours.aclose()
    with server_process() as base_url:
        ours = backend(base_url)
        for mode in MODES:
            switch(mode, tracer_provider, meter_provider)
            await concurrent(lambda: ours.generate(PROMPT), concurrency)
        for _ in range(max(3, rounds // 4)):
            for mode in MODES:
                switch(mode, tracer_provider, meter_provider)
                conc[mode].append(await concurrent(lambda: ours.generate(PROMPT), concurrency))
        await ours.aclose()
    telemetry.uninstrument()
    tracer_provider.shutdown()
    assert exporter.spans > 0

    off_seq, off_conc = median(seq["off"]), median(conc["off"])
    rows = [
        [
            f"telemetry {mode}",
            median(seq[mode]) * 1000,
            median(seq[mode]) / off_seq,
            median(conc[mode]),
            median(conc[mode]) / off_conc,
        ]
        for mode in MODES
    ]
    print(f"machine: {machine()}")
    print(
        f"{rounds} rounds x {calls} sequential calls; {len(conc['off'])} rounds x "
        f"{concurrency} concurrent; medians over rounds; ratios vs off\n"
    )
    print(
        table(
            ["LangChainBackend.generate", "sequential ms/call", "x off", "calls/s", "x off"],
            rows,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.calls, args.concurrency))
