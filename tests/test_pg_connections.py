"""Connections on PostgreSQL: many executors on a small server, and PgBouncer.

Each test runs a private PostgreSQL cluster of its own (`pg_createcluster`, as root:
CI runs as root with PostgreSQL installed by `.ci/run`), started with a small
`max_connections`, so what is measured is the server's real limit. Skipped cleanly
where that is not possible (not root, no Debian PostgreSQL tools), and the PgBouncer
test where `pgbouncer` is not installed.

- 80 concurrent `cpf run` processes on a server that takes 7 connections of their
  role: every run completes (a `cpf` process holds at most one connection; failing to
  connect, `too many clients`, is retried with backoff within `CPF_DB_RETRY_DEADLINE`).
- PgBouncer in transaction pooling mode (1.18: no prepared statements across
  transactions) with `CPF_DB_PREPARE=0`: workflows and service saves go through it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_service_support import CPF, ServeProcess, cpf_env, run_cpf

# Connections the cluster allows a non-superuser: max_connections - reserved (3).
MAX_CONNECTIONS = 10
EXECUTORS = 80

ONE_STEP = """
schema_version: checkpointflow/v1
workflow:
  id: one_step
  inputs: {type: object}
  steps:
    - id: hello
      kind: cli
      command: >-
        echo '{"n": 1}'
    - id: done
      kind: end
      result: {n: "${steps.hello.outputs.n}"}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_version() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return None
    if not (shutil.which("pg_createcluster") and shutil.which("pg_ctlcluster")):
        return None
    root = Path("/usr/lib/postgresql")
    versions = sorted((p.name for p in root.iterdir() if (p / "bin").is_dir()), key=int)
    return versions[-1] if versions else None


def _psql(version: str, port: int, sql: str) -> str:
    proc = subprocess.run(
        ["su", "postgres", "-c", f'psql -X -qtA -p {port} -d postgres -c "{sql}"'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@dataclass
class Cluster:
    version: str
    name: str
    port: int
    url: str  # postgresql+psycopg:// of the non-superuser role `cpf_conn`, database cpf
    log: Path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    version = _pg_version()
    if version is None:
        pytest.skip("needs root and Debian's pg_createcluster (as in CI)")
    name = f"cpfconn{uuid.uuid4().hex[:8]}"
    port = _free_port()
    made = subprocess.run(
        [
            "pg_createcluster", version, name, "-p", str(port),
            "-o", f"max_connections={MAX_CONNECTIONS}",
            "-o", "superuser_reserved_connections=3",
            "-o", "fsync=off",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"pg_createcluster failed: {made.stderr.strip()[-300:]}")
    try:
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True, timeout=120)
        _psql(version, port, "CREATE ROLE cpf_conn LOGIN PASSWORD 'conn-pw'")
        _psql(version, port, "CREATE DATABASE cpf OWNER cpf_conn")
        yield Cluster(
            version,
            name,
            port,
            f"postgresql+psycopg://cpf_conn:conn-pw@127.0.0.1:{port}/cpf",
            Path(f"/var/log/postgresql/postgresql-{version}-{name}.log"),
        )
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, name], capture_output=True, timeout=120
        )


def _envelope(proc: subprocess.Popen[str]) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=240)
    try:
        return json.loads(out), err
    except ValueError:
        return {"stdout": out}, err


def test_eighty_executors_on_a_server_of_seven_connections(
    cluster: Cluster, tmp_path: Path
) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text(ONE_STEP)
    env = cpf_env(
        tmp_path / "base",
        CPF_DATABASE_URL=cluster.url,
        CPF_DB_RETRY_DEADLINE="150",
        PYTHONDONTWRITEBYTECODE="",
    )
    # The schema first (its creation is not what is measured here).
    assert run_cpf(env, "run", "-f", str(wf))["status"] == "completed"
    mark = cluster.log.stat().st_size if cluster.log.exists() else 0

    procs = [
        subprocess.Popen(
            [CPF, "run", "-f", str(wf)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(EXECUTORS)
    ]
    results = [_envelope(p) for p in procs]
    pairs = zip(procs, results, strict=True)
    failed = [(p.returncode, e, err[-300:]) for p, (e, err) in pairs if p.returncode]
    assert not failed, failed[:3]
    assert all(e["status"] == "completed" for e, _ in results)
    assert not any("too many clients" in json.dumps(e) + err for e, err in results)

    runs = run_cpf(env, "runs")["result"]["runs"]
    assert len(runs) == EXECUTORS + 1
    assert {r["status"] for r in runs} == {"completed"}
    # The server did refuse connections: the executors waited for a free one.
    if cluster.log.exists():
        with cluster.log.open("rb") as f:
            f.seek(mark)
            refused = f.read()
        assert b"too many clients" in refused or b"connection slots" in refused


# -- PgBouncer ---------------------------------------------------------------------------


@pytest.fixture
def bouncer(cluster: Cluster) -> Iterator[str]:
    """PgBouncer in transaction pooling mode before the cluster: its store URL."""
    exe = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if exe is None:
        pytest.skip("pgbouncer is not installed")
    folder = Path(tempfile.mkdtemp(prefix="cpf-pgbouncer-"))
    folder.chmod(0o755)
    port = _free_port()
    (folder / "userlist.txt").write_text('"cpf_conn" "conn-pw"\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"cpf = host=127.0.0.1 port={cluster.port} dbname=cpf\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir = {folder}\n"
        "auth_type = plain\n"
        f"auth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        # Fewer server connections than clients: transactions of different clients
        # share them, which is what breaks session state and prepared statements.
        "default_pool_size = 2\nmax_client_conn = 200\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    for f in folder.iterdir():
        f.chmod(0o644)
    argv = [exe, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        argv[1:1] = ["-u", "postgres"]  # it refuses to run as root
        shutil.chown(folder, "postgres")  # its log file
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"pgbouncer did not start: {proc.communicate()[0]}")
                time.sleep(0.1)
        yield f"postgresql+psycopg://cpf_conn:conn-pw@127.0.0.1:{port}/cpf"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)


def test_workflows_and_service_saves_through_pgbouncer(bouncer: str, tmp_path: Path) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text(ONE_STEP)
    env = cpf_env(tmp_path / "base", CPF_DATABASE_URL=bouncer, CPF_DB_PREPARE="0")
    procs = [
        subprocess.Popen(
            [CPF, "run", "-f", str(wf)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]  # fmt: skip
    for p in procs:
        envelope, err = _envelope(p)
        assert p.returncode == 0 and envelope["status"] == "completed", (envelope, err)

    server = ServeProcess(
        tmp_path / "serve",
        env={"CPF_DATABASE_URL": bouncer, "CPF_DB_PREPARE": "0", "CPF_SERVE_POOL_SIZE": "4"},
    )
    try:
        key = server.key("bouncer")

        def saves(n: int) -> int:
            client = server.client(key, max_retries=1)
            try:
                for step in range(10):
                    client.save(f"via-bouncer-{n}", step, {"n": n, "step": step})
                return client.resume(f"via-bouncer-{n}").total_checkpoints
            finally:
                client.close()

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(saves, range(6))) == [10] * 6
    finally:
        code = server.stop()
    logs = server.logs()
    assert code == 0 and "Traceback" not in logs and "prepared statement" not in logs, logs
