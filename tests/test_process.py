"""core.process with real subprocesses.

Time bounds are deliberately loose (a loaded 2-core CI box): the tests assert behaviour,
and use handshakes instead of sleeps wherever ordering matters.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import pid_gone, wait_for

from core.process import (
    SYSTEM_SHELL,
    ProcessResult,
    ShellError,
    build_argv,
    run_process,
)

PY = sys.executable


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def group_members(pgid: int) -> list[str]:
    """States of the processes of a group, from /proc ("R", "S", "Z", ...)."""
    states = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid:
            states.append(fields[0].decode())
    return states


def wait_group_dead(pgid: int, within: float = 20.0) -> None:
    """Fail unless the process group is gone within `within` seconds.

    Zombies count as dead: the container's init may reap orphans lazily, and until
    then os.killpg(pgid, 0) still finds them.
    """
    end = time.monotonic() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if all(state in ("Z", "X") for state in group_members(pgid)):
            return
        if time.monotonic() > end:
            pytest.fail(f"process group {pgid} still alive: {group_members(pgid)}")
        time.sleep(0.05)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


class Recorder:
    """An on_output callback that remembers every batch."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, str]]] = []

    def __call__(self, batch: list[tuple[str, str]]) -> None:
        self.batches.append(batch)

    def text(self, stream: str) -> str:
        return "".join(t for b in self.batches for s, t in b if s == stream)


# --- build_argv -------------------------------------------------------------------


def test_build_argv_default_is_system_shell() -> None:
    assert build_argv("echo hi", None) == [SYSTEM_SHELL, "-c", "echo hi"]
    assert build_argv("echo hi", "") == [SYSTEM_SHELL, "-c", "echo hi"]


def test_build_argv_joins_lists_with_and() -> None:
    assert build_argv(["a", "b c", "d"], None) == [SYSTEM_SHELL, "-c", "a && b c && d"]


@pytest.mark.parametrize("name", ["bash", "sh", "BASH", "Sh"])
def test_build_argv_bash_and_sh_use_path(name: str) -> None:
    expected = shutil.which(name.lower()) or SYSTEM_SHELL
    assert build_argv("x", name) == [expected, "-c", "x"]


def test_build_argv_missing_shell_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert build_argv("x", "bash") == [SYSTEM_SHELL, "-c", "x"]


@pytest.mark.parametrize(
    ("name", "exe"),
    [
        ("pwsh", "pwsh"),
        ("pwsh.exe", "pwsh"),
        ("powershell", "powershell"),
        ("PowerShell.exe", "powershell"),
    ],
)
def test_build_argv_powershell(name: str, exe: str) -> None:
    argv = build_argv("Get-Date", name)
    assert Path(argv[0]).name == exe
    assert argv[1:] == ["-NoProfile", "-NonInteractive", "-Command", "Get-Date"]


@pytest.mark.parametrize("name", ["cmd", "cmd.exe", "CMD"])
def test_build_argv_cmd_is_system_shell(name: str) -> None:
    assert build_argv("x", name) == [SYSTEM_SHELL, "-c", "x"]


def test_build_argv_unknown_shell() -> None:
    with pytest.raises(ShellError, match="unknown shell 'fish'"):
        build_argv("x", "fish")
    assert issubclass(ShellError, ValueError)


def test_build_argv_runs_with_bash() -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash not installed")
    r = run_process(build_argv(["x=1", 'echo "${BASH_VERSION:+bash} $x"'], "bash"))
    assert (r.exit_code, r.stdout) == (0, "bash 1\n")


# --- exit codes and capture ---------------------------------------------------------


def test_true_succeeds_with_no_output() -> None:
    r = run_process(sh("true"))
    assert r == ProcessResult(
        exit_code=0,
        timed_out=False,
        cancelled=False,
        stdout="",
        stderr="",
        truncated=False,
        bytes_out=0,
        pid=r.pid,
    )
    assert r.pid > 0


@pytest.mark.parametrize("code", [1, 3, 127, 255])
def test_exit_codes(code: int) -> None:
    assert run_process(sh(f"exit {code}")).exit_code == code


def test_killed_by_signal_gives_negative_code() -> None:
    r = run_process(sh("kill -KILL $$"))
    assert r.exit_code == -signal.SIGKILL
    assert not r.timed_out and not r.cancelled


