"""Unit tests of the store on a real SQLite file: schema version, compare-and-set,
output tailing, checkpoints, deletion. Every store test runs on both paths: the
precompiled SQL on sqlite3 (what `cpf` runs) and SQLAlchemy (what PostgreSQL runs)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from core.envelope import PersistenceError
from core.statediff import leaf_diff
from core.store.compiled import SCHEMA_VERSION
from core.store.store import Store, new_id, now_iso

PATHS = [pytest.param(True, id="sqlite3"), pytest.param(False, id="sqlalchemy")]


@pytest.fixture(params=PATHS)
def store(tmp_path: Path, request: pytest.FixtureRequest, store_url: str | None) -> Store:
    # Under the PostgreSQL switch (tests/storedb.py) both params run on that database.
    s = Store(store_url or f"sqlite:///{tmp_path / 'cpf.db'}", fast=request.param)
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
    with store.hot() as conn:
        store.insert_run(conn, values)
    return str(values["run_id"])


@pytest.mark.sqlite_only(reason="the PRAGMAs of the SQLite store")
def test_sqlite_settings(store: Store, tmp_path: Path) -> None:
    with store.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


@pytest.mark.sqlite_only(reason="edits the SQLite file with sqlite3")
@pytest.mark.parametrize("fast", PATHS)
def test_newer_store_is_refused_with_a_clear_error(tmp_path: Path, fast: bool) -> None:
    path = tmp_path / "cpf.db"
    Store(f"sqlite:///{path}", fast=fast).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE cpf_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    with pytest.raises(PersistenceError) as info:
        Store(f"sqlite:///{path}", fast=fast)
    assert "newer than this cpf" in info.value.message
    assert info.value.exit_code == 60


@pytest.mark.sqlite_only(reason="edits the SQLite file with sqlite3")
@pytest.mark.parametrize("fast", PATHS)
def test_schema_1_store_is_migrated_to_the_head(tmp_path: Path, fast: bool) -> None:
    """A store of the first released schema (made before Alembic: no alembic_version)
    gets what the later schemas added, and its version and revision move to the head."""
    from store_history import make_store

    from core.store.compiled import HEAD_REVISION

    url = f"sqlite:///{tmp_path / 'cpf.db'}"
    make_store(url, 1)
    with sqlite3.connect(tmp_path / "cpf.db") as db:
        assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'svc_accounts'").fetchone()
    s = Store(url, fast=fast)
    with s.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM svc_rate_windows")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM checkpoints")).scalar() == 0
        columns = {row[1] for row in conn.execute(text("PRAGMA table_info(step_attempts)"))}
        version = conn.execute(text("SELECT value FROM cpf_meta")).scalar()
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    s.close()
    assert {"context", "proc"} <= columns
    assert (int(version), revision) == (SCHEMA_VERSION, HEAD_REVISION)


@pytest.mark.sqlite_only(reason="the SQLite file's directory")
def test_store_in_a_path_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PersistenceError):
        Store(f"sqlite:///{blocker / 'cpf.db'}")


def test_compare_and_set_lets_one_writer_win(store: Store) -> None:
    run_id = make_run(store)
    wins: list[bool] = []

    def writer(n: int) -> None:
        with store.hot() as conn:
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
    with pytest.raises(RuntimeError), store.hot() as conn:
        store.cas_run(conn, run_id, 0, status="completed")
        raise RuntimeError("crash mid-transition")
    run = store.get_run(run_id)
    assert run is not None and run["status"] == "running" and run["version"] == 0


def test_output_is_tailed_by_id(store: Store) -> None:
    run_id = make_run(store)
    with store.hot() as conn:
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
    with store.hot() as conn:
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
    with store.hot() as conn:
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
    with store.hot() as conn:
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


@pytest.mark.sqlite_only(reason="the sqlite3 fast path against SQLAlchemy on SQLite")
def test_both_paths_read_back_the_same_rows(tmp_path: Path) -> None:
    """JSON, booleans, defaults and NULLs written and read by sqlite3 with the compiled SQL
    come back exactly as SQLAlchemy writes and reads them."""
    seen = []
    for fast in (True, False):
        s = Store(f"sqlite:///{tmp_path / f'{fast}.db'}", fast=fast)
        run_id = make_run(
            s, run_id="r" * 32, created_at="t", wait={"event_name": "go", "n": [1, None]}
        )
        with s.hot() as conn:
            attempt = s.insert_attempt(
                conn,
                {
                    "run_id": run_id,
                    "seq": 1,
                    "step_id": "a",
                    "step_kind": "cli",
                    "status": "waiting",
                    "truncated": True,
                    "outputs": {"x": "\u00e9"},
                    "started_at": "t0",
                },
            )
            s.update_attempt(conn, attempt, exit_code=3, truncated=False)
            s.close_waiting_attempts(conn, run_id, outputs={"ok": True})
            s.insert_event(conn, event_id="e1", run_id=run_id, data=[1], created_at="t1")
            assert s.cas_run(conn, run_id, 0, result={"r": 1}, updated_at="t2")
            assert not s.cas_run(conn, run_id, 0, result={"r": 2})
        s.append_output(run_id, attempt, "a", [("stdout", "x\n")])
        attempts = [{k: v for k, v in a.items() if k != "finished_at"} for a in s.attempts(run_id)]
        chunks = [{k: v for k, v in c.items() if k != "created_at"} for c in s.output(run_id)]
        listed = s.list_runs(status="running", workflow_id="wf", limit=5)
        seen.append((s.get_run(run_id), attempts, s.events(run_id), chunks, listed))
        assert s.run_status(run_id) == ("running", 1)
        s.close()
    assert seen[0] == seen[1]
    run, attempts = seen[0][0], seen[0][1]
    assert run["wait"] == {"event_name": "go", "n": [1, None]} and run["result"] == {"r": 1}
    assert run["account"] == "local" and run["error"] is None
    assert attempts[0]["truncated"] is False and attempts[0]["outputs"] == {"ok": True}
    assert attempts[0]["attempt"] == 1 and attempts[0]["status"] == "completed"


def test_compiled_sql_is_generated_from_the_tables() -> None:
    """core/store/compiled.py is what `python -m core.store.gen_compiled` writes now:
    change a table or a statement and this fails until it is regenerated."""
    from core.store import gen_compiled

    assert gen_compiled.TARGET.read_text(encoding="utf-8") == gen_compiled.render(), (
        "core/store/compiled.py is out of date: run `python -m core.store.gen_compiled`"
    )


@pytest.mark.sqlite_only(reason="the compiled SQLite DDL")
def test_compiled_schema_is_the_one_sqlalchemy_creates(tmp_path: Path) -> None:
    """The store created from the compiled DDL has exactly the tables, columns and
    indexes that SQLModel's create_all makes."""
    schemas = []
    for fast in (True, False):
        path = tmp_path / f"{fast}.db"
        Store(f"sqlite:///{path}", fast=fast).close()
        with sqlite3.connect(path) as db:
            master = db.execute(
                "SELECT type, name, tbl_name FROM sqlite_master ORDER BY type, name"
            ).fetchall()
            columns = {
                name: db.execute(f"PRAGMA table_xinfo({name})").fetchall()
                for _, name, _ in master
                if _ == "table"
            }
            meta = db.execute("SELECT key, value FROM cpf_meta").fetchall()
        schemas.append((master, columns, meta))
    assert schemas[0] == schemas[1]
    assert ("schema_version", str(SCHEMA_VERSION)) in schemas[0][2]


