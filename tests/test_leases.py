"""Executor leases in database time, black-box through `cpf` with real processes.

A run is interrupted only when its lease has expired by the database's clock (or its
executor's pid is dead on this very host instance); a skewed executor clock or a reader
on another host (`CPF_TEST_HOST_ID`) changes nothing. A reader on another host never
signals a step's process group. An executor that cannot renew its lease stops its own
step before the lease runs out (fencing). Every test runs on SQLite, and on PostgreSQL
when `CPF_TEST_POSTGRES_URL` is set (as in tests/test_postgres.py).

Linux only: the steps' process groups are read from /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import storedb
from conftest import CpfRunner, kill_unguarded, pid_gone, wait_for
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

ADMIN_URL = os.environ.get("CPF_TEST_POSTGRES_URL")
LEASE = "3"  # seconds: renewed every 0.75 s, fenced 2 s after the last renewal
OTHER_HOST = {"CPF_TEST_HOST_ID": "another-container"}

# `hold` notes its process group, leaves a grandchild `sleep` in it (which outlives the
# step's shell if the executor is killed) and waits; once `fixed` exists it passes at
# once. `after` marks that the run went on.
HELD = """
schema_version: checkpointflow/v1
workflow:
  id: held
  inputs: {type: object}
  steps:
    - id: hold
      kind: cli
      command: |
        test -f fixed && exit 0
        sleep 60 &
        echo "$$ $!" > group.txt
        wait
    - id: after
      kind: cli
      command: echo after >> after.log
"""


@pytest.fixture(params=["sqlite", "postgres"])
def lease_store(request: pytest.FixtureRequest, cpf: CpfRunner) -> Iterator[str]:
    """The store of the test's `cpf` runs: its SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        if storedb.on_postgres():
            pytest.skip("CPF_TEST_DATABASE_URL sends the stores to PostgreSQL")
        yield f"sqlite:///{cpf.base_dir / 'cpf.db'}"
        return
    if not ADMIN_URL:
        pytest.skip("CPF_TEST_POSTGRES_URL is not set")
    with storedb.empty_database(ADMIN_URL) as url:
        cpf.env = {**cpf.env, "CPF_DATABASE_URL": url}
        yield url


def _row(url: str, sql: str, **params: Any) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).first()
    finally:
        engine.dispose()


