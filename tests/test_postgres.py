"""The same engine on PostgreSQL (`CPF_DATABASE_URL`), black-box through `cpf`.

Runs when `CPF_TEST_POSTGRES_URL` names a server database whose role may create
databases (`.ci/run` installs and starts PostgreSQL and sets it); each test gets a
database of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import storedb
from conftest import CpfRunner, wait_for

ADMIN_URL = os.environ.get("CPF_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not ADMIN_URL, reason="CPF_TEST_POSTGRES_URL is not set")


@pytest.fixture
def pg(cpf: CpfRunner) -> Iterator[CpfRunner]:
    assert ADMIN_URL is not None
    with storedb.empty_database(ADMIN_URL) as url:
        cpf.env = {**cpf.env, "CPF_DATABASE_URL": url}
        yield cpf


APPROVAL = """
schema_version: checkpointflow/v1
workflow:
  id: pg_approval
  inputs: {type: object}
  steps:
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema:
        type: object
        required: [decision]
        properties: {decision: {type: string, enum: ["yes", "no"]}}
      transitions:
        - when: event.decision == "no"
          next: refused
    - id: after
      kind: cli
      command: echo ran >> "$MARKS"
      env: {MARKS: "${inputs.marks}"}
    - id: done
      kind: end
      result: {decision: "${steps.ask.outputs.decision}"}
    - id: refused
      kind: end
      result: {decision: refused}
"""


def test_run_resume_and_history_on_postgres(pg: CpfRunner, write_workflow, tmp_path: Path) -> None:
    wf = write_workflow(APPROVAL)
    marks = tmp_path / "marks"
    waiting = pg.ok(
        "run", "-f", str(wf), "--input", json.dumps({"marks": str(marks)}), exit_code=40
    )
    run_id = waiting["run_id"]
    done = pg.ok("resume", "--run-id", run_id, "--event", "go", "--input", '{"decision": "yes"}')
    assert done["result"] == {"decision": "yes"}
    history = pg.inspect(run_id)["result"]
    assert [e["event_name"] for e in history["events"]] == ["go"]
    assert history["checkpoints"] >= 3
    listed = pg.ok("runs")["result"]["runs"]
    assert [r["run_id"] for r in listed] == [run_id]


def test_ten_racing_resumes_continue_once_on_postgres(
    pg: CpfRunner, write_workflow, tmp_path: Path
) -> None:
    wf = write_workflow(APPROVAL)
    marks = tmp_path / "marks"
    run_id = pg.ok(
        "run", "-f", str(wf), "--input", json.dumps({"marks": str(marks)}), exit_code=40
    )["run_id"]
    procs = [
        pg.popen("resume", "--run-id", run_id, "--event", "go", "--input", '{"decision": "yes"}')
        for _ in range(10)
    ]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes.count(0) == 1, codes
    assert all(c in (0, 20, 70) for c in codes), codes
    assert marks.read_text().splitlines() == ["ran"]
    assert len(pg.inspect(run_id)["result"]["events"]) == 1


def test_kill_9_then_retry_on_postgres(pg: CpfRunner, write_workflow) -> None:
    wf = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: pg_crash
          inputs: {type: object}
          steps:
            - id: first
              kind: cli
              command: >-
                echo '{"n": 1}'
            - id: slow
              kind: cli
              command: sleep 60
            - id: done
              kind: end
              result: {n: "${steps.first.outputs.n}"}
        """
    )
    assert pg.ok("validate", "-f", str(wf))["ok"]
    proc = pg.popen("run", "-f", str(wf))

    def running() -> str | None:
        runs = pg.ok("runs")["result"]["runs"]
        return runs[0]["run_id"] if runs and runs[0]["current_step_id"] == "slow" else None

    run_id = wait_for(running, timeout=60, what=f"the run to reach the slow step ({proc.poll()})")
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    status = pg.ok("status", "--run-id", run_id, exit_code=30)
    assert status["status"] == "failed"
    assert status["error"]["code"] == "ERR_RUN_INTERRUPTED"
    # Let the retry finish quickly: the slow step now exits at once.
    wf.write_text(wf.read_text().replace("sleep 60", "'true'"))
    done = pg.ok("retry", "--run-id", run_id)
    assert done["result"] == {"n": 1}


def test_store_url_password_is_never_printed(pg: CpfRunner) -> None:
    unreachable = "postgresql+psycopg://cpf:secretpw@127.0.0.1:1/nowhere"
    proc = subprocess.run(
        [pg.exe, "runs"],
        capture_output=True,
        text=True,
        env={**pg.env, "CPF_DATABASE_URL": unreachable},
        timeout=60,
    )
    envelope = json.loads(proc.stdout)
    assert envelope["exit_code"] == 60 and envelope["error"]["code"] == "ERR_PERSISTENCE"
    assert "secretpw" not in proc.stdout + proc.stderr


def test_schema_2_store_upgrades_on_postgres(pg: CpfRunner, write_workflow) -> None:
    """A schema-2 PostgreSQL store (no step_attempts.proc, no svc_rate_windows) is
    upgraded by the next `cpf` command: the column and table appear, the version moves
    on, and a run made before the upgrade is still there."""
    from sqlalchemy import create_engine, text

    from core.store.compiled import SCHEMA_VERSION

    wf = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: before_upgrade
          inputs: {type: object}
          steps:
            - id: a
              kind: cli
              command: echo hi
        """
    )
    old_run = pg.run_id_of(pg.ok("run", "-f", str(wf)))
    engine = create_engine(pg.env["CPF_DATABASE_URL"])
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE step_attempts DROP COLUMN proc"))
            conn.execute(text("DROP TABLE svc_rate_windows"))
            conn.execute(text("ALTER TABLE runs DROP COLUMN executor_id"))  # schema 4's
            conn.execute(text("ALTER TABLE runs DROP COLUMN lease_expires_at"))
            conn.execute(text("UPDATE cpf_meta SET value = '2' WHERE key = 'schema_version'"))
        pg.ok("run", "-f", str(wf))
        assert pg.status(old_run)["status"] == "completed"
        with engine.connect() as conn:
            columns = conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'step_attempts'"
                )
            ).scalars()
            assert "proc" in set(columns)
            assert conn.execute(text("SELECT to_regclass('svc_rate_windows')")).scalar()
            version = conn.execute(
                text("SELECT value FROM cpf_meta WHERE key = 'schema_version'")
            ).scalar()
            assert version == str(SCHEMA_VERSION)
    finally:
        engine.dispose()
