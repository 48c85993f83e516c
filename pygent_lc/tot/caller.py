"""Every LLM call of a search goes through one :class:`LLMCaller`: the bound on calls
in flight, the budgets (a spent one refuses calls and the search ends cleanly), the
counters per phase (a level whose every call failed raises), and the usage."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pygent_lc.backend import LLMBackend, UsageTotals
from pygent_lc.errors import AllProvidersFailedError, BudgetExceededError, ProviderError
from pygent_lc.limits.budget import CostBudget
from pygent_lc.limits.call import Hold
from pygent_lc.providers.text import clean_text
from pygent_lc.tot.config import ToTConfig
from pygent_lc.tot.result import ToTStats

# The failures one call may end with without ending the search.
CallFailure = ProviderError | AllProvidersFailedError
CALL_FAILURES = (ProviderError, AllProvidersFailedError)
CallKind = Literal["generation", "evaluation"]
_T = TypeVar("_T")


async def gather_or_cancel(*coroutines: Coroutine[Any, Any, _T]) -> list[_T]:
    """The results of ``coroutines`` run at once; when one raises, the others are cancelled
    (a search that raised must not spend on calls nobody reads) and its error is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except BaseExceptionGroup as grouped:
        first = grouped.exceptions[0]
        raise first from first.__cause__
    return [task.result() for task in tasks]


def failed(stage: str, errors: Sequence[CallFailure], asked: int | None = None) -> str | None:
    """A node's ``error``: that ``stage``'s calls failed, with the first error."""
    if not errors:
        return None
    count = "" if asked is None else f" ({len(errors)} of {asked} samples)"
    return f"{stage} failed{count}: {type(errors[0]).__name__}: {errors[0]}"


class BudgetExhausted(Exception):
    """Internal signal, never seen by callers: a budget is spent, the call was refused."""


@dataclass
class _Phase:
    attempted: int = 0
    failed: int = 0
    first_error: CallFailure | None = None


@dataclass
class SamplesSupport:
    """Whether a model answers ``n`` samples in one request (OpenRouter and Ollama ignore
    ``n``): unknown until a request with ``n > 1``. An engine keeps one for its solves."""

    honoured: bool | None = None

    def learn(self, honoured: bool) -> None:
        if self.honoured is None or not honoured:
            self.honoured = honoured


@dataclass
class SampledOutputs:
    outputs: list[str] = field(default_factory=list)
    errors: list[CallFailure] = field(default_factory=list)
    refused: int = 0  # samples not asked: a budget is spent