def test_stdout_and_stderr_are_separate() -> None:
    r = run_process(sh("echo out; echo err >&2; printf more"))
    assert r.stdout == "out\nmore"
    assert r.stderr == "err\n"
    assert r.bytes_out == len("out\nerr\nmore")


def test_stdin_is_devnull() -> None:
    r = run_process(sh("cat; echo rc=$?"), timeout=30)
    assert (r.stdout, r.timed_out) == ("rc=0\n", False)


def test_missing_executable_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_process([str(tmp_path / "nope")])


def test_missing_cwd_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_process(sh("true"), cwd=str(tmp_path / "nope"))


def test_cwd(tmp_path: Path) -> None:
    r = run_process(sh("pwd -P"), cwd=str(tmp_path))
    assert r.stdout.strip() == str(tmp_path.resolve())


def test_env_is_the_whole_environment() -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CPF_TEST_VAR": "a b $c"}
    r = run_process(sh('echo "$CPF_TEST_VAR|${HOME-unset}"'), env=env)
    assert r.stdout == "a b $c|unset\n"


def test_env_none_inherits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPF_TEST_INHERITED", "yes")
    assert run_process(sh('echo "$CPF_TEST_INHERITED"')).stdout == "yes\n"


def test_on_start_gets_pid_of_new_process_group() -> None:
    seen: dict[str, int] = {}

    def on_start(pid: int) -> None:
        seen["pid"] = pid
        seen["pgid"] = os.getpgid(pid)
        seen["sid"] = os.getsid(pid)

    r = run_process(sh("echo $$"), on_start=on_start)
    assert seen["pid"] == r.pid == int(r.stdout)
    assert seen["pgid"] == seen["sid"] == r.pid  # own session => own group
    assert os.getpgid(0) != r.pid


def test_missing_program_is_found_missing_on_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_process(["cpf-no-such-program-anywhere"], env={"PATH": str(tmp_path)})


