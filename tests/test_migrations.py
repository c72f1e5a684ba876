"""Schema migrations (Alembic, core/store/migrations): the revisions against the models,
stores of earlier schemas holding real rows upgraded by `cpf db upgrade` and by an
ordinary command, explicit upgrades (`CPF_DB_AUTO_UPGRADE=0`), the refusal of a store
newer than the code, concurrent first commands, and the developer's
`python -m core.store.migrate revision`.

Every store test runs on SQLite, and on PostgreSQL when `CPF_TEST_POSTGRES_URL` names a
server whose role may create databases (each test gets a database of its own).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CpfRunner
from store_history import columns, copy_rows, dump_rows, make_store

from core.store import migrate
from core.store.compiled import HEAD_REVISION, SCHEMA_VERSION

ADMIN_URL = os.environ.get("CPF_TEST_POSTGRES_URL")
BACKENDS = [
    pytest.param("sqlite"),
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(not ADMIN_URL, reason="CPF_TEST_POSTGRES_URL is not set"),
    ),
]
ROOT = Path(__file__).resolve().parent.parent


class Db:
    """A store (its URL) and a `cpf` runner on it."""

    def __init__(self, cpf: CpfRunner, url: str) -> None:
        self.cpf = cpf
        self.url = url
        cpf.env = {**cpf.env, "CPF_DATABASE_URL": url}

    def sql(self, statement: str, params: dict[str, Any] | None = None) -> list[tuple]:
        from sqlalchemy import text

        eng = migrate.engine(self.url)
        try:
            with eng.connect() as conn, conn.begin():
                result = conn.execute(text(statement), params or {})
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            eng.dispose()

    def version(self) -> tuple[int, str | None]:
        """(cpf_meta's schema version, alembic_version's revision)."""
        status = migrate.status(self.url)
        return status["schema_version"], status["revision"]

    def wipe(self) -> None:
        """Back to an empty database."""
        if self.url.startswith("sqlite"):
            path = Path(self.url.split("///", 1)[1])
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            self.sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")


@pytest.fixture(params=BACKENDS)
def db(cpf: CpfRunner, request: pytest.FixtureRequest) -> Iterator[Db]:
    if request.param == "sqlite":
        yield Db(cpf, f"sqlite:///{cpf.base_dir / 'cpf.db'}")
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    assert ADMIN_URL is not None
    name = f"cpf_mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield Db(cpf, make_url(ADMIN_URL).set(database=name).render_as_string(False))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the revisions ----------------------------------------------------------------------


def test_revision_ids_are_the_schema_versions() -> None:
    """One line of revisions 0001, 0002, ...; the head's number is the compiled
    SCHEMA_VERSION a new SQLite store is stamped with."""
    chain = list(reversed(list(migrate.scripts().walk_revisions())))
    ids = [script.revision for script in chain]
    assert ids == [migrate.revision_id(n) for n in range(1, len(ids) + 1)]
    assert [script.down_revision for script in chain] == [None, *ids[:-1]]
    assert (migrate.head_version(), migrate.head_revision()) == (SCHEMA_VERSION, HEAD_REVISION)


def test_the_head_revision_is_the_models(db: Db) -> None:
    """The revisions run from an empty database build exactly the SQLModel tables:
    Alembic's autogenerate finds nothing to change (types included)."""
    make_store(db.url, SCHEMA_VERSION, stamped=True)
    eng = migrate.engine(db.url)
    try:
        with eng.connect() as conn:
            assert migrate.differences(conn) == []
    finally:
        eng.dispose()
    assert db.version() == (SCHEMA_VERSION, HEAD_REVISION)


def test_a_new_store_is_the_models_and_stamped_at_the_head(db: Db) -> None:
    """A first command creates the store from the models (the compiled DDL on SQLite),
    already at the head: nothing for autogenerate to change, no revision to run."""
    db.cpf.ok("runs")
    assert db.version() == (SCHEMA_VERSION, HEAD_REVISION)
    eng = migrate.engine(db.url)
    try:
        with eng.connect() as conn:
            assert migrate.differences(conn) == []
    finally:
        eng.dispose()


