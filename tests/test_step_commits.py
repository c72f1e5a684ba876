"""When a step's transition is committed: one durable commit per step, never late.

A completed step's transition (run state, attempt row, checkpoint) is deferred into
the next transaction the executor writes, which for a `cli` step is the record of its
process group, made before its command may run (core.runner, core.process). These
tests pin what that must never change, black-box through the `cpf` CLI on the test's
store (SQLite, or PostgreSQL under `CPF_TEST_DATABASE_URL`):

- the next step's command, and an `api` step's request, see the previous step
  committed (outputs, attempt, checkpoint);
- a run cancelled between two steps starts nothing more and leaves no attempt open;
- a compare-and-set that lost, inside a batch, writes nothing of its transaction.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import storedb
from conftest import CpfRunner


def _db(cpf: CpfRunner) -> storedb.Sql:
    return storedb.Sql(cpf.base_dir, cpf.env.get("CPF_DATABASE_URL"))


def test_the_next_command_sees_the_previous_step_committed(
    cpf: CpfRunner, write_workflow: Callable[..., Path], workdir: Path
) -> None:
    wf = write_workflow(
        f"""
        schema_version: checkpointflow/v1
        workflow:
          id: peek
          inputs: {{type: object}}
          steps:
            - id: first
              kind: cli
              command: "echo '{{\\"a\\": 1}}'"
            - id: second
              kind: cli
              command: '"$CPF" inspect --run-id "$CPF_RUN_ID" > seen.json'
              env: {{CPF: {json.dumps(cpf.exe)}}}
              success: {{exit_codes: [0, 90]}}
            - id: done
              kind: end
              result: {{a: "${{steps.first.outputs.a}}"}}
        """
    )
    done = cpf.ok("run", "-f", str(wf))
    assert done["result"] == {"a": 1}
    seen = json.loads((workdir / "seen.json").read_text())
    assert seen["status"] == "running" and seen["current_step_id"] == "second"
    result = seen["result"]
    assert result["step_outputs"] == {"first": {"a": 1}}
    assert result["checkpoints"] == 1
    first, second = result["step_results"]
    assert (first["step_id"], first["status"], first["outputs"]) == ("first", "completed", {"a": 1})
    assert (second["step_id"], second["status"]) == ("second", "running")


class _Peek(ThreadingHTTPServer):
    """Answers every request with what the store says at that moment."""

    look: Callable[[], dict[str, Any]]
    seen: list[dict[str, Any]]


@pytest.fixture
def peek_server() -> Iterator[_Peek]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            server: _Peek = self.server  # type: ignore[assignment]
            state = server.look()
            server.seen.append(state)
            body = json.dumps(state).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = _Peek(("127.0.0.1", 0), Handler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_an_api_request_sees_the_previous_step_committed(
    cpf: CpfRunner, write_workflow: Callable[..., Path], peek_server: _Peek
) -> None:
    """A kind that acts outside the store before its first write (`api`) starts only
    once the previous step's transition is durable."""
    run_id = uuid.uuid4().hex

    def look() -> dict[str, Any]:
        with _db(cpf) as db:
            run = db.execute(
                "SELECT current_step_id, step_outputs FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            attempts = db.execute(
                "SELECT step_id, status FROM step_attempts WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
            checkpoints = db.execute(
                "SELECT count(*) FROM checkpoints WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
        outputs = run[1] if isinstance(run[1], dict) else json.loads(run[1] or "{}")
        return {
            "current": run[0],
            "outputs": outputs,
            "attempts": [list(a) for a in attempts],
            "checkpoints": checkpoints,
        }

    peek_server.look = look
    port = peek_server.server_address[1]
    wf = write_workflow(
        f"""
        schema_version: checkpointflow/v1
        workflow:
          id: call
          inputs: {{type: object}}
          defaults: {{api: {{allow_private: true}}}}
          steps:
            - id: first
              kind: cli
              command: "echo '{{\\"a\\": 1}}'"
            - id: call
              kind: api
              method: GET
              url: "http://127.0.0.1:{port}/peek"
        """
    )
    cpf.ok("run", "-f", str(wf), "--run-id", run_id)
    (seen,) = peek_server.seen
    # (The api step's own row exists too if it outlived a watcher tick: it is running.)
    attempts = seen.pop("attempts")
    assert attempts[0] == ["first", "completed"]
    assert attempts[1:] in ([], [["call", "running"]]), attempts
    assert seen == {"current": "call", "outputs": {"first": {"a": 1}}, "checkpoints": 1}


def test_a_cancel_between_two_steps_starts_nothing_more(
    cpf: CpfRunner, write_workflow: Callable[..., Path], workdir: Path
) -> None:
    """The first step cancels its own run and ends well: whether the executor notices
    while the step runs or only when it writes the step's transition (joined with the
    next step's group record, which then fails), the next command never runs and no
    attempt is left open."""
    wf = write_workflow(
        f"""
        schema_version: checkpointflow/v1
        workflow:
          id: cancelled
          inputs: {{type: object}}
          steps:
            - id: first
              kind: cli
              command: '"$CPF" cancel --run-id "$CPF_RUN_ID" --reason "from inside" > /dev/null'
              env: {{CPF: {json.dumps(cpf.exe)}}}
            - id: second
              kind: cli
              command: touch second.ran
            - id: done
              kind: end
        """
    )
    run_id = uuid.uuid4().hex
    cpf("run", "-f", str(wf), "--run-id", run_id)
    assert not (workdir / "second.ran").exists()
    status = cpf.status(run_id)
    assert status["status"] == "cancelled", status
    with _db(cpf) as db:
        attempts = db.execute(
            "SELECT step_id, status, pid FROM step_attempts WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
    assert attempts and attempts[0][0] == "first", attempts
    assert [a for a in attempts if a[1] == "running"] == [], attempts
    assert all(a[0] == "first" for a in attempts), attempts


def test_a_stale_compare_and_set_in_a_batch_writes_nothing(cpf: CpfRunner, cpf_base: Path) -> None:
    """The batch's compare-and-set is checked where it runs (by the server on
    PostgreSQL): when it loses, nothing the transaction wrote stays."""
    from core.store.sqlexec import StaleWrite
    from core.store.store import Store, now_iso

    url = cpf.env.get("CPF_DATABASE_URL") or f"sqlite:///{cpf_base / 'cpf.db'}"
    store = Store(url)
    try:
        now = now_iso()
        run = {
            "run_id": "r" * 32,
            "workflow_id": "w",
            "workflow_path": "w.yaml",
            "workflow_hash": "h",
            "status": "running",
            "inputs": {},
            "step_outputs": {},
            "version": 3,
            "created_at": now,
            "updated_at": now,
        }
        with store.hot() as conn:
            store.insert_run(conn, run)

        def batch(version: int, seq: int) -> None:
            with store.hot(batch=True) as conn:
                row = {
                    "run_id": run["run_id"],
                    "seq": seq,
                    "step_id": "s",
                    "step_kind": "cli",
                    "attempt": 1,
                    "status": "running",
                    "started_at": now,
                }
                later = store.insert_attempt_later(conn, row)
                store.set_run(conn, run["run_id"], version, current_step_id=f"s{seq}")
            assert later() > 0

        with pytest.raises(StaleWrite):
            batch(2, 1)
        with pytest.raises(StaleWrite):
            batch(4, 1)
        assert store.attempts(run["run_id"]) == []
        fresh = store.get_run(run["run_id"])
        assert fresh is not None and (fresh["version"], fresh["current_step_id"]) == (3, None)
        batch(3, 1)  # the right version: both writes land
        fresh = store.get_run(run["run_id"])
        assert fresh is not None and (fresh["version"], fresh["current_step_id"]) == (4, "s1")
        assert [a["seq"] for a in store.attempts(run["run_id"])] == [1]
    finally:
        store.close()