def test_program_without_execute_permission_raises(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(PermissionError):
        run_process([str(script)])


def test_relative_program_is_found_in_cwd(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    assert run_process(["./script"], cwd=str(tmp_path)).stdout == "hi\n"


# --- held start: the caller records the group before the command runs ------------------


def test_command_is_held_until_on_start_returns(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    def on_start(pid: int) -> None:
        assert os.getpgid(pid) == pid  # the group exists already ...
        time.sleep(0.3)
        assert not marker.exists()  # ... but its command has not run

    r = run_process(sh(f"touch '{marker}'; echo $$"), on_start=on_start)
    assert r.exit_code == 0 and marker.exists()
    assert int(r.stdout) == r.pid  # the held process became the command: same pid


def test_on_start_failure_means_the_command_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pids: list[int] = []

    def on_start(pid: int) -> None:
        pids.append(pid)
        raise RuntimeError("could not record")

    with pytest.raises(RuntimeError, match="could not record"):
        run_process(sh(f"touch '{marker}'"), on_start=on_start)
    wait_group_dead(pids[0])
    assert not marker.exists()


def _kill_caller(caller: subprocess.Popen[str], pid: int, within: float = 20.0) -> None:
    """kill -9 the calling process; its step's group `pid` must die within `within` s."""
    caller.kill()
    caller.wait()
    wait_group_dead(pid, within=within)


def _caller(body: str, tmp_path: Path) -> subprocess.Popen[str]:
    """A separate Python process that calls run_process; it prints the child's pid."""
    script = tmp_path / "caller.py"
    script.write_text(
        "import sys, threading, time\n"
        "from core.process import run_process\n"
        "def show(pid):\n"
        "    print(pid, flush=True)\n" + textwrap.dedent(body)
    )
    return subprocess.Popen(
        [PY, str(script)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent
    )


def test_a_caller_killed_while_the_command_is_held_never_runs_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    caller = _caller(
        f"""
        def hold(pid):
            show(pid)
            time.sleep(60)
        run_process(["/bin/sh", "-c", "touch '{marker}'"], on_start=hold)
        """,
        tmp_path,
    )
    assert caller.stdout is not None
    pid = int(caller.stdout.readline())
    try:
        _kill_caller(caller, pid)
        assert not marker.exists()
    finally:
        kill_group(pid)
        caller.stdout.close()


def _read_pid(path: Path) -> int:
    return int(wait_for(lambda: path.exists() and path.read_text().strip(), what=str(path)))


@pytest.mark.parametrize("where", ["main", "thread"])
def test_the_whole_group_dies_with_its_caller(tmp_path: Path, where: str) -> None:
    """SIGKILL to the caller: the guard kills the step's group, its direct child and a
    background child alike, though nobody reaps or signals anything. The step's own
    `kill -TERM 0` (TERM ignored) cannot take the guard down with it."""
    bg = tmp_path / "bg.pid"
    script = f"trap '' TERM; kill -TERM 0; sleep 60 & echo $! > {bg}; exec sleep 60"
    call = f"run_process(['/bin/sh', '-c', {script!r}], on_start=show)"
    if where == "thread":
        call = f"worker = threading.Thread(target=lambda: {call})\nworker.start()\nworker.join()"
    caller = _caller(call + "\n", tmp_path)
    assert caller.stdout is not None
    pid = int(caller.stdout.readline())
    try:
        child = _read_pid(bg)
        assert not pid_gone(pid) and not pid_gone(child)
        _kill_caller(caller, pid, within=10)
        assert pid_gone(child)
    finally:
        kill_group(pid)
        caller.stdout.close()


def test_a_dead_guard_is_replaced_before_the_next_command(tmp_path: Path) -> None:
    caller = _caller(
        """
        import core.process as cp, os, signal
        run_process(["true"])
        assert cp._guard._pid > 0
        os.kill(cp._guard._pid, signal.SIGKILL)  # lost, as by a stray kill
        run_process(["sleep", "60"], on_start=show)
        """,
        tmp_path,
    )
    assert caller.stdout is not None
    pid = int(caller.stdout.readline())
    try:
        time.sleep(0.2)
        assert not pid_gone(pid)
        _kill_caller(caller, pid, within=10)
    finally:
        kill_group(pid)
        caller.stdout.close()


def test_a_guard_whose_log_is_full_is_replaced(tmp_path: Path) -> None:
    """The guard's log pipe fills up after many steps (a page here: ~300 steps); a fresh
    guard takes over with the groups still running, and still kills them."""
    caller = _caller(
        """
        import core.process as cp
        cp._GUARD_LOG_BYTES = 4096
        guards = set()
        for _ in range(400):
            run_process(["true"])
            guards.add(cp._guard._pid)
        assert len(guards) > 1, guards
        run_process(["sleep", "60"], on_start=show)
        """,
        tmp_path,
    )
    assert caller.stdout is not None
    pid = int(caller.stdout.readline())
    try:
        _kill_caller(caller, pid, within=10)
    finally:
        kill_group(pid)
        caller.stdout.close()


def test_a_guard_killed_while_a_step_runs_is_replaced_at_once(tmp_path: Path) -> None:
    caller = _caller(
        """
        import core.process as cp
        def tell(pid):
            print(pid, cp._guard._pid, flush=True)
        run_process(["sleep", "60"], on_start=tell)
        """,
        tmp_path,
    )
    assert caller.stdout is not None
    pid, guard = (int(x) for x in caller.stdout.readline().split())
    try:
        os.kill(guard, signal.SIGKILL)
        wait_for(lambda: pid_gone(guard), timeout=10, what="the guard to die")
        time.sleep(0.3)  # the step's loop starts another guard meanwhile
        assert not pid_gone(pid)
        _kill_caller(caller, pid, within=10)
    finally:
        kill_group(pid)
        caller.stdout.close()


def test_the_guard_leaves_with_its_caller_and_spares_finished_steps(tmp_path: Path) -> None:
    """A finished step's background child is left alone (the recorded group is the
    reaper's business, not the guard's), and the guard does not outlive its caller."""
    caller = _caller(
        """
        import core.process as cp
        r = run_process(["/bin/sh", "-c", "sleep 60 & echo $!"])
        print(int(r.stdout), cp._guard._pid, flush=True)
        """,
        tmp_path,
    )
    assert caller.stdout is not None
    left, guard = (int(x) for x in caller.stdout.readline().split())
    try:
        assert caller.wait(timeout=30) == 0
        wait_for(lambda: pid_gone(guard), timeout=10, what="the guard to leave")
        time.sleep(0.2)
        assert not pid_gone(left)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(left, signal.SIGKILL)
        caller.stdout.close()


# --- decoding ------------------------------------------------------------------------


def test_invalid_utf8_is_replaced() -> None:
    r = run_process(sh(r"printf 'a\377\376b\n'; printf '\303' >&2"))
    assert r.stdout == "a\ufffd\ufffdb\n"
    assert r.stderr == "\ufffd"  # incomplete sequence at EOF
    assert r.bytes_out == 6


def test_multibyte_char_split_across_reads() -> None:
    code = (
        "import os, time\n"
        "e = 'é€😀'.encode()\n"
        "for i in range(len(e)):\n"
        "    os.write(1, e[i:i + 1]); time.sleep(0.01)\n"
    )
    rec = Recorder()
    r = run_process(py(code), on_output=rec, flush_interval=0.0)
    assert r.stdout == "é€😀"
    assert rec.text("stdout") == "é€😀"
    assert "\ufffd" not in r.stdout


def test_long_single_line() -> None:
    size = 200 * 1024
    r = run_process(py(f"import sys; sys.stdout.write('x' * {size} + '\\n')"))
    assert r.exit_code == 0
    assert r.stdout == "x" * size + "\n"
    assert r.bytes_out == size + 1
    assert not r.truncated


def test_carriage_returns_are_kept() -> None:
    assert run_process(sh(r"printf 'a\r\nb\rc'")).stdout == "a\r\nb\rc"


# --- streaming ------------------------------------------------------------------------


def test_output_streams_while_process_runs(tmp_path: Path) -> None:
    """The child waits until the callback has seen its first line: no buffering to the end."""
    flag = tmp_path / "seen"
    script = (
        'echo first; i=0; while [ ! -e "$FLAG" ]; do '
        "sleep 0.05; i=$((i+1)); [ $i -gt 600 ] && exit 7; done; echo second"
    )
    batches: list[list[tuple[str, str]]] = []

    def on_output(batch: list[tuple[str, str]]) -> None:
        batches.append(batch)
        if any("first" in text for _, text in batch):
            flag.touch()

    env = {**os.environ, "FLAG": str(flag)}
    r = run_process(sh(script), env=env, on_output=on_output, timeout=120)
    assert r.exit_code == 0, "the first line did not reach on_output while the child ran"
    assert r.stdout == "first\nsecond\n"
    assert batches[0] == [("stdout", "first\n")]
    assert batches[-1][-1] == ("stdout", "second\n")


def test_periodic_lines_are_delivered_in_rate_limited_batches() -> None:
    arrivals: list[str] = []

    def on_output(batch: list[tuple[str, str]]) -> None:
        arrivals.append("".join(t for _, t in batch))

    script = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; sleep 0.05; done"
    start = time.monotonic()
    r = run_process(sh(script), on_output=on_output, flush_interval=0.1)
    elapsed = time.monotonic() - start
    assert r.exit_code == 0
    assert r.stdout == "".join(f"line{i}\n" for i in range(1, 11))
    assert "".join(arrivals) == r.stdout
    assert arrivals[0].startswith("line1\n")  # the first output is not held back
    # At most one delivery per flush interval, plus the immediate first and the final one.
    assert len(arrivals) <= elapsed / 0.1 + 2, (len(arrivals), elapsed)


def test_batches_merge_consecutive_pieces_of_a_stream() -> None:
    rec = Recorder()
    script = "for i in $(seq 1 2000); do echo out$i; done; echo err >&2"
    r = run_process(sh(script), on_output=rec, flush_interval=1000.0)
    assert r.exit_code == 0
    # With a long flush interval everything after the first delivery comes in one batch.
    assert len(rec.batches) <= 2
    for batch in rec.batches:
        assert batch, "empty batch delivered"
        for (s1, _), (s2, _) in itertools.pairwise(batch):
            assert s1 != s2, "consecutive pieces of one stream were not merged"
    assert rec.text("stdout") == r.stdout
    assert rec.text("stderr") == r.stderr == "err\n"


def test_no_output_means_no_callback() -> None:
    rec = Recorder()
    run_process(sh("true"), on_output=rec)
    assert rec.batches == []


def test_interleaved_streams_are_tagged() -> None:
    rec = Recorder()
    code = (
        "import os, time\n"
        "for i in range(3):\n"
        "    os.write(1, b'o%d ' % i); time.sleep(0.05)\n"
        "    os.write(2, b'e%d ' % i); time.sleep(0.05)\n"
    )
    r = run_process(py(code), on_output=rec, flush_interval=0.0)
    assert rec.text("stdout") == r.stdout == "o0 o1 o2 "
    assert rec.text("stderr") == r.stderr == "e0 e1 e2 "


def test_on_output_error_kills_the_group_and_propagates() -> None:
    pids: list[int] = []

    def boom(batch: list[tuple[str, str]]) -> None:
        raise RuntimeError("consumer failed")

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="consumer failed"):
        run_process(sh("sleep 100 & echo go; sleep 100"), on_output=boom, on_start=pids.append)
    assert time.monotonic() - start < 60
    wait_group_dead(pids[0])


# --- output cap -----------------------------------------------------------------------


def test_cap_truncates_with_marker_and_keeps_draining() -> None:
    rec = Recorder()
    # 5 MB, far beyond a pipe buffer: the child must not block once we stop keeping output.
    code = "import sys\nfor _ in range(5000): sys.stdout.write('y' * 999 + '\\n')\n"
    r = run_process(py(code), on_output=rec, max_output_bytes=4096, timeout=120)
    marker = "\n[cpf: output truncated at 4096 bytes; further output discarded]\n"
    assert r.exit_code == 0 and not r.timed_out
    assert r.truncated
    assert r.bytes_out == 5000 * 1000
    assert r.stdout.endswith(marker)
    assert r.stdout.count(marker) == 1
    assert len(r.stdout.encode()) == 4096 + len(marker)
    assert rec.text("stdout") == r.stdout


def test_cap_counts_both_streams_and_marks_the_overflowing_one(tmp_path: Path) -> None:
    # Each write waits until the previous one reached on_output, so the order of reads
    # (and so which stream overflows) is fixed.
    code = (
        "import os, sys, time\n"
        "def wait(name):\n"
        "    for _ in range(1200):\n"
        "        if os.path.exists(name): return\n"
        "        time.sleep(0.05)\n"
        "    sys.exit(7)\n"
        "os.write(1, b'a' * 1000); wait(sys.argv[1])\n"
        "os.write(2, b'b' * 1000); wait(sys.argv[2])\n"
        "os.write(1, b'c' * 1000)\n"
    )
    got_a, got_b = tmp_path / "a", tmp_path / "b"
    rec = Recorder()

    def on_output(batch: list[tuple[str, str]]) -> None:
        rec(batch)
        if rec.text("stdout").count("a") == 1000:
            got_a.touch()
        if "truncated" in rec.text("stderr"):
            got_b.touch()

    r = run_process(
        [PY, "-c", code, str(got_a), str(got_b)],
        max_output_bytes=1500,
        on_output=on_output,
        flush_interval=0.0,
        timeout=120,
    )
    assert r.exit_code == 0
    assert r.truncated
    assert r.bytes_out == 3000
    assert r.stdout == "a" * 1000
    marker = "\n[cpf: output truncated at 1500 bytes; further output discarded]\n"
    assert r.stderr == "b" * 500 + marker
    assert rec.text("stdout") == r.stdout and rec.text("stderr") == r.stderr


def test_output_at_exactly_the_cap_is_not_truncated() -> None:
    r = run_process(py("import os; os.write(1, b'z' * 2048)"), max_output_bytes=2048)
    assert not r.truncated
    assert r.stdout == "z" * 2048


def test_cap_does_not_split_a_utf8_character() -> None:
    # 1023 ASCII bytes then a 2-byte é: the cap at 1024 falls inside the é.
    r = run_process(
        py("import os; os.write(1, b'x' * 1023 + 'éé'.encode())"), max_output_bytes=1024
    )
    assert r.truncated
    assert r.stdout.startswith("x" * 1023 + "\n[cpf: output truncated")
    assert "\ufffd" not in r.stdout


# --- timeout and cancel -----------------------------------------------------------------


def test_timeout_kills_the_whole_group() -> None:
    pids: list[int] = []
    start = time.monotonic()
    r = run_process(sh("sleep 100 & sleep 100"), timeout=0.5, on_start=pids.append)
    assert time.monotonic() - start < 60
    assert r.timed_out and not r.cancelled
    assert r.exit_code == -signal.SIGTERM
    assert pids == [r.pid]
    wait_group_dead(r.pid)


def test_timeout_escalates_to_sigkill() -> None:
    # The shell and its sleep ignore SIGTERM (the disposition is inherited).
    start = time.monotonic()
    r = run_process(sh("trap '' TERM; sleep 100 & sleep 100"), timeout=0.3, kill_grace=0.5)
    assert time.monotonic() - start < 60
    assert r.timed_out
    assert r.exit_code == -signal.SIGKILL
    wait_group_dead(r.pid)


def test_grace_applies_to_group_members_outliving_the_leader() -> None:
    # The leader dies on SIGTERM; its background child ignores it and must get SIGKILL.
    script = "(trap '' TERM; sleep 100) & sleep 100"
    r = run_process(sh(script), timeout=0.3, kill_grace=0.5)
    assert r.timed_out
    assert r.exit_code == -signal.SIGTERM
    wait_group_dead(r.pid)


def test_waiting_out_the_grace_does_not_spin() -> None:
    # Leader dead, a TERM-ignoring child holds the pipes: we wait kill_grace, idly.
    cpu = time.process_time()
    r = run_process(sh("(trap '' TERM; sleep 100) & sleep 100"), timeout=0.2, kill_grace=2.0)
    assert r.timed_out
    assert time.process_time() - cpu < 1.0  # a busy loop would burn ~2 s of CPU
    wait_group_dead(r.pid)


def test_timeout_output_before_kill_is_kept() -> None:
    rec = Recorder()
    r = run_process(sh("echo started; sleep 100"), timeout=0.5, on_output=rec)
    assert r.timed_out
    assert r.stdout == "started\n"
    assert rec.text("stdout") == "started\n"


def test_timeout_after_child_closed_its_pipes() -> None:
    r = run_process(sh("exec >&- 2>&-; sleep 100"), timeout=0.5)
    assert r.timed_out
    wait_group_dead(r.pid)


@pytest.mark.parametrize("timeout", [None, 0, -1])
def test_no_timeout(timeout: float | None) -> None:
    r = run_process(sh("sleep 0.2; echo ok"), timeout=timeout)
    assert (r.exit_code, r.timed_out, r.stdout) == (0, False, "ok\n")


def test_fast_process_does_not_time_out() -> None:
    r = run_process(sh("echo ok"), timeout=60)
    assert (r.exit_code, r.timed_out) == (0, False)


def test_cancel_kills_the_group() -> None:
    cancel = threading.Event()

    def on_output(batch: list[tuple[str, str]]) -> None:
        if any("ready" in text for _, text in batch):
            cancel.set()  # from another thread would work the same way

    start = time.monotonic()
    r = run_process(sh("echo ready; sleep 100 & sleep 100"), cancel=cancel, on_output=on_output)
    assert time.monotonic() - start < 60
    assert r.cancelled and not r.timed_out
    assert r.exit_code == -signal.SIGTERM
    wait_group_dead(r.pid)


def test_cancel_from_another_thread() -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    try:
        r = run_process(sh("sleep 100"), cancel=cancel, timeout=120)
    finally:
        timer.cancel()
    assert r.cancelled and not r.timed_out
    wait_group_dead(r.pid)


def test_cancel_set_before_start() -> None:
    cancel = threading.Event()
    cancel.set()
    r = run_process(sh("sleep 100"), cancel=cancel)
    assert r.cancelled
    wait_group_dead(r.pid)


def test_unset_cancel_changes_nothing() -> None:
    r = run_process(sh("echo ok"), cancel=threading.Event())
    assert (r.exit_code, r.cancelled, r.stdout) == (0, False, "ok\n")


# --- background grandchildren -----------------------------------------------------------


def test_background_child_holding_the_pipe_does_not_block() -> None:
    start = time.monotonic()
    r = run_process(sh("sleep 100 & echo done"), timeout=120)
    try:
        assert time.monotonic() - start < 30
        assert (r.exit_code, r.timed_out, r.stdout) == (0, False, "done\n")
    finally:
        kill_group(r.pid)
    wait_group_dead(r.pid)


def test_output_written_right_before_exit_is_not_lost() -> None:
    code = "import os\nfor i in range(50): os.write(1, b'%d\\n' % i)\nos.write(2, b'bye')\n"
    for _ in range(5):
        r = run_process(py(code))
        assert r.stdout == "".join(f"{i}\n" for i in range(50))
        assert r.stderr == "bye"
