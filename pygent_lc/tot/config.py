"""``ToTConfig``: the search settings, under PyGent Factory's field names.

Invalid values and combinations raise :class:`~pygent_lc.errors.ConfigurationError`
naming the field, never pydantic's ``ValidationError``: callers catch one tree.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from pygent_lc.errors import ConfigurationError
from pygent_lc.validation import MaxTokens, Temperature

#: In-flight LLM calls for a cloud provider (OpenRouter): enough to run a
#: Game-of-24 level in one or two waves without tripping common rate limits.
CLOUD_MAX_CONCURRENCY = 8

#: In-flight LLM calls for a model on this machine (Ollama, llama.cpp): a local
#: server decodes one or two sequences at a time, more only queue and time out.
LOCAL_MAX_CONCURRENCY = 2


class ToTConfig(BaseModel):
    """Settings of one Tree-of-Thought search.

    The defaults follow the Tree of Thoughts paper's Game-of-24 run (propose /
    value / greedy BFS, 3 value samples, beam of 5). ``temperature``,
    ``evaluation_temperature`` and ``max_tokens`` are call keywords, with their
    limits (:class:`~pygent_lc.validation.GenerationParams`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    generation_strategy: Literal["propose", "sample"] = "propose"
    """``propose``: one prompt lists several next steps, each line a thought.
    ``sample``: each call writes one next step (chain-of-thought sampling)."""

    evaluation_method: Literal["value", "vote"] = "value"
    """``value``: each new state is scored on its own. ``vote``: the model
    picks the most promising of the candidates shown together."""

    search_method: Literal["bfs", "dfs"] = "bfs"
    """``bfs``: keep a beam of ``n_select_sample`` states per level.
    ``dfs``: best child first, prune below ``value_threshold``, backtrack."""

    selection: Literal["greedy", "sample"] = "greedy"
    """BFS only: ``greedy`` keeps the best ``n_select_sample`` states;
    ``sample`` draws them (without replacement) in proportion to their values."""

    n_generate_sample: int = Field(default=1, ge=1, le=64)
    """Generation calls per expanded state (``propose``: each returns a list of
    steps, all kept; the paper uses 1. ``sample``: each returns one step)."""

    n_evaluate_sample: int = Field(default=3, ge=1, le=64)
    """Value or vote calls per evaluation prompt; their scores are combined."""

    n_select_sample: int = Field(default=5, ge=1, le=256)
    """BFS: the beam width b. DFS: children of a state explored (best first)."""

    max_depth: int = Field(default=3, ge=1, le=64)
    """Thought steps below the problem; unset: the task's ``default_depth``
    (Game of 24: 4; free text: 3)."""

    temperature: Temperature = 0.7
    """Of the generation calls."""

    evaluation_temperature: Temperature = 0.7
    """Of the value and vote calls."""

    adaptive_sampling: bool = True
    """Stop asking a state's value samples once the task says they agree
    (``Task.samples_agree``), or once no further sample could change which states
    a greedy BFS beam keeps. ``False`` always asks ``n_evaluate_sample``, as the
    paper does."""

    stop_on_verified: bool | None = None
    """End the search at the first final answer the task verifies by program (the
    rest of its level is not valued). ``None``: on for tasks with a verifier
    (:class:`~pygent_lc.tot.tasks.base.VerifyingTask`, e.g. Game of 24)."""

    expand_checked: bool | None = None
    """BFS: a state whose next states the task values by program (Game of 24: two
    numbers left) is expanded beside the beam instead of valued: one generation
    call whose proposals are checked, in place of value samples that estimate
    them (the paper's search changes there, not its prompts). ``None``: on for
    tasks that say which states these are (``Task.children_checked``), unless
    ``value_batch`` is on (valuing a parent's states in one prompt costs less)."""

    reuse_proposals: Literal["checked", "all", "none"] = "checked"
    """Keep the next steps found from a state in the value cache (by the task's
    state key, the model and the task's ``propose_version``), so a later solve
    asks no model for them. ``"checked"``: states whose next states the task
    values by program (``Task.children_checked``), where what is kept is the
    program's verdict on the proposals. ``"all"``: every state's (not the
    paper's method). ``"none"``: always asked. Tasks without a
    ``propose_version`` never reuse them."""

    value_batch: bool = False
    """Value a parent's new states in one prompt per sample: the few-shot examples
    are paid once per parent. Not the paper's method (its value prompt shows one
    state); the task must support it (:class:`~pygent_lc.tot.tasks.base.BatchValueTask`)."""

    value_cache: str | None = "memory"
    """Where state values (and kept proposals) live beyond one search, keyed by the
    task's state key, the model and the task's prompt version. ``"memory"``: in
    the engine, for all its solves, at most ``value_cache_size`` entries (least
    recently used dropped). A file path: a SQLite file, shared across runs and
    processes. A Redis URL (e.g. ``PYGENT_STATE_URL``): shared by every process
    using that Redis. ``None``: within one search only."""

    value_cache_size: int = Field(default=100_000, ge=1)

    max_tokens: MaxTokens | None = None
    """Completion cap sent with every call; ``None`` sends none."""

    value_threshold: float = 0.5
    """DFS only: children valued below it are pruned, on the task's value scale
    (generic task and votes: 0-1; Game of 24: sure=20, likely=1, impossible=0.001)."""

    max_concurrency: int = Field(default=CLOUD_MAX_CONCURRENCY, ge=1, le=1024)
    """LLM calls in flight at once. Use :meth:`for_provider` (or
    ``LOCAL_MAX_CONCURRENCY``) for Ollama or a local llama.cpp server."""

    max_llm_calls: int | None = Field(default=None, ge=1)
    """Stop cleanly, with the best state so far, before passing this many calls."""

    max_cost_usd: float | None = Field(default=None, gt=0.0)
    """Stop cleanly before the backend's reported spend passes this. Every call
    in flight reserves the backend's ``cost_bound`` (the most it can cost;
    ``LangChainBackend`` with a ``cost_estimator``) and runs concurrently while
    that fits; calls without a bound run one at a time. So the search stays
    within the limit when every call has a bound, and passes it by at most one
    call otherwise. Needs a backend whose ``usage_totals()`` reports cost. A
    limit across searches is the backend's ``budget`` (a ``CostBudget``)."""

    seed: int | None = None
    """Seed of ``selection="sample"``; ``None`` draws a fresh one."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _configuration_error(exc) from exc

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Self:
        """Like pydantic's (same keywords), but raising :class:`ConfigurationError`."""
        try:
            return super().model_validate(obj, **options)
        except ValidationError as exc:
            raise _configuration_error(exc) from exc

    @classmethod
    def for_provider(cls, provider: str, **overrides: Any) -> ToTConfig:
        """A config whose ``max_concurrency`` suits ``provider``.

        Providers on this machine (``ollama``, ``local``: ``ProviderSpec.local``
        in the provider registry) get :data:`LOCAL_MAX_CONCURRENCY`, anything
        else :data:`CLOUD_MAX_CONCURRENCY`; ``overrides`` win over both.
        """
        from pygent_lc.providers.registry import find_provider  # the providers come later

        spec = find_provider(provider)
        local = spec is not None and spec.local
        data: dict[str, Any] = {
            "max_concurrency": LOCAL_MAX_CONCURRENCY if local else CLOUD_MAX_CONCURRENCY
        }
        data.update(overrides)
        return cls(**data)

    def updated(self, **changes: Any) -> ToTConfig:
        """A validated copy with ``changes`` applied (``model_copy`` skips validation);
        unset fields stay unset (``max_depth`` then still comes from the task)."""
        data = self.model_dump(exclude_unset=True)
        data.update(changes)
        return type(self)(**data)

    def depth_for(self, default_depth: int | None) -> int:
        """``max_depth`` if the caller set it, else ``default_depth`` when given."""
        if "max_depth" in self.model_fields_set or default_depth is None:
            return self.max_depth
        return default_depth

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        if self.search_method == "dfs" and self.selection == "sample":
            raise _combination(
                "selection", "'sample' applies to bfs only; dfs explores children best first"
            )
        if self.value_batch and self.evaluation_method != "value":
            raise _combination("value_batch", "batches are of value prompts; votes already batch")
        if self.n_evaluate_sample > 1 and self.evaluation_temperature == 0.0:
            raise _combination(
                "n_evaluate_sample",
                "more than 1 sample with evaluation_temperature 0 asks the same deterministic "
                "question several times; raise evaluation_temperature or use 1",
            )
        if (
            self.generation_strategy == "sample"
            and self.n_generate_sample > 1
            and self.temperature == 0.0
        ):
            raise _combination(
                "n_generate_sample",
                "more than 1 sample with generation_strategy 'sample' needs temperature > 0, "
                "otherwise every sample is the same thought",
            )
        return self


def _combination(field: str, reason: str) -> PydanticCustomError:
    """A model-level error that still names the field it is about."""
    return PydanticCustomError("tot_combination", "{reason}", {"field": field, "reason": reason})


def _error_field(err: Any) -> str:
    loc = err.get("loc") or ()
    if loc:
        return ".".join(str(part) for part in loc)
    ctx = err.get("ctx") or {}
    return str(ctx.get("field", "ToTConfig"))


def _configuration_error(exc: ValidationError) -> ConfigurationError:
    """One ``ConfigurationError`` naming every invalid field, the first as ``field``."""
    errors = exc.errors()
    parts = [f"{_error_field(err)}: {err.get('msg', 'invalid value')}" for err in errors]
    field = _error_field(errors[0]) if errors else None
    return ConfigurationError("invalid ToTConfig: " + "; ".join(parts), field=field)