@pytest.mark.sqlite_only(reason="the compiled SQLite DDL upgrade")
def test_sqlite_store_of_schema_2_upgrades_without_the_orm(tmp_path: Path) -> None:
    """A schema-2 file (no step_attempts.proc, no svc_rate_windows) is upgraded by the
    compiled DDL path that `cpf` commands use on SQLite: the column and the table appear,
    the version moves to the current one, and existing rows stay."""
    import sqlite3

    from core.store.compiled import SCHEMA_VERSION
    from core.store.store import Store

    path = tmp_path / "cpf.db"
    Store(f"sqlite:///{path}").close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE step_attempts DROP COLUMN proc")
    db.execute("DROP TABLE svc_rate_windows")
    db.execute("ALTER TABLE runs DROP COLUMN executor_id")  # schema 4's
    db.execute("ALTER TABLE runs DROP COLUMN lease_expires_at")
    db.execute("INSERT INTO cpf_meta (key, value) VALUES ('canary', 'kept')")
    db.execute("UPDATE cpf_meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()

    Store(f"sqlite:///{path}").close()
    db = sqlite3.connect(path)
    assert "proc" in {row[1] for row in db.execute("PRAGMA table_info(step_attempts)")}
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'svc_rate_windows'").fetchone()
    meta = dict(db.execute("SELECT key, value FROM cpf_meta"))
    assert meta == {"schema_version": str(SCHEMA_VERSION), "canary": "kept"}
    db.close()


def test_new_id_is_a_uuid4_in_hex() -> None:
    import uuid

    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert (parsed.hex, parsed.version, parsed.variant) == (value, 4, uuid.RFC_4122)
