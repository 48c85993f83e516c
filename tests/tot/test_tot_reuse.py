"""Issue 22: the next steps found from a state are kept and reused across solves
(``ToTConfig.reuse_proposals``), the way state values are."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from benchmarks.game24_model import (
    ImperfectGame24Backend,
    ScriptedGame24Backend,
    scripted_game24_reply,
)
from pygent_lc.errors import ConfigurationError, ProviderUnavailableError
from pygent_lc.testing import ScriptedBackend
from pygent_lc.tot import Game24Task, GenericTask, ToTConfig, ToTEngine
from pygent_lc.tot.value_store import MemoryValueStore, StoredChildren, ValueStore
from tests.tot.conftest import Reply, prompt_kind

PUZZLE = "4 9 10 13"
# Puzzles that meet some of the same states (the same numbers left) on their way.
PUZZLES = ["4 9 10 13", "1 1 4 6", "2 5 8 11", "3 3 8 8", "1 4 8 8", "5 5 5 9", "1 2 4 6"]


def _proposed_from(prompts: list[str]) -> list[str]:
    """The numbers shown by each Game-of-24 propose prompt asked, sorted (a state key)."""
    found = []
    for prompt in prompts:
        lines = prompt.rstrip().splitlines()
        if lines and lines[-1] == "Possible next steps:" and lines[-2].startswith("Input:"):
            found.append(" ".join(sorted(lines[-2].removeprefix("Input:").split())))
    return found


def _two_left(states: list[str]) -> list[str]:
    return [s for s in states if len(s.split()) == 2]


async def test_a_checked_state_is_proposed_from_once_across_solves():
    """Two numbers left: what its proposals came to (24 or nothing) is kept, as a value is."""
    backend = ScriptedGame24Backend()
    engine = ToTEngine(ToTConfig(), backend, task=Game24Task())
    results = [await engine.solve(puzzle) for puzzle in [PUZZLE, *PUZZLES]]
    assert all(r.solved for r in results)
    asked = Counter(_two_left(_proposed_from(backend.prompts)))
    assert asked and max(asked.values()) == 1
    assert results[1].stats.proposals_reused > 0  # the same puzzle again
    # the paper's way (nothing kept) asks some of them again
    paper = ScriptedGame24Backend()
    none = ToTEngine(ToTConfig(reuse_proposals="none"), paper, task=Game24Task())
    for puzzle in [PUZZLE, *PUZZLES]:
        assert (await none.solve(puzzle)).stats.proposals_reused == 0
    assert max(Counter(_two_left(_proposed_from(paper.prompts))).values()) > 1


async def test_a_reused_state_costs_no_call_and_finds_the_same_answer():
    engine = ToTEngine(ToTConfig(), ScriptedGame24Backend(), task=Game24Task())
    first = await engine.solve(PUZZLE)
    again = await engine.solve(PUZZLE)
    assert first.solved and again.solved
    assert first.stats.proposals_reused == 0
    assert again.stats.generation_calls < first.stats.generation_calls
    assert again.best is not None and first.best is not None
    assert again.best.text == first.best.text


async def test_by_default_only_checked_states_are_reused_and_all_reuses_every_state():
    for mode, levels in (("checked", {2}), ("all", {0, 1, 2})):
        backend = ScriptedGame24Backend()
        engine = ToTEngine(ToTConfig(reuse_proposals=mode), backend, task=Game24Task())
        await engine.solve(PUZZLE)
        asked_before = backend.calls
        await engine.solve(PUZZLE)
        again = _proposed_from(backend.prompts[asked_before:])
        # states with 4, 3, 2 numbers left are at levels 0, 1, 2
        asked_at = {4 - len(state.split()) for state in again}
        assert {0, 1, 2} - asked_at == levels, mode


async def test_a_failed_proposal_is_not_kept_as_leading_nowhere():
    """A state whose call failed was not checked: a later solve asks it again."""
    failed: list[str] = []

    def fail(prompt: str, index: int) -> BaseException | None:
        states = _two_left(_proposed_from([prompt]))
        if states and not failed:
            failed.append(states[0])
            return ProviderUnavailableError("down for a moment", provider="scripted")
        return None

    backend = ScriptedBackend(scripted_game24_reply, model_id="flaky", fail=fail)
    engine = ToTEngine(ToTConfig(), backend, task=Game24Task())
    await engine.solve(PUZZLE)
    assert failed
    before = backend.calls
    again = await engine.solve(PUZZLE)
    assert _two_left(_proposed_from(backend.prompts[before:])) == failed  # asked again
    assert again.stats.proposals_reused > 0  # the others were kept


class _Recording(MemoryValueStore):
    """A memory store that records the keys of the children put in it."""

    def __init__(self) -> None:
        super().__init__()
        self.children_put: list[str] = []

    def put_children(self, key: str, children: StoredChildren) -> None:
        self.children_put.append(key)
        super().put_children(key, children)


async def test_a_state_refused_by_the_budget_is_not_kept():
    """Only states whose proposals were asked are kept, whichever call the budget stops."""
    full = await ToTEngine(ToTConfig(), ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLE)
    kept_any = False
    for limit in range(1, full.stats.llm_calls):
        backend, store = ScriptedGame24Backend(), _Recording()
        config = ToTConfig(max_llm_calls=limit)
        result = await ToTEngine(config, backend, task=Game24Task(), value_store=store).solve(
            PUZZLE
        )
        assert result.stats.budget_exhausted is not None
        asked = {f"left {state}" for state in _proposed_from(backend.prompts)}
        assert {key.rsplit("\x1f", 1)[1] for key in store.children_put} <= asked, limit
        kept_any = kept_any or bool(store.children_put)
    assert kept_any


async def test_kept_steps_that_do_not_hold_from_the_state_are_asked_again():
    """A row whose steps the program rejects from this state (not ours) is not used."""
    store = _Recording()
    engine = ToTEngine(ToTConfig(), ScriptedGame24Backend(), task=Game24Task(), value_store=store)
    await engine.solve(PUZZLE)
    keys = list(store.children_put)
    assert keys
    for key in keys:
        store.put_children(key, StoredChildren(("1 + 1 = 3 (left: 3)",)))
    backend = ScriptedGame24Backend()
    again = await ToTEngine(ToTConfig(), backend, task=Game24Task(), value_store=store).solve(
        PUZZLE
    )
    assert again.solved
    assert again.stats.proposals_reused == 0
    assert again.stats.invalid_pruned == 0  # the stored step never entered the tree


async def test_proposals_are_kept_per_model_and_per_propose_prompt():
    store = MemoryValueStore()
    config = ToTConfig(reuse_proposals="all")
    first = ToTEngine(config, ScriptedGame24Backend(), task=Game24Task(), value_store=store)
    await first.solve(PUZZLE)
    other = ToTEngine(
        config, ScriptedGame24Backend(), task=Game24Task(), value_store=store, model_id="other"
    )
    assert (await other.solve(PUZZLE)).stats.proposals_reused == 0

    class NewPrompt(Game24Task):
        propose_version = "another-prompt"

    new = ToTEngine(config, ScriptedGame24Backend(), task=NewPrompt(), value_store=store)
    assert (await new.solve(PUZZLE)).stats.proposals_reused == 0

    class Unversioned(Game24Task):
        propose_version = None  # type: ignore[assignment]

    engine = ToTEngine(config, ScriptedGame24Backend(), task=Unversioned(), value_store=store)
    await engine.solve(PUZZLE)
    assert (await engine.solve(PUZZLE)).stats.proposals_reused == 0


async def test_a_sqlite_cache_keeps_proposals_for_a_later_run(tmp_path: Path) -> None:
    config = ToTConfig(value_cache=str(tmp_path / "values.sqlite"))
    await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLE)
    backend = ScriptedGame24Backend()
    later = await ToTEngine(config, backend, task=Game24Task()).solve(PUZZLE)
    assert later.solved and later.stats.proposals_reused > 0
    assert not _two_left(_proposed_from(backend.prompts))


async def test_a_custom_value_store_without_children_still_works():
    class ValuesOnly:
        def __init__(self) -> None:
            self.inner = MemoryValueStore()

        def get(self, key):
            return self.inner.get(key)

        def put(self, key, value):
            self.inner.put(key, value)

        def close(self):
            self.inner.close()

    store = ValuesOnly()
    assert isinstance(store, ValueStore)
    engine = ToTEngine(ToTConfig(), ScriptedGame24Backend(), task=Game24Task(), value_store=store)
    await engine.solve(PUZZLE)
    again = await engine.solve(PUZZLE)
    assert again.solved and again.stats.proposals_reused == 0


async def test_the_generic_task_reuses_a_states_proposals_with_all(
    scripted: type[ScriptedBackend], ladder: Reply
) -> None:
    backend = scripted(ladder, model_id="ladder")
    engine = ToTEngine(ToTConfig(reuse_proposals="all"), backend, task=GenericTask())
    first = await engine.solve("Which idea is best?")
    again = await engine.solve("Which idea is best?")
    assert first.best is not None and again.best is not None
    assert again.best.text == first.best.text
    proposals = [p for p in backend.prompts[first.stats.llm_calls :] if prompt_kind(p) == "propose"]
    assert proposals == []
    assert again.stats.proposals_reused == first.stats.generation_calls
    # by default the generic task (no state checked by program) reuses none
    default = ToTEngine(ToTConfig(), scripted(ladder, model_id="ladder"), task=GenericTask())
    await default.solve("Which idea is best?")
    assert (await default.solve("Which idea is best?")).stats.proposals_reused == 0


def test_reuse_proposals_is_checked():
    assert ToTConfig().reuse_proposals == "checked"
    assert ToTConfig(reuse_proposals="all").reuse_proposals == "all"
    with pytest.raises(ConfigurationError) as caught:
        ToTConfig(reuse_proposals="sometimes")
    assert caught.value.field == "reuse_proposals"


async def test_reuse_saves_tokens_on_the_imperfect_model_and_solves_as_many():
    def engine(mode: str) -> tuple[ToTEngine, ImperfectGame24Backend]:
        backend = ImperfectGame24Backend(seed=0, track_usage=True)
        config = ToTConfig(seed=0, reuse_proposals=mode)
        return ToTEngine(config, backend, task=Game24Task()), backend

    totals = {}
    for mode in ("checked", "none"):
        tot, backend = engine(mode)
        solved = 0
        for puzzle in PUZZLES * 2:
            solved += (await tot.solve(puzzle)).solved
        usage = backend.usage_totals()
        assert usage is not None
        totals[mode] = (solved, usage.total_tokens)
    assert totals["checked"][1] < totals["none"][1]
    assert totals["checked"][0] >= totals["none"][0]
