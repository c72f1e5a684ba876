"""core.liveness step process groups: identity, membership and stopping, with real
processes; and the store migration that adds the attempts' `proc` column."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import pid_gone, wait_for
from sqlalchemy import text

from core.liveness import StepGroup, group_members, host_id, process_identity, stop_groups
from core.store.compiled import SCHEMA_VERSION
from core.store.store import Store

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _session(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["/bin/sh", "-c", script], start_new_session=True, stdout=subprocess.PIPE, text=True
    )


def _kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def test_identity_is_host_pid_start_ticks_and_host_instance() -> None:
    host, pid, start, instance = process_identity(os.getpid()).split(":")
    assert (host, int(pid), instance) == (socket.gethostname(), os.getpid(), host_id())
    assert start.isdigit()
    assert StepGroup.parse(f"{host}:{pid}:{start}:{instance}") == StepGroup(
        host, os.getpid(), start, instance
    )
    # A row from before the host instance was recorded.
    assert StepGroup.parse(f"{host}:{pid}:{start}") == StepGroup(host, os.getpid(), start)
    assert StepGroup.parse("garbage") is None
    assert StepGroup.parse(None, 42, host) == StepGroup(host, 42, "-")
    assert StepGroup.parse(None, None, host) is None


def test_a_live_group_is_found_and_stopped() -> None:
    proc = _session("exec sleep 60")
    try:
        group = StepGroup.parse(process_identity(proc.pid))
        assert group is not None and group_members(group) == [proc.pid]
        assert stop_groups([group]) == []
        proc.wait(timeout=10)
        assert group_members(group) == []
    finally:
        _kill(proc.pid)


def test_a_reused_number_is_never_signalled() -> None:
    """Same pgid, other start ticks: the recorded group is gone, this one is not ours."""
    proc = _session("exec sleep 60")
    try:
        _host, _pid, start, _instance = process_identity(proc.pid).split(":")
        stranger = StepGroup(socket.gethostname(), proc.pid, str(int(start) - 1))
        assert group_members(stranger) == []
        assert stop_groups([stranger]) == []
        time.sleep(0.2)
        assert proc.poll() is None  # untouched
    finally:
        _kill(proc.pid)
        proc.wait()


def test_members_outliving_their_leader_are_stopped() -> None:
    proc = _session("sleep 60 & echo $!")
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    proc.wait(timeout=10)  # the leader is gone (and reaped); its child keeps the group
    try:
        identity = f"{socket.gethostname()}:{proc.pid}:0"
        group = StepGroup.parse(identity)
        assert group is not None and group_members(group) == [child]
        assert stop_groups([group]) == []
        wait_for(lambda: pid_gone(child), timeout=10, what="the orphaned member")
    finally:
        _kill(proc.pid)
        proc.stdout.close()


def test_a_group_ignoring_sigterm_gets_sigkill_after_the_grace() -> None:
    proc = _session("trap '' TERM; sleep 60")  # `sleep` inherits the ignored TERM
    try:
        time.sleep(0.2)
        group = StepGroup.parse(process_identity(proc.pid))
        assert group is not None
        started = time.monotonic()
        assert stop_groups([group], grace=0.3) == []
        assert time.monotonic() - started >= 0.3
        proc.wait(timeout=10)
    finally:
        _kill(proc.pid)


def test_a_group_on_another_host_is_refused_untouched() -> None:
    proc = _session("exec sleep 60")
    try:
        _host, pid, start, _instance = process_identity(proc.pid).split(":")
        remote = StepGroup("elsewhere.invalid", int(pid), start)
        assert stop_groups([remote]) == [remote]
        assert "elsewhere.invalid" in str(remote)
        assert proc.poll() is None
    finally:
        _kill(proc.pid)
        proc.wait()


def test_a_group_of_another_host_instance_with_our_hostname_is_refused_untouched() -> None:
    """Two containers called the same: the hostname matches, the host instance does not."""
    proc = _session("exec sleep 60")
    try:
        host, pid, start, _instance = process_identity(proc.pid).split(":")
        twin = StepGroup.parse(f"{host}:{pid}:{start}:another-container")
        assert twin is not None and not twin.local
        assert stop_groups([twin]) == [twin]
        time.sleep(0.2)
        assert proc.poll() is None
    finally:
        _kill(proc.pid)
        proc.wait()


@pytest.mark.sqlite_only(reason="edits the SQLite file with sqlite3")
def test_schema_2_store_gets_the_proc_column(tmp_path: Path) -> None:
    path = tmp_path / "cpf.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE step_attempts DROP COLUMN proc")
        db.execute("ALTER TABLE runs DROP COLUMN executor_id")  # schema 4's
        db.execute("ALTER TABLE runs DROP COLUMN lease_expires_at")
        db.execute("UPDATE cpf_meta SET value = '2' WHERE key = 'schema_version'")
    store = Store(f"sqlite:///{path}")
    with store.read() as conn:
        columns = {row[1] for row in conn.execute(text("PRAGMA table_info(step_attempts)"))}
        version = conn.execute(text("SELECT value FROM cpf_meta")).scalar()
    store.close()
    assert "proc" in columns
    assert int(version) == SCHEMA_VERSION
