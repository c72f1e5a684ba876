"""The psycopg fast path on PostgreSQL agrees with SQLAlchemy, and a `cpf` holds one
connection.

Runs when `CPF_TEST_POSTGRES_URL` names a server database whose role may create
databases (`.ci/run` starts one); each test gets databases of its own.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CpfRunner
from test_service_store import _scenario

ADMIN_URL = os.environ.get("CPF_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not ADMIN_URL, reason="CPF_TEST_POSTGRES_URL is not set")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _admin(sql: str) -> None:
    import psycopg

    assert ADMIN_URL is not None
    with psycopg.connect(_libpq(ADMIN_URL), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def new_database() -> Iterator[Callable[[], str]]:
    """new_database() -> the URL of a fresh database (dropped afterwards)."""
    from sqlalchemy.engine import make_url

    made: list[str] = []

    def make() -> str:
        name = f"cpf_fast_{uuid.uuid4().hex[:12]}"
        _admin(f'CREATE DATABASE "{name}"')
        made.append(name)
        return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    yield make
    for name in made:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_service_scenario_agrees_on_psycopg_and_sqlalchemy(
    new_database: Callable[[], str],
) -> None:
    """Every service statement (JSON columns, RETURNING, row locks, SKIP LOCKED, the
    rate-limit upsert) answers the same through psycopg as through SQLAlchemy."""
    from core.service.api import CheckpointService
    from core.service.store.service_store import ServiceStore
    from core.store.store import Store

    answers = []
    for fast in (True, False):
        store = Store(new_database(), fast=fast)
        assert store.sql.pg is fast
        svc = CheckpointService(store)
        svc.ss = ServiceStore(store, fast=fast)
        assert svc.ss.pg is fast
        answers.append(_scenario(svc))
        assert svc.ss.rate_hit("bucket", 2, 60.0)[0] == 1
        assert svc.ss.rate_hit("bucket", 2, 60.0)[0] == 2
        svc.ss.close()
        store.close()
    assert answers[0] == answers[1]


def _store_scenario(store: Any) -> list[Any]:
    """The run store's methods (named statements) on one store: what they answer."""
    out: list[Any] = []
    now = "2026-01-01T00:00:00.000000+00:00"
    with store.hot() as conn:
        store.insert_run(
            conn,
            {
                "run_id": "r1", "workflow_id": "wf", "workflow_path": "/w.yaml",
                "workflow_hash": "h", "status": "running", "version": 0,
                "inputs": {"ü": [1, None, {"x": True}]}, "step_outputs": {},
                "created_at": now, "updated_at": now,
            },
        )  # fmt: skip
        attempt = store.insert_attempt(
            conn,
            {"run_id": "r1", "seq": 1, "step_id": "a", "step_kind": "cli", "attempt": 1,
             "status": "running", "started_at": now},
        )  # fmt: skip
        out.append(isinstance(attempt, int))
        assert store.cas_run(conn, "r1", 0, status="waiting", wait={"event": "go"})
        assert not store.cas_run(conn, "r1", 0, status="failed")
        store.update_attempt(conn, attempt, status="waiting", outputs={"o": 1.5})
        store.insert_event(conn, run_id="r1", step_id="a", event_name="go", data={"d": 1})
        store.insert_run_checkpoint(
            conn, run_id="r1", step=0, label="a", state={"s": 1}, previous_state=None,
            metadata={"m": "x"},
        )  # fmt: skip
    store.append_output("r1", attempt, "a", [("stdout", "one\n"), ("stderr", "two\n")])
    run = store.get_run("r1")
    out.append({k: run[k] for k in ("status", "version", "inputs", "wait", "step_outputs")})
    out.append([(a["status"], a["outputs"]) for a in store.attempts("r1")])
    out.append([(c["stream"], c["text"]) for c in store.output("r1", limit=5)])
    out.append([(c["text"]) for c in store.output("r1", stream="stderr")])
    out.append([(e["event_name"], e["data"]) for e in store.events("r1")])
    out.append(
        [(c["state"], c["metadata"], c["diff_from_previous"]) for c in store.checkpoints("r1")]
    )
    out.append(store.checkpoint_count("r1"))
    out.append(store.run_status("r1"))
    out.append([r["run_id"] for r in store.list_runs(status="waiting", limit=3)])
    with store.hot() as conn:
        store.close_waiting_attempts(conn, "r1", outputs={"done": True})
        store.delete_run(conn, "r1")
    out.append(store.get_run("r1"))
    return out


def test_run_store_agrees_on_psycopg_and_sqlalchemy(new_database: Callable[[], str]) -> None:
    from core.store.store import Store

    answers = []
    for fast in (True, False):
        store = Store(new_database(), fast=fast)
        answers.append(_store_scenario(store))
        store.close()
    assert answers[0] == answers[1]
    assert answers[0][1]["inputs"] == {"ü": [1, None, {"x": True}]}


def test_statements_are_prepared_on_the_server(new_database: Callable[[], str]) -> None:
    """Server-side prepared statements by default; none with CPF_DB_PREPARE=0."""
    from core.store.store import Store

    def prepared(url: str) -> list[str]:
        store = Store(url)
        try:
            for _ in range(2):
                store.list_runs(limit=1)
            with store.sql.read() as conn:
                rows = conn.execute(
                    "SELECT statement FROM pg_prepared_statements", prepare=False
                ).fetchall()
            return [r[0] for r in rows]
        finally:
            store.close()

    url = new_database()
    assert any("FROM runs" in s for s in prepared(url))
    os.environ["CPF_DB_PREPARE"] = "0"
    try:
        assert prepared(url) == []
    finally:
        del os.environ["CPF_DB_PREPARE"]


