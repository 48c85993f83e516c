"""What each OpenRouter client keeps, measured against the loopback server.

Compares pygent_lc's ``openrouter_model`` with plain ``ChatOpenAI(base_url=...)``
and, when installed (``pip install langchain-openrouter``), langchain-openrouter's
``ChatOpenRouter``. Each cell is a real call to the loopback server, which
speaks OpenRouter's documented reply format, and prints yes/no per client:

    python -m benchmarks.openrouter_comparison
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_openai import ChatOpenAI

from pygent_lc import Settings
from pygent_lc.errors import StreamInterruptedError
from pygent_lc.providers import openrouter_model
from tests.loopback_server import Fault, LoopbackServer

KEY = "sk-or-v1-comparison"
REQUESTED = "vendor/requested-model"
SERVED = "vendor/fallback-model"  # the loopback serves the first entry of `models`
REASONING = {"effort": "low"}
ROUTING = {"models": [SERVED, REQUESTED]}

Factory = Callable[[str, bool], BaseChatModel]  # (base_url, reasoning) -> model


def ours(base_url: str, reasoning: bool) -> BaseChatModel:
    settings = Settings(
        openrouter_api_key=KEY,
        openrouter_base_url=base_url,
        openrouter_model=REQUESTED,
        openrouter_reasoning=REASONING if reasoning else None,
    )
    model = openrouter_model(settings)
    body = dict(model.extra_body or {})
    return model.model_copy(update={"extra_body": {**body, **ROUTING}})


def plain(base_url: str, reasoning: bool) -> BaseChatModel:
    body: dict[str, Any] = dict(ROUTING)
    if reasoning:
        body["reasoning"] = REASONING
    return ChatOpenAI(
        model=REQUESTED,
        api_key=KEY,  # type: ignore[arg-type]
        base_url=base_url,
        stream_usage=True,
        max_retries=0,
        extra_body=body,
    )


def chat_openrouter(base_url: str, reasoning: bool) -> BaseChatModel:
    from langchain_openrouter import ChatOpenRouter  # type: ignore[import-not-found]

    model: BaseChatModel = ChatOpenRouter(
        model=REQUESTED,
        openrouter_api_key=KEY,
        openrouter_api_base=base_url,
        reasoning=REASONING if reasoning else None,
        model_kwargs=dict(ROUTING),
        max_retries=0,
    )
    return model


def merged_stream(model: BaseChatModel, prompt: str) -> BaseMessage:
    merged: Any = None
    for chunk in model.stream(prompt):
        merged = chunk if merged is None else merged + chunk
    return merged  # type: ignore[no-any-return]


def check(server: LoopbackServer, make: Factory) -> dict[str, str]:
    url = server.openrouter_base_url
    row: dict[str, str] = {}

    def cell(name: str, probe: Callable[[], bool]) -> None:
        try:
            row[name] = "yes" if probe() else "no"
        except Exception as exc:  # a crash is a "no", with what was raised
            row[name] = f"no ({type(exc).__name__})"

    cell("cost (invoke)", lambda: "cost" in make(url, False).invoke("hi").response_metadata)
    cell("cost (stream)", lambda: "cost" in merged_stream(make(url, False), "hi").response_metadata)
    cell(
        "usage (stream)",
        lambda: bool(getattr(merged_stream(make(url, False), "hi"), "usage_metadata", None)),
    )
    cell(
        "upstream provider",
        lambda: make(url, False).invoke("hi").response_metadata.get("provider") == "LoopbackAI",
    )
    cell(
        "served model",
        lambda: make(url, False).invoke("hi").response_metadata.get("model_name") == SERVED,
    )
    cell(
        "reasoning (invoke)",
        lambda: bool(_reasoning_text(make(url, True).invoke("why is the sky blue"))),
    )
    cell(
        "reasoning (stream)",
        lambda: (
            _reasoning_text(merged_stream(make(url, True), "why is the sky blue")).strip()
            == "Thinking about why. Thinking about is. Thinking about the."
        ),
    )

    def raised_by(fault: Fault, call: Callable[[], object]) -> str:
        server.script("openrouter", [fault])
        try:
            call()
        except Exception as exc:
            kept = isinstance(exc, StreamInterruptedError) and bool(exc.partial_text)
            return type(exc).__name__ + (", partial text kept" if kept else "")
        return "nothing raised"

    row["error in a 200 body raises"] = raised_by(
        Fault.error_in_200(), lambda: make(url, False).invoke("hi")
    )
    row["mid-stream error event raises"] = raised_by(
        Fault.mid_stream_error(after_chunks=2), lambda: merged_stream(make(url, False), "a b c")
    )
    return row


def _reasoning_text(message: BaseMessage) -> str:
    kwargs = message.additional_kwargs
    return str(kwargs.get("reasoning") or kwargs.get("reasoning_content") or "")


def main() -> None:
    clients: dict[str, Factory] = {"pygent_lc": ours, "ChatOpenAI": plain}
    try:
        import langchain_openrouter  # noqa: F401

        clients["ChatOpenRouter"] = chat_openrouter
    except ImportError:
        print("(langchain-openrouter not installed: its column is left out)\n")
    with LoopbackServer() as server:
        rows = {name: check(server, make) for name, make in clients.items()}
    features = list(next(iter(rows.values())))
    print("| kept | " + " | ".join(rows) + " |")
    print("| --- |" + " --- |" * len(rows))
    for feature in features:
        print(f"| {feature} | " + " | ".join(rows[name][feature] for name in rows) + " |")


if __name__ == "__main__":
    main()
