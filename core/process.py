"""Run one command in its own process group, streaming and capping its output.

POSIX only. One call = one child started with `start_new_session=True`, so the child
and everything it spawns share a process group that can be signalled as a whole
(checkpointflow killed only the direct child on timeout; grandchildren survived).

Crash safety: the child is first a tiny `sh` that waits on a pipe (its stdin) before
it becomes the command. `on_start(pid)` runs in that window, so the caller can commit
the process group to the store before the command can do anything; a caller that dies
first closes the pipe and the command never runs. Before the command is released its
group is also registered with the guard: one small `sh` per executor process, in a
session of its own, that reads group ids from a pipe and, when that pipe reaches EOF
(this process died, however), SIGKILLs every group still registered. So the whole
group of a running step (background children too) dies with its executor even if
nothing reads the run again, for the price of two short pipe writes per step (a
`setpriv --pdeathsig` exec cost ~1.5 ms a step and killed only the direct child). A
group leaves the guard when its leader exits, before the leader is reaped, so a
reused pgid is never killed; what the leader left running is stopped through the
recorded group by whoever notices the dead executor (core.liveness).

Both pipes are read in the calling thread with a poll selector, 64 KiB at a time, so
there is no thread per step and a trivial command costs little more than fork/exec.
The direct child's exit is watched through a pidfd (Linux >= 5.3) so a background
grandchild that keeps a pipe open cannot make us hang; elsewhere we poll.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import math
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

DEFAULT_MAX_OUTPUT_BYTES = 10 * 1024 * 1024
SYSTEM_SHELL = "/bin/sh"

_READ_SIZE = 64 * 1024
# How long we keep reading after the direct child exited, for output still in flight;
# a background grandchild holding the pipe must not keep the step open forever.
_LINGER = 0.3
# Granularity for what cannot be waited on: the cancel Event, a dying process group,
# and the child's exit where pidfd_open is missing.
_POLL = 0.05
_TRUNCATION_MARKER = "\n[cpf: output truncated at {} bytes; further output discarded]\n"

_PWSH_NAMES = ("pwsh", "pwsh.exe", "powershell", "powershell.exe")

# What the child runs first: wait for one line on stdin (a pipe from us: "go" once the
# caller has recorded the group), then become the command, with stdin from /dev/null.
# EOF instead of a line (we died, or on_start failed) ends it before the command runs.
_HOLD_LINE = "IFS= read -r _ || exit 125; exec </dev/null"
_HOLD_SCRIPT = 'IFS= read -r _ || exit 125; exec "$@" </dev/null'
_POSIX_SHELLS = frozenset({"sh", "bash", "dash"})


def _held(argv: list[str]) -> list[str]:
    """The argv that waits for the executor's "go", then runs `argv`. A shell script
    (`sh -c SCRIPT`, what most steps are) runs in the holding shell itself, after the hold
    line: one exec fewer per step (~1 ms). Anything else is exec'd by the hold."""
    if len(argv) == 3 and argv[1] == "-c" and os.path.basename(argv[0]) in _POSIX_SHELLS:
        return [argv[0], "-c", f"{_HOLD_LINE}\n{argv[2]}"]
    return [SYSTEM_SHELL, "-c", _HOLD_SCRIPT, "cpf-step", *argv]


_HELD_EXIT = 125

Batch = list[tuple[str, str]]


class ShellError(ValueError):
    """The `shell` of a cli step is not one we know how to run."""


@dataclass
class ProcessResult:
    exit_code: int  # negative signal number when killed by a signal (like Popen)
    timed_out: bool
    cancelled: bool
    stdout: str  # kept stdout text (decoded, capped)
    stderr: str
    truncated: bool
    bytes_out: int  # total bytes the process wrote (stdout+stderr), kept or not
    pid: int


