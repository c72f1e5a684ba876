"""Black-box tests of what cpf adds to the checkpointflow CLI.

`runs`, `logs` (+ `--follow`), `retry`, crash safety after kill -9, locking of
concurrent resumes (defect 10), cancel of a running run, and lazy imports.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CpfRunner,
    all_gone,
    parse_envelope,
    pid_gone,
    step_results_for,
    wait_for,
)


def _wf(steps_yaml: str, *, wf_id: str = "wf") -> str:
    return (
        "schema_version: checkpointflow/v1\n"
        "workflow:\n"
        f"  id: {wf_id}\n"
        "  inputs: {type: object}\n"
        "  steps:\n" + steps_yaml.strip("\n") + "\n"
    )


WAIT_THEN_APPEND = _wf(
    """
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema: {type: object}
    - id: append
      kind: cli
      command: echo line >> appended.txt
    - id: finish
      kind: end
      result: {done: true}
""",
    wf_id="wait-append",
)


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, dict[str, Any] | None]:
    out, err = proc.communicate(timeout=timeout)
    assert "Traceback (most recent call last)" not in err, err
    completed = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return proc.returncode, parse_envelope(completed)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


# --------------------------------------------------------------------------- runs


def test_runs_newest_first_and_filters(cpf: CpfRunner, write_workflow) -> None:
    alpha = write_workflow(
        _wf(
            """
    - id: a
      kind: cli
      command: echo hi
""",
            wf_id="alpha",
        ),
        name="alpha.yaml",
    )
    beta = write_workflow(
        _wf(
            """
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema: {type: object}
""",
            wf_id="beta",
        ),
        name="beta.yaml",
    )
    env = cpf.ok("runs")
    assert env["ok"] is True
    assert env["command"] == "runs"
    assert env["result"]["runs"] == []

    r1 = cpf.ok("run", "-f", str(alpha))["run_id"]
    r2 = cpf.ok("run", "-f", str(beta), exit_code=40)["run_id"]
    r3 = cpf.ok("run", "-f", str(alpha))["run_id"]

    runs = cpf.ok("runs")["result"]["runs"]
    assert [r["run_id"] for r in runs] == [r3, r2, r1]
    for r in runs:
        assert {
            "run_id",
            "workflow_id",
            "status",
            "current_step_id",
            "created_at",
            "updated_at",
        } <= set(r)
    by_id = {r["run_id"]: r for r in runs}
    assert by_id[r2]["status"] == "waiting"
    assert by_id[r2]["current_step_id"] == "ask"
    assert by_id[r2]["workflow_id"] == "beta"
    assert by_id[r1]["status"] == "completed"

    waiting = cpf.ok("runs", "--status", "waiting")["result"]["runs"]
    assert [r["run_id"] for r in waiting] == [r2]
    completed = cpf.ok("runs", "--status", "completed")["result"]["runs"]
    assert [r["run_id"] for r in completed] == [r3, r1]
    assert cpf.ok("runs", "--status", "cancelled")["result"]["runs"] == []

    alpha_runs = cpf.ok("runs", "--workflow", "alpha")["result"]["runs"]
    assert [r["run_id"] for r in alpha_runs] == [r3, r1]
    assert cpf.ok("runs", "--workflow", "nope")["result"]["runs"] == []

    assert [r["run_id"] for r in cpf.ok("runs", "--limit", "1")["result"]["runs"]] == [r3]
    limited = cpf.ok("runs", "--workflow", "alpha", "--limit", "1")["result"]["runs"]
    assert [r["run_id"] for r in limited] == [r3]


# --------------------------------------------------------------------------- logs

TALKER = _wf(
    """
    - id: talk
      kind: cli
      command: echo out-line; echo err-line >&2
    - id: more
      kind: cli
      command: echo second-step
