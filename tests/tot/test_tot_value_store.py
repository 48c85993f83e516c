"""State values outlive a search: per engine in memory, across runs in SQLite."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import pytest

from benchmarks.game24_model import ScriptedGame24Backend
from pygent_lc import LangChainBackend, Settings, build_chat_model
from pygent_lc.agents.reasoning import ProgressBackend, SolveProgress
from pygent_lc.errors import ConfigurationError
from pygent_lc.testing import ScriptedBackend
from pygent_lc.tot import Game24Task, GenericTask, ToTConfig, ToTEngine
from pygent_lc.tot.value_store import (
    ChildrenStore,
    MemoryValueStore,
    SQLiteValueStore,
    StoredChildren,
    StoredValue,
    ValueStore,
    open_value_store,
)
from tests.helpers import ROOT
from tests.limits.steps import cache_set
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


def test_memory_store_keeps_children_beside_values_under_one_bound():
    store = MemoryValueStore(max_entries=2)
    assert isinstance(store, ChildrenStore)
    store.put("k", StoredValue((1.0,), True))
    store.put_children("k", StoredChildren(("4 * 6 = 24 (left: 24)",)))
    assert store.get("k") == StoredValue((1.0,), True)  # one key, two kinds of entry
    assert store.get_children("k") == StoredChildren(("4 * 6 = 24 (left: 24)",))
    store.put_children("dead", StoredChildren(()))
    assert store.get_children("dead") == StoredChildren(())
    assert store.get("k") is None  # the least recently used of the three went
    assert store.get_children("nothing") is None
    assert len(store) == 2


def test_sqlite_store_keeps_children_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "values.sqlite"
    store = SQLiteValueStore(path)
    assert isinstance(store, ChildrenStore)
    store.put("k", StoredValue((1.0,), True))
    store.put_children("k", StoredChildren(("8 * 3 = 24 (left: 24)", "3 * 8 = 24 (left: 24)")))
    store.put_children("dead", StoredChildren(()))
    store.close()
    again = SQLiteValueStore(path)
    assert again.get_children("k") == StoredChildren(
        ("8 * 3 = 24 (left: 24)", "3 * 8 = 24 (left: 24)")
    )
    assert again.get_children("dead") == StoredChildren(())
    assert again.get_children("other") is None
    assert again.get("k") == StoredValue((1.0,), True)
    assert len(again) == 1  # values
    again.close()


def test_sqlite_store_opens_a_file_made_before_it_kept_children(tmp_path: Path) -> None:
    path = tmp_path / "values.sqlite"
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "CREATE TABLE tot_values (key TEXT PRIMARY KEY, scores TEXT NOT NULL, "
            "settled INTEGER NOT NULL)"
        )
        connection.execute("INSERT INTO tot_values VALUES ('k', '[1.0]', 1)")
    store = SQLiteValueStore(path)
    assert store.get("k") == StoredValue((1.0,), True)
    store.put_children("k", StoredChildren(("a",)))
    assert store.get_children("k") == StoredChildren(("a",))
    store.close()


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


def test_a_file_store_knows_the_models_of_the_packages_own_chain(tmp_path: Path) -> None:
    """``ToTEngine(ToTConfig(value_cache=...), LangChainBackend(build_chat_model(s)))``:
    the chain's providers name the models, in the order they are tried."""
    settings = Settings(
        openrouter_api_key="sk-or-v1-" + "0" * 64,
        openrouter_model="vendor/model-a",
        ollama_model="llama3.2:latest",
    )
    chain = build_chat_model(settings, ["openrouter", "ollama"])
    config = ToTConfig(value_cache=str(tmp_path / "v.sqlite"))
    engine = ToTEngine(config, LangChainBackend(chain))
    assert engine.model_id == "vendor/model-a>llama3.2:latest"
    # Through the agents' progress wrapper too (it keeps the backend as ``inner``).
    progress = ProgressBackend(LangChainBackend(chain), SolveProgress(max_depth=1))
    wrapped = ToTEngine(config, progress)
    assert wrapped.model_id == engine.model_id


async def test_an_engine_store_can_be_shared_explicitly():
    store = MemoryValueStore()
    config = ToTConfig()
    a = ToTEngine(config, ScriptedGame24Backend(), task=Game24Task(), value_store=store)
    b = ToTEngine(config, ScriptedGame24Backend(), task=Game24Task(), value_store=store)
    await a.solve(PUZZLE)
    assert (await b.solve(PUZZLE)).stats.evaluation_calls == 0


@pytest.mark.live_local
async def test_a_redis_value_cache_is_shared_by_engines_of_any_process(redis_url: str) -> None:
    from pygent_lc.limits import shared_store
    from pygent_lc.tot.value_store import SharedValueStore

    shared_store(redis_url).clear()
    assert isinstance(open_value_store(redis_url, 10), SharedValueStore)
    config = ToTConfig(value_cache=redis_url)
    first = await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLE)
    later = await ToTEngine(config, ScriptedGame24Backend(), task=Game24Task()).solve(PUZZLE)
    assert first.stats.evaluation_calls > 0
    assert later.stats.evaluation_calls == 0  # another engine (or process) reused the values
    assert later.stats.proposals_reused > 0  # and the next steps found from checked states
    assert later.solved


