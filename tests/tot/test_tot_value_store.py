"""State values outlive a search: per engine in memory, across runs in SQLite."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from benchmarks.game24_model import ScriptedGame24Backend
from pygent_lc.errors import ConfigurationError
from pygent_lc.testing import ScriptedBackend
from pygent_lc.tot import Game24Task, GenericTask, ToTConfig, ToTEngine
from pygent_lc.tot.value_store import (
    MemoryValueStore,
    SQLiteValueStore,
    StoredValue,
    ValueStore,
    open_value_store,
)
from tests.tot.conftest import Reply

PUZZLE = "4 9 10 13"


def test_state_keys_are_canonical():
    task = Game24Task()
    a = task.state_key(PUZZLE, ["13 - 9 = 4 (left: 4 4 10)"])
    b = task.state_key(PUZZLE, ["9 - 4 = 5 (left: 10 4 4)", "x"][:1])
    assert a == b  # the same numbers left, whatever path and order
    assert task.state_key("1 1 4 6", ["6 - 4 = 2 (left: 1 1 2.0)"]) == task.state_key(
        "1 1 2 8", ["8 / 4 = 2 (left: 1 2 1)"]
    )
    generic = GenericTask()
    assert generic.state_key("Q?", ["Step  One"]) == generic.state_key(" q? ", ["step one"])
    assert generic.state_key("Q?", ["a"]) != generic.state_key("Q?", ["b"])


def test_memory_store_is_a_bounded_lru():
    store = MemoryValueStore(max_entries=2)
    store.put("a", StoredValue((1.0,), True))
    store.put("b", StoredValue((2.0,), True))
    assert store.get("a") is not None  # a is now the most recently used
    store.put("c", StoredValue((3.0,), True))
    assert store.get("b") is None
    assert store.get("a") == StoredValue((1.0,), True)
    assert len(store) == 2
    assert isinstance(store, ValueStore)


def test_sqlite_store_round_trips_and_is_safe_from_threads(tmp_path: Path) -> None:
    path = tmp_path / "values.sqlite"
    store = SQLiteValueStore(path)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                store.put(f"k{n}-{i}", StoredValue((float(i), 0.5), i % 2 == 0))
                assert store.get(f"k{n}-{i}") == StoredValue((float(i), 0.5), i % 2 == 0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store) == 200
    store.close()
    again = SQLiteValueStore(path)
    assert again.get("k3-7") == StoredValue((7.0, 0.5), False)
    again.close()


def test_open_value_store_names():
    assert open_value_store(None, 10) is None
    assert isinstance(open_value_store("memory", 10), MemoryValueStore)


async def test_one_engine_keeps_values_across_solves():
    backend = ScriptedGame24Backend()
    engine = ToTEngine(ToTConfig(), backend, task=Game24Task())
    first = await engine.solve(PUZZLE)
    second = await engine.solve(PUZZLE)
    assert first.stats.evaluation_calls > 0
    assert second.stats.evaluation_calls == 0
    assert second.stats.cache_hits > 0
    assert second.solved
    # without a store, each search starts from nothing
    fresh = ToTEngine(ToTConfig(value_cache=None), ScriptedGame24Backend(), task=Game24Task())
    await fresh.solve(PUZZLE)
    assert (await fresh.solve(PUZZLE)).stats.evaluation_calls == first.stats.evaluation_calls


async def test_a_sqlite_value_cache_is_reused_by_a_later_run(tmp_path: Path) -> None:
    path = str(tmp_path / "values.sqlite")
    config = ToTConfig(value_cache=path)
    first = await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLE)
    later = await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLE)
    assert first.stats.evaluation_calls > 0
    assert later.stats.evaluation_calls == 0
    assert later.solved


async def test_values_are_kept_per_model_and_per_value_prompt(tmp_path: Path) -> None:
    path = str(tmp_path / "values.sqlite")
    config = ToTConfig(value_cache=path)
    first = await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLE)
    other_model = ToTEngine(config, ScriptedGame24Backend(), task=Game24Task(), model_id="other")
    assert (await other_model.solve(PUZZLE)).stats.evaluation_calls == (
        first.stats.evaluation_calls
    )

    class NewPrompt(Game24Task):
        value_version = "another-prompt"

    new_prompt = ToTEngine(config, ScriptedGame24Backend(), task=NewPrompt())
    assert (await new_prompt.solve(PUZZLE)).stats.evaluation_calls == (first.stats.evaluation_calls)


def test_a_file_store_needs_to_know_the_model(
    tmp_path: Path, scripted: type[ScriptedBackend], ladder: Reply
) -> None:
    config = ToTConfig(value_cache=str(tmp_path / "v.sqlite"))
    with pytest.raises(ConfigurationError) as caught:
        ToTEngine(config, scripted(ladder))
    assert caught.value.field == "model_id"
    ToTEngine(config, scripted(ladder), model_id="my-model")  # named: fine


async def test_an_engine_store_can_be_shared_explicitly():
    store = MemoryValueStore()
    config = ToTConfig()
    a = ToTEngine(config, ScriptedGame24Backend(), task=Game24Task(), value_store=store)
    b = ToTEngine(config, ScriptedGame24Backend(), task=Game24Task(), value_store=store)
    await a.solve(PUZZLE)
    assert (await b.solve(PUZZLE)).stats.evaluation_calls == 0


@pytest.mark.live_local
async def test_a_redis_value_cache_is_shared_by_engines_of_any_process(redis_url: str) -> None:
    from pygent_lc.state import shared_store
    from pygent_lc.state.value_cache import SharedValueStore

    shared_store(redis_url).clear()
    assert isinstance(open_value_store(redis_url, 10), SharedValueStore)
    config = ToTConfig(value_cache=redis_url)
    first = await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLE)
    later = await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLE)
    assert first.stats.evaluation_calls > 0
    assert later.stats.evaluation_calls == 0  # another engine (or process) reused the values
    assert later.solved