""",
    wf_id="talker",
)


def test_logs(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(TALKER)
    run_id = cpf.ok("run", "-f", str(path))["run_id"]

    proc, env = cpf("logs", "--run-id", run_id)
    assert proc.returncode == 0, proc.stderr
    assert env is None
    assert "out-line" in proc.stdout
    assert "second-step" in proc.stdout

    proc, _ = cpf("logs", "--run-id", run_id, "--step", "talk")
    assert proc.returncode == 0
    assert "out-line" in proc.stdout
    assert "second-step" not in proc.stdout

    proc, _ = cpf("logs", "--run-id", run_id, "--step", "talk", "--stream", "stderr")
    assert proc.returncode == 0
    assert "err-line" in proc.stdout
    assert "out-line" not in proc.stdout

    proc, _ = cpf("logs", "--run-id", run_id, "--stream", "stdout")
    assert "err-line" not in proc.stdout

    env = cpf.ok("logs", "--run-id", "9" * 32, exit_code=10)
    assert env["ok"] is False
    assert env["error"]["code"] == "ERR_RUN_NOT_FOUND"


def _line_reader(stream: Any, sink: queue.Queue[tuple[float, str | None]]) -> None:
    for line in iter(stream.readline, ""):
        sink.put((time.monotonic(), line))
    sink.put((time.monotonic(), None))


def _wait_running_run(cpf: CpfRunner, timeout: float = 30) -> str:
    def find() -> str | None:
        runs = cpf.ok("runs", "--status", "running")["result"]["runs"]
        return runs[0]["run_id"] if runs else None

    return wait_for(find, timeout=timeout, interval=0.05, what="a running run")


def test_logs_follow_streams_while_running(cpf: CpfRunner, write_workflow) -> None:
    lines = 80
    path = write_workflow(
        _wf(
            f"""
    - id: ticker
      kind: cli
      command: for i in $(seq 1 {lines}); do echo "tick $i"; sleep 0.05; done
""",
            wf_id="ticker",
        )
    )
    run_proc = cpf.popen("run", "-f", str(path))
    follow = None
    try:
        run_id = _wait_running_run(cpf)
        follow = cpf.popen("logs", "--run-id", run_id, "--follow")
        got: queue.Queue[tuple[float, str | None]] = queue.Queue()
        threading.Thread(target=_line_reader, args=(follow.stdout, got), daemon=True).start()

        _, first = got.get(timeout=30)
        assert first is not None and first.startswith("tick "), first
        # The first lines arrive while the step is still printing.
        assert run_proc.poll() is None, "the run finished before logs --follow showed anything"

        rc, env = _finish(run_proc)
        assert rc == 0 and env is not None and env["status"] == "completed"
        # --follow stops by itself once the run stops running.
        follow.wait(timeout=30)
        assert follow.returncode == 0
        received = [first]
        while True:
            _, line = got.get(timeout=10)
            if line is None:
                break
            received.append(line)
        ticks = [ln.strip() for ln in received if ln.startswith("tick ")]
        # Every line exactly once, in order, from wherever following started.
        start = int(ticks[0].split()[1])
        assert ticks == [f"tick {i}" for i in range(start, lines + 1)]
        assert start <= lines // 2
    finally:
        for p in (run_proc, follow):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


# --------------------------------------------------------------------------- retry

RETRYABLE = _wf(
    """
    - id: first
      kind: cli
      command: >-
        echo x >> first-count;
        printf '{"token": "%s"}' "$(date +%s%N)"
    - id: gate
      kind: cli
      command: test -f marker
    - id: finish
      kind: end
      result:
        token: ${steps.first.outputs.token}
