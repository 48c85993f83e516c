"""The instruments: GenAI duration and token histograms, cost, failures, breaker state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from pygent_lc.limits.breaker import CircuitBreaker, live_breakers
from pygent_lc.telemetry import names

Attributes = Mapping[str, Any]


class Instruments:
    """One set of instruments on one meter; inert once :meth:`stop` ran.

    OpenTelemetry cannot remove an instrument from a meter, so after
    ``uninstrument()`` the breaker gauge's callback reports nothing.
    """

    def __init__(self, meter: Meter) -> None:
        self.active = True
        self.duration = meter.create_histogram(
            names.OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(names.DURATION_BUCKETS),
        )
        self.tokens = meter.create_histogram(
            names.TOKEN_USAGE,
            unit="{token}",
            description="Measures number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=[float(b) for b in names.TOKEN_BUCKETS],
        )
        self.cost = meter.create_counter(
            names.COST, unit="USD", description="What the providers billed, in US dollars."
        )
        self.failures = meter.create_counter(
            names.FAILURES,
            unit="{failure}",
            description="Failed provider attempts, by error.type.",
        )
        meter.create_observable_gauge(
            names.BREAKER_STATE,
            callbacks=[self._breaker_states],
            unit="1",
            description="Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
        )

    def stop(self) -> None:
        self.active = False

    def record_answer(self, attributes: Attributes, seconds: float, reply: Attributes) -> None:
        """An attempt that answered: its duration, and the tokens and cost its span's
        ``reply`` attributes report."""
        self.duration.record(seconds, attributes)
        for token_type, key in (
            ("input", names.USAGE_INPUT_TOKENS),
            ("output", names.USAGE_OUTPUT_TOKENS),
        ):
            if reply.get(key) is not None:
                self.tokens.record(reply[key], {**attributes, names.TOKEN_TYPE: token_type})
        cost_usd = reply.get(names.COST_USD)
        if cost_usd is not None:
            self.cost.add(
                cost_usd,
                {
                    key: attributes[key]
                    for key in (names.PROVIDER_NAME, names.REQUEST_MODEL)
                    if key in attributes
                },
            )

    def record_failure(self, attributes: Attributes, seconds: float, error_type: str) -> None:
        """An attempt that failed: its duration and a failure, both by ``error.type``."""
        failed = {**attributes, names.ERROR_TYPE: error_type}
        self.duration.record(seconds, failed)
        self.failures.add(1, failed)

    def _breaker_states(self, options: CallbackOptions) -> Iterable[Observation]:
        """One reading per provider and model: the worst state among its breakers.

        Each chain has its own breakers, so several may share a provider and model.
        """
        if not self.active:
            return []
        worst: dict[tuple[str, str | None], int] = {}
        for breaker in _breakers():
            if breaker.enabled:
                key = (breaker.provider, breaker.model)
                worst[key] = max(worst.get(key, 0), names.BREAKER_STATES[breaker.state])
        return [_observation(provider, model, state) for (provider, model), state in worst.items()]


def _breakers() -> list[CircuitBreaker]:
    for _ in range(3):  # a breaker built in another thread may change the set mid-copy
        try:
            return live_breakers()
        except RuntimeError:
            continue
    return []


def _observation(provider: str, model: str | None, state: int) -> Observation:
    attributes: dict[str, str] = {names.PROVIDER_NAME: provider}
    if model is not None:
        attributes[names.REQUEST_MODEL] = model
    return Observation(state, attributes)
