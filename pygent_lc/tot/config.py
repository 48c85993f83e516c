"""``ToTConfig``: the search settings, under PyGent Factory's field names.

Invalid values and invalid combinations raise
:class:`pygent_lc.errors.ConfigurationError` naming the offending field, never
a bare pydantic ``ValidationError``: callers of the agent layer catch one tree.
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

    The defaults follow the Tree of Thoughts paper's Game-of-24 run
    (propose / value / greedy BFS, 3 value samples, beam of 5). ``max_depth``
    left unset is the task's own (``Task.default_depth``: 4 for Game of 24,
    3 for free text). ``temperature``, ``evaluation_temperature`` and
    ``max_tokens`` are call keywords, with their limits
    (:class:`~pygent_lc.validation.GenerationParams`).
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
    """Generation calls per expanded state. With ``propose`` every call returns
    a list of steps, all kept (the paper uses 1 call); with ``sample`` every
    call returns one step."""

    n_evaluate_sample: int = Field(default=3, ge=1, le=64)
    """Value or vote calls per evaluation prompt; their scores are combined."""

    n_select_sample: int = Field(default=5, ge=1, le=256)
    """BFS: the beam width b. DFS: how many children of a state are explored
    (best first) before backtracking."""

    max_depth: int = Field(default=3, ge=1, le=64)
    """Number of thought steps below the problem. When not set, the engine
    uses the task's ``default_depth`` (3 is what a task without one gets)."""

    temperature: Temperature = 0.7
    """Sampling temperature of the generation calls."""

    evaluation_temperature: Temperature = 0.7
    """Sampling temperature of the value and vote calls."""

    adaptive_sampling: bool = True
    """Value samples are asked in rounds and stop for a state once the task
    says its samples agree (``Task.samples_agree``), or once no further sample
    could change which states a greedy BFS beam keeps. ``False`` always asks
    ``n_evaluate_sample`` samples, as the paper does."""

    stop_on_verified: bool | None = None
    """End the search as soon as a final answer the task verifies by program
    exists (the rest of its level is not valued). ``None``: on for tasks with a
    verifier (:class:`~pygent_lc.tot.tasks.base.VerifyingTask`, e.g. Game of
    24), off for the others (the generic task has none)."""

    expand_checked: bool | None = None
    """BFS: a state whose next states the task values by program (Game of 24: two
    numbers left, so each next step leaves 24 or a dead end) is expanded instead of
    valued, beside the beam: one generation call, whose proposals are checked, in
    place of value samples that only estimate them. It changes the paper's search
    at that level, not its prompts. ``None``: on for tasks that say which states
    these are (``Task.children_checked``, Game of 24), unless ``value_batch`` is on
    (a parent's states valued in one prompt cost less than a generation call each)."""

    reuse_proposals: Literal["checked", "all", "none"] = "checked"
    """Keep the next steps found from a state in the value cache (``value_cache``,
    by the task's state key, the model and the task's ``propose_version``), so a
    later solve meeting the state asks no model for them. ``"checked"``: states
    whose next states the task values by program (``Task.children_checked``; Game
    of 24: two numbers left), where what is kept is the program's verdict on the
    model's proposals, as a stored value is the model's estimate of such a state.
    ``"all"``: every state's proposals (the paper does not cache proposals: not
    its method). ``"none"``: proposals are always asked. Tasks without a
    ``propose_version`` never reuse them."""

    value_batch: bool = False
    """Value a level's siblings (the new states of one parent) in one prompt
    per sample instead of one prompt per state: the few-shot examples are paid
    once per parent. This changes the paper's method (its value prompt shows one
    state), so it is off by default; the task must support it
    (:class:`~pygent_lc.tot.tasks.base.BatchValueTask`: Game of 24 does)."""

    value_cache: str | None = "memory"
    """Where state values live beyond one search, keyed by the task's state
    key, the model and the task's value prompt version. ``"memory"``: in the
    engine, shared by all its solves, at most ``value_cache_size`` states
    (least recently used dropped). A file path (e.g. ``"values.sqlite"``): a
    SQLite file, shared across runs and processes. A Redis URL (e.g. the
    ``PYGENT_STATE_URL``): shared by every process using that Redis. ``None``:
    values are shared within one search only."""

    value_cache_size: int = Field(default=100_000, ge=1)
    """Entries the in-memory value cache keeps."""

    max_tokens: MaxTokens | None = None
    """Completion cap sent with every call; ``None`` sends none."""

    value_threshold: float = 0.5
    """DFS only: children valued below it are pruned. On the task's value
    scale (generic task: 0-1; Game of 24: the paper's sum of sure=20,
    likely=1, impossible=0.001 over the value samples; votes: 0-1)."""

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
        """A validated copy with ``changes`` applied (``model_copy`` skips validation)."""
        # Unset fields stay unset (``max_depth`` then still comes from the task).
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
