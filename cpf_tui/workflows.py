"""Workflow files for the Workflows screen: discovery, validation and the step outline.

Plain Python (no Textual): the screen runs these in a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

State = Literal["valid", "warnings", "invalid", "other"]

SUFFIXES = (".yaml", ".yml")
SKIP_DIRS = {"node_modules", "__pycache__", "venv", "site-packages", "dist", "build"}
MAX_FILES = 2000


@dataclass
class WorkflowFile:
    path: Path
    state: State
    text: str = ""
    workflow: Any = None  # core.workflow.loader.LoadedWorkflow when loadable
    code: str | None = None  # the engine's error code when invalid
    message: str | None = None
    details: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return list(self.workflow.warnings) if self.workflow is not None else []

    @property
    def title(self) -> str:
        if self.workflow is not None:
            return self.workflow.name or self.workflow.id
        return self.path.name

    @property
    def problems(self) -> list[str]:
        """Every validation message, one line each, with its JSON path."""
        if self.state == "invalid":
            return [f"{self.code}: {self.message}", *self.details]
        return self.warnings


def discover(paths: Iterable[str | Path], *, limit: int = MAX_FILES) -> list[Path]:
    """`*.yaml`/`*.yml` files named or found under `paths` (hidden and tool folders
    skipped), in a stable order. Explicit files are kept whatever their suffix."""
    found: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        p = p.resolve()
        if p not in seen:
            seen.add(p)
            found.append(p)

    for raw in paths:
        root = Path(raw).expanduser()
        if root.is_file():
            add(root)
            continue
        if not root.is_dir():
            continue
        for path in _walk(root):
            add(path)
            if len(found) >= limit:
                return found
    return found


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(SUFFIXES) and not name.startswith("."):
                yield Path(dirpath) / name


def check(path: Path, *, explicit: bool = False) -> WorkflowFile:
    """Load and validate one file with the engine's loader.

    YAML that is clearly not a workflow (a mapping without `workflow` or
    `schema_version`) is "other" unless the user named the file."""
    from core.envelope import CpfError
    from core.workflow.loader import load_workflow, parse_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return WorkflowFile(path, "invalid", code="ERR_FILE_NOT_FOUND", message=str(exc))
    if not explicit:
        try:
            doc = parse_yaml(text)
        except CpfError:
            doc = None
        if isinstance(doc, dict) and "workflow" not in doc and "schema_version" not in doc:
            return WorkflowFile(path, "other", text=text, message="not a workflow file")
    try:
        # `remember`: a file this cpf validated before (same bytes) is not validated again,
        # so a start-up in a known folder does not import jsonschema.
        wf = load_workflow(path, remember=True)
    except CpfError as err:
        details = [str(d) for d in (getattr(err, "details", None) or [])]
        return WorkflowFile(
            path, "invalid", text=text, code=str(err.code), message=err.message, details=details
        )
    return WorkflowFile(path, "warnings" if wf.warnings else "valid", text=wf.text, workflow=wf)


@dataclass
class OutlineRow:
    depth: int
    step_id: str
    kind: str
    name: str
    condition: str  # the step's `if`
    flow: list[str]  # transitions, cases, branches, jumps: one short line each


def outline(steps: list[dict[str, Any]], depth: int = 0) -> Iterator[OutlineRow]:
    """The step outline: every step (nested bodies indented) with its `if` and jumps."""
    for step in steps:
        kind = str(step.get("kind", "?"))
        flow: list[str] = []
        for tr in step.get("transitions") or []:
            flow.append(f"when {tr.get('when')} → {tr.get('next')}")
        for case in step.get("cases") or []:
            flow.append(f"case {case.get('when')} → {case.get('next')}")
        if step.get("default"):
            flow.append(f"default → {step['default']}")
        for branch in step.get("branches") or []:
            flow.append(f"branch → {branch.get('start_at')}")
        timeout = step.get("on_timeout")
        if isinstance(timeout, dict) and timeout.get("next"):
            flow.append(f"on timeout → {timeout['next']}")
        if kind == "foreach" and step.get("items") is not None:
            flow.append(f"for each in {step['items']}")
        if step.get("workflow_ref"):
            flow.append(f"runs {step['workflow_ref']}")
        if kind == "await_event":
            flow.insert(0, f"waits for '{step.get('event_name')}'")
        if step.get("risk_level"):
            flow.append(f"risk {step['risk_level']}")
        retry = step.get("retry")
        if isinstance(retry, dict) and retry.get("max_attempts"):
            flow.append(f"retry ×{retry['max_attempts']}")
        if step.get("timeout_seconds"):
            flow.append(f"timeout {step['timeout_seconds']}s")
        yield OutlineRow(
            depth=depth,
            step_id=str(step.get("id", "?")),
            kind=kind,
            name=str(step.get("name") or ""),
            condition=str(step["if"]) if step.get("if") is not None else "",
            flow=flow,
        )
        body = step.get("body")
        if isinstance(body, list):
            yield from outline(body, depth + 1)
