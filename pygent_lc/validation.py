"""Checks on the caller's prompt and generation parameters, made before any network call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from pygent_lc.errors import InvalidInputError

# Call keywords a chat Runnable may also be given (by bind_tools, structured
# output, or a caller who knows the provider): passed on unchecked.
PASS_THROUGH_KEYWORDS = frozenset(
    """tools tool_choice parallel_tool_calls response_format strict ls_structured_output_format
    frequency_penalty presence_penalty top_k logprobs top_logprobs logit_bias format options
    keep_alive reasoning extra_body""".split()  # noqa: SIM905
)
MAX_PROMPT_CHARS = 2_000_000
# The largest max_tokens any entry point accepts: a bound that catches a unit mistake (a
# character count, a size in bytes), not a model's cap (its provider says).
MAX_TOKENS_LIMIT = 1_000_000
MAX_SAMPLES = 16  # completions (n) per request: keeps a budget's reservation within reason


def _as_list(value: object) -> object:
    """``stop`` may be one string, or a tuple, where a list is meant."""
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, tuple) else value


Temperature = Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)]
TopP = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
MaxTokens = Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT)]
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Samples = Annotated[int, Field(ge=1, le=MAX_SAMPLES)]
StopSequences = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_as_list)]


class GenerationParams(BaseModel):
    """The generation keywords of one call: the one place their limits are written (also
    ``ToTConfig``'s, by the types above). Strict: ``True`` is not a number, ``"42"`` not a seed."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    stop: StopSequences | None = None
    top_p: TopP | None = None
    seed: Seed | None = None
    n: Samples | None = None

    @classmethod
    def check(cls, params: Mapping[str, Any]) -> GenerationParams:
        """``params`` checked; an unknown keyword or a bad value is an ``InvalidInputError``
        in words naming the keyword, its limits and the value given."""
        unknown = sorted(set(params) - set(cls.model_fields))
        if unknown:
            accepted = ", ".join(cls.model_fields)
            raise InvalidInputError(
                f"unknown generation keyword(s) {unknown}; accepted: {accepted}"
            )
        try:
            return cls(**params)
        except ValidationError as exc:
            error = exc.errors()[0]
        name = str(error["loc"][0])
        if error["type"] in ("greater_than_equal", "less_than_equal"):
            # The field's own limits, as pydantic states them in its schema
            limits = cls.model_json_schema()["properties"][name]["anyOf"][0]
            low, high = limits["minimum"], limits["maximum"]
            raise InvalidInputError(f"{name} must be between {low} and {high}, got {params[name]}")
        expected = "a finite number" if name in ("temperature", "top_p") else "an integer"
        if name == "stop":
            expected = "a non-empty string or a list of them"
        raise InvalidInputError(f"{name} must be {expected}, got {params[name]!r}")


def validate_generation_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords that are set, checked; unknown keywords are an error, not ignored."""
    return GenerationParams.check(params).model_dump(exclude_none=True)


def validate_prompt(prompt: object) -> str:
    """``prompt`` itself if it is a non-blank string of sane size that can be sent."""
    if not isinstance(prompt, str):
        raise InvalidInputError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise InvalidInputError("prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"prompt has {len(prompt)} characters; limit {MAX_PROMPT_CHARS}")
    _encodable(prompt, "prompt")
    return prompt


CHECKED_KEY = "__pygent_checked_call"  # configurable: the input and keywords checked


def checked(config: RunnableConfig, input: object, kwargs: Mapping[str, Any]) -> RunnableConfig:
    """``config`` saying that ``input`` (this very object) with ``kwargs`` was checked."""
    mark = (input, dict(kwargs))
    return {**config, "configurable": {**config.get("configurable", {}), CHECKED_KEY: mark}}


def validate_chat_call(
    input: object, kwargs: Mapping[str, Any], config: RunnableConfig | None = None
) -> dict[str, Any]:
    """The keywords to call a chat Runnable with, input and keywords checked (unless
    ``config`` says this very ``input`` with these ``kwargs`` was, :func:`checked`): text
    must be encodable as UTF-8, generation keywords in range, others passed through."""
    configurable = config.get("configurable") if config else None
    mark = configurable.get(CHECKED_KEY) if configurable else None
    if mark is not None and mark[0] is input and mark[1] == kwargs:
        return dict(kwargs)
    _check_text(input, "input")
    generation = {k: v for k, v in kwargs.items() if k not in PASS_THROUGH_KEYWORDS}
    unknown = sorted(set(generation) - set(GenerationParams.model_fields))
    if unknown:
        accepted = ", ".join(sorted({*GenerationParams.model_fields, *PASS_THROUGH_KEYWORDS}))
        raise InvalidInputError(f"unknown call keyword(s) {unknown}; accepted: {accepted}")
    passed_on = {k: v for k, v in kwargs.items() if k in PASS_THROUGH_KEYWORDS}
    return {**passed_on, **validate_generation_params(generation)}


def _check_text(value: object, where: str) -> None:
    """Every string inside ``value`` (messages, content blocks, tool calls) is encodable."""
    if isinstance(value, str):
        _encodable(value, where)
    elif isinstance(value, BaseMessage):
        where = f"{where} ({value.type} message)"
        for part in (value.content, value.additional_kwargs, getattr(value, "tool_calls", None)):
            _check_text(part, where)
    elif isinstance(value, PromptValue):
        _check_text(value.to_messages(), where)
    elif isinstance(value, Mapping | list | tuple):
        for item in value.values() if isinstance(value, Mapping) else value:
            _check_text(item, where)


def _encodable(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{where} cannot be sent: {exc.reason} at character {exc.start} "
            f"({text[exc.start : exc.end]!a})"
        ) from None
