"""Start `cpf` executor processes that outlive their caller (the TUI).

A run executes in a `cpf` process; the TUI spawns one per start/resume/retry in its
own session, so closing the TUI never stops a run. The child's envelope is written to
`<base>/runs/<run_id>/envelopes/<command>-<time>.json` for the caller to read, and
its stderr beside it (`.stderr`), so an executor that dies early can be diagnosed.
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


_NO_INPUT = object()


def _spawn(run_id: str, command: str, args: list[str], stdin_json: Any = _NO_INPUT) -> Spawned:
    """`cpf <command> <args>` in its own session; `stdin_json` goes in as `--input -`."""
    folder = run_dir(run_id) / "envelopes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{command}-{time.strftime('%Y%m%dT%H%M%S')}-{new_id()[:6]}.json"
    argv = [sys.executable, "-m", "core", command, *args]
    if stdin_json is not _NO_INPUT:
        argv += ["--input", "-"]
    with path.open("wb") as out, path.with_suffix(".stderr").open("wb") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if stdin_json is _NO_INPUT else subprocess.PIPE,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    if proc.stdin is not None:
        proc.stdin.write(json.dumps(stdin_json).encode())
        proc.stdin.close()
    return Spawned(run_id, proc, path)


def _who(actor: str | None, surface: str) -> list[str]:
    return ["--surface", surface, *(["--actor", actor] if actor else [])]


def spawn_run(path: str | Path, inputs: Any, *, actor: str | None, surface: str = "tui") -> Spawned:
    """Start a run in its own `cpf run` process; the run id is chosen here."""
    run_id = new_id()
    args = ["-f", str(Path(path).resolve()), "--run-id", run_id, *_who(actor, surface)]
    return _spawn(run_id, "run", args, inputs)


def spawn_resume(
    run_id: str, event_name: str, payload: Any, *, actor: str | None, surface: str = "tui"
) -> Spawned:
    args = ["--run-id", run_id, "--event", event_name, *_who(actor, surface)]
    return _spawn(run_id, "resume", args, payload)


def spawn_retry(
    run_id: str, from_step: str | None, *, actor: str | None, surface: str = "tui"
) -> Spawned:
    args = ["--run-id", run_id, *(["--from-step", from_step] if from_step else [])]
    return _spawn(run_id, "retry", [*args, *_who(actor, surface)])


def spawn_continue(run_id: str) -> Spawned:
    """Start an executor for a run handed off without one (await timeout -> on_timeout)."""
    return _spawn(run_id, "continue", ["--run-id", run_id])
