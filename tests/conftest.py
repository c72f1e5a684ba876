"""Shared fixtures for the black-box CLI tests.

The CLI tests run the installed `cpf` console script as a real subprocess, each
test with its own store (`CHECKPOINTFLOW_BASE_DIR` = a tmp dir) and its own cwd.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import storedb
from hypothesis import settings

# `pytest --hypothesis-profile=deep ...`: long hostile-input runs by hand; CI keeps each
# property test's small budget (see tests/hostile.py `examples`).
settings.register_profile("deep", max_examples=1000, deadline=None)

CPF = shutil.which("cpf") or str(Path(sys.executable).parent / "cpf")
ENVELOPE_SCHEMA = "checkpointflow-run/v1"
DEFAULT_TIMEOUT = 60.0


def parse_envelope(proc: subprocess.CompletedProcess[str]) -> dict[str, Any] | None:
    """The JSON envelope printed on stdout, or None when stdout is not a JSON object.

    When there is an envelope, the process exit status must equal its exit_code.
    """
    text = proc.stdout.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    assert data.get("schema_version") == ENVELOPE_SCHEMA, proc.stdout
    assert proc.returncode == data["exit_code"], (
        f"exit status {proc.returncode} != envelope exit_code {data['exit_code']}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return data


@dataclass
class CpfRunner:
    """Runs `cpf` in an isolated store and working directory."""

    base_dir: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def exe(self) -> str:
        return CPF

    def __call__(
        self,
        *args: str,
        stdin: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
        proc = subprocess.run(
            [CPF, *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            cwd=cwd or self.cwd,
            env=env or self.env,
            timeout=timeout,
        )
        assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr
        return proc, parse_envelope(proc)

    def ok(self, *args: str, exit_code: int = 0, **kw: Any) -> dict[str, Any]:
        """Run and require an envelope with the given exit code."""
        proc, env = self(*args, **kw)
        assert env is not None, f"no envelope\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        assert env["exit_code"] == exit_code, json.dumps(env, indent=2) + "\n" + proc.stderr
        return env

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [CPF, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.cwd,
            env=self.env,
            **kw,
        )

    def run_id_of(self, env: dict[str, Any]) -> str:
        run_id = env.get("run_id")
        assert isinstance(run_id, str) and run_id, env
        return run_id

    def inspect(self, run_id: str) -> dict[str, Any]:
        proc, env = self("inspect", "--run-id", run_id)
        assert env is not None and env["ok"] is True, proc.stdout + proc.stderr
        return env

    def status(self, run_id: str) -> dict[str, Any]:
        proc, env = self("status", "--run-id", run_id)
        assert env is not None, proc.stdout + proc.stderr
        return env


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): about the SQLite store itself; skipped under "
        f"{storedb.SWITCH} (the suite on PostgreSQL)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not storedb.on_postgres():
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}".rstrip(": ")))


@pytest.fixture(scope="session", autouse=True)
def _test_databases() -> Iterator[None]:
    """Under the PostgreSQL switch, drop whatever databases the session made."""
    yield
    storedb.close_all()


@pytest.fixture
def store_url() -> Iterator[str | None]:
    """This test's store URL: a fresh PostgreSQL database under the switch
    (`CPF_TEST_DATABASE_URL`, see tests/storedb.py), else None (SQLite in the base dir)."""
    url = storedb.fresh_url()
    yield url
    storedb.drop_url(url)


@pytest.fixture
def tui_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The TUI's pilot tests: a fresh SQLite base dir, default settings, cwd in tmp."""
    base = tmp_path / "base"
    monkeypatch.setenv("CHECKPOINTFLOW_BASE_DIR", str(base))
    monkeypatch.delenv("CPF_DATABASE_URL", raising=False)
    monkeypatch.setenv("CPF_TUI_CONFIG", "")
    monkeypatch.chdir(tmp_path)
    return base


@pytest.fixture
def snap_compare(snap_compare: Callable[..., bool]) -> Callable[..., bool]:
    """pytest-textual-snapshot's `snap_compare`, taking its picture only once the app
    has settled (tests/tui_seed.py `settled`): a busy CI machine drew some screens a
    frame late, or before the first poll answered."""
    import inspect

    from tui_seed import settled

    def compare(app: Any, *args: Any, run_before: Any = None, **kwargs: Any) -> bool:
        async def before(pilot: Any) -> None:
            if run_before is not None:
                result = run_before(pilot)
                if inspect.isawaitable(result):
                    await result
            await settled(pilot)

        return snap_compare(app, *args, run_before=before, **kwargs)

    return compare


@pytest.fixture
def cpf_base(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    base.mkdir()
    return base


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.fixture
def cpf_env(cpf_base: Path, store_url: str | None) -> dict[str, str]:
    # The store must be the per-test one, whatever the caller's environment says.
    env = storedb.store_env(dict(os.environ), store_url)
    env["CHECKPOINTFLOW_BASE_DIR"] = str(cpf_base)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture
def cpf(cpf_base: Path, workdir: Path, cpf_env: dict[str, str]) -> CpfRunner:
    return CpfRunner(base_dir=cpf_base, cwd=workdir, env=cpf_env)


@pytest.fixture
def write_workflow(workdir: Path) -> Callable[..., Path]:
    """write_workflow(yaml_text, name="workflow.yaml") -> absolute path (in the test cwd)."""

    def _write(yaml_text: str, name: str = "workflow.yaml") -> Path:
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(yaml_text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll until predicate() is truthy; return its value (fail after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def step_results_for(inspect_env: dict[str, Any], step_id: str) -> list[dict[str, Any]]:
    return [r for r in inspect_env["result"]["step_results"] if r["step_id"] == step_id]


def kill_unguarded(executor: subprocess.Popen[Any]) -> None:
    """kill -9 an executor whose step guard (core.process) died first, as if a stray
    signal had taken the guard: the running step's group then outlives the executor.
    The executor is stopped first, so it cannot start a new guard in between."""
    os.kill(executor.pid, signal.SIGSTOP)
    guards = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[stat.rfind(b")") + 2 :].split()[1]) == executor.pid and b"cpf-guard" in argv:
            guards.append(int(name))
    assert guards, f"no step guard under executor {executor.pid}"
    for pid in guards:
        os.kill(pid, signal.SIGKILL)
    executor.send_signal(signal.SIGKILL)
    executor.wait(timeout=30)


def pid_gone(pid: int) -> bool:
    """True when the process no longer exists or is a zombie (nobody may reap orphans here)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3 (after the parenthesised command name) is the state.
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def all_gone(pids: Sequence[int]) -> bool:
    return all(pid_gone(p) for p in pids)

