"""Black-box tests of await_event timeouts through the `cpf` CLI.

Contract §12 defect 16 and §13: `timeout_seconds` + `on_timeout` are enforced; the waiting
envelope carries `wait.timeout_at`; expiry is applied when the run is next touched (`status`,
`resume`, `runs`) and by `cpf tick`; with `on_timeout.next` the run continues there, without it
the run fails with ERR_TIMEOUT; a resume after the deadline is refused (exit 20).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import CpfRunner, step_results_for, wait_for

WORKFLOW = """
schema_version: checkpointflow/v1
workflow:
  id: timeouts
  inputs: { type: object }
  steps:
    - id: ask
      kind: await_event
      audience: user
      event_name: answer
      prompt: Answer?
      input_schema:
        type: object
        required: [v]
        properties: { v: { type: string } }
      timeout_seconds: @SECONDS@
@ON_TIMEOUT@
    - id: answered
      kind: cli
      command: touch answered
    - id: again
      kind: await_event
      audience: agent
      event_name: second
      input_schema: { type: object }
    - id: done
      kind: end
      result: { path: answered, v: "${steps.ask.outputs.v}" }
    - id: late
      kind: cli
      command: >-
        touch late; echo '{"late": true}'
    - id: timed_out
      kind: end
      result: { path: timed_out, late: "${steps.late.outputs.late}" }