""",
    wf_id="retryable",
)


def test_retry_continues_from_failed_step(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(RETRYABLE)
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    run_id = env["run_id"]
    assert env["current_step_id"] == "gate"
    token = cpf.inspect(run_id)["result"]["step_outputs"]["first"]["token"]

    (workdir / "marker").touch()
    env = cpf.ok("retry", "--run-id", run_id)
    assert env["ok"] is True
    assert env["command"] == "retry"
    assert env["status"] == "completed"
    assert env["run_id"] == run_id
    assert env["workflow_id"] == "retryable"
    assert env["current_step_id"] == "finish"
    assert env["result"] == {"token": token}
    # The first step did not run again.
    assert (workdir / "first-count").read_text().count("x") == 1
    history = cpf.inspect(run_id)
    assert history["status"] == "completed"
    assert len(step_results_for(history, "first")) == 1
    gate = step_results_for(history, "gate")
    assert len(gate) == 2
    assert gate[0]["status"] == "failed"
    assert gate[1]["status"] != "failed"
    assert gate[1]["exit_code"] == 0

    # A completed run cannot be retried.
    env = cpf.ok("retry", "--run-id", run_id, exit_code=20)
    assert env["ok"] is False
    assert env["error"]["code"] == "ERR_RUN_NOT_WAITING"


def test_retry_errors_and_from_step(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    env = cpf.ok("retry", "--run-id", "1" * 32, exit_code=10)
    assert env["error"]["code"] == "ERR_RUN_NOT_FOUND"

    path = write_workflow(RETRYABLE)
    run_id = cpf.ok("run", "-f", str(path), exit_code=30)["run_id"]
    env = cpf.ok("retry", "--run-id", run_id, "--from-step", "ghost", exit_code=10)
    assert env["error"]["code"] == "ERR_VALIDATION_INPUT"
    assert cpf.ok("status", "--run-id", run_id, exit_code=30)["status"] == "failed"

    # Retrying while the cause persists fails again (exit 30) and stays retryable.
    env = cpf.ok("retry", "--run-id", run_id, exit_code=30)
    assert env["error"]["code"] == "ERR_STEP_FAILED"

    (workdir / "marker").touch()
    env = cpf.ok("retry", "--run-id", run_id, "--from-step", "first", "--actor", "ops")
    assert env["status"] == "completed"
    assert (workdir / "first-count").read_text().count("x") == 2

    # A waiting run is not retryable.
    waiting = write_workflow(WAIT_THEN_APPEND, name="wait.yaml")
    run_id = cpf.ok("run", "-f", str(waiting), exit_code=40)["run_id"]
    env = cpf.ok("retry", "--run-id", run_id, exit_code=20)
    assert env["error"]["code"] == "ERR_RUN_NOT_WAITING"


def test_retry_after_failure_following_resume(
    cpf: CpfRunner, write_workflow, workdir: Path
) -> None:
    path = write_workflow(
        _wf(
            """
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema: {type: object}
    - id: gate
      kind: cli
      command: test -f marker
    - id: fin
      kind: end
      result: ${steps.ask.outputs.answer}
""",
            wf_id="wait-fail",
        )
    )
    run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
    env = cpf.ok(
        "resume", "--run-id", run_id, "--event", "go", "--input", '{"answer": 42}', exit_code=30
    )
    assert env["current_step_id"] == "gate"
    (workdir / "marker").touch()
    env = cpf.ok("retry", "--run-id", run_id)
    assert env["result"] == 42
    assert len(cpf.inspect(run_id)["result"]["events"]) == 1


# --------------------------------------------------------------------------- crash safety


def test_kill_9_marks_run_interrupted_and_retry_completes(
    cpf: CpfRunner, write_workflow, workdir: Path
) -> None:
    path = write_workflow(
        _wf(
            """
    - id: setup
      kind: cli
      command: >-
        echo '{"v": 7}'
    - id: long
      kind: cli
      command: echo $$ > long.pid; test -f marker || sleep 30
    - id: finish
      kind: end
      result:
        v: ${steps.setup.outputs.v}
