"""OpenRouter's request extras as validated models (unknown fields forbidden), so typos
fail before the network; names and values follow OpenRouter's routing and reasoning docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_request(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ReasoningConfig(_Strict):
    """The ``reasoning`` object: how much a reasoning model may think, and whether to show it."""

    effort: Literal["xhigh", "high", "medium", "low", "minimal", "none"] | None = None  # OpenAI's
    max_tokens: int | None = Field(default=None, gt=0)  # Anthropic's: a budget of tokens
    exclude: bool | None = None  # think, but leave the reasoning text out of the reply
    enabled: bool | None = None  # reasoning on, with the model's defaults

    @model_validator(mode="after")
    def _one_budget(self) -> ReasoningConfig:
        if self.effort is not None and self.max_tokens is not None:
            raise ValueError("set reasoning effort or max_tokens, not both")
        return self


class MaxPrice(_Strict):
    """Highest price, in USD per million tokens (or per request/image), routing may pick."""

    prompt: float | None = Field(default=None, ge=0)
    completion: float | None = Field(default=None, ge=0)
    request: float | None = Field(default=None, ge=0)
    image: float | None = Field(default=None, ge=0)


class ProviderPreferences(_Strict):
    """The ``provider`` object: which upstream providers (slugs) may serve, in what order."""

    order: list[str] | None = None
    allow_fallbacks: bool | None = None
    require_parameters: bool | None = None
    data_collection: Literal["allow", "deny"] | None = None
    zdr: bool | None = None
    only: list[str] | None = None
    ignore: list[str] | None = None
    quantizations: (
        list[Literal["int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32", "unknown"]] | None
    ) = None
    sort: Literal["price", "throughput", "latency"] | None = None
    max_price: MaxPrice | None = None
