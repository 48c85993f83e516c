"""``ToTConfig``: the search settings, under PyGent Factory's field names; invalid values
and combinations raise ``ConfigurationError`` naming the field, never pydantic's error."""

from __future__ import annotations

from typing import Any, Literal, NoReturn, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from pygent_lc.errors import ConfigurationError
from pygent_lc.providers.registry import find_provider
from pygent_lc.validation import MaxTokens, Temperature

# Calls in flight: a cloud provider takes a Game-of-24 level in one or two waves; a local
# server (Ollama, llama.cpp) decodes one or two sequences at a time, more only queue.
CLOUD_MAX_CONCURRENCY = 8
LOCAL_MAX_CONCURRENCY = 2


class ToTConfig(BaseModel):
    """Settings of one Tree-of-Thought search; the defaults follow the paper's Game-of-24
    run (propose / value / greedy BFS, 3 value samples, beam of 5)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # propose: one prompt lists several next steps; sample: a call writes one.
    generation_strategy: Literal["propose", "sample"] = "propose"
    # value: each new state scored on its own; vote: the model picks among them all.
    evaluation_method: Literal["value", "vote"] = "value"
    # bfs: a beam of n_select_sample a level; dfs: best child first, prune, backtrack.
    search_method: Literal["bfs", "dfs"] = "bfs"
    selection: Literal["greedy", "sample"] = "greedy"  # BFS: keep the best, or draw by value
    n_generate_sample: int = Field(default=1, ge=1, le=64)  # generation calls a state
    n_evaluate_sample: int = Field(default=3, ge=1, le=64)  # value or vote calls a prompt
    n_select_sample: int = Field(default=5, ge=1, le=256)  # BFS beam; DFS children explored
    max_depth: int = Field(default=3, ge=1, le=64)  # unset: the task's default_depth
    temperature: Temperature = 0.7  # of the generation calls
    evaluation_temperature: Temperature = 0.7  # of the value and vote calls
    # Stop value samples once they agree or cannot change a greedy beam; False: all.
    adaptive_sampling: bool = True
    # End at the first answer the task verifies by program; None: on for VerifyingTask.
    stop_on_verified: bool | None = None
    # BFS: expand, not value, a state whose children the program values; None: no batch.
    expand_checked: bool | None = None
    # Next steps kept in the value cache: "checked" (by program), "all" or "none".
    reuse_proposals: Literal["checked", "all", "none"] = "checked"
    value_batch: bool = False  # a parent's new states valued in one prompt (BatchValueTask)
    # "memory" (the engine's LRU), a SQLite path, a Redis URL, or None (one search).
    value_cache: str | None = "memory"
    value_cache_size: int = Field(default=100_000, ge=1)
    max_tokens: MaxTokens | None = None  # sent with every call
    # DFS: prune children valued below it, on the task's scale (generic 0-1; 24: 0-20).
    value_threshold: float = 0.5
    max_concurrency: int = Field(default=CLOUD_MAX_CONCURRENCY, ge=1, le=1024)
    # Stop cleanly, with the best state so far, before passing this many calls.
    max_llm_calls: int | None = Field(default=None, ge=1)
    # Stop cleanly before the search's reported spend passes this (without a cost_bound,
    # calls run one at a time and pass it by one at most). Across searches: the backend's.
    max_cost_usd: float | None = Field(default=None, gt=0.0)
    seed: int | None = None  # of selection="sample"; None draws a fresh one

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _configuration_error(exc) from exc

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Self:
        try:
            return super().model_validate(obj, **options)
        except ValidationError as exc:
            raise _configuration_error(exc) from exc

    @classmethod
    def for_provider(cls, provider: str, **overrides: Any) -> ToTConfig:
        """A config whose ``max_concurrency`` suits ``provider`` (local or cloud)."""
        spec = find_provider(provider)
        local = spec is not None and spec.local
        concurrency = LOCAL_MAX_CONCURRENCY if local else CLOUD_MAX_CONCURRENCY
        return cls(**{"max_concurrency": concurrency} | overrides)

    def updated(self, **changes: Any) -> ToTConfig:
        """A validated copy (``model_copy`` skips validation); unset fields stay unset."""
        return type(self)(**self.model_dump(exclude_unset=True) | changes)

    def depth_for(self, default_depth: int | None) -> int:
        """``max_depth`` if the caller set it, else ``default_depth`` when given."""
        if "max_depth" in self.model_fields_set or default_depth is None:
            return self.max_depth
        return default_depth

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        if self.search_method == "dfs" and self.selection == "sample":
            _combination(
                "selection", "'sample' applies to bfs only; dfs explores children best first"
            )
        if self.value_batch and self.evaluation_method != "value":
            _combination("value_batch", "batches are of value prompts; votes already batch")
        if self.n_evaluate_sample > 1 and self.evaluation_temperature == 0.0:
            _combination(
                "n_evaluate_sample",
                "more than 1 sample with evaluation_temperature 0 asks the same deterministic "
                "question several times; raise evaluation_temperature or use 1",
            )
        sampling = self.generation_strategy == "sample" and self.n_generate_sample > 1
        if sampling and self.temperature == 0.0:
            _combination(
                "n_generate_sample",
                "more than 1 sample with generation_strategy 'sample' needs temperature > 0, "
                "otherwise every sample is the same thought",
            )
        return self


def _combination(field: str, reason: str) -> NoReturn:  # a model error naming its field
    raise PydanticCustomError("tot_combination", "{reason}", {"field": field, "reason": reason})


def _configuration_error(exc: ValidationError) -> ConfigurationError:
    errors = exc.errors()
    names = [
        ".".join(map(str, e["loc"])) or str(e.get("ctx", {}).get("field", "ToTConfig"))
        for e in errors
    ]
    parts = [f"{name}: {e['msg']}" for name, e in zip(names, errors, strict=True)]
    return ConfigurationError("invalid ToTConfig: " + "; ".join(parts), field=names[0])