""",
            wf_id="crashy",
        )
    )
    pidfile = workdir / "long.pid"
    run_proc = cpf.popen("run", "-f", str(path))
    step_pid = None
    try:
        step_pid = wait_for(lambda: _read_pid(pidfile), timeout=30, what="the long step to start")
        run_id = cpf.ok("runs", "--status", "running")["result"]["runs"][0]["run_id"]
        run_proc.send_signal(signal.SIGKILL)
        run_proc.wait(timeout=30)

        def interrupted() -> dict[str, Any] | None:
            env = cpf.status(run_id)
            return env if env["status"] == "failed" else None

        status = wait_for(interrupted, timeout=30, interval=0.2, what="status failed")
        assert status["ok"] is True
        assert status["exit_code"] == 30
        assert status["error"]["code"] == "ERR_RUN_INTERRUPTED"
        assert status["current_step_id"] == "long"

        runs = cpf.ok("runs")["result"]["runs"]
        assert [(r["run_id"], r["status"]) for r in runs] == [(run_id, "failed")]
        history = cpf.ok("inspect", "--run-id", run_id, exit_code=30)
        assert history["status"] == "failed"
        assert history["result"]["step_outputs"]["setup"] == {"v": 7}

        (workdir / "marker").touch()
        _kill_group(step_pid)
        env = cpf.ok("retry", "--run-id", run_id)
        assert env["status"] == "completed"
        assert env["result"] == {"v": 7}
        assert cpf.ok("status", "--run-id", run_id)["status"] == "completed"
    finally:
        if run_proc.poll() is None:
            run_proc.kill()
            run_proc.wait()
        if step_pid is not None:
            _kill_group(step_pid)


# --------------------------------------------------------------------------- cancel a running run


def test_cancel_running_run_kills_step(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        _wf(
            """
    - id: long
      kind: cli
      command: sh -c 'sleep 60 & echo $! > child.pid; wait' & echo $$ > long.pid; wait
    - id: after
      kind: cli
      command: touch after-ran
""",
            wf_id="cancellable",
        )
    )
    run_proc = cpf.popen("run", "-f", str(path))
    pids: list[int] = []
    try:
        wait_for(
            lambda: _read_pid(workdir / "long.pid") and _read_pid(workdir / "child.pid"),
            timeout=30,
            what="the step to start",
        )
        pids = [_read_pid(workdir / "long.pid") or 0, _read_pid(workdir / "child.pid") or 0]
        run_id = cpf.ok("runs", "--status", "running")["result"]["runs"][0]["run_id"]
        started = time.monotonic()
        env = cpf.ok("cancel", "--run-id", run_id, "--reason", "taking too long")
        assert env["status"] == "cancelled"
        assert env["result"] == {"reason": "taking too long"}
        _rc, run_env = _finish(run_proc, timeout=30)
        assert time.monotonic() - started < 20
        assert run_env is not None and run_env["ok"] is False
        wait_for(lambda: all_gone(pids), timeout=10, what="step processes to die")
        assert not (workdir / "after-ran").exists()
        assert cpf.ok("status", "--run-id", run_id, exit_code=50)["status"] == "cancelled"
    finally:
        if run_proc.poll() is None:
            run_proc.kill()
            run_proc.wait()
        for pid in pids:
            if pid and not pid_gone(pid):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ concurrency (defect 10)


def test_concurrent_resumes_exactly_one_wins(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(WAIT_THEN_APPEND)
    run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
    procs = [
        cpf.popen("resume", "--run-id", run_id, "--event", "go", "--input", json.dumps({"n": i}))
        for i in range(10)
    ]
    outcomes = [_finish(p, timeout=120) for p in procs]
    winners = [i for i, (rc, _) in enumerate(outcomes) if rc == 0]
    assert len(winners) == 1, [rc for rc, _ in outcomes]
    for i, (rc, env) in enumerate(outcomes):
        assert env is not None, f"resume {i} printed no envelope"
        if i in winners:
            assert env["ok"] is True and env["status"] == "completed"
            continue
        assert rc in (20, 70), env
        assert env["ok"] is False
        expected = "ERR_RUN_NOT_WAITING" if rc == 20 else "ERR_CONCURRENCY"
        assert env["error"]["code"] == expected
    assert (workdir / "appended.txt").read_text().splitlines() == ["line"]
    history = cpf.inspect(run_id)
    assert history["status"] == "completed"
    assert [e["event_data"] for e in history["result"]["events"]] == [{"n": winners[0]}]
    assert len(step_results_for(history, "append")) == 1


def test_cancel_races_resume(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(WAIT_THEN_APPEND)
    for _ in range(4):
        (workdir / "appended.txt").unlink(missing_ok=True)
        run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
        resume = cpf.popen("resume", "--run-id", run_id, "--event", "go", "--input", "{}")
        cancel = cpf.popen("cancel", "--run-id", run_id, "--reason", "race")
        resume_rc, resume_env = _finish(resume)
        cancel_rc, cancel_env = _finish(cancel)
        assert resume_env is not None and cancel_env is not None
        assert [resume_env["ok"], cancel_env["ok"]].count(True) == 1, (resume_env, cancel_env)
        final = cpf.status(run_id)
        if cancel_env["ok"]:
            assert cancel_rc == 0
            assert resume_rc in (20, 50, 70), resume_env
            assert final["status"] == "cancelled"
        else:
            assert resume_rc == 0
            assert cancel_rc in (20, 70), cancel_env
            assert final["status"] == "completed"
            assert (workdir / "appended.txt").read_text().splitlines() == ["line"]


# --------------------------------------------------------------------------- misc cli behaviour


def test_step_environment_has_run_and_step_ids(
    cpf: CpfRunner, write_workflow, workdir: Path
) -> None:
    path = write_workflow(
        _wf(
            """
    - id: whoami
      kind: cli
      command: printf '%s %s' "$CPF_RUN_ID" "$CPF_STEP_ID" > ids.txt
