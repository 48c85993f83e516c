"""Structured output and tool calls on the embedded SmolLM2-135M.

Its chat template renders no tools, so tool calls (forced, or "auto": call one
or answer) are emulated with llama.cpp's JSON-schema grammar; structured output
uses the same grammar.
"""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from pydantic import BaseModel, Field

from pygent_lc.providers.local import LocalChatModel

pytestmark = pytest.mark.live_local


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(description="the person's name")
    age: int = Field(description="age in years")


class Add(BaseModel):
    """Add two integers."""

    a: int
    b: int


class Weather(BaseModel):
    """Look up the weather in a city."""

    city: str


PEOPLE = [
    "Alice is 30 years old.",
    "Bob turned 42 last week.",
    "My grandmother Rosa is 87.",
    "Tom, aged 19, plays football.",
    "The new teacher, Ms. Chen, is 35 years old.",
    "Carlos celebrated his 50th birthday today.",
    "Yuki is a 24-year-old engineer.",
    "Priya is twelve years old.",
    "Omar is 61 and lives in Cairo.",
    "Meet Lena, who is 8.",
]


@pytest.fixture
def model() -> LocalChatModel:
    return LocalChatModel(max_tokens=96, temperature=0)


def test_structured_output_returns_a_person_for_every_prompt(model: LocalChatModel) -> None:
    extract = model.with_structured_output(Person)  # json_schema, enforced by the grammar
    people = extract.batch([f"Extract the person: {text}" for text in PEOPLE])
    assert all(isinstance(person, Person) for person in people)  # the grammar's guarantee
    named = [person.name for person in people if isinstance(person, Person)]
    # The names are the 135M model's reading: all ten right in most runs, but now and
    # then one is not (a CI run: a name; a run here: "24-year-old" for Yuki).
    wrong = [(name, text) for name, text in zip(named, PEOPLE, strict=True) if name not in text]
    assert len(wrong) <= 2, wrong


def test_a_forced_tool_choice_returns_a_well_formed_tool_call(model: LocalChatModel) -> None:
    reply = model.bind_tools([Add, Weather], tool_choice="Add").invoke("What is 2 plus 3?")
    assert isinstance(reply, AIMessage)
    [call] = reply.tool_calls
    assert call["name"] == "Add"
    assert Add.model_validate(call["args"])
    assert call["id"] and call["id"].startswith("call_")
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0


def test_any_tool_lets_the_grammar_pick_a_bound_tool(model: LocalChatModel) -> None:
    reply = model.bind_tools([Add, Weather], tool_choice="any").invoke(
        "What is the weather in Paris?"
    )
    [call] = reply.tool_calls
    schemas: dict[str, type[BaseModel]] = {"Add": Add, "Weather": Weather}
    schema = schemas[call["name"]]
    assert schema.model_validate(call["args"])


async def test_a_streamed_forced_tool_call_merges_to_the_same_call(model: LocalChatModel) -> None:
    bound = model.bind_tools([Add], tool_choice="required")
    merged: AIMessageChunk | None = None
    async for chunk in bound.astream("What is 2 plus 3?"):
        assert isinstance(chunk, AIMessageChunk)
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    [call] = merged.tool_calls
    assert call["name"] == "Add" and Add.model_validate(call["args"])
    assert merged.usage_metadata is not None


def test_the_request_carries_the_schema_and_no_tools(model: LocalChatModel) -> None:
    seen: list[dict[str, object]] = []
    original = model._get_request_payload

    def spy(*args: object, **kwargs: object) -> dict[str, object]:
        payload = original(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(payload)
        return payload

    object.__setattr__(model, "_get_request_payload", spy)
    model.bind_tools([Add], tool_choice="Add").invoke("2+3?")
    [payload] = seen
    assert "tools" not in payload and "tool_choice" not in payload
    response_format = payload["response_format"]
    assert isinstance(response_format, dict)
    schema = response_format["json_schema"]["schema"]
    assert json.loads(json.dumps(schema))["required"] == ["a", "b"]


# --- tools without a forced choice ("auto"): call one, or answer -------------------


def test_unforced_tools_get_a_real_tool_call_when_one_is_needed(model: LocalChatModel) -> None:
    reply = model.bind_tools([Weather]).invoke("What is the weather in Paris?")
    assert isinstance(reply, AIMessage)
    [call] = reply.tool_calls
    assert call["name"] == "Weather"
    assert "Paris" in Weather.model_validate(call["args"]).city
    assert reply.response_metadata["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    "prompt",
    [
        [
            HumanMessage("What is the weather in Paris?"),
            AIMessage("", tool_calls=[{"name": "Weather", "args": {"city": "Paris"}, "id": "c1"}]),
            ToolMessage("sunny and 21 degrees", tool_call_id="c1"),
        ],
        [HumanMessage("Hi! What is your name?")],
    ],
    ids=["after-a-result", "no-tool-needed"],
)
def test_unforced_tools_give_a_well_formed_call_or_answer(
    model: LocalChatModel, prompt: list[BaseMessage]
) -> None:
    """SmolLM2-135M does not reliably choose to answer rather than call (it often
    calls again): either is fine, but it is a valid call or plain text, never JSON."""
    reply = model.bind_tools([Weather]).invoke(prompt)
    assert reply.invalid_tool_calls == []
    if reply.tool_calls:
        [call] = reply.tool_calls
        assert call["name"] == "Weather" and Weather.model_validate(call["args"])
        assert reply.content == ""
    else:
        assert isinstance(reply.content, str) and reply.content.strip()
        assert not reply.content.lstrip().startswith("{")  # the answer, not the grammar's JSON