def _start(cpf: CpfRunner, wf: Path, run_id: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [cpf.exe, "run", "-f", str(wf), "--run-id", run_id],
        cwd=cpf.cwd,
        env={**cpf.env, "CPF_LEASE_SECONDS": LEASE, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _group(workdir: Path) -> tuple[int, int]:
    """(the step's shell = its process group, the grandchild `sleep`) once both run."""

    def read() -> tuple[int, int] | None:
        try:
            leader, child = (workdir / "group.txt").read_text().split()
        except (OSError, ValueError):
            return None
        return int(leader), int(child)

    return wait_for(read, timeout=60, interval=0.02, what="the held step to start")


def _status(cpf: CpfRunner, run_id: str, **env: str) -> dict[str, Any]:
    proc, envelope = cpf("status", "--run-id", run_id, env={**cpf.env, **env})
    assert envelope is not None, proc.stdout + proc.stderr
    return envelope


def _stop(executor: subprocess.Popen[str], *pids: int) -> None:
    if executor.poll() is None:
        executor.kill()
    executor.communicate(timeout=30)
    for pid in pids:
        if not pid_gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _iso(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def test_a_skewed_executor_clock_never_makes_a_live_run_interrupted(
    cpf: CpfRunner, lease_store: str, write_workflow: Any, workdir: Path
) -> None:
    """The executor's clock runs 40 s behind: its heartbeat looks 40 s old to everyone
    else, but the lease is the database's, so the run stays running past several lease
    periods, for readers on this host and on another one."""
    wf = write_workflow(HELD)
    run_id = uuid.uuid4().hex
    executor = _start(cpf, wf, run_id, CPF_TEST_CLOCK_SKEW_SECONDS="-40")
    leader, child = 0, 0
    try:
        leader, child = _group(workdir)
        row = _row(
            lease_store,
            "SELECT heartbeat_at, lease_expires_at, executor_id FROM runs WHERE run_id = :id",
            id=run_id,
        )
        assert row is not None and row.lease_expires_at and len(row.executor_id) == 32
        assert time.time() - _iso(row.heartbeat_at) > 35  # the skewed clock wrote it
        assert 0 < _iso(row.lease_expires_at) - time.time() <= float(LEASE) + 1
        until = time.monotonic() + 3 * float(LEASE)
        while time.monotonic() < until:
            assert _status(cpf, run_id, **OTHER_HOST)["status"] == "running"
            assert _status(cpf, run_id)["status"] == "running"
            tick = cpf.ok("tick", env={**cpf.env, **OTHER_HOST})
            assert tick["result"]["interrupted"] == []
        assert not pid_gone(child) and executor.poll() is None
        # Renewed all along, by the database's clock.
        (expired,) = _row(
            lease_store,
            "SELECT count(*) FROM runs WHERE run_id = :id AND lease_expires_at < :now",
            id=run_id,
            now=_now_text(lease_store),
        )
        assert expired == 0
        cpf.ok("cancel", "--run-id", run_id, "--reason", "done")
        out, err = executor.communicate(timeout=60)
        assert executor.returncode == 50, out + err
        wait_for(lambda: pid_gone(child), timeout=10, what="the cancelled step's grandchild")
    finally:
        _stop(executor, leader, child)


def _now_text(url: str) -> str:
    """The database's clock, as the lease columns write it."""
    if url.startswith("sqlite"):
        sql = "SELECT strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')"
    else:
        sql = (
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC',"
            """ 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
        )
    return _row(url, sql)[0]


def test_a_reader_on_another_host_waits_for_the_lease_and_never_signals_the_group(
    cpf: CpfRunner, lease_store: str, write_workflow: Any, workdir: Path
) -> None:
    """kill -9 of the executor: its step's grandchild lives on. A reader on another host
    (same hostname, other host instance) calls the run interrupted only once the lease
    has expired, never signals the group, and refuses to retry while it may live; the
    next `cpf tick` on the owning host stops it, and the retry elsewhere then runs."""
    wf = write_workflow(HELD)
    run_id = uuid.uuid4().hex
    # Long enough that a `cpf status` on a loaded machine surely fits in it.
    executor = _start(cpf, wf, run_id, CPF_LEASE_SECONDS="8")
    leader, child = 0, 0
    try:
        leader, child = _group(workdir)
        assert _status(cpf, run_id, **OTHER_HOST)["status"] == "running"
        # Its guard gone first (core.process), so the group outlives the executor.
        kill_unguarded(executor)
        # The lease still holds (renewed < 2 s ago, 8 s long): no pid check from there.
        assert _status(cpf, run_id, **OTHER_HOST)["status"] == "running"

        def interrupted() -> dict[str, Any] | None:
            tick = cpf.ok("tick", env={**cpf.env, **OTHER_HOST})
            return tick if tick["result"]["interrupted"] == [run_id] else None

        wait_for(interrupted, timeout=30, interval=0.2, what="the lease to expire")
        status = _status(cpf, run_id, **OTHER_HOST)
        assert status["status"] == "failed"
        assert status["error"]["code"] == "ERR_RUN_INTERRUPTED"
        assert "renewing its lease" in status["error"]["message"]
        time.sleep(0.3)
        assert not pid_gone(child), "a reader on another host signalled the group"

        (workdir / "fixed").touch()
        refused = cpf.ok("retry", "--run-id", run_id, exit_code=20, env={**cpf.env, **OTHER_HOST})
        assert refused["error"]["code"] == "ERR_RUN_NOT_WAITING"
        assert f"process group {leader}" in refused["error"]["message"]
        assert "cpf tick" in refused["error"]["message"]
        assert not pid_gone(child)
        assert not (workdir / "after.log").exists()

        cpf.ok("tick")  # on the owning host
        wait_for(lambda: pid_gone(child), timeout=10, what="the owning host to stop the group")
        done = cpf.ok("retry", "--run-id", run_id, env={**cpf.env, **OTHER_HOST})
        assert done["status"] == "completed"
        assert (workdir / "after.log").read_text() == "after\n"
    finally:
        _stop(executor, leader, child)


def _set(url: str, sql: str, **params: Any) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()


def test_an_operator_may_declare_a_host_gone_once_the_lease_has_expired(
    cpf: CpfRunner, lease_store: str, write_workflow: Any, workdir: Path
) -> None:
    """Host A's executor dies with its step's grandchild alive, and host A never comes
    back. From host B, `retry` refuses and names `--host-gone A`; with it, it still
    refuses while the lease has not expired by the database's clock, and refuses another
    host's name; then it continues the run, recording who declared A gone, and never
    signals A's group (a reader elsewhere stops nothing)."""
    import socket

    host = socket.gethostname()
    other = {**cpf.env, **OTHER_HOST}
    wf = write_workflow(HELD)
    run_id = uuid.uuid4().hex
    executor = _start(cpf, wf, run_id, CPF_LEASE_SECONDS="8")
    leader, child = 0, 0
    try:
        leader, child = _group(workdir)
        kill_unguarded(executor)

        def interrupted() -> bool:
            return cpf.ok("tick", env=other)["result"]["interrupted"] == [run_id]

        wait_for(interrupted, timeout=30, interval=0.2, what="the lease to expire")
        (workdir / "fixed").touch()

        def retry(*args: str) -> dict[str, Any]:
            return cpf.ok("retry", "--run-id", run_id, *args, exit_code=20, env=other)

        message = retry()["error"]["message"]
        assert f"process group {leader} on {host}" in message
        assert f"--host-gone {host}" in message and "\n" not in message

        # As if host A had declared it interrupted a moment ago: its lease still runs.
        (expires,) = _row(
            lease_store, "SELECT lease_expires_at FROM runs WHERE run_id = :id", id=run_id
        )
        _set(
            lease_store,
            "UPDATE runs SET lease_expires_at = :at WHERE run_id = :id",
            at="2999-01-01T00:00:00.000000+00:00",
            id=run_id,
        )
        refused = retry("--host-gone", host)
        assert refused["error"]["code"] == "ERR_RUN_NOT_WAITING"
        assert "lease has not expired" in refused["error"]["message"]
        assert "--host-gone" in refused["error"]["message"]
        _set(
            lease_store,
            "UPDATE runs SET lease_expires_at = :at WHERE run_id = :id",
            at=expires,
            id=run_id,
        )
        wrong = retry("--host-gone", "some-other-host")["error"]["message"]
        assert "some-other-host" in wrong and f"left are on {host}" in wrong
        assert not (workdir / "after.log").exists()

        done = cpf.ok(
            "retry", "--run-id", run_id, "--host-gone", host, "--actor", "ops-alice", env=other
        )
        assert done["status"] == "completed"
        assert (workdir / "after.log").read_text() == "after\n"
        time.sleep(0.3)
        assert not pid_gone(child), "a reader on another host signalled the group"
        actions = cpf.inspect(run_id)["result"]["actions"]
        (gone,) = [a for a in actions if a["kind"] == "host_gone"]
        assert gone["actor"] == "ops-alice"
        assert gone["data"]["host"] == host
        assert [g["pgid"] for g in gone["data"]["groups"]] == [leader]
        (pid,) = _row(
            lease_store,
            "SELECT pid FROM step_attempts WHERE run_id = :id AND step_id = 'hold'"
            " ORDER BY seq LIMIT 1",
            id=run_id,
        )
        assert pid is None  # recorded gone
    finally:
        _stop(executor, leader, child)


@contextlib.contextmanager
def _store_blocked(url: str) -> Iterator[None]:
    """Hold the store so that no executor can write (renew) until the block ends."""
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        try:
            db.execute("BEGIN EXCLUSIVE")
            yield
            db.execute("ROLLBACK")
        finally:
            db.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))
            yield
            conn.rollback()
    finally:
        engine.dispose()


def test_an_executor_that_cannot_renew_stops_its_step_before_its_lease_ends(
    cpf: CpfRunner, lease_store: str, write_workflow: Any, workdir: Path
) -> None:
    """Fencing: the store is held longer than the lease. The executor kills its step's
    whole group before the lease could expire, and stops: the run does not go on, and a
    retry never overlaps with the old step."""
    wf = write_workflow(HELD)
    run_id = uuid.uuid4().hex
    executor = _start(cpf, wf, run_id)
    leader, child = 0, 0
    try:
        leader, child = _group(workdir)
        with _store_blocked(lease_store):
            wait_for(
                lambda: pid_gone(child) and pid_gone(leader),
                timeout=4 * float(LEASE),
                interval=0.02,
                what="the executor to stop its own step",
            )
            if lease_store.startswith("sqlite"):  # (PostgreSQL's lock blocks reads too)
                # Stopped while the lease still held by the database's clock.
                (live,) = _row(
                    lease_store,
                    "SELECT count(*) FROM runs WHERE run_id = :id"
                    " AND lease_expires_at >= strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')",
                    id=run_id,
                )
                assert live == 1
            assert executor.poll() is None  # blocked on the store, executing nothing
            time.sleep(float(LEASE) + 0.5)  # the lease is over before the store answers
        out, err = executor.communicate(timeout=60)
        assert executor.returncode == 60, out + err
        assert "Lost the lease" in out and "lease" in err
        assert not (workdir / "after.log").exists()  # the old executor went no further
        status = _status(cpf, run_id, **OTHER_HOST)
        assert status["status"] == "failed"
        assert status["error"]["code"] == "ERR_RUN_INTERRUPTED"
        (workdir / "fixed").touch()
        assert cpf.ok("retry", "--run-id", run_id)["status"] == "completed"
        assert (workdir / "after.log").read_text() == "after\n"
    finally:
        _stop(executor, leader, child)


def test_a_store_outage_shorter_than_the_fence_leaves_the_run_alone(
    cpf: CpfRunner, lease_store: str, write_workflow: Any, workdir: Path
) -> None:
    """Renewals blocked for 4 s with a 12 s lease (renewed every 3 s, fenced after 8 s):
    retried, the step keeps running and the run stays running."""
    wf = write_workflow(HELD)
    run_id = uuid.uuid4().hex
    executor = _start(cpf, wf, run_id, CPF_LEASE_SECONDS="12")
    leader, child = 0, 0
    try:
        leader, child = _group(workdir)
        with _store_blocked(lease_store):
            time.sleep(4)
        assert not pid_gone(child) and executor.poll() is None
        assert _status(cpf, run_id, **OTHER_HOST)["status"] == "running"
        cpf.ok("cancel", "--run-id", run_id, "--reason", "done")
        executor.communicate(timeout=60)
        assert executor.returncode == 50
    finally:
        _stop(executor, leader, child)


def _refuse_renewals(url: str, on: bool) -> None:
    """A trigger that makes the store refuse every write of a lease (a real error)."""
    if url.startswith("sqlite"):
        ddl = (
            [
                "CREATE TRIGGER refuse BEFORE UPDATE OF lease_expires_at ON runs"
                " BEGIN SELECT RAISE(ABORT, 'the store refuses'); END"
            ]
            if on
            else ["DROP TRIGGER refuse"]
        )
    else:
        ddl = (
            [
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'the store refuses'; END $$",
                "CREATE TRIGGER refuse BEFORE UPDATE OF lease_expires_at ON runs"
                " FOR EACH ROW EXECUTE FUNCTION refuse()",
            ]
            if on
            else ["DROP TRIGGER refuse ON runs", "DROP FUNCTION refuse()"]
        )
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for sql in ddl:
                conn.execute(text(sql))
    finally:
        engine.dispose()


def test_failed_renewals_are_said_and_retried(
    cpf: CpfRunner, lease_store: str, write_workflow: Any, workdir: Path
) -> None:
    """The store refuses renewals for a while (shorter than the fence): the executor says
    so on stderr, keeps trying, says when it renewed again, and the step runs on."""
    wf = write_workflow(HELD)
    run_id = uuid.uuid4().hex
    executor = _start(cpf, wf, run_id, CPF_LEASE_SECONDS="12")  # renew 3 s, fence 8 s
    leader, child = 0, 0
    try:
        leader, child = _group(workdir)
        _refuse_renewals(lease_store, True)
        try:
            time.sleep(4)
        finally:
            _refuse_renewals(lease_store, False)
        time.sleep(2)
        assert not pid_gone(child) and executor.poll() is None
        cpf.ok("cancel", "--run-id", run_id, "--reason", "done")
        _out, err = executor.communicate(timeout=60)
        assert executor.returncode == 50, err
        assert "cannot renew the lease" in err and "the store refuses" in err, err
        assert "renewed the lease" in err, err
    finally:
        _stop(executor, leader, child)


def test_a_schema_3_store_gets_the_lease_columns(tmp_path: Path) -> None:
    from core.store.compiled import SCHEMA_VERSION
    from core.store.store import Store

    path = tmp_path / "cpf.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE runs DROP COLUMN executor_id")
        db.execute("ALTER TABLE runs DROP COLUMN lease_expires_at")
        db.execute("UPDATE cpf_meta SET value = '3' WHERE key = 'schema_version'")
        db.execute("UPDATE alembic_version SET version_num = '0003'")
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        (version,) = db.execute("SELECT value FROM cpf_meta").fetchone()
    assert {"executor_id", "lease_expires_at"} <= columns
    assert int(version) == SCHEMA_VERSION >= 4
