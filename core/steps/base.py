"""What a step kind receives (`StepContext`) and returns (`StepOutcome`)."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.envelope import CpfError, ErrorCode, StepFailure

OutputSink = Callable[[list[tuple[str, str]]], None]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_CREATE = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
# Artifact folders this process made or found (a mkdir per file costs a syscall each).
_made_folders: set[Path] = set()


@dataclass
class StepContext:
    run_id: str
    step: dict[str, Any]
    attempt: int
    scope: dict[str, Any]  # expression roots: inputs, steps, run, (event, item, ...)
    defaults: dict[str, Any]
    workflow_path: Path
    run_dir: Path
    cancel: threading.Event
    output: OutputSink
    on_pid: Callable[[int], None] = lambda _pid: None
    # Name of this step's artifact files (unique per context: "loop[2]/build").
    artifact_name: str = ""
    # Run a list of steps as a nested context of this step (foreach, parallel,
    # sub-workflow) through the one step loop: nested(steps, start_id, scope, label,
    # workflow=None) -> FrameResult.
    nested: Callable[..., FrameResult] | None = None
    # The steps of the context this step stands in (parallel finds its branches here).
    siblings: list[dict[str, Any]] = field(default_factory=list)
    _artifact_fds: dict[str, tuple[Path, int]] = field(default_factory=dict, repr=False)

    @property
    def step_id(self) -> str:
        return str(self.step["id"])

    def artifact_path(self, stream: str) -> Path:
        """The contract's per-step file runs/<run_id>/<stream>/<step>.txt (its folder is
        created once per process)."""
        # Step ids are free text: keep the file inside the run folder whatever they hold.
        name = _UNSAFE.sub("_", self.artifact_name or self.step_id)
        folder = self.run_dir / stream
        if folder not in _made_folders:
            folder.mkdir(parents=True, exist_ok=True)
            _made_folders.add(folder)
        name = name.lstrip(".") or "_"
        if len(name) > 120:  # a file name has at most 255 bytes
            import hashlib

            name = name[:100] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
        return folder / f"{name}.txt"

    def prepare_artifacts(self, *streams: str) -> None:
        """Create (without emptying) the files `write_artifact` will fill, ahead of time:
        a cli step does it while its command runs, where creating a file costs nothing
        on the step's path (it is the dearest part of writing one). Never raises."""
        for stream in streams:
            if stream not in self._artifact_fds:
                try:
                    path = self.artifact_path(stream)
                    self._artifact_fds[stream] = (path, os.open(path, _CREATE, 0o666))
                except OSError:  # write_artifact tries again, and reports what fails
                    _made_folders.discard(self.run_dir / stream)

    def close_artifacts(self) -> None:
        """Close what prepare_artifacts opened and nothing filled (a step that raised)."""
        for _path, fd in self._artifact_fds.values():
            os.close(fd)
        self._artifact_fds.clear()

    def write_artifact(self, stream: str, text: str) -> str:
        """Write the contract's per-step file runs/<run_id>/<stream>/<step>.txt."""
        data = text.encode("utf-8", errors="replace")
        opened = self._artifact_fds.pop(stream, None)
        if opened is None:
            path = self.artifact_path(stream)
            try:
                fd = os.open(path, _CREATE | os.O_TRUNC, 0o666)
            except FileNotFoundError:  # its folder was removed since we made it
                _made_folders.discard(path.parent)
                path = self.artifact_path(stream)
                fd = os.open(path, _CREATE | os.O_TRUNC, 0o666)
        else:
            path, fd = opened
            os.ftruncate(fd, 0)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return str(path)

    def interpolate(self, value: Any, what: str) -> Any:
        """Interpolate `value`; a bad reference is a step failure naming the field."""
        from core.expr import ExprError, interpolate

        try:
            return interpolate(value, self.scope)
        except ExprError as exc:
            raise StepFailure(
                ErrorCode.ERR_STEP_FAILED,
                f"Step '{self.step_id}': cannot resolve {what}: {exc}",
                step_id=self.step_id,
            ) from exc


Status = Literal["completed", "failed", "waiting", "end", "cancelled"]


@dataclass
class FrameResult:
    """How a nested context ended: "completed" (ran off its end), "end" (an end step),
    "failed" or "cancelled"."""

    status: str
    result: Any = None
    error: CpfError | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


@dataclass
class StepOutcome:
    status: Status
    outputs: Any = None
    next_step_id: str | None = None  # a jump; None continues with the next step in the list
    error: CpfError | None = None
    wait: dict[str, Any] | None = None
    result: Any = None
    exit_code: int | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None
    output_bytes: int = 0
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, error: CpfError, **kw: Any) -> StepOutcome:
        return cls(status="failed", error=error, **kw)