class LLMCaller:
    def __init__(
        self, backend: LLMBackend, config: ToTConfig, n_support: SamplesSupport | None = None
    ) -> None:
        self._backend = backend
        self._config = config
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._start_usage = backend.usage_totals()
        self._budget: CostBudget | None = None
        if config.max_cost_usd is not None:
            self._budget = CostBudget(config.max_cost_usd, self._spent_usd, backend.cost_bound)
        self._in_flight = 0
        self._phase = _Phase()
        self.counters = ToTStats()  # counted here and by the generator and evaluator
        self.exhausted: str | None = None
        self.n_support = n_support if n_support is not None else SamplesSupport()
        if type(backend).generate_samples is LLMBackend.generate_samples:
            # The contract's default sends a request a sample: nothing to learn.
            self.n_support.learn(False)

    def usage(self) -> UsageTotals | None:
        now, start = self._backend.usage_totals(), self._start_usage
        return None if now is None or start is None else now - start

    def _spent_usd(self) -> float:
        usage = self.usage()
        return 0.0 if usage is None else usage.cost_usd

    async def _admit(self, prompt: str, samples: int = 1) -> Hold:
        """A hold on the ``CostBudget`` (a ``cost_bound`` a sample, or one call at a time
        without one) and a place within ``max_llm_calls``, or :class:`BudgetExhausted`."""
        self._check_call_limit()
        hold = Hold(self._budget, prompt, self._config.max_tokens, samples)
        try:
            await hold.__aenter__()
        except BudgetExceededError as exc:
            if self.exhausted is None:
                self.exhausted = f"max_cost_usd: {exc}"
            raise BudgetExhausted(self.exhausted) from exc
        try:
            self._check_call_limit()  # again: others may have started while this one waited
        except BudgetExhausted:
            await hold.arelease()
            raise
        return hold

    def _check_call_limit(self) -> None:
        if self.exhausted is None:
            limit = self._config.max_llm_calls
            if limit is not None and self.counters.llm_calls >= limit:
                self.exhausted = f"max_llm_calls: {limit} calls used"
        if self.exhausted is not None:
            raise BudgetExhausted(self.exhausted)

    @contextmanager
    def phase(self) -> Iterator[None]:
        """One level's generation or evaluation: raises if every call of it failed."""
        self._phase = phase = _Phase()
        yield
        if phase.attempted and phase.failed == phase.attempted and phase.first_error is not None:
            raise phase.first_error

    async def outcome(
        self, prompt: str, kind: CallKind, stop: list[str] | None = None
    ) -> str | CallFailure | None:
        """One completion, the call's failure, or ``None`` when a budget refused the call."""
        try:
            return (await self._request(prompt, 1, kind, stop))[0]
        except BudgetExhausted:
            return None
        except CALL_FAILURES as exc:
            return exc

    async def call_samples(self, prompt: str, n: int, kind: CallKind) -> list[str]:
        """Up to ``n`` completions in one request: one call, one hold on the budget."""
        outputs = await self._request(prompt, n, kind, None)
        self.n_support.learn(len(outputs) >= n)
        return outputs

    async def samples(
        self, prompt: str, n: int, kind: CallKind, fill: bool = True
    ) -> SampledOutputs:
        """``n`` samples, failures and refusals: one request for all where the model may answer
        ``n``, the rest a request each, at once. ``fill=False``: one request (up to ``n``)."""
        result = SampledOutputs()
        if n > 1 and self.n_support.honoured is not False:
            try:
                result.outputs.extend(await self.call_samples(prompt, n, kind))
            except BudgetExhausted:
                result.refused += n
                return result
            except CALL_FAILURES as exc:
                result.errors.append(exc)
                return result
            n = n - len(result.outputs) if fill else 0
        elif not fill:
            n = min(n, 1)  # one request, and this model answers one sample a request
        for item in await gather_or_cancel(*(self.outcome(prompt, kind) for _ in range(n))):
            if item is None:
                result.refused += 1
            elif isinstance(item, str):
                result.outputs.append(item)
            else:
                result.errors.append(item)
        return result

    async def _request(
        self, prompt: str, n: int, kind: CallKind, stop: list[str] | None
    ) -> list[str]:
        config = self._config
        generation = kind == "generation"
        temperature = config.temperature if generation else config.evaluation_temperature
        # A SplitPrompt's fixed start, for backends that can have it cached.
        prefix = getattr(prompt, "static", None) if self._backend.accepts_cache_prefix else None
        optional = {"max_tokens": config.max_tokens, "stop": stop, "cache_prefix": prefix}
        kwargs: dict[str, Any] = {"temperature": temperature}
        kwargs |= {key: value for key, value in optional.items() if value}
        async with self._semaphore:
            # Admitted once acquired: queued calls see the spend of those that finished.
            hold = await self._admit(prompt, n)
            self.counters.llm_calls += 1
            self.counters.generation_calls += generation
            self.counters.evaluation_calls += not generation
            self._phase.attempted += 1
            self._in_flight += 1
            self.counters.peak_in_flight = max(self.counters.peak_in_flight, self._in_flight)
            try:
                # Cleaned: the reply goes on in later prompts (half a surrogate pair).
                if n == 1:
                    return [clean_text(await self._backend.generate(prompt, **kwargs))]
                outputs = await self._backend.generate_samples(prompt, n, **kwargs)
                return [clean_text(output) for output in outputs[:n]]
            except BudgetExceededError as exc:
                # The backend's own budget: end the search like ours would.
                self._phase.attempted -= 1
                self.exhausted = f"backend budget: {exc}"
                raise BudgetExhausted(self.exhausted) from exc
            except CALL_FAILURES as exc:
                self.counters.failed_calls += 1
                self._phase.failed += 1
                self._phase.first_error = self._phase.first_error or exc
                raise
            finally:
                self._in_flight -= 1
                await hold.arelease()