"""
        )
    )
    run_id = cpf.ok("run", "-f", str(path))["run_id"]
    assert (workdir / "ids.txt").read_text() == f"{run_id} whoami"


def test_resume_actor_defaults_to_os_user(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(WAIT_THEN_APPEND)
    run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
    cpf.ok("resume", "--run-id", run_id, "--event", "go", "--input", "{}")
    (event,) = cpf.inspect(run_id)["result"]["events"]
    assert event["actor"] == getpass.getuser()
    assert event["surface"] == "cli"


def test_max_output_bytes_truncates(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: noisy
      kind: cli
      max_output_bytes: 1024
      command: head -c 100000 /dev/zero | tr '\\0' x
"""
        )
    )
    run_id = cpf.ok("run", "-f", str(path))["run_id"]
    (noisy,) = step_results_for(cpf.inspect(run_id), "noisy")
    text = Path(noisy["stdout_path"]).read_text()
    assert "output truncated" in text
    assert len(text) < 4096


# --------------------------------------------------------------------------- lazy imports

HEAVY = ("sqlalchemy", "sqlmodel", "textual")


def _imported_modules(args: list[str], cwd: Path, env: dict[str, str]) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    names = set()
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        names.add(line.rsplit("|", 1)[-1].strip())
    assert names, "no -X importtime output"
    return names