def test_every_revision_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'cpf.db'}"
    make_store(url, SCHEMA_VERSION, stamped=True)
    eng = migrate.engine(url)
    try:
        for target, version in (("0002", 2), ("0001", 1)):
            with eng.connect() as conn, conn.begin():
                command.downgrade(migrate.config(conn), target)
            assert migrate.status(url)["schema_version"] == version
        assert "context" not in columns(url)["step_attempts"]
        with eng.connect() as conn, conn.begin():
            command.downgrade(migrate.config(conn), "base")
        assert set(columns(url)) == {"alembic_version"}
        with eng.connect() as conn, conn.begin():
            command.upgrade(migrate.config(conn), "head")
        with eng.connect() as conn:
            assert migrate.differences(conn) == []
    finally:
        eng.dispose()
    assert migrate.status(url)["state"] == "current"


# -- stores of earlier schemas, with real rows ------------------------------------------

HISTORY_V1 = """
schema_version: checkpointflow/v1
workflow:
  id: history
  inputs: {type: object}
  steps:
    - id: hello
      kind: cli
      command: 'echo "hello from before" >&2; echo "{\\"n\\": 7}"'
    - id: done
      kind: end
      result: {n: "${steps.hello.outputs.n}"}
"""

HISTORY_V2 = """
schema_version: checkpointflow/v1
workflow:
  id: history
  inputs: {type: object}
  steps:
    - id: hello
      kind: cli
      command: 'echo "hello from before" >&2; echo "{\\"n\\": 7}"'
    - id: loop
      kind: foreach
      items: inputs.items
      body:
        - id: each
          kind: cli
          command: echo "item ${item}"
    - id: done
      kind: end
      result: {n: "${steps.hello.outputs.n}"}
"""

GATE = """
schema_version: checkpointflow/v1
workflow:
  id: gate
  inputs: {type: object}
  steps:
    - id: first
      kind: await_event
      audience: user
      event_name: first
      input_schema: {type: object}
    - id: second
      kind: await_event
      audience: user
      event_name: second
      input_schema:
        type: object
        required: [ok]
        properties: {ok: {type: boolean}}
    - id: after
      kind: cli
      command: echo "after the upgrade"
    - id: done
      kind: end
      result: {ok: "${steps.second.outputs.ok}"}
"""

FAILING = """
schema_version: checkpointflow/v1
workflow:
  id: failing
  inputs: {type: object}
  steps:
    - id: boom
      kind: cli
      command: echo "going down" >&2; exit 3
"""


def _fill(db: Db, write_workflow: Any, version: int, tmp_path: Path) -> dict[str, Any]:
    """Real rows, written by real `cpf` commands (and `cpf serve` from schema 2 on):
    a completed run with output, a run waiting for its second event, a failed run;
    then a key, an agent, a webhook with its deliveries and an API workflow."""
    cpf = db.cpf
    history = write_workflow(HISTORY_V1 if version == 1 else HISTORY_V2, name="history.yaml")
    gate = write_workflow(GATE, name="gate.yaml")
    failing = write_workflow(FAILING, name="failing.yaml")
    made: dict[str, Any] = {"gate_file": gate}
    items = json.dumps({"items": [1, 2]})
    made["history"] = cpf.run_id_of(cpf.ok("run", "-f", str(history), "--input", items))
    made["gate"] = cpf.run_id_of(cpf.ok("run", "-f", str(gate), exit_code=40))
    cpf.ok("resume", "--run-id", made["gate"], "--event", "first", "--input", "{}", exit_code=40)
    made["failing"] = cpf.run_id_of(cpf.ok("run", "-f", str(failing), exit_code=30))
    if version >= 2:
        from test_service_support import ServeProcess

        srv = ServeProcess(
            tmp_path / "serve",
            env={"CPF_DATABASE_URL": db.url},
            args=("--no-webhook-delivery",),
        )
        try:
            key = srv.key("acme")
            hook = {"url": "https://hooks.example.com/cpf", "events": ["checkpoint.saved"]}
            assert srv.http("POST", "/webhooks", key, json=hook).status_code == 201
            agent = {"agent_id": "planner", "name": "Planner", "capabilities": ["plan"]}
            assert srv.http("POST", "/agents", key, json=agent).status_code == 201
            for step in (1, 2):
                body = {"workflow_id": "agent-wf", "step": step, "state": {"step": step}}
                assert srv.http("POST", "/checkpoints", key, json=body).status_code == 201
        finally:
            assert srv.stop() == 0, srv.logs()
        made["key"] = key
    return made


