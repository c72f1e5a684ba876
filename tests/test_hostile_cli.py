"""Property tests: every `cpf` command under generated hostile argv, documents, payloads,
depths and sizes keeps its contract (see tests/hostile.py for the property).

Each example is a real `cpf` subprocess on a real SQLite store, so budgets are small in CI;
`pytest --hypothesis-profile=deep tests/test_hostile_cli.py` runs many more by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import storedb
from conftest import CPF
from hostile import (
    ENV_WF,
    TIMEOUT,
    WAIT_WF,
    Store,
    argv_bytes,
    check,
    document,
    examples,
    number_flag,
    payload,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def budget(ci: int) -> settings:
    """`ci` examples in CI (more under `--hypothesis-profile=deep`), no deadline: every
    example is a real process on a loaded machine."""
    return settings(
        max_examples=examples(ci),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


class Cpf:
    """One store and working folder shared by the examples of a test module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "base"
        url = storedb.url_for_base(self.base)
        self.store = Store(self.base, url)
        self.env = storedb.store_env({**os.environ, "CHECKPOINTFLOW_BASE_DIR": str(self.base)}, url)
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        (root / "wait.yaml").write_text(WAIT_WF)
        (root / "env.yaml").write_text(ENV_WF)
        self.fifo = root / "fifo"
        os.mkfifo(self.fifo)
        env = json.loads(self.run(b"run", b"-f", b"wait.yaml").stdout)
        self.waiting: str = env["run_id"]

    def run(self, *argv: bytes, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [os.fsencode(CPF), *argv],
            input=stdin,
            capture_output=True,
            cwd=self.root,
            env=self.env,
            timeout=TIMEOUT,
        )

    def checked(self, command: str, *argv: bytes, stdin: bytes = b"") -> dict | None:
        """Run, assert the property, and that no run is left running afterwards."""
        proc = self.run(*argv, stdin=stdin)
        env = check(proc, command)
        assert self.store.running() == 0, f"a run stays running after {argv!r}"
        return env


@pytest.fixture(scope="module")
def cpf(tmp_path_factory: pytest.TempPathFactory) -> Cpf:
    return Cpf(tmp_path_factory.mktemp("hostile"))


def _paths(cpf: Cpf) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(
            [b"/dev/zero", os.fsencode(cpf.fifo), b".", b"/", b"missing.yaml", b"\xff.yaml"]
        ),
        st.integers(250, 6000).map(lambda n: b"n" * n),
        argv_bytes,
    )


@budget(8)
@given(doc=document, command=st.sampled_from(["validate", "run"]))
def test_hostile_documents(cpf: Cpf, doc: bytes, command: str) -> None:
    (cpf.root / "doc.yaml").write_bytes(doc)
    before = cpf.store.runs()
    env = cpf.checked(command, command.encode(), b"-f", b"doc.yaml")
    assert env is not None
    if env["exit_code"] == 10:
        assert cpf.store.runs() == before, "a refused workflow left a run row"


@budget(6)
@given(data=st.data())
def test_hostile_workflow_paths(cpf: Cpf, data: st.DataObject) -> None:
    path = data.draw(_paths(cpf))
    command = data.draw(st.sampled_from(["validate", "run"]))
    env = cpf.checked(command, command.encode(), b"-f", path)
    assert env is None or env["exit_code"] in (0, 2, 10, 40)


@budget(10)
@given(body=payload, how=st.sampled_from(["inline", "file", "stdin"]))
def test_hostile_run_inputs(cpf: Cpf, body: bytes, how: str) -> None:
    before = cpf.store.runs()
    if how == "file":
        (cpf.root / "in.json").write_bytes(body)
        proc = cpf.run(b"run", b"-f", b"env.yaml", b"--input", b"@in.json")
    elif how == "stdin":
        proc = cpf.run(b"run", b"-f", b"env.yaml", b"--input", b"-", stdin=body)
    else:
        if b"\0" in body or len(body) > 100_000:  # argv limits, not cpf's
            return
        proc = cpf.run(b"run", b"-f", b"env.yaml", b"--input", body)
    env = check(proc, "run")
    assert env is not None
    assert env["exit_code"] in (0, 10, 30), env
    if env["exit_code"] == 10:
        assert cpf.store.runs() == before, "refused input left a run row behind"
    else:
        assert cpf.store.status(env["run_id"]) in ("completed", "failed")
    assert cpf.store.running() == 0