def build_argv(command: str | list[str], shell: str | None) -> list[str]:
    """The argv that runs `command` with `shell`, following checkpointflow's shell rules.

    A list is joined with " && ". Shell names compare case-insensitively and an empty
    name means the system shell, as in checkpointflow.
    """
    cmd = " && ".join(command) if isinstance(command, list) else command
    if not shell:
        return [SYSTEM_SHELL, "-c", cmd]
    name = shell.lower()
    if name in ("bash", "sh"):
        # checkpointflow silently falls back to the system shell when the binary is missing.
        return [shutil.which(name) or SYSTEM_SHELL, "-c", cmd]
    if name in _PWSH_NAMES:
        exe = "pwsh" if name.startswith("pwsh") else "powershell"
        return [shutil.which(exe) or exe, "-NoProfile", "-NonInteractive", "-Command", cmd]
    if name in ("cmd", "cmd.exe"):
        return [SYSTEM_SHELL, "-c", cmd]  # "the system shell" on POSIX
    raise ShellError(f"unknown shell '{shell}'")


class _Stream:
    __slots__ = ("decoder", "name", "parts")

    def __init__(self, name: str) -> None:
        self.name = name
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.parts: list[str] = []


class _Output:
    """Decoding, the output cap, and batching for on_output."""

    def __init__(
        self,
        on_output: Callable[[Batch], None] | None,
        max_output_bytes: int,
        flush_interval: float,
    ) -> None:
        self.on_output = on_output
        self.max_output_bytes = max(0, max_output_bytes)
        self.flush_interval = flush_interval
        self.kept = 0
        self.bytes_out = 0
        self.truncated = False
        # [stream name, text pieces]; pieces are joined at flush time, not per read.
        self.pending: list[tuple[str, list[str]]] = []
        self.last_flush = -math.inf  # so the first output is delivered at once

    def feed(self, stream: _Stream, data: bytes) -> None:
        self.bytes_out += len(data)
        if self.truncated:
            return  # keep draining so the writer never blocks on a full pipe
        room = self.max_output_bytes - self.kept
        if len(data) <= room:
            self.kept += len(data)
            self._emit(stream, stream.decoder.decode(data))
            return
        cut = _utf8_boundary(data, room)
        self.kept += cut
        self.truncated = True
        text = stream.decoder.decode(data[:cut], final=True)
        self._emit(stream, text + _TRUNCATION_MARKER.format(self.max_output_bytes))

    def finish(self, streams: list[_Stream]) -> None:
        for stream in streams:  # an incomplete sequence at EOF becomes U+FFFD
            self._emit(stream, stream.decoder.decode(b"", final=True))
        self.flush(math.inf)

    def _emit(self, stream: _Stream, text: str) -> None:
        if not text:
            return
        stream.parts.append(text)
        if self.on_output is None:
            return
        if self.pending and self.pending[-1][0] == stream.name:
            self.pending[-1][1].append(text)
        else:
            self.pending.append((stream.name, [text]))

    def flush_due(self) -> float:
        """Monotonic time at which pending output must be delivered (inf if none)."""
        return self.last_flush + self.flush_interval if self.pending else math.inf

    def flush(self, now: float) -> None:
        if not self.pending or self.on_output is None:
            return
        batch = [(name, "".join(parts)) for name, parts in self.pending]
        self.pending = []
        self.last_flush = now
        self.on_output(batch)


def _utf8_boundary(data: bytes, cut: int) -> int:
    """Move `cut` back to the start of the UTF-8 sequence it would split, if any."""
    i = cut
    while i > 0 and cut - i < 3 and i < len(data) and data[i] & 0xC0 == 0x80:
        i -= 1
    return i if i < cut and data[i] >= 0xC0 else cut


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg also finds zombies nobody has reaped yet (a lazy init in containers);
    # they are dead already, so look at /proc where it exists.
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _check_program(program: str, cwd: str | None, env: Mapping[str, str] | None) -> None:
    """Raise the OSError Popen would raise for a missing or non-executable program:
    the child execs it only after the hold, where it could only exit 127."""
    if cwd is not None and not os.path.isdir(cwd):
        return  # Popen's chdir reports this one
    if os.path.dirname(program):
        candidates = [os.path.join(cwd, program) if cwd else program]
    else:
        candidates = [os.path.join(d, program) for d in os.get_exec_path(env)]
    found = False
    for path in candidates:
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return
            found = True
    code = errno.EACCES if found else errno.ENOENT
    raise (PermissionError if found else FileNotFoundError)(code, os.strerror(code), program)