def _rebuild_at(db: Db, version: int) -> dict[str, list[dict[str, Any]]]:
    """Move the rows into a store of schema `version` made before Alembic."""
    rows = dump_rows(db.url)
    db.wipe()
    make_store(db.url, version)

    def later(table: str, row: dict[str, Any]) -> bool:
        # Schema 1 had no service: the API's checkpoints came with schema 2.
        return version == 1 and table == "checkpoints" and row["account"] != "local"

    return copy_rows(rows, db.url, skip=later)


def _by_key(table: str, rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    key = {"runs": "run_id", "events": "event_id", "svc_api_keys": "key_id"}.get(table)
    key = key or {"svc_accounts": "name", "svc_webhooks": "webhook_id"}.get(table) or "id"
    return {row[key]: row for row in rows}


UPGRADES = [
    pytest.param(1, "db upgrade", id="v1-db-upgrade"),
    pytest.param(1, "status", id="v1-status"),
    pytest.param(2, "status", id="v2-status"),
]


@pytest.mark.parametrize(("version", "via"), UPGRADES)
def test_a_store_with_data_is_upgraded(
    db: Db, write_workflow: Any, tmp_path: Path, version: int, via: str
) -> None:
    """A store of schema 1 (the first released) or 2 holding real rows, made before
    Alembic, upgraded by `cpf db upgrade` or by the next ordinary command (`cpf status`):
    every row is kept, value for value; the new columns and tables are there; the
    waiting run resumes, the key still opens the API, and a new workflow runs."""
    cpf = db.cpf
    made = _fill(db, write_workflow, version, tmp_path)
    before = _rebuild_at(db, version)
    assert before["runs"] and before["step_attempts"] and before["output_chunks"]
    assert before["events"] and before["checkpoints"]
    assert db.version() == (version, None)
    assert "proc" not in columns(db.url)["step_attempts"]
    status = cpf.ok("db", "status")["result"]
    assert (status["state"], status["upgrade_needed"]) == ("behind", True)
    assert "cpf:cpf@" not in json.dumps(status)

    if via == "db upgrade":
        result = cpf.ok("db", "upgrade")["result"]
        assert (result["from_version"], result["to_version"]) == (version, SCHEMA_VERSION)
        assert (result["from_revision"], result["to_revision"]) == (
            migrate.revision_id(version),
            HEAD_REVISION,
        )
        assert result["upgraded"] is True and result["created"] is False
    else:
        assert cpf.status(made["gate"])["status"] == "waiting"
    assert db.version() == (SCHEMA_VERSION, HEAD_REVISION)

    have = columns(db.url)
    assert {"context", "proc"} <= have["step_attempts"]
    assert {"svc_accounts", "svc_workflows", "svc_rate_windows"} <= set(have)
    after = dump_rows(db.url)
    for table, rows in before.items():
        now = _by_key(table, after[table])
        for key, row in _by_key(table, rows).items():
            assert {k: now[key][k] for k in row} == row, (table, key)
            added = set(now[key]) - set(row)
            assert all(now[key][k] is None for k in added if k in ("context", "proc")), table
    again = cpf.ok("db", "status")["result"]
    assert (again["state"], again["upgrade_needed"]) == ("current", False)

    # The history reads as before.
    assert cpf.status(made["history"])["status"] == "completed"
    assert cpf.status(made["failing"])["exit_code"] == 30
    steps = [r["step_id"] for r in cpf.inspect(made["history"])["result"]["step_results"]]
    assert steps[0] == "hello"
    logs = subprocess.run(
        [cpf.exe, "logs", "--run-id", made["history"]],
        capture_output=True,
        text=True,
        env=cpf.env,
        timeout=60,
    )
    assert "hello from before" in logs.stdout
    # The waiting run goes on; a new run starts; new ids follow the old ones.
    done = cpf.ok(
        "resume", "--run-id", made["gate"], "--event", "second", "--input", '{"ok": true}'
    )
    assert done["status"] == "completed" and done["result"] == {"ok": True}
    again_wf = write_workflow(HISTORY_V2, name="after.yaml")
    new = cpf.ok("run", "-f", str(again_wf), "--input", json.dumps({"items": ["a", "b"]}))
    assert new["status"] == "completed"
    if version >= 2:
        keys = cpf.ok("keys", "list")["result"]["keys"]
        assert [k["account"] for k in keys] == ["acme"]
        from test_service_support import ServeProcess

        srv = ServeProcess(tmp_path / "serve2", env={"CPF_DATABASE_URL": db.url})
        try:
            head = srv.http("GET", "/workflows/agent-wf/resume", made["key"])
            assert head.status_code == 200, head.text
            assert head.json()["latest_checkpoint"]["state"] == {"step": 2}
            assert head.json()["total_checkpoints"] == 2
            # A save works on the upgraded store (PostgreSQL: through revision 0006's
            # cpf_save_checkpoint, which the upgrade created).
            body = {"workflow_id": "agent-wf", "step": 3, "state": {"step": 3}}
            saved = srv.http("POST", "/checkpoints", made["key"], json=body)
            assert saved.status_code == 201, saved.text
            assert saved.json()["diff_from_previous"]["changed"] == ["step"]
            if not db.url.startswith("sqlite"):
                found = db.sql("SELECT count(*) FROM pg_proc WHERE proname = 'cpf_save_checkpoint'")
                assert found == [(1,)]
        finally:
            assert srv.stop() == 0, srv.logs()


# -- who upgrades, and what is refused --------------------------------------------------


def test_with_auto_upgrade_off_only_db_upgrade_migrates(db: Db) -> None:
    """`CPF_DB_AUTO_UPGRADE=0` (a shared PostgreSQL): a new store is still created by the
    first command, but an older one is refused, untouched, until `cpf db upgrade`."""
    cpf = db.cpf
    cpf.env = {**cpf.env, "CPF_DB_AUTO_UPGRADE": "0"}
    cpf.ok("runs")
    assert db.version() == (SCHEMA_VERSION, HEAD_REVISION)
    db.wipe()
    make_store(db.url, 2)
    refused = cpf.ok("runs", exit_code=60)
    assert refused["error"]["code"] == "ERR_PERSISTENCE"
    assert "cpf db upgrade" in refused["error"]["message"]
    assert refused["error"]["details"] == {"schema_version": 2, "supported": SCHEMA_VERSION}
    assert db.version() == (2, None)
    status = cpf.ok("db", "status")
    assert status["result"]["state"] == "behind" and status["result"]["auto_upgrade"] is False
    assert "cpf db upgrade" in status["warnings"][0]
    assert cpf.ok("db", "upgrade")["result"]["from_version"] == 2
    assert cpf.ok("runs")["result"]["runs"] == []


def test_a_store_newer_than_this_cpf_is_refused_untouched(db: Db) -> None:
    cpf = db.cpf
    cpf.ok("runs")
    newer = SCHEMA_VERSION + 1
    db.sql("UPDATE cpf_meta SET value = :v WHERE key = 'schema_version'", {"v": str(newer)})
    db.sql("UPDATE alembic_version SET version_num = :v", {"v": migrate.revision_id(newer)})
    for args in (("runs",), ("status", "--run-id", "x"), ("db", "upgrade")):
        env = cpf.ok(*args, exit_code=60)
        assert env["error"]["code"] == "ERR_PERSISTENCE"
        assert f"schema version {newer}, newer than this cpf" in env["error"]["message"]
        assert env["error"]["details"] == {"schema_version": newer, "supported": SCHEMA_VERSION}
    status = cpf.ok("db", "status")
    assert (status["result"]["state"], status["result"]["upgrade_needed"]) == ("newer", False)
    assert "upgrade cpf" in status["warnings"][0]
    assert db.version() == (newer, migrate.revision_id(newer))


def test_a_revision_this_cpf_does_not_know_is_refused(db: Db) -> None:
    """alembic_version names a revision that is not in this cpf's chain (a branch's
    migration): the store is refused rather than migrated from a guess."""
    cpf = db.cpf
    make_store(db.url, 2, stamped=True)
    db.sql("UPDATE alembic_version SET version_num = 'f00dfeed1234'")
    for args in (("runs",), ("db", "upgrade")):
        env = cpf.ok(*args, exit_code=60)
        assert "revision 'f00dfeed1234', unknown to this cpf" in env["error"]["message"]
    assert cpf.ok("db", "status")["result"]["state"] == "newer"
    assert db.version() == (2, "f00dfeed1234")


def test_a_store_at_the_head_made_before_alembic_is_stamped_by_db_upgrade(db: Db) -> None:
    """A store made by cpf before Alembic, already at the current number, is used as it
    is (the version check reads only the number); `cpf db upgrade` stamps it."""
    cpf = db.cpf
    cpf.ok("runs")
    db.sql("DROP TABLE alembic_version")
    cpf.ok("runs")
    status = cpf.ok("db", "status")["result"]
    assert (status["state"], status["revision"]) == ("current", None)
    result = cpf.ok("db", "upgrade")["result"]
    assert (result["from_version"], result["to_version"], result["upgraded"]) == (
        SCHEMA_VERSION,
        SCHEMA_VERSION,
        False,
    )
    assert db.version() == (SCHEMA_VERSION, HEAD_REVISION)


def test_db_status_of_no_store_creates_nothing(cpf: CpfRunner) -> None:
    status = cpf.ok("db", "status")["result"]
    assert (status["state"], status["schema_version"], status["upgrade_needed"]) == (
        "empty",
        None,
        True,
    )
    assert not (cpf.base_dir / "cpf.db").exists()
    created = cpf.ok("db", "upgrade")["result"]
    assert (created["from_version"], created["created"]) == (None, True)
    assert (cpf.base_dir / "cpf.db").exists()


def test_db_status_masks_the_password(cpf: CpfRunner) -> None:
    env = {**cpf.env, "CPF_DATABASE_URL": "postgresql+psycopg://cpf:s3cretpw@127.0.0.1:1/none"}
    for action in ("status", "upgrade"):
        proc, envelope = cpf("db", action, env=env)
        assert envelope is not None and envelope["exit_code"] == 60, proc.stdout
        assert envelope["error"]["code"] == "ERR_PERSISTENCE"
        assert "s3cretpw" not in proc.stdout + proc.stderr
        assert "cpf:***@127.0.0.1:1/none" in envelope["error"]["message"]


def test_concurrent_first_commands_upgrade_once(db: Db) -> None:
    """Four commands start at once on a schema-1 store: one migrates (under the store's
    write lock), the others wait for it and go on; all succeed."""
    make_store(db.url, 1)
    procs = [db.cpf.popen("runs") for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out + err
        assert json.loads(out)["ok"] is True
    assert db.version() == (SCHEMA_VERSION, HEAD_REVISION)
    assert db.sql("SELECT count(*) FROM alembic_version") == [(1,)]


# -- the developer's command ------------------------------------------------------------


def test_migrate_revision_writes_a_working_revision(tmp_path: Path) -> None:
    """On a copy of the package: add two nullable columns to `runs`, run
    `python -m core.store.migrate revision -m ...`, and the next revision exists (batch
    add_column), compiled.py is regenerated at the new version, `check` passes, and a
    store of the current schema opened by that code is upgraded with its rows kept."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "core", src / "core", ignore=shutil.ignore_patterns("__pycache__"))
    models = src / "core" / "store" / "models.py"
    text = models.read_text(encoding="utf-8")
    anchor = "    finished_at: str | None = None\n\n\nclass StepAttempt"
    assert anchor in text
    models.write_text(
        text.replace(
            anchor,
            "    finished_at: str | None = None\n    lease_until: str | None = None\n"
            "    lease_owner: str | None = Field(default=None, max_length=64)\n\n\n"
            "class StepAttempt",
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=src, env=env, capture_output=True, text=True, timeout=120
        )

    made = python("-m", "core.store.migrate", "revision", "-m", "run leases")
    assert made.returncode == 0, made.stdout + made.stderr
    nxt = migrate.revision_id(SCHEMA_VERSION + 1)
    revision = src / "core" / "store" / "migrations" / "versions" / f"{nxt}_run_leases.py"
    body = revision.read_text(encoding="utf-8")
    assert 'batch_alter_table("runs"' in body and '"lease_owner", sa.String(length=64)' in body
    assert f"SCHEMA_VERSION = {SCHEMA_VERSION + 1}\n" in (
        src / "core" / "store" / "compiled.py"
    ).read_text(encoding="utf-8")
    for check in (("core.store.migrate", "check"), ("core.store.gen_compiled", "--check")):
        done = python("-m", *check)
        assert done.returncode == 0, done.stdout + done.stderr
    again = python("-m", "core.store.migrate", "revision", "-m", "nothing")
    assert again.returncode == 1 and "nothing to migrate" in again.stderr

    # A store of the current schema, with a run, opened by the new code (sqlite3 path).
    store = tmp_path / "cpf.db"
    url = f"sqlite:///{store}"
    make_store(url, SCHEMA_VERSION)
    with sqlite3.connect(store) as conn:
        conn.execute(
            "INSERT INTO runs (run_id, account, workflow_id, workflow_path, workflow_hash, "
            "status, version, attempt_seq, checkpoint_step, created_at, updated_at) VALUES "
            "('r1', 'local', 'wf', '/wf.yaml', 'h', 'completed', 3, 1, 0, 't0', 't1')"
        )
    script = (
        "import sys; from core.store.store import Store; Store(sys.argv[1]).close(); "
        "import core.store.store as s; print(s.__file__)"
    )
    opened = python("-c", script, url)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip().startswith(str(src))
    assert {"lease_until", "lease_owner"} <= columns(url)["runs"]
    assert migrate.status(url)["schema_version"] == SCHEMA_VERSION + 1
    with sqlite3.connect(store) as conn:
        row = conn.execute("SELECT run_id, status, lease_until FROM runs").fetchall()
    assert row == [("r1", "completed", None)]


def test_a_revision_without_a_version_number_is_never_applied(tmp_path: Path) -> None:
    """Older cpfs see only the number: a revision that would leave it behind (an id
    that is not a number, as plain `alembic revision` makes) rolls back whole."""
    from alembic import command

    from core.envelope import PersistenceError

    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "feedbeef_stray.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f"revision = 'feedbeef'\ndown_revision = {HEAD_REVISION!r}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade():\n"
        "    with op.batch_alter_table('runs') as batch_op:\n"
        "        batch_op.add_column(sa.Column('stray', sa.String(), nullable=True))\n",
        encoding="utf-8",
    )
    url = f"sqlite:///{tmp_path / 'cpf.db'}"
    make_store(url, SCHEMA_VERSION, stamped=True)
    eng = migrate.engine(url)
    try:
        with (
            eng.connect() as conn,
            pytest.raises(PersistenceError, match="feedbeef"),
            conn.begin(),
        ):
            cfg = migrate.config(conn)
            cfg.set_main_option("script_location", str(scripts))
            command.upgrade(cfg, "head")
    finally:
        eng.dispose()
    assert "stray" not in columns(url)["runs"]
    assert migrate.status(url)["schema_version"] == SCHEMA_VERSION
    assert migrate.status(url)["revision"] == HEAD_REVISION