@budget(6)
@given(body=payload)
def test_hostile_resume_payloads(cpf: Cpf, body: bytes) -> None:
    (cpf.root / "event.json").write_bytes(body)
    env = cpf.checked(
        "resume", b"resume", b"--run-id", cpf.waiting.encode(), b"--event", b"go",
        b"--input", b"@event.json",
    )  # fmt: skip
    assert env is not None
    if env["exit_code"] != 0:
        assert cpf.store.status(cpf.waiting) == "waiting", "a refused event moved the run"
    else:
        cpf.waiting = json.loads(cpf.run(b"run", b"-f", b"wait.yaml").stdout)["run_id"]


RUN_ID_COMMANDS = {
    "status": lambda v: [b"status", b"--run-id", v],
    "inspect": lambda v: [b"inspect", b"--run-id", v],
    "delete": lambda v: [b"delete", b"--run-id", v],
    "continue": lambda v: [b"continue", b"--run-id", v],
    "logs": lambda v: [b"logs", b"--run-id", v],
    "cancel": lambda v: [b"cancel", b"--run-id", v, b"--reason", v],
    "retry": lambda v: [b"retry", b"--run-id", v, b"--from-step", v],
    "resume": lambda v: [b"resume", b"--run-id", v, b"--event", v, b"--input", b"{}"],
}


@budget(10)
@given(command=st.sampled_from(sorted(RUN_ID_COMMANDS)), value=argv_bytes)
def test_hostile_run_ids(cpf: Cpf, command: str, value: bytes) -> None:
    cpf.checked(command, *RUN_ID_COMMANDS[command](value))


@budget(6)
@given(command=st.sampled_from(["resume", "cancel", "retry", "logs"]), value=argv_bytes)
def test_hostile_values_on_a_real_run(cpf: Cpf, command: str, value: bytes) -> None:
    """A known run id with hostile event names, reasons, step ids."""
    run_id = cpf.waiting.encode()
    argv = {
        "resume": [b"resume", b"--run-id", run_id, b"--event", value, b"--input", b"{}"],
        "cancel": [b"cancel", b"--run-id", run_id, b"--reason", value, b"--actor", value],
        "retry": [b"retry", b"--run-id", run_id, b"--from-step", value],
        "logs": [b"logs", b"--run-id", run_id, b"--step", value],
    }[command]
    env = cpf.checked(command, *argv)
    if env is not None and command == "cancel" and env["exit_code"] == 0:
        cpf.waiting = json.loads(cpf.run(b"run", b"-f", b"wait.yaml").stdout)["run_id"]


@budget(8)
@given(limit=st.one_of(st.none(), number_flag), workflow=st.one_of(st.none(), argv_bytes))
def test_hostile_runs_flags(cpf: Cpf, limit: bytes | None, workflow: bytes | None) -> None:
    argv = [b"runs"]
    if limit is not None:
        argv += [b"--limit", limit]
    if workflow is not None:
        argv += [b"--workflow", workflow]
    env = cpf.checked("runs", *argv)
    assert env is not None and env["exit_code"] in (0, 10)


@budget(6)
@given(data=st.data(), force=st.booleans())
def test_hostile_init_targets(cpf: Cpf, data: st.DataObject, force: bool) -> None:
    target = data.draw(_paths(cpf))
    argv = [b"init", b"--file", target, *([b"--force"] if force else [])]
    env = cpf.checked("init", *argv)
    assert env is not None and env["exit_code"] in (0, 10, 60)
    assert not (cpf.root / "fifo").is_file()


@budget(5)
@given(
    action=st.sampled_from([b"create", b"list", b"revoke"]),
    value=argv_bytes,
)
def test_hostile_keys(cpf: Cpf, action: bytes, value: bytes) -> None:
    flag = b"--key-id" if action == b"revoke" else b"--account"
    cpf.checked("keys", b"keys", action, flag, value)


@pytest.mark.parametrize("command", ["tick", "guide", "runs"])
def test_plain_commands_hold(cpf: Cpf, command: str) -> None:
    cpf.checked(command, command.encode())