# --- a cache file that is not ours, tampered with, or failing mid-run -----------------


def _snapshot(path: Path) -> tuple[bytes, list[str], str]:
    """The file's bytes, its tables and its journal mode (read without writing)."""
    data = path.read_bytes()
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master")]
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    return data, sorted(tables), mode


@pytest.mark.parametrize(
    "schema",
    [
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
        "CREATE TABLE tot_values (key TEXT PRIMARY KEY, score REAL)",
        "CREATE TABLE tot_values (key TEXT, scores TEXT, settled INTEGER)",
        "CREATE TABLE tot_values (key TEXT PRIMARY KEY, scores TEXT NOT NULL, "
        "settled INTEGER NOT NULL); CREATE VIEW listing AS SELECT key FROM tot_values",
        "CREATE TABLE tot_children (key TEXT PRIMARY KEY, children BLOB)",
        "CREATE TABLE tot_values (key TEXT PRIMARY KEY, scores TEXT NOT NULL, "
        "settled INTEGER NOT NULL); CREATE TABLE tot_children (id INTEGER, thoughts TEXT)",
    ],
)
def test_sqlite_store_refuses_a_database_it_did_not_make(tmp_path: Path, schema: str) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as connection:
        connection.executescript(schema)
    before = _snapshot(path)
    assert before[2] == "delete"
    with pytest.raises(ConfigurationError) as caught:
        SQLiteValueStore(path)
    assert caught.value.field == "value_cache"
    assert "not a value cache file" in str(caught.value)
    assert _snapshot(path) == before  # no table added, journal mode unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_sqlite_store_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, and longer than a header would be " * 4)
    before = path.read_bytes()
    with pytest.raises(ConfigurationError) as caught:
        SQLiteValueStore(path)
    assert caught.value.field == "value_cache"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_sqlite_store_reopens_its_own_file_and_an_empty_one(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    SQLiteValueStore(empty).close()
    again = SQLiteValueStore(empty)  # its own table, its own schema
    again.put("k", StoredValue((1.0,), True))
    assert again.get("k") == StoredValue((1.0,), True)
    again.close()


_UNUSABLE_ROWS = [
    ("not json", 1),
    ("[NaN]", 1),
    ("[Infinity, 2]", 1),
    ("[-Infinity]", 0),
    ('["20"]', 1),
    ("[true]", 1),
    ("[]", 1),
    ('{"scores": [1]}', 1),
    ("[1, null]", 1),
    (b"[1]", 1),
    (20, 1),
    ("[1.0]", "yes"),
    ("[1.0]", 2),
    ("[1.0]", 0.5),
]


def test_sqlite_store_ignores_unusable_rows_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "values.sqlite"
    store = SQLiteValueStore(path)
    store.put("good", StoredValue((1.0, 2.5), False))
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.executemany(  # SQLite keeps a blob, or text in an INTEGER column
            "INSERT INTO tot_values (key, scores, settled) VALUES (?, ?, ?)",
            [(f"bad{i}", scores, settled) for i, (scores, settled) in enumerate(_UNUSABLE_ROWS)],
        )
    with caplog.at_level(logging.WARNING, logger="pygent_lc.tot.value_store"):
        found = [store.get(f"bad{i}") for i in range(len(_UNUSABLE_ROWS))]
    assert found == [None] * len(_UNUSABLE_ROWS)
    assert store.get("good") == StoredValue((1.0, 2.5), False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ignored an unusable cached value" in warnings[0].getMessage()
    store.put("bad0", StoredValue((3.0,), True))  # asked again, then stored again
    assert store.get("bad0") == StoredValue((3.0,), True)
    store.close()


_UNUSABLE_CHILDREN = [
    "not json",
    '{"thoughts": []}',
    '[""]',
    "[1]",
    '["a", null]',
    '"a"',
    '[["a"]]',
    b'["a"]',
    7,
]


def test_sqlite_store_ignores_unusable_children_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "values.sqlite"
    store = SQLiteValueStore(path)
    store.put_children("good", StoredChildren(("a", "b")))
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.executemany(
            "INSERT INTO tot_children (key, thoughts) VALUES (?, ?)",
            [(f"bad{i}", raw) for i, raw in enumerate(_UNUSABLE_CHILDREN)],
        )
    with caplog.at_level(logging.WARNING, logger="pygent_lc.tot.value_store"):
        found = [store.get_children(f"bad{i}") for i in range(len(_UNUSABLE_CHILDREN))]
    assert found == [None] * len(_UNUSABLE_CHILDREN)
    assert store.get_children("good") == StoredChildren(("a", "b"))
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    store.put_children("bad0", StoredChildren(("c",)))  # asked again, then stored again
    assert store.get_children("bad0") == StoredChildren(("c",))
    store.close()


def test_shared_store_keeps_children_and_ignores_unusable_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pygent_lc.limits import MemoryStore
    from pygent_lc.tot.value_store import CHILDREN_NAMESPACE, SharedValueStore

    state = MemoryStore()
    shared = SharedValueStore(state)
    assert isinstance(shared, ChildrenStore)
    shared.put_children("k", StoredChildren(("4 * 6 = 24 (left: 24)",)))
    shared.put_children("dead", StoredChildren(()))
    shared.put("k", StoredValue((1.0,), True))
    assert SharedValueStore(state).get_children("k") == StoredChildren(("4 * 6 = 24 (left: 24)",))
    assert shared.get_children("dead") == StoredChildren(())
    assert shared.get("k") == StoredValue((1.0,), True)
    raws = ["not json", '{"thoughts": [""]}', '{"thoughts": [1]}', '{"thoughts": "a"}', "[]"]
    for i, raw in enumerate(raws):
        cache_set(state, CHILDREN_NAMESPACE, f"bad{i}", raw)
    with caplog.at_level(logging.WARNING, logger="pygent_lc.tot.value_store"):
        assert [shared.get_children(f"bad{i}") for i in range(len(raws))] == [None] * len(raws)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_shared_store_ignores_unusable_values_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pygent_lc.limits import MemoryStore
    from pygent_lc.tot.value_store import NAMESPACE, SharedValueStore

    state = MemoryStore()
    shared = SharedValueStore(state)
    shared.put("good", StoredValue((1.0, 2.5), True))
    raws = [
        "not json",
        '{"scores": [NaN], "settled": true}',
        '{"scores": [Infinity], "settled": true}',
        '{"scores": ["20"], "settled": true}',
        '{"scores": [], "settled": true}',
        '{"scores": [1], "settled": "yes"}',
        '{"scores": [1], "settled": 1}',
        '{"scores": 1, "settled": true}',
        '{"settled": true}',
        "[1, 2]",
    ]
    for i, raw in enumerate(raws):
        cache_set(state, NAMESPACE, f"bad{i}", raw)
    with caplog.at_level(logging.WARNING, logger="pygent_lc.tot.value_store"):
        assert [shared.get(f"bad{i}") for i in range(len(raws))] == [None] * len(raws)
    assert shared.get("good") == StoredValue((1.0, 2.5), True)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_sqlite_store_locked_past_its_timeout_moves_to_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "values.sqlite"
    store = SQLiteValueStore(path, timeout_s=0.05)
    store.put("before", StoredValue((1.0,), True))
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.WARNING, logger="pygent_lc.tot.value_store"):
            store.put("k", StoredValue((2.0,), True))
            store.put("k2", StoredValue((3.0,), False))
            assert store.get("k") == StoredValue((2.0,), True)
        other.execute("ROLLBACK")
    assert store.get("k2") == StoredValue((3.0,), False)  # memory from now on
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "kept in memory" in warnings[0].getMessage()
    store.close()


def test_sqlite_store_whose_file_was_deleted_moves_to_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "values.sqlite"
    store = SQLiteValueStore(path)
    store.put("k", StoredValue((1.0,), True))
    for leftover in tmp_path.iterdir():
        leftover.unlink()
    errors: list[BaseException] = []

    def other_thread() -> None:  # a new connection finds an empty new file
        try:
            store.put("n", StoredValue((2.0,), False))
            assert store.get("n") == StoredValue((2.0,), False)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger="pygent_lc.tot.value_store"):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert errors == []
    assert store.get("n") == StoredValue((2.0,), False)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    store.close()


