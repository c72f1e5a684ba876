"""Start `cpf` executor processes that outlive their caller (the TUI).

A run executes in a `cpf` process; the TUI spawns one per start/resume/retry in its
own session, so closing the TUI never stops a run. The child's envelope is written to
`<base>/runs/<run_id>/envelopes/<command>-<time>.json` for the caller to read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.paths import run_dir
from core.store.store import new_id


@dataclass
class Spawned:
    run_id: str
    process: subprocess.Popen[bytes]
    envelope_path: Path

    def envelope(self) -> dict[str, Any] | None:
        """The child's envelope once it has exited (None while it runs)."""
        if self.process.poll() is None:
            return None
        try:
            return json.loads(self.envelope_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def _spawn(run_id: str, command: str, args: list[str], stdin_json: Any) -> Spawned:
    folder = run_dir(run_id) / "envelopes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{command}-{time.strftime('%Y%m%dT%H%M%S')}-{new_id()[:6]}.json"
    with path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core", command, *args, "--input", "-"],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(stdin_json).encode())
    proc.stdin.close()
    return Spawned(run_id, proc, path)


def spawn_run(path: str | Path, inputs: Any, *, actor: str | None, surface: str = "tui") -> Spawned:
    """Start a run in its own `cpf run` process; the run id is chosen here."""
    run_id = new_id()
    args = ["-f", str(Path(path).resolve()), "--run-id", run_id, "--surface", surface]
    if actor:
        args += ["--actor", actor]
    return _spawn(run_id, "run", args, inputs)


def spawn_resume(
    run_id: str, event_name: str, payload: Any, *, actor: str | None, surface: str = "tui"
) -> Spawned:
    args = ["--run-id", run_id, "--event", event_name, "--surface", surface]
    if actor:
        args += ["--actor", actor]
    return _spawn(run_id, "resume", args, payload)


def spawn_retry(
    run_id: str, from_step: str | None, *, actor: str | None, surface: str = "tui"
) -> Spawned:
    folder = run_dir(run_id) / "envelopes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"retry-{time.strftime('%Y%m%dT%H%M%S')}-{new_id()[:6]}.json"
    args = [sys.executable, "-m", "core", "retry", "--run-id", run_id, "--surface", surface]
    if from_step:
        args += ["--from-step", from_step]
    if actor:
        args += ["--actor", actor]
    with path.open("wb") as out:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Spawned(run_id, proc, path)


def spawn_continue(run_id: str) -> Spawned:
    """Start an executor for a run handed off without one (await timeout -> on_timeout)."""
    folder = run_dir(run_id) / "envelopes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"continue-{time.strftime('%Y%m%dT%H%M%S')}-{new_id()[:6]}.json"
    with path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core", "continue", "--run-id", run_id],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Spawned(run_id, proc, path)
