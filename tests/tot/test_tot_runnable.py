"""ToTEngine as a LangChain Runnable: invoke, ainvoke, batch, LCEL, callbacks."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable, RunnableLambda

from pygent_lc.errors import InvalidInputError
from pygent_lc.tot import ToTConfig, ToTEngine, ToTResult

CONFIG = ToTConfig(n_evaluate_sample=1, n_select_sample=2, max_depth=3)


class ChainRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[Any] = []

    def on_chain_start(
        self, serialized: dict[str, Any], inputs: dict[str, Any], **kwargs: Any
    ) -> None:
        self.started.append(kwargs.get("name") or "")

    def on_chain_end(self, outputs: dict[str, Any], **kwargs: Any) -> None:
        self.ended.append(outputs)


def test_invoke_returns_a_result(scripted, ladder):
    result = ToTEngine(CONFIG, scripted(ladder)).invoke("q")
    assert isinstance(result, ToTResult)
    assert result.solved


async def test_ainvoke_with_a_dict(scripted, ladder):
    result = await ToTEngine(CONFIG, scripted(ladder)).ainvoke({"problem": "q"})
    assert result.problem == "q"
    assert result.solved


async def test_lcel_composition(scripted, ladder):
    chain = RunnableLambda(lambda x: x) | ToTEngine(CONFIG, scripted(ladder))
    result = await chain.ainvoke("q")
    assert isinstance(result, ToTResult)
    assert result.solved
    pick: Runnable[Any, Any] = (
        RunnableLambda(lambda question: {"problem": question.strip()})
        | ToTEngine(CONFIG, scripted(ladder))
        | RunnableLambda(lambda r: r.best.text)
    )
    assert pick.invoke("  q  ") == "a.a.a"


async def test_batch(scripted, ladder):
    engine = ToTEngine(CONFIG, scripted(ladder))
    results = await engine.abatch(["q1", "q2"])
    assert [r.problem for r in results] == ["q1", "q2"]
    assert [r.problem for r in engine.batch(["q3"])] == ["q3"]


async def test_callbacks_see_the_run(scripted, ladder):
    recorder = ChainRecorder()
    engine = ToTEngine(CONFIG, scripted(ladder), name="reasoner")
    await engine.ainvoke("q", config={"callbacks": [recorder]})
    engine.invoke("q", config={"callbacks": [recorder]})
    assert recorder.started == ["reasoner", "reasoner"]
    assert all(isinstance(out, ToTResult) for out in recorder.ended)


async def test_invoke_and_solve_sync_work_inside_a_running_loop(scripted, ladder):
    engine = ToTEngine(CONFIG, scripted(ladder))
    assert engine.invoke("q").solved
    assert engine.solve_sync("q").solved


def test_solve_sync_without_a_loop(scripted, ladder):
    assert ToTEngine(CONFIG, scripted(ladder)).solve_sync("q").solved


@pytest.mark.parametrize("bad", [{"question": "q"}, {"problem": ""}, 3, None])
async def test_bad_input_is_invalid_input(scripted, ladder, bad):
    with pytest.raises(InvalidInputError):
        await ToTEngine(CONFIG, scripted(ladder)).ainvoke(bad)