_DISK_FULL = """
import resource, signal, sys
from pygent_lc.tot.value_store import SQLiteValueStore, StoredValue
store = SQLiteValueStore(sys.argv[1])
store.put("k0", StoredValue((0.0,), True))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
for i in range(1, 50):
    store.put(f"k{i}", StoredValue((float(i),) * 200, True))
assert store.get("k49") == StoredValue((49.0,) * 200, True)
print("ok")
"""


def test_sqlite_store_on_a_full_disk_moves_to_memory(tmp_path: Path) -> None:
    # The file-size limit makes every write past it fail as a full disk does.
    done = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(tmp_path / "values.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,  # this checkout's package, first on the path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "values are kept in memory" in done.stderr


async def test_a_solve_survives_its_cache_file_failing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "values.sqlite"
    store = SQLiteValueStore(path, timeout_s=0.05)
    engine = ToTEngine(ToTConfig(), ScriptedGame24Backend(), task=Game24Task(), value_store=store)
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.WARNING, logger="pygent_lc.tot.value_store"):
            result = await engine.solve(PUZZLE)
        other.execute("ROLLBACK")
    assert result.solved
    assert result.stats.evaluation_calls > 0
    again = await engine.solve(PUZZLE)
    assert again.stats.evaluation_calls == 0  # kept in memory
    assert again.stats.proposals_reused > 0  # next steps too
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    store.close()
