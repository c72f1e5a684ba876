"""Who executes a run, whether that process is still alive, and the step process
groups it may have left behind.

An executor is recorded as "host:pid:start" where start is the process start time
in clock ticks (Linux /proc), so a recycled pid is not mistaken for the executor.
Runs executed on another host are judged by their heartbeat alone.

A step's process group is recorded the same way, "host:pgid:start" with the start
ticks of the group leader, before the step's command may run (see core.process).
Whoever finds the executor dead stops what is left of the group, checked against
that identity so an unrelated group that reused the number is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 30.0

_POLL = 0.02


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
    """ "host:pid:start-ticks" of a live process ("-" for the ticks without /proc)."""
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '-'}"


def executor_alive(executor: str | None, heartbeat_at: str | None) -> bool:
    """False when the executor is surely gone; True when alive or unknowable."""
    if not executor:
        return _fresh(heartbeat_at)
    host, _, rest = executor.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname():
        return _fresh(heartbeat_at)
    try:
        pid = int(pid_text)
    except ValueError:
        return _fresh(heartbeat_at)
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

    @classmethod
    def parse(
        cls, identity: str | None, pid: int | None = None, host: str = ""
    ) -> StepGroup | None:
        """From a recorded "host:pgid:start"; rows older than the identity carry only a
        pgid (`pid`), judged on `host` without a start time."""
        if identity:
            name, _, tail = identity.partition(":")
            pgid_text, _, start = tail.partition(":")
            try:
                return cls(name, int(pgid_text), start or "-")
            except ValueError:
                return None
        if pid:
            return cls(host, int(pid), "-")
        return None

    @property
    def local(self) -> bool:
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