def _heavy(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


@pytest.mark.parametrize("command", ["--version", "guide", "init", "validate"])
def test_light_commands_do_not_import_heavy_modules(
    cpf: CpfRunner, write_workflow, command: str
) -> None:
    args = ["-m", "core", command]
    if command == "validate":
        path = write_workflow(
            _wf(
                """
    - id: a
      kind: cli
      command: echo hi
"""
            )
        )
        args += ["-f", str(path)]
    names = _imported_modules(args, cpf.cwd, cpf.env)
    assert "core" in names or any(n.startswith("core.") for n in names)
    assert _heavy(names) == []


ORM = ("sqlalchemy", "sqlmodel", "pydantic", "alembic")


def _orm_imports(cpf: CpfRunner, *args: str, exit_codes: tuple[int, ...] = (0,)) -> list[str]:
    """The ORM packages `cpf ARGS` imports."""
    return sorted(_top_imports(cpf, *args, exit_codes=exit_codes) & set(ORM))


def _top_imports(cpf: CpfRunner, *args: str, exit_codes: tuple[int, ...] = (0,)) -> set[str]:
    """Run `python -X importtime -m core ARGS` (a real process on the SQLite store) and
    return the top-level packages it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "core", *args],
        capture_output=True,
        text=True,
        cwd=cpf.cwd,
        env=cpf.env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode in exit_codes, proc.stdout + proc.stderr[-3000:]
    names = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "imported package" not in line
    }
    assert any(n.startswith("core.") for n in names), "no -X importtime output"
    return {n.split(".")[0] for n in names}


def test_an_unchanged_workflow_is_validated_once(cpf: CpfRunner, write_workflow) -> None:
    """`run` remembers the documents it validated (by content) and their parsed form:
    running the same file again skips the schema validation and the YAML parse, and
    their jsonschema and yaml imports; an edit is parsed and validated."""
    text = _wf("    - {id: a, kind: cli, command: 'true'}\n")
    path = write_workflow(text)
    assert {"jsonschema", "yaml"} <= _top_imports(cpf, "run", "-f", str(path))
    assert not {"jsonschema", "yaml"} & _top_imports(cpf, "run", "-f", str(path))
    path.write_text(text.replace("kind: cli", "kind: nope"), encoding="utf-8")
    env = cpf.ok("run", "-f", str(path), exit_code=10)
    assert env["error"]["code"] == "ERR_VALIDATION_WORKFLOW"
    path.write_text(text, encoding="utf-8")
    assert cpf.ok("run", "-f", str(path))["status"] == "completed"


def test_resume_imports_neither_jsonschema_nor_yaml(cpf: CpfRunner, write_workflow) -> None:
    """`resume` of a run whose workflow was validated when it started, with an event
    schema of the common kind (typed, enumerated, bounded fields), checks the payload
    without jsonschema and loads the workflow without parsing YAML; a payload the
    schema refuses still gets jsonschema's own message."""
    path = write_workflow(
        _wf(
            """
    - id: gate
      kind: await_event
      audience: agent
      event_name: go
      input_schema:
        type: object
        required: [decision]
        additionalProperties: false
        properties:
          decision: {type: string, enum: [approve, reject]}
          comment: {type: string, maxLength: 200}
          score: {type: integer, minimum: 0, maximum: 10}
    - id: after
      kind: end
      result: {decision: "${steps.gate.outputs.decision}"}
"""
        )
    )
    run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
    bad = ("resume", "--run-id", run_id, "--event", "go", "--input", '{"decision": "maybe"}')
    env = cpf.ok(*bad, exit_code=10)
    assert env["error"]["message"] == (
        "Event validation failed: $.decision: 'maybe' is not one of ['approve', 'reject']"
    )
    payload = '{"decision": "approve", "comment": "ok", "score": 7}'
    resume = ("resume", "--run-id", run_id, "--event", "go", "--input", payload)
    assert not {"jsonschema", "yaml"} & _top_imports(cpf, *resume)
    assert cpf.status(run_id)["result"] == {"decision": "approve"}


@pytest.mark.sqlite_only(reason="the import budget of commands on the SQLite store")
def test_commands_on_sqlite_do_not_import_the_orm(cpf: CpfRunner, write_workflow) -> None:
    """Every command that reads or writes runs on the SQLite store (including the one
    that creates the store, and the executor the TUI spawns) runs without SQLAlchemy,
    SQLModel or pydantic: they cost more than the rest of a command."""
    wait = write_workflow(
        _wf(
            """
    - id: before
      kind: cli
      command: echo hi
    - id: gate
      kind: await_event
      audience: agent
      event_name: go
      input_schema:
        type: object
        required: [ok]
        properties: {ok: {type: boolean}}
    - id: after
      kind: cli
      command: "true"
"""
        ),
        name="wait.yaml",
    )
    failing = write_workflow(_wf("    - {id: boom, kind: cli, command: exit 3}\n"), name="f.yaml")
    assert not (cpf.base_dir / "cpf.db").exists()
    assert _orm_imports(cpf, "run", "-f", str(wait), exit_codes=(40,)) == []
    assert (cpf.base_dir / "cpf.db").exists()
    run_id = cpf.ok("runs")["result"]["runs"][0]["run_id"]
    for args in (
        ("status", "--run-id", run_id),
        ("inspect", "--run-id", run_id),
        ("runs",),
        ("logs", "--run-id", run_id),
        ("tick",),
    ):
        assert _orm_imports(cpf, *args, exit_codes=(0, 40)) == [], args
    resume = ("resume", "--run-id", run_id, "--event", "go", "--input", '{"ok": true}')
    assert _orm_imports(cpf, *resume) == []
    assert cpf.status(run_id)["status"] == "completed"
    assert _orm_imports(cpf, "delete", "--run-id", run_id) == []

    other = cpf.ok("run", "-f", str(wait), exit_code=40)["run_id"]
    cancel = ("cancel", "--run-id", other, "--reason", "test")
    assert _orm_imports(cpf, *cancel, exit_codes=(0,)) == []
    failed = cpf.ok("run", "-f", str(failing), exit_code=30)["run_id"]
    assert _orm_imports(cpf, "retry", "--run-id", failed, exit_codes=(30,)) == []
    # The TUI's executor: `python -m core run --run-id ID --input -` (core.spawn).
    spawned = "ab" * 16
    tui = ("run", "-f", str(wait), "--run-id", spawned, "--surface", "tui", "--input", "{}")
    assert _orm_imports(cpf, *tui, exit_codes=(40,)) == []
    assert cpf.status(spawned)["status"] == "waiting"


def test_import_core_is_cheap(cpf: CpfRunner) -> None:
    names = _imported_modules(["-c", "import core"], cpf.cwd, cpf.env)
    assert "core" in names
    assert _heavy(names) == []


# --------------------------------------------------------------------------- store location


def test_store_under_base_dir(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(TALKER)
    run_id = cpf.ok("run", "-f", str(path))["run_id"]
    # The store itself is elsewhere under the PostgreSQL switch (tests/storedb.py).
    assert (cpf.base_dir / "cpf.db").is_file() is ("CPF_DATABASE_URL" not in cpf.env)
    assert (cpf.base_dir / "runs" / run_id / "stdout" / "talk.txt").read_text() == "out-line\n"
    assert (cpf.base_dir / "runs" / run_id / "stderr" / "talk.txt").read_text() == "err-line\n"


def test_database_url_override(cpf: CpfRunner, write_workflow, tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "custom.db"
    db.parent.mkdir()
    env = dict(cpf.env, CPF_DATABASE_URL=f"sqlite:///{db}")
    path = write_workflow(TALKER)
    proc, envelope = cpf("run", "-f", str(path), env=env)
    assert envelope is not None and envelope["exit_code"] == 0, proc.stdout + proc.stderr
    run_id = envelope["run_id"]
    assert db.is_file()
    assert not (cpf.base_dir / "cpf.db").exists()
    _, status = cpf("status", "--run-id", run_id, env=env)
    assert status is not None and status["status"] == "completed"
    # The default store does not know this run.
    assert cpf.ok("status", "--run-id", run_id, exit_code=10)["error"]["code"] == (
        "ERR_RUN_NOT_FOUND"
    )


# --------------------------------------------------------------------------- robustness


def test_parallel_runs_share_the_store(cpf: CpfRunner, write_workflow) -> None:
    steps = "".join(
        f"""
    - id: s{i}
      kind: cli
      command: >-
        echo '{{"i": {i}}}'
"""
        for i in range(6)
    )
    path = write_workflow(
        _wf(steps + "\n    - id: fin\n      kind: end\n      result: ${steps.s5.outputs.i}\n")
    )
    procs = [cpf.popen("run", "-f", str(path)) for _ in range(8)]
    outcomes = [_finish(p, timeout=120) for p in procs]
    for rc, env in outcomes:
        assert env is not None
        assert rc == 0, env
        assert env["result"] == 5
    runs = cpf.ok("runs", "--status", "completed")["result"]["runs"]
    assert len(runs) == 8


def test_steps_do_not_read_cpf_stdin(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        _wf(
            """
    - id: reader
      kind: cli
      timeout_seconds: 20
      command: cat > got.txt
"""
        )
    )
    cpf.ok("run", "-f", str(path), stdin="this must not reach the step\n")
    assert (workdir / "got.txt").read_text() == ""


def test_large_and_binary_output(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: big
      kind: cli
      command: >-
        python3 -c "import json; print(json.dumps({'s': 'y' * 300000}))"
    - id: binary
      kind: cli
      command: printf 'ok \\377\\376 done\\n'
    - id: fin
      kind: end
      result:
        n: ${steps.big.outputs.s}
"""
        )
    )
    env = cpf.ok("run", "-f", str(path))
    assert env["result"] == {"n": "y" * 300000}
    (binary,) = step_results_for(cpf.inspect(env["run_id"]), "binary")
    text = Path(binary["stdout_path"]).read_text(encoding="utf-8", errors="replace")
    assert text.startswith("ok ") and text.rstrip().endswith("done")


def test_values_are_not_interpolated_twice(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: twice
          inputs:
            type: object
            properties: {secret: {type: string}, who: {type: string}}
          steps:
            - id: a
              kind: cli
              command: >-
                echo '{"t": "$${inputs.secret}"}'
            - id: b
              kind: cli
              env:
                T: ${steps.a.outputs.t}
              command: printf '%s' "$T" > t.txt
            - id: ask
              kind: await_event
              audience: user
              event_name: go
              prompt: "Hello ${inputs.who}"
              input_schema: {type: object}
        """
    )
    inputs = {"secret": "s3cret", "who": "${inputs.secret}"}
    env = cpf.ok("run", "-f", str(path), "--input", json.dumps(inputs), exit_code=40)
    assert (workdir / "t.txt").read_text() == "${inputs.secret}"
    assert env["wait"]["prompt"] == "Hello ${inputs.secret}"
    status = cpf.ok("status", "--run-id", env["run_id"], exit_code=40)
    assert status["wait"]["prompt"] == "Hello ${inputs.secret}"


def test_unresolvable_prompt_fails_cleanly(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      prompt: "Value: ${steps.ghost.outputs.v}"
      input_schema: {type: object}
"""
        )
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["run_id"]
    assert env["current_step_id"] == "ask"
    assert cpf.ok("status", "--run-id", env["run_id"], exit_code=30)["status"] == "failed"


def test_input_file_errors(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    (workdir / "bad.json").write_text("{nope")
    path = write_workflow(WAIT_THEN_APPEND)
    env = cpf.ok("run", "-f", str(path), "--input", "@bad.json", exit_code=10)
    assert env["error"]["code"] == "ERR_VALIDATION_INPUT"
    run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
    (workdir.parent / "evt.json").write_text("{}")
    env = cpf.ok(
        "resume", "--run-id", run_id, "--event", "go", "--input", "@../evt.json", exit_code=10
    )
    assert env["error"]["code"] == "ERR_VALIDATION_EVENT_INPUT" or env["error"]["code"] == (
        "ERR_VALIDATION_INPUT"
    )
    env = cpf.ok(
        "resume", "--run-id", run_id, "--event", "go", "--input", "@bad.json", exit_code=10
    )
    assert env["error"]["code"] == "ERR_VALIDATION_EVENT_INPUT"
    assert cpf.inspect(run_id)["result"]["events"] == []


def test_logs_follow_of_finished_run_returns(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(TALKER)
    run_id = cpf.ok("run", "-f", str(path))["run_id"]
    proc, _ = cpf("logs", "--run-id", run_id, "--follow", timeout=20)
    assert proc.returncode == 0
    assert "out-line" in proc.stdout and "second-step" in proc.stdout
    waiting = write_workflow(WAIT_THEN_APPEND, name="w.yaml")
    run_id = cpf.ok("run", "-f", str(waiting), exit_code=40)["run_id"]
    proc, _ = cpf("logs", "--run-id", run_id, "--follow", timeout=20)
    assert proc.returncode == 0


def test_tick_reaps_a_killed_executor_and_stops_its_step(
    cpf: CpfRunner, write_workflow, workdir: Path
) -> None:
    path = write_workflow(
        _wf(
            """
    - id: long
      kind: cli
      command: echo $$ > long.pid; sleep 60
""",
            wf_id="orphan",
        )
    )
    run_proc = cpf.popen("run", "-f", str(path))
    step_pid = wait_for(lambda: _read_pid(workdir / "long.pid"), timeout=30, what="step start")
    # Let the executor record the step's process group (it does so after one watcher tick).
    time.sleep(1.0)
    run_proc.send_signal(signal.SIGKILL)
    run_proc.wait(timeout=30)
    tick = cpf.ok("tick")
    assert len(tick["result"]["interrupted"]) == 1
    run_id = tick["result"]["interrupted"][0]
    assert cpf.status(run_id)["error"]["code"] == "ERR_RUN_INTERRUPTED"
    wait_for(lambda: pid_gone(step_pid), timeout=30, what="the orphaned step to be stopped")
    assert cpf.ok("tick")["result"]["interrupted"] == []
