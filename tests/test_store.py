"""Unit tests of the store on a real SQLite file: schema version, compare-and-set,
output tailing, checkpoints, deletion."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from core.envelope import PersistenceError
from core.statediff import leaf_diff
from core.store.models import SCHEMA_VERSION
from core.store.store import Store, new_id, now_iso


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'cpf.db'}")
    yield s
    s.close()


def make_run(store: Store, **over: object) -> str:
    run_id = new_id()
    now = now_iso()
    values = {
        "run_id": run_id,
        "workflow_id": "wf",
        "workflow_path": "/x.yaml",
        "workflow_hash": "0" * 64,
        "status": "running",
        "inputs": {},
        "step_outputs": {},
        "created_at": now,
        "updated_at": now,
        **over,
    }
    with store.write() as conn:
        store.insert_run(conn, values)
    return run_id


def test_sqlite_settings(store: Store, tmp_path: Path) -> None:
    with store.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_newer_store_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cpf.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE cpf_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    with pytest.raises(PersistenceError) as info:
        Store(f"sqlite:///{path}")
    assert "newer than this cpf" in info.value.message
    assert info.value.exit_code == 60


def test_older_store_gets_missing_tables(tmp_path: Path) -> None:
    path = tmp_path / "cpf.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE checkpoints")
        db.execute("UPDATE cpf_meta SET value = '1' WHERE key = 'schema_version'")
    s = Store(f"sqlite:///{path}")
    with s.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM checkpoints")).scalar() == 0
        version = conn.execute(text("SELECT value FROM cpf_meta")).scalar()
    assert int(version) == SCHEMA_VERSION


def test_store_in_a_path_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PersistenceError):
        Store(f"sqlite:///{blocker / 'cpf.db'}")


def test_compare_and_set_lets_one_writer_win(store: Store) -> None:
    run_id = make_run(store)
    wins: list[bool] = []

    def writer(n: int) -> None:
        with store.write() as conn:
            wins.append(store.cas_run(conn, run_id, 0, current_step_id=f"s{n}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    run = store.get_run(run_id)
    assert run is not None and run["version"] == 1


def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    run_id = make_run(store)
    with pytest.raises(RuntimeError), store.write() as conn:
        store.cas_run(conn, run_id, 0, status="completed")
        raise RuntimeError("crash mid-transition")
    run = store.get_run(run_id)
    assert run is not None and run["status"] == "running" and run["version"] == 0


def test_output_is_tailed_by_id(store: Store) -> None:
    run_id = make_run(store)
    with store.write() as conn:
        attempt = store.insert_attempt(
            conn,
            {
                "run_id": run_id,
                "seq": 1,
                "step_id": "a",
                "step_kind": "cli",
                "status": "running",
                "started_at": now_iso(),
            },
        )
    store.append_output(run_id, attempt, "a", [("stdout", "one\n"), ("stderr", "warn\n")])
    first = store.output(run_id)
    assert [(c["stream"], c["text"]) for c in first] == [("stdout", "one\n"), ("stderr", "warn\n")]
    store.append_output(run_id, attempt, "a", [("stdout", "two\n"), ("stdout", "")])
    later = store.output(run_id, after_id=first[-1]["id"])
    assert [c["text"] for c in later] == ["two\n"]
    assert [c["text"] for c in store.output(run_id, stream="stderr")] == ["warn\n"]


def test_checkpoints_have_diffs_sizes_and_unique_etags(store: Store) -> None:
    run_id = make_run(store)
    s0 = {"inputs": {}, "step_outputs": {"a": {"x": 1}}}
    s1 = {"inputs": {}, "step_outputs": {"a": {"x": 1}, "b": {"y": [1, 2]}}}
    s2 = dict(s1)  # same state again at another step: the etag must still differ
    with store.write() as conn:
        for step, (state, prev) in enumerate([(s0, None), (s1, s0), (s2, s1)]):
            store.insert_run_checkpoint(
                conn,
                run_id=run_id,
                step=step,
                label=f"s{step}",
                state=state,
                previous_state=prev,
                metadata={},
            )
    cps = store.checkpoints(run_id)
    assert [c["step"] for c in cps] == [0, 1, 2]
    assert cps[0]["diff_from_previous"]["added"] == ["step_outputs.a.x"]
    assert cps[1]["diff_from_previous"] == {
        "added": ["step_outputs.b.y[0]", "step_outputs.b.y[1]"],
        "removed": [],
        "changed": [],
    }
    assert cps[2]["diff_from_previous"] == {"added": [], "removed": [], "changed": []}
    assert len({c["etag"] for c in cps}) == 3
    assert all(c["etag"].startswith('"') and c["etag"].endswith('"') for c in cps)
    assert cps[0]["size_bytes"] == len(b'{"inputs":{},"step_outputs":{"a":{"x":1}}}')


def test_leaf_diff_matches_the_contract_example() -> None:
    prev = {"a": 1, "b": {"c": 2}, "gone": True, "list": [1, 2]}
    new = {"a": 2, "b": {"c": 2, "d": 3}, "list": [1, 2, 3], "new": "x"}
    diff = leaf_diff(prev, new)
    assert set(diff["added"]) == {"b.d", "list[2]", "new"}
    assert diff["removed"] == ["gone"]
    assert diff["changed"] == ["a"]
    assert leaf_diff({"a": {}}, {"a": 1})["changed"] == ["a"]
    assert leaf_diff({}, {"e": {}, "l": []}) == {"added": [], "removed": [], "changed": []}


def test_delete_removes_every_row_of_the_run(store: Store) -> None:
    run_id = make_run(store, status="completed")
    other = make_run(store)
    with store.write() as conn:
        attempt = store.insert_attempt(
            conn,
            {
                "run_id": run_id,
                "seq": 1,
                "step_id": "a",
                "step_kind": "cli",
                "status": "completed",
                "started_at": now_iso(),
            },
        )
        store.insert_event(conn, run_id=run_id, kind="event", event_name="go", data={})
        store.insert_run_checkpoint(
            conn, run_id=run_id, step=0, label="a", state={}, previous_state=None, metadata={}
        )
    store.append_output(run_id, attempt, "a", [("stdout", "x")])
    with store.write() as conn:
        store.delete_run(conn, run_id)
    assert store.get_run(run_id) is None
    assert store.attempts(run_id) == [] and store.events(run_id) == []
    assert store.checkpoints(run_id) == [] and store.output(run_id) == []
    assert store.get_run(other) is not None


def test_list_runs_newest_first_with_filters(store: Store) -> None:
    ids = [make_run(store, workflow_id="a" if i % 2 else "b", status="completed") for i in range(5)]
    listed = [r["run_id"] for r in store.list_runs()]
    assert listed == list(reversed(ids))
    assert all(r["workflow_id"] == "a" for r in store.list_runs(workflow_id="a"))
    assert len(store.list_runs(limit=2)) == 2
    assert store.list_runs(status="failed") == []