"""


def _workflow(
    write_workflow: Callable[..., Path], timeout: int, on_timeout: bool, name: str = "wf.yaml"
) -> Path:
    text = WORKFLOW.replace("@SECONDS@", str(timeout)).replace(
        "@ON_TIMEOUT@", "      on_timeout: { next: late }" if on_timeout else ""
    )
    return write_workflow(text, name)


def _deadline(env: dict[str, Any]) -> datetime:
    at = env["wait"]["timeout_at"]
    assert isinstance(at, str), env
    deadline = datetime.fromisoformat(at.replace("Z", "+00:00"))
    assert deadline.tzinfo is not None, at
    return deadline


def _start(cpf: CpfRunner, path: Path) -> tuple[str, datetime]:
    before = datetime.now(UTC)
    env = cpf.ok("run", "-f", str(path), exit_code=40)
    assert env["status"] == "waiting"
    assert env["current_step_id"] == "ask"
    deadline = _deadline(env)
    assert before < deadline
    return cpf.run_id_of(env), deadline


def _sleep_past(deadline: datetime) -> None:
    delay = (deadline - datetime.now(UTC)).total_seconds() + 0.1
    if delay > 0:
        time.sleep(delay)


def test_waiting_envelope_carries_timeout_at(cpf: CpfRunner, write_workflow) -> None:
    path = _workflow(write_workflow, 60, on_timeout=True)
    before = datetime.now(UTC)
    run_id, deadline = _start(cpf, path)
    # timeout_at = when the step was reached + timeout_seconds
    assert before + timedelta(seconds=59) <= deadline <= datetime.now(UTC) + timedelta(seconds=61)

    # Before the deadline a resume works as usual.
    env = cpf.ok(
        "resume", "--run-id", run_id, "--event", "answer", "--input", '{"v": "x"}', exit_code=40
    )
    assert (cpf.cwd / "answered").exists()
    assert env["current_step_id"] == "again"
    # An await step without timeout_seconds has no deadline.
    assert "timeout_at" not in env["wait"] or env["wait"]["timeout_at"] is None


def test_expiry_applied_by_status_fails_with_err_timeout(cpf: CpfRunner, write_workflow) -> None:
    path = _workflow(write_workflow, 1, on_timeout=False)
    run_id, deadline = _start(cpf, path)
    _sleep_past(deadline)

    st = cpf.status(run_id)
    assert st["ok"] is True
    assert st["status"] == "failed"
    assert st["exit_code"] == 30
    assert st["error"]["code"] == "ERR_TIMEOUT"
    assert "wait" not in st

    ins = cpf.inspect(run_id)
    assert ins["status"] == "failed" and ins["exit_code"] == 30
    assert ins["result"]["error"]["code"] == "ERR_TIMEOUT"
    [ask] = step_results_for(ins, "ask")
    assert ask["status"] != "waiting"
    assert ask["error_code"] == "ERR_TIMEOUT"
    assert ins["result"]["events"] == []
    assert [r["step_id"] for r in ins["result"]["step_results"]] == ["ask"]


def test_expiry_applied_by_resume_and_by_runs(cpf: CpfRunner, write_workflow) -> None:
    path = _workflow(write_workflow, 1, on_timeout=False)
    resumed_id, deadline = _start(cpf, path)
    listed_id, deadline2 = _start(cpf, path)
    _sleep_past(max(deadline, deadline2))

    # The resume is the first touch after the deadline: refused, and the run fails.
    proc, env = cpf("resume", "--run-id", resumed_id, "--event", "answer", "--input", '{"v": "x"}')
    assert env is not None, proc.stdout + proc.stderr
    assert env["exit_code"] == 20
    assert env["ok"] is False
    assert env["error"]["code"] == "ERR_RUN_NOT_WAITING"
    assert env["run_id"] == resumed_id
    assert not (cpf.cwd / "answered").exists()

    # `runs` applies the other run's expiry before listing it.
    env = cpf.ok("runs")
    entries = {r["run_id"]: r for r in env["result"]["runs"]}
    for run_id in (resumed_id, listed_id):
        assert entries[run_id]["status"] == "failed", entries[run_id]
        assert entries[run_id]["error_code"] == "ERR_TIMEOUT", entries[run_id]


def _wait_completed(cpf: CpfRunner, run_id: str) -> dict[str, Any]:
    """Wait for the continued run to finish: first (cheaply) for the marker its `late` step
    writes, then poll `status`."""
    wait_for(lambda: (cpf.cwd / "late").exists(), timeout=45, what="the on_timeout step")

    def done() -> dict[str, Any] | None:
        st = cpf.status(run_id)
        return st if st["status"] not in ("running", "created") else None

    return wait_for(done, timeout=45, interval=0.3, what=f"run {run_id} to finish")


def test_on_timeout_next_continues_the_run_after_status(cpf: CpfRunner, write_workflow) -> None:
    path = _workflow(write_workflow, 1, on_timeout=True)
    run_id, deadline = _start(cpf, path)
    _sleep_past(deadline)

    # The first touch after the deadline applies the timeout: the run goes on at `late`
    # in a new executor.
    st = cpf.status(run_id)
    assert st["status"] in ("running", "completed"), st
    st = _wait_completed(cpf, run_id)
    assert st["status"] == "completed", st
    assert st["exit_code"] == 0
    assert st["result"] == {"path": "timed_out", "late": True}
    assert (cpf.cwd / "late").exists()
    assert not (cpf.cwd / "answered").exists()

    ins = cpf.inspect(run_id)
    ran = [r["step_id"] for r in ins["result"]["step_results"]]
    assert ran == ["ask", "late", "timed_out"]
    [ask] = step_results_for(ins, "ask")
    assert ask["status"] != "waiting"
    assert ins["result"]["events"] == []


def test_tick_applies_every_due_timeout(cpf: CpfRunner, write_workflow) -> None:
    fail_path = _workflow(write_workflow, 1, on_timeout=False, name="fail.yaml")
    cont_path = _workflow(write_workflow, 1, on_timeout=True, name="cont.yaml")
    later_path = _workflow(write_workflow, 3600, on_timeout=True, name="later.yaml")
    fail_id, d1 = _start(cpf, fail_path)
    cont_id, d2 = _start(cpf, cont_path)
    _start(cpf, later_path)
    _sleep_past(max(d1, d2))

    env = cpf.ok("tick")
    assert env["ok"] is True
    expired = {e["run_id"]: e for e in env["result"]["expired"]}
    assert set(expired) == {fail_id, cont_id}, env
    assert expired[fail_id]["status"] == "failed"
    assert expired[fail_id]["step_id"] == "ask"
    assert expired[cont_id]["status"] in ("running", "completed")

    # (the run whose deadline has not passed is not in the list: it is untouched)
    st = _wait_completed(cpf, cont_id)
    assert st["status"] == "completed"
    assert st["result"] == {"path": "timed_out", "late": True}
    # Applied once: a second tick has nothing to do.
    assert cpf.ok("tick")["result"]["expired"] == []