# The guard's script. It sleeps on fd 3, a pipe nothing is ever written to, until EOF:
# this process is gone. Only then does it read its stdin, the log of group ids ("+pgid"
# registers one, "-pgid" releases it), and SIGKILL each group left. So a step costs two
# writes into a pipe buffer and wakes nobody. It ignores the signals a step may send
# around (`kill 0` cannot reach it anyway: it has a session of its own).
_GUARD_SCRIPT = """\
trap '' HUP INT TERM
cd /
IFS= read -r _ <&3
g=' '
while IFS= read -r l; do
  case $l in
    +*) g="$g${l#+} " ;;
    -*) case $g in *" ${l#-} "*) g="${g%% ${l#-} *} ${g#* ${l#-} }" ;; esac ;;
  esac
done
for p in $g; do kill -KILL -"$p"; done 2>/dev/null
"""
# The log pipe is made this big where the OS lets us (Linux: 1 MiB, ~70,000 steps);
# when it is full, a fresh guard takes over with the groups that are still running.
_GUARD_LOG_BYTES = 1 << 20


class _Guard:
    """This process's guard (see the module doc): started on first use, and again if
    it died or its log is full (then told every group still registered). A forked child
    of this process starts its own."""

    def __init__(self) -> None:
        self._forget()
        if hasattr(os, "register_at_fork"):  # POSIX (the module imports elsewhere too)
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # In a forked child: close the parent's ends, so its guard sees EOF when it dies.
        for fd in (getattr(self, "_log", -1), getattr(self, "_life", -1)):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lock = threading.Lock()
        self._pid = 0
        self._log = self._life = -1
        self._groups: set[int] = set()

    def hold(self, pgid: int) -> int:
        """Register `pgid`; return the guard's pid (see `revive`). Raises OSError when
        no guard can be started."""
        with self._lock:
            self._groups.add(pgid)
            if not self._pid or not self._send(f"+{pgid}\n"):
                self._restart()
            return self._pid

    def revive(self, pid: int) -> int:
        """If guard `pid` is still ours and has died (a stray kill), start another,
        which learns every group still registered. Returns the current guard's pid."""
        with self._lock:
            if pid == self._pid and _child_exited(pid):
                with contextlib.suppress(OSError):  # next hold tries again, or reports
                    self._restart()
            return self._pid

    def release(self, pgid: int) -> None:
        with self._lock:
            if pgid not in self._groups:
                return
            self._groups.discard(pgid)
            if not self._send(f"-{pgid}\n"):
                # A guard that cannot be told would keep a stale id: replace it.
                with contextlib.suppress(OSError):
                    self._restart()

    def _send(self, line: str) -> bool:
        data = line.encode()
        try:
            return os.write(self._log, data) == len(data)  # < PIPE_BUF: all or nothing
        except OSError:  # full (EAGAIN), or the guard is gone (EPIPE)
            return False

    def _restart(self) -> None:
        if self._pid:
            # Killed before its pipes close: alive, it would take that for our death.
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            os.close(self._log)
            os.close(self._life)
            self._pid, self._log, self._life = 0, -1, -1
        # All four non-inheritable, and above the fds the guard gets (0-3) so that no
        # file action below clobbers another's source (an executor with 0-2 closed).
        import fcntl

        log_r, log_w, life_r, life_w = (_above_3(fd) for fd in (*os.pipe(), *os.pipe()))
        try:
            if hasattr(fcntl, "F_SETPIPE_SZ"):
                with contextlib.suppress(OSError):
                    fcntl.fcntl(log_w, fcntl.F_SETPIPE_SZ, _GUARD_LOG_BYTES)
            self._pid = os.posix_spawn(
                SYSTEM_SHELL,
                [SYSTEM_SHELL, "-c", _GUARD_SCRIPT, "cpf-guard"],
                {"LC_ALL": "C"},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, log_r, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                    (os.POSIX_SPAWN_DUP2, life_r, 3),
                ],
                setsid=True,
            )
        except BaseException:
            os.close(log_w)
            os.close(life_w)
            raise
        finally:
            os.close(log_r)
            os.close(life_r)
        os.set_blocking(log_w, False)
        self._log, self._life = log_w, life_w
        for group in sorted(self._groups):  # a fresh pipe holds thousands of these
            if not self._send(f"+{group}\n"):
                raise OSError(errno.EPIPE, "the step guard does not take its log")


