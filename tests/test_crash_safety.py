"""Crash safety of `cli` steps, black-box through the `cpf` CLI.

A kill -9 of the executor at any moment of a step, even before its command has
started, must leave no step process running unnoticed, and `cpf retry` must never run
a second copy of the step while the first is alive. The step under test takes an
exclusive flock and keeps it in a grandchild (which outlives the direct child): a copy
that starts while an earlier one is alive finds the lock taken and says "overlap".

Linux only: it reads /proc.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import storedb
from conftest import CpfRunner, kill_unguarded, pid_gone, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")

# The step's command. It notes "start <pid>" (pid = its process group), keeps the lock
# in a `sleep` child for $HOLD_SECONDS (inherited from the executor's environment: long
# for the executor that gets killed, short for the retry), then notes "end <pid>". In
# mode "leave-once" the first attempt leaves the locked sleep behind and fails.
HOLDER = """\
import fcntl, os, subprocess, sys

log, lock_path, mode = sys.argv[1:4]
seconds = os.environ.get("HOLD_SECONDS", "0.1")


def note(text):
    with open(log, "a") as f:
        f.write(text + "\\n")


lock = open(lock_path, "a")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    note(f"overlap {os.getpid()}")
note(f"start {os.getpid()}")
if mode == "leave-once" and not os.path.exists(lock_path + ".first"):
    open(lock_path + ".first", "w").close()
    subprocess.Popen(["sleep", "60"], pass_fds=(lock.fileno(),))
    sys.exit(1)
subprocess.run(["sleep", seconds], pass_fds=(lock.fileno(),))
note(f"end {os.getpid()}")
"""

# `pre` tells the test (through a FIFO, once) that the next step is about to start.
CRASH_WF = """\
schema_version: checkpointflow/v1
workflow:
  id: crash
  inputs: {{type: object}}
  steps:
    - id: pre
      kind: cli
      command: if mv signal signal.used 2>/dev/null; then echo go > signal.used; fi
    - id: work
      kind: cli
      command: exec "$PY" "$HOLDER" work.log work.lock {mode}
      env:
        PY: {py}
        HOLDER: {holder}
      retry:
        max_attempts: {attempts}
    - id: done
      kind: end
      result: {{ok: true}}
