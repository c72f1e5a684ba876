"""Who executes a run, whether it still does, and the step process groups it may have
left behind.

Executors
---------
An executor is a `cpf` process driving a run. Its identity is a random id drawn once
per process (`executor_id`, uuid4 hex, in `runs.executor_id`): it depends neither on
the hostname nor on the pid namespace, so two containers called the same, or two pid
namespaces that reuse a number, never share one. For display and for a fast local
check the run also records `runs.executor` = "host:pid:start-ticks:host-instance".

The host instance (`host_id()`) names the kernel and pid namespace a pid belongs to:
/etc/machine-id, the boot id (/proc/sys/kernel/random/boot_id) and the inode of the
pid namespace (/proc/self/ns/pid). Only a reader with the same host instance may look
at the executor's pid (dead there => interrupted at once) or signal a step's group; a
hostname proves nothing (containers share them, and every container's init pid
namespace has the same inode, hence the boot id).

Leases in database time
-----------------------
Whoever hands a run to an executor (run, retry, resume, continue, an await timeout's
hand-off) grants it a lease in the same transaction: `runs.lease_expires_at`, computed
by the database (`clock_timestamp()` + LEASE_SECONDS on PostgreSQL, not `now()`, which
is the transaction's start; on SQLite the clock of this machine, the only one that
opens the file). The executor renews it every RENEW_SECONDS with a conditional UPDATE
that only succeeds while the lease has not expired, so an expired lease never comes
back, and a reader may act on "expired" without racing a renewal. A reader calls a run
interrupted only when the database says so (`lease_expires_at < clock` in SQL): no
process's clock is compared with another's, so a skewed clock neither kills a live run
nor keeps a dead one alive. A failed renewal is said on stderr and retried within a
second; past the fence, the executor stops (exit 60, ERR_PERSISTENCE).

Fencing
-------
A renewal that starts at monotonic time t0 and succeeds makes the lease end no
earlier than t0 + LEASE_SECONDS in real time (the database reads its clock after t0;
only clock *rates* matter, not offsets). The executor keeps that bound. If it has not
renewed by t0 + LEASE_SECONDS - FENCE_MARGIN it fences itself: a separate thread that
never touches the store kills the running steps' process groups, and the executor
makes no further store writes and stops. So by the time any reader may see the lease
expired, the old executor's steps are gone and it starts nothing more; `cpf retry`
(which needs the run failed, i.e. a compare-and-set that the old executor's next
write would lose) never overlaps with them. The margin (a third of the lease) covers
TERM, a grace and KILL of the groups. A write already waiting on the store when the
fence falls may still commit once the store answers, but only if nobody took the run
over meanwhile (a takeover changes the run's version first, and that write is a
compare-and-set on it); the executor then stops without starting another step.

Fencing needs a live executor. One killed with -9 (OOM, a crashed machine) cannot
fence: its step's direct child dies with it (PR_SET_PDEATHSIG) but grandchildren may
live on in the group. Hence the rule for step process groups below.

Step process groups
-------------------
A step's process group is recorded in `step_attempts.proc` as
"host:pgid:start-ticks:host-instance" (start ticks of the group leader) before the
step's command may run (see core.process). Groups an interrupted attempt left are
stopped only on the host instance that owns them: by the next `cpf` command there that
touches the run (status, retry, ...) or by `cpf tick` there, checked against the
identity so an unrelated group that reused the number is never signalled. Once a group
is known gone, its attempt's `pid` is cleared (`proc` stays for the record). `retry`
and `continue` elsewhere refuse (exit 20, naming the host) while any group of the run
is not known gone: after a lease expiry it was probably fenced, but an executor that
died without fencing may have left grandchildren that only its host can see.

Rows written before leases (no `lease_expires_at`, a 3-part identity) are judged as
they used to be: the pid on the same hostname, else the heartbeat's age.

Settings: `CPF_LEASE_SECONDS` (30) and `CPF_LEASE_RENEW_SECONDS` (5, at most a quarter
of the lease). Tests only: `CPF_TEST_HOST_ID` replaces the host instance,
`CPF_TEST_CLOCK_SKEW_SECONDS` shifts the clock `core.store.store.now_iso` reads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if 0 < value < 1e9 else default


# How long a lease lasts, how often it is renewed, and how long before its end an
# executor that could not renew stops its steps (tests shorten them through the env).
LEASE_SECONDS = _env_seconds("CPF_LEASE_SECONDS", 30.0)
RENEW_SECONDS = min(_env_seconds("CPF_LEASE_RENEW_SECONDS", 5.0), LEASE_SECONDS / 4)
FENCE_MARGIN = LEASE_SECONDS / 3
# Rows without a lease (written before leases existed): judged by the heartbeat's age.
STALE_SECONDS = 30.0

_POLL = 0.02
_HOST_ID: str | None = None
_EXECUTOR_ID: tuple[int, str] | None = None


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(64).decode("ascii", "replace").strip()
    except OSError:
        return ""


def host_id() -> str:
    """The host instance this process sees pids in: machine, boot and pid namespace.

    `CPF_TEST_HOST_ID` replaces it (tests simulate a second host with it)."""
    global _HOST_ID
    if _HOST_ID is None:
        value = os.environ.get("CPF_TEST_HOST_ID")
        if not value:
            try:
                pidns = f"{os.stat('/proc/self/ns/pid').st_ino:x}"
            except OSError:
                pidns = ""
            boot = _read("/proc/sys/kernel/random/boot_id").replace("-", "")
            machine = _read("/etc/machine-id")[:12]
            value = f"{machine or 'm'}.{boot or 'b'}.{pidns or 'p'}"
            if not (boot or pidns):  # no /proc: the hostname is all there is
                value = f"name.{socket.gethostname()}"
        _HOST_ID = value.replace(":", "_")
    return _HOST_ID


def executor_id() -> str:
    """This process's executor identity: random, drawn once per process (a forked
    child draws its own)."""
    global _EXECUTOR_ID
    pid = os.getpid()
    if _EXECUTOR_ID is None or _EXECUTOR_ID[0] != pid:
        _EXECUTOR_ID = (pid, os.urandom(16).hex())  # as random as uuid4, without its import
    return _EXECUTOR_ID[1]


def executor_values() -> dict[str, str]:
    """The run columns that hand a run to this process."""
    return {"executor": current_executor(), "executor_id": executor_id()}


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, pgrp, session, ...), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return data[data.rfind(")") + 2 :].split()


def _start_ticks(pid: int) -> str | None:
    fields = _stat(pid)
    if not fields or fields[0] in ("Z", "X"):
        return None  # gone, zombie or dead: not executing anything
    return fields[19] if len(fields) > 19 else None


def current_executor() -> str:
    return process_identity(os.getpid())


def process_identity(pid: int) -> str:
    """ "host:pid:start-ticks:host-instance" of a live process ("-" for the ticks
    without /proc)."""
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '-'}:{host_id()}"


def describe(executor: str | None) -> str:
    """ "host:pid" of a recorded executor, for messages."""
    if not executor:
        return "unknown"
    return ":".join(executor.split(":")[:2])


def _local_pid_state(pid: int, start: str) -> bool:
    """Whether the process `pid` with start ticks `start` lives (on this host)."""
    if os.path.isdir("/proc"):
        ticks = _start_ticks(pid)
        if ticks is None:
            return False
        return start in ("-", ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def executor_gone(executor: str | None) -> bool:
    """True only when the executor is surely dead: its pid, checked on this very host
    instance, is gone or belongs to another process. Anything else is for the lease."""
    if not executor:
        return False
    parts = executor.split(":")
    if len(parts) < 4 or parts[3] != host_id():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    return not _local_pid_state(pid, parts[2])


def executor_alive(executor: str | None, heartbeat_at: str | None) -> bool:
    """For runs without a lease (written before leases): False when the executor is
    surely gone; True when alive or unknowable."""
    if not executor:
        return _fresh(heartbeat_at)
    parts = executor.split(":")
    local = parts[3] == host_id() if len(parts) >= 4 else parts[0] == socket.gethostname()
    if not local or len(parts) < 3:
        return _fresh(heartbeat_at)
    try:
        pid = int(parts[1])
    except ValueError:
        return _fresh(heartbeat_at)
    return _local_pid_state(pid, parts[2])


def _fresh(heartbeat_at: str | None) -> bool:
    if not heartbeat_at:
        return False
    try:
        beat = datetime.fromisoformat(heartbeat_at)
    except ValueError:
        return False
    return (datetime.now(UTC) - beat).total_seconds() < STALE_SECONDS


# -- step process groups ----------------------------------------------------------------


@dataclass(frozen=True)
class StepGroup:
    """The process group of one step attempt, as recorded before its command ran."""

    host: str
    pgid: int
    start: str  # leader start ticks, "-" where /proc is missing
    host_id: str | None = None  # the host instance (None in rows older than it)

    @classmethod
    def parse(
        cls, identity: str | None, pid: int | None = None, host: str = ""
    ) -> StepGroup | None:
        """From a recorded "host:pgid:start[:host-instance]"; rows older than the
        identity carry only a pgid (`pid`), judged on `host` without a start time."""
        if identity:
            name, _, tail = identity.partition(":")
            pgid_text, _, tail = tail.partition(":")
            start, _, instance = tail.partition(":")
            try:
                return cls(name, int(pgid_text), start or "-", instance or None)
            except ValueError:
                return None
        if pid:
            return cls(host, int(pid), "-")
        return None

    @property
    def local(self) -> bool:
        """Whether this process may look at and signal the group: same host instance
        (for old rows without one, the same hostname)."""
        if self.host_id is not None:
            return self.host_id == host_id()
        return self.host == socket.gethostname()

    def __str__(self) -> str:
        return f"process group {self.pgid} on {self.host or 'an unknown host'}"


def group_members(group: StepGroup) -> list[int]:
    """Live (not zombie) processes of `group` on this host: [] once all are gone.

    With /proc: a leader alive under another start time means the number was reused,
    so the recorded group is gone (the kernel never reuses a pid while a group still
    carries it as its id); members of a leaderless group must have started no earlier
    than the recorded leader. Without /proc, any member of the pgid counts."""
    if group.pgid <= 1:
        return []
    if not os.path.isdir("/proc"):
        try:
            os.killpg(group.pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [group.pgid]
    # Cheap first: no process carries the pgid (the common case after a clean end).
    try:
        os.killpg(group.pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    known = group.start if group.start.isdigit() else None
    leader = _stat(group.pgid)
    if known is not None and leader is not None and len(leader) > 19 and leader[19] != known:
        return []
    pgid = str(group.pgid)
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat(int(name))
        if not fields or len(fields) <= 19 or fields[2] != pgid or fields[0] in ("Z", "X"):
            continue
        if known is not None and int(fields[19]) < int(known):
            continue
        members.append(int(name))
    return members


def stop_groups(
    groups: list[StepGroup], grace: float = 1.0, kill_wait: float = 5.0
) -> list[StepGroup]:
    """Stop what is left of step process groups: SIGTERM, `grace` seconds, SIGKILL.

    Returns the groups that cannot be stopped from here (another host, no permission,
    or members that outlive SIGKILL by `kill_wait` seconds); [] when all are gone."""
    refused = [g for g in groups if not g.local]
    live = [g for g in groups if g.local and group_members(g)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait)):
        if not live:
            break
        for group in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group.pgid, sig)
        deadline = time.monotonic() + wait
        while True:
            live = [g for g in live if group_members(g)]
            if not live or time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
    return refused + live


def stop_group(group: StepGroup, grace: float = 1.0) -> bool:
    """Stop one group (see stop_groups); True when nothing of it is alive any more."""
    return not stop_groups([group], grace)
