"""Who executes a run, and whether that process is still alive.

An executor is recorded as "host:pid:start" where start is the process start time
in clock ticks (Linux /proc), so a recycled pid is not mistaken for the executor.
Runs executed on another host are judged by their heartbeat alone.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 30.0


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(")") + 2 :].split()
    if fields and fields[0] in ("Z", "X"):
        return None  # zombie or dead: not executing anything
    return fields[19] if len(fields) > 19 else None


def current_executor() -> str:
    pid = os.getpid()
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