def _child_exited(pid: int) -> bool:
    """Whether our child `pid` has exited (not reaped here where waitid exists)."""
    try:
        if hasattr(os, "waitid"):
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def _above_3(fd: int) -> int:
    if fd > 3:
        return fd
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 4)
    os.close(fd)
    return high


_guard = _Guard()
_GUARD_DIED = object()  # selector data of the guard's pidfd


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the direct child has exited; if so it is reaped. Its group leaves the
    guard first, while the unreaped child still holds the number, so the guard can never
    kill a group that reused it."""
    if proc.returncode is None:
        waitid = getattr(os, "waitid", None)
        if waitid is None:  # macOS: reaped first, a tiny window
            if proc.poll() is None:
                return False
        else:
            with contextlib.suppress(ChildProcessError):  # reaped already
                flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
                if waitid(os.P_PID, proc.pid, flags) is None:
                    return False
    _guard.release(proc.pid)
    return proc.poll() is not None


def _open_pidfd(pid: int) -> int | None:
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return pidfd_open(pid)
    except OSError:  # old kernel, or a sandbox that forbids it
        return None


def run_process(
    argv: list[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_output: Callable[[Batch], None] | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    flush_interval: float = 0.2,
    kill_grace: float = 3.0,
    on_start: Callable[[int], None] | None = None,
    on_running: Callable[[], None] | None = None,
) -> ProcessResult:
    """Run `argv` in a new process group and wait for it, streaming its output.

    `env` is the complete environment (None inherits ours). `timeout` <= 0 or None means
    no limit. On timeout or cancel the group gets SIGTERM, then SIGKILL after
    `kill_grace` seconds unless every member is gone by then. Failure to start the
    process (missing executable or cwd) raises OSError. `on_start(pid)` is called
    while the child is held before the command (the pid is the group id); the command
    runs once it returns. `on_running()` is called right after the command is released,
    for work that can overlap with it. If a callback raises, the group is killed and the
    exception propagates.
    """
    _check_program(argv[0], cwd, env)
    proc = subprocess.Popen(
        _held(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    pgid = proc.pid  # session leader => its pid is the group id
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out = _Output(on_output, max_output_bytes, flush_interval)
    streams = [_Stream("stdout"), _Stream("stderr")]
    sel = selectors.PollSelector()  # no epoll fd to create for a short-lived child
    pidfd: int | None = None
    guard_fd: int | None = None
    timed_out = cancelled = False
    try:
        sel.register(proc.stdout.fileno(), selectors.EVENT_READ, streams[0])
        sel.register(proc.stderr.fileno(), selectors.EVENT_READ, streams[1])
        open_pipes = 2
        pidfd = _open_pidfd(proc.pid)
        if pidfd is not None:
            sel.register(pidfd, selectors.EVENT_READ, None)
        guard = _guard.hold(pgid)
        # A guard that dies while the command runs is replaced at once (its pidfd says
        # so); without pidfds it is checked at each wake, every _POLL at most.
        guard_fd = _open_pidfd(guard) if pidfd is not None else None
        if guard_fd is not None:
            sel.register(guard_fd, selectors.EVENT_READ, _GUARD_DIED)
        if on_start is not None:
            on_start(proc.pid)
        with contextlib.suppress(BrokenPipeError):  # it died while held: seen below
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        proc.stdin.close()
        if on_running is not None:
            on_running()

        start = time.monotonic()
        deadline = start + timeout if timeout is not None and timeout > 0 else math.inf
        exited_at = math.inf  # when the direct child was reaped
        term_at = math.inf  # when SIGTERM went to the group
        kill_sent = False
        while True:
            now = time.monotonic()
            if exited_at == math.inf and _exited(proc):
                exited_at = now
                if guard_fd is not None:  # no longer its business
                    sel.unregister(guard_fd)
                    os.close(guard_fd)
                    guard_fd = None
            elif exited_at == math.inf and pidfd is None:
                guard = _guard.revive(guard)
            running = exited_at == math.inf
            if running and term_at == math.inf:
                if cancel is not None and cancel.is_set():
                    cancelled = True
                elif now >= deadline:
                    timed_out = True
                if cancelled or timed_out:
                    _signal_group(pgid, signal.SIGTERM)
                    term_at = now
            killing = term_at != math.inf and not kill_sent
            if killing and now >= term_at + kill_grace:
                _signal_group(pgid, signal.SIGKILL)
                kill_sent = killing = False
            # After a kill, the rest of the group gets its grace period too.
            if (
                not running
                and (open_pipes == 0 or now >= exited_at + _LINGER)
                and (not killing or not _group_alive(pgid))
            ):
                break

            # Sleep until the next thing we must act on, or until a pipe/pidfd is ready.
            wake = out.flush_due()
            if running:
                if term_at == math.inf:
                    wake = min(wake, deadline)
                    if cancel is not None:
                        wake = min(wake, now + _POLL)
                if pidfd is None:
                    wake = min(wake, now + _POLL)
            elif now < exited_at + _LINGER:
                wake = min(wake, exited_at + _LINGER)
            if killing:
                wake = min(wake, term_at + kill_grace)
                if not running:
                    wake = min(wake, now + _POLL)  # watch the group die
            wait = None if wake == math.inf else max(0.0, wake - now)

            if not sel.get_map():  # both pipes closed, and no pidfd or the child is gone
                if running:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(wait)  # polls finely, unlike a fixed sleep
                else:
                    time.sleep(wait or 0.0)  # bounded by _POLL: waiting for the group
                continue
            for key, _ in sel.select(wait):
                if key.data is None:  # pidfd: the child exited; reaped at the loop top
                    sel.unregister(key.fd)
                    continue
                if key.data is _GUARD_DIED:
                    sel.unregister(key.fd)
                    os.close(key.fd)
                    guard = _guard.revive(guard)
                    guard_fd = _open_pidfd(guard)
                    if guard_fd is not None:
                        sel.register(guard_fd, selectors.EVENT_READ, _GUARD_DIED)
                    continue
                data = os.read(key.fd, _READ_SIZE)
                if data:
                    out.feed(key.data, data)
                else:
                    sel.unregister(key.fd)
                    open_pipes -= 1
            if out.pending:
                now = time.monotonic()
                if now >= out.flush_due():
                    out.flush(now)
        out.finish(streams)
    except BaseException:
        if proc.returncode is None:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait()
        raise
    finally:
        _guard.release(pgid)  # (normally done in _exited)
        sel.close()
        for fd in (pidfd, guard_fd):
            if fd is not None:
                os.close(fd)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()

    return ProcessResult(
        exit_code=proc.returncode,
        timed_out=timed_out,
        cancelled=cancelled,
        stdout="".join(streams[0].parts),
        stderr="".join(streams[1].parts),
        truncated=out.truncated,
        bytes_out=out.bytes_out,
        pid=proc.pid,
    )