def test_a_cpf_run_holds_one_connection(
    cpf: CpfRunner, write_workflow: Callable[..., Path], new_database: Callable[[], str]
) -> None:
    """While its step runs, a `cpf run` on PostgreSQL has exactly one connection open
    (the step counts the database's other sessions)."""
    url = new_database()
    probe = (
        "import json, psycopg, sys; "
        "c = psycopg.connect(sys.argv[1]); "
        "n = c.execute('SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()').fetchone()[0]; "
        "print(json.dumps({'others': n}))"
    )
    wf = write_workflow(
        f"""
        schema_version: checkpointflow/v1
        workflow:
          id: count_connections
          inputs: {{type: object}}
          steps:
            - id: probe
              kind: cli
              command: '"$PY" -c "$PROBE" "$URL"'
              env: {{PY: {json.dumps(sys.executable)}, PROBE: {json.dumps(probe)},
                     URL: {json.dumps(_libpq(url))}}}
            - id: done
              kind: end
              result: {{others: "${{steps.probe.outputs.others}}"}}
        """
    )
    cpf.env = {**cpf.env, "CPF_DATABASE_URL": url}
    cpf.ok("run", "-f", str(wf))  # creates the schema
    done = cpf.ok("run", "-f", str(wf))
    assert done["result"] == {"others": 1}


# A step's command: whether its own attempt row (inserted, with its process group,
# before the command was let go) was written by the transaction that wrote the
# previous step's checkpoint. `xmin` names the transaction that wrote a row version.
JOINED_PROBE = """\
import json, os, sys, psycopg
c = psycopg.connect(sys.argv[1])
run, me = os.environ["CPF_RUN_ID"], os.environ["CPF_STEP_ID"]
mine = c.execute(
    "SELECT xmin::text FROM step_attempts WHERE run_id = %s AND step_id = %s", (run, me)
).fetchone()[0]
prev = c.execute(
    "SELECT xmin::text FROM checkpoints WHERE run_id = %s ORDER BY step DESC LIMIT 1", (run,)
).fetchone()
print(json.dumps({"joined": prev is not None and prev[0] == mine}))
"""


def test_a_step_chain_commits_once_per_step(
    cpf: CpfRunner, write_workflow: Callable[..., Path], new_database: Callable[[], str]
) -> None:
    """Each step's transition (run row, attempt closed, checkpoint) is written by the
    transaction that records the next step's attempt and process group, so a chain of
    `cli` steps costs one durable commit per step, not two."""
    url = new_database()
    probe = [sys.executable, "-c", JOINED_PROBE, _libpq(url)]
    step = "{id: s%d, kind: cli, command: %s}"
    command = json.dumps(" ".join(f"'{a}'" for a in probe))
    steps = "\n".join("    - " + step % (i, command) for i in range(3))
    wf = write_workflow(
        "schema_version: checkpointflow/v1\nworkflow:\n  id: chain\n  inputs: {type: object}\n"
        f"  steps:\n{steps}\n"
    )
    cpf.env = {**cpf.env, "CPF_DATABASE_URL": url}
    done = cpf.ok("run", "-f", str(wf))
    outputs = cpf.inspect(done["run_id"])["result"]["step_outputs"]
    # s0's record follows the run's start; s1 and s2 joined their predecessor's commit.
    assert outputs == {"s0": {"joined": False}, "s1": {"joined": True}, "s2": {"joined": True}}


def test_a_session_ended_by_the_server_between_steps_is_replaced(
    cpf: CpfRunner, write_workflow: Callable[..., Path], new_database: Callable[[], str]
) -> None:
    """Steps end the executor's database session as they finish (as a server restart or
    an idle timeout would): the next write notices before sending anything, reconnects,
    and the run goes on as if nothing happened."""
    url = new_database()
    kill = (
        "import os, sys, psycopg; c = psycopg.connect(sys.argv[1], autocommit=True); "
        "c.execute('SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()'); os._exit(0)"
    )
    env = {"PY": sys.executable, "KILL": kill, "URL": _libpq(url)}
    cut = {"kind": "cli", "command": '"$PY" -c "$KILL" "$URL"', "env": env}
    steps = [
        step
        for i in range(4)
        for step in (
            {"id": f"cut{i}", **cut},
            {"id": f"after{i}", "kind": "cli", "command": "true"},
        )
    ]
    steps.append({"id": "done", "kind": "end", "result": {"ok": True}})
    doc = {
        "schema_version": "checkpointflow/v1",
        "workflow": {"id": "reconnect", "inputs": {"type": "object"}, "steps": steps},
    }
    wf = write_workflow(json.dumps(doc))  # JSON is YAML
    cpf.env = {**cpf.env, "CPF_DATABASE_URL": url}
    done = cpf.ok("run", "-f", str(wf))
    assert done["status"] == "completed" and done["result"] == {"ok": True}
    results = cpf.inspect(done["run_id"])["result"]["step_results"]
    assert [(r["step_id"], r["status"]) for r in results] == [(s["id"], "completed") for s in steps]