"""


def _workflow(tmp_path: Path, *, mode: str = "hold", attempts: int = 1) -> Path:
    holder = tmp_path / "holder.py"
    holder.write_text(HOLDER, encoding="utf-8")
    path = tmp_path / f"crash-{mode}.yaml"
    path.write_text(
        CRASH_WF.format(mode=mode, attempts=attempts, py=sys.executable, holder=holder),
        encoding="utf-8",
    )
    return path


def _log(folder: Path) -> list[str]:
    try:
        return (folder / "work.log").read_text().splitlines()
    except FileNotFoundError:
        return []


def _stat_fields(pid: str) -> list[bytes] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()


def run_processes(run_id: str) -> list[int]:
    """Live (not zombie) processes whose environment says they belong to the run."""
    marker = f"CPF_RUN_ID={run_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        fields = _stat_fields(name)
        if marker in environ.split(b"\0") and fields and fields[0] not in (b"Z", b"X"):
            found.append(int(name))
    return found


def group_alive(pgid: int) -> list[int]:
    """Live members of a process group, from /proc."""
    members = []
    for name in os.listdir("/proc"):
        fields = _stat_fields(name) if name.isdigit() else None
        if fields and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(name))
    return members


def _wait_fifo(fifo: Path, executor: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Block until `pre` writes to the FIFO (the next step starts right after)."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready and os.read(fd, 16):
                return
            if executor.poll() is not None:
                pytest.fail(f"the executor ended early: {executor.stderr.read()!r}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                pytest.fail("step `pre` never signalled")
    finally:
        os.close(fd)


def _kill_everything(run_id: str) -> None:
    for pid in run_processes(run_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _executor(
    cpf: CpfRunner, wf: Path, folder: Path, run_id: str, *, stderr: int
) -> subprocess.Popen[bytes]:
    """`cpf run` of the held-step workflow in `folder`, its step holding 60 s."""
    return subprocess.Popen(
        [cpf.exe, "run", "-f", str(wf), "--run-id", run_id],
        cwd=folder,
        env={**cpf.env, "HOLD_SECONDS": "60"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def _crash_then_retry(cpf: CpfRunner, wf: Path, folder: Path, delay: float | None) -> str:
    """Start a run, SIGKILL its executor `delay` seconds after `work` is about to start
    (None: as soon as the command noted its start), then `cpf retry` it. Returns how
    far the killed copy got: "held" (its command never ran) or "ran"."""
    folder.mkdir()
    os.mkfifo(folder / "signal")
    run_id = uuid.uuid4().hex
    executor = _executor(cpf, wf, folder, run_id, stderr=subprocess.PIPE)
    try:
        _wait_fifo(folder / "signal", executor)
        if delay is None:
            wait_for(lambda: _log(folder), timeout=60, interval=0.002, what="work to start")
        else:
            time.sleep(delay)
        executor.send_signal(signal.SIGKILL)
        executor.wait(timeout=30)
        killed_starts = [line.split()[1] for line in _log(folder) if line.startswith("start")]

        env = cpf.ok("retry", "--run-id", run_id, cwd=folder)
        assert env["status"] == "completed", env
        lines = _log(folder)
        assert not [line for line in lines if line.startswith("overlap")], (delay, lines)
        assert lines and lines[-1].startswith("end"), lines
        # Nothing of the killed copy (or anything else of the run) outlives the retry.
        assert run_processes(run_id) == [], (delay, lines)
        for pgid in killed_starts:
            assert group_alive(int(pgid)) == [], (delay, pgid)
        return "ran" if killed_starts else "held"
    finally:
        if executor.poll() is None:
            executor.kill()
            executor.wait()
        executor.stderr.close()  # type: ignore[union-attr]
        _kill_everything(run_id)


def test_kill_9_in_the_first_50ms_of_a_step_then_retry_never_overlaps(
    cpf: CpfRunner, tmp_path: Path
) -> None:
    wf = _workflow(tmp_path)
    # Kills spread over the first 50 ms after `pre` ended: before the step's process
    # exists, while it is held unrecorded or recorded, and just after its command began;
    # and kills right after the command started, so its grandchild holds the lock.
    # CI takes 10 + 2 kills (each costs two `cpf` starts); CPF_TEST_KILLS=40 for a long run.
    spread = max(2, int(os.environ.get("CPF_TEST_KILLS", "10")))
    delays: list[float | None] = [i * 0.050 / (spread - 1) for i in range(spread)]
    delays += [None] * max(2, spread // 5)
    # A few at a time, so the file stays quick; each has its own run, folder and lock.
    with ThreadPoolExecutor(max_workers=3) as pool:
        seen = list(
            pool.map(
                lambda i: _crash_then_retry(cpf, wf, tmp_path / f"c{i}", delays[i]),
                range(len(delays)),
            )
        )
    assert "ran" in seen, seen


def test_the_step_group_dies_with_its_executor_unobserved(
    cpf: CpfRunner, write_workflow, workdir: Path
) -> None:
    """kill -9 of the executor, and no cpf command runs afterwards: the step's command and
    its background child die anyway (the executor's guard kills the group)."""
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: lonely
          inputs: {type: object}
          steps:
            - id: long
              kind: cli
              command: sleep 60 & echo $! > bg.pid; echo $$ > long.pid; exec sleep 60
        """
    )
    run_id = uuid.uuid4().hex
    executor = cpf.popen("run", "-f", str(path), "--run-id", run_id)
    pid = bg = 0
    try:

        def sleeping() -> int:
            text = (workdir / "long.pid").read_text() if (workdir / "long.pid").exists() else ""
            if not text.strip():
                return 0
            comm = Path(f"/proc/{text.strip()}/comm")
            return int(text) if comm.exists() and comm.read_text().strip() == "sleep" else 0

        pid = wait_for(sleeping, timeout=60, interval=0.01, what="the step to exec sleep")
        bg = int((workdir / "bg.pid").read_text())
        assert not pid_gone(bg)
        executor.send_signal(signal.SIGKILL)
        executor.wait(timeout=30)
        # No cpf command runs in between: nothing reads the run, nothing reaps it.
        wait_for(lambda: pid_gone(pid), timeout=10, what="the step to die with its executor")
        wait_for(lambda: pid_gone(bg), timeout=10, what="its background child to die too")
        status = cpf.status(run_id)
        assert status["status"] == "failed"
        assert status["error"]["code"] == "ERR_RUN_INTERRUPTED"
    finally:
        if executor.poll() is None:
            executor.kill()
            executor.wait()
        for left in (pid, bg):
            if left and not pid_gone(left):
                os.kill(left, signal.SIGKILL)


def _store(cpf: CpfRunner) -> storedb.Sql:
    return storedb.Sql(cpf.base_dir, cpf.env.get("CPF_DATABASE_URL"))


def test_retry_stops_what_a_dying_reaper_left_behind(cpf: CpfRunner, tmp_path: Path) -> None:
    """The reaper marks the run interrupted, then dies before stopping the step's group:
    the group is found again from its record, and stopped before the step runs again."""
    wf = _workflow(tmp_path)
    folder = tmp_path / "run"
    folder.mkdir()
    run_id = uuid.uuid4().hex
    executor = _executor(cpf, wf, folder, run_id, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _log(folder), timeout=60, interval=0.01, what="work to start")
        pgid = int(_log(folder)[0].split()[1])
        wait_for(lambda: len(group_alive(pgid)) == 2, timeout=30, what="the locked sleep")
        # Without its guard (core.process) the executor's death leaves the group alive,
        # as if the guard had been killed by a stray signal before the executor died.
        kill_unguarded(executor)
        time.sleep(0.3)
        assert len(group_alive(pgid)) == 2
        # What the reaper commits before it stops anything.
        error = '{"code": "ERR_RUN_INTERRUPTED", "message": "gone", "step_id": "work"}'
        with _store(cpf) as db:
            db.execute(
                "UPDATE runs SET status = 'failed', error = ?, version = version + 1"
                " WHERE run_id = ?",
                (error, run_id),
            )
            db.execute(
                "UPDATE step_attempts SET status = 'failed', error_code = 'ERR_RUN_INTERRUPTED'"
                " WHERE run_id = ? AND status = 'running'",
                (run_id,),
            )
        assert group_alive(pgid), "the grandchild should still hold the lock"
        # The new copy would wait 60 s: stop it once it has shown whether it overlapped.
        retry = subprocess.Popen(
            [cpf.exe, "retry", "--run-id", run_id],
            cwd=folder,
            env=cpf.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: len(_log(folder)) >= 2, timeout=60, what="the retried copy")
            assert group_alive(pgid) == []
            assert not [line for line in _log(folder) if line.startswith("overlap")], _log(folder)
        finally:
            retry.kill()
            retry.wait()
    finally:
        if executor.poll() is None:
            executor.kill()
            executor.wait()
        _kill_everything(run_id)


def test_retry_refuses_while_a_group_lives_on_another_host(
    cpf: CpfRunner, write_workflow, workdir: Path
) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: remote
          inputs: {type: object}
          steps:
            - id: flaky
              kind: cli
              command: echo ran >> ran.log; test -f fixed
        """
    )
    run_id = cpf.ok("run", "-f", str(path), exit_code=30)["run_id"]
    with _store(cpf) as db:
        (proc,) = db.execute(
            "SELECT proc FROM step_attempts WHERE run_id = ?", (run_id,)
        ).fetchone()
        _host, pgid, start, _instance = proc.split(":")
        assert int(pgid) > 1 and start.isdigit()
        # As if the step had been interrupted on another machine.
        db.execute(
            "UPDATE step_attempts SET proc = ?, error_code = 'ERR_RUN_INTERRUPTED'"
            " WHERE run_id = ?",
            (f"elsewhere.invalid:{pgid}:{start}:elsewhere-instance", run_id),
        )
    (workdir / "fixed").touch()
    env = cpf.ok("retry", "--run-id", run_id, exit_code=20)
    assert env["error"]["code"] == "ERR_RUN_NOT_WAITING"
    assert "elsewhere.invalid" in env["error"]["message"]
    assert "\n" not in env["error"]["message"]
    assert (workdir / "ran.log").read_text() == "ran\n"  # the step did not run again
    assert cpf.status(run_id)["status"] == "failed"


def test_engine_retry_stops_the_failed_attempts_leftovers(cpf: CpfRunner, tmp_path: Path) -> None:
    """`retry: max_attempts` in the workflow: attempt 1 fails leaving a background child
    that holds the lock; attempt 2 starts only once it is gone."""
    wf = _workflow(tmp_path, mode="leave-once", attempts=2)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "signal.used").touch()
    env = cpf.ok("run", "-f", str(wf), cwd=folder)
    assert env["status"] == "completed"
    lines = _log(folder)
    assert [line.split()[0] for line in lines] == ["start", "start", "end"], lines
    assert group_alive(int(lines[0].split()[1])) == []
