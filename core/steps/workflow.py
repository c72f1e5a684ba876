"""`workflow`: run another workflow file as a nested context of this step.

`workflow_ref` is resolved against the parent workflow's folder (then the cwd, as
checkpointflow did); the child is fully validated, its inputs checked against its
`inputs` schema, and its steps recorded under this step.

A ref may be interpolated (`parts/${inputs.flavor}.yaml`), so run input could choose
what executes: a ref that resolves (symlinks followed) outside the folder of the
workflow that names it is refused, whichever way it was found, unless that workflow
opts in with `defaults.workflow.allow_outside: true`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.envelope import CpfError, ErrorCode, StepFailure
from core.steps.base import StepContext, StepOutcome


def resolve_ref(ref: str, parent: Path) -> Path:
    path = Path(ref).expanduser()
    if path.is_absolute():
        return path
    beside = parent.parent / path
    if beside.exists():
        return beside
    return Path.cwd() / path if (Path.cwd() / path).exists() else beside


def outside_folder(path: Path, parent: Path) -> str | None:
    """The real path of `path` (symlinks followed) when it is outside `parent`'s folder."""
    folder = os.path.realpath(parent.parent)
    real = os.path.realpath(path)
    return None if os.path.commonpath([folder, real]) == folder else real


def allow_outside(ctx: StepContext) -> bool:
    wf_defaults = ctx.defaults.get("workflow") or {}
    return isinstance(wf_defaults, dict) and wf_defaults.get("allow_outside") is True


def run_child(ctx: StepContext, ref: Any, inputs: Any, *, label: str) -> StepOutcome:
    """Load, check and run the child workflow; outputs = its end result, or its step outputs."""
    from core.payload import apply_defaults, check_payload
    from core.workflow.loader import load_workflow

    assert ctx.nested is not None
    sid = ctx.step_id
    ref = ctx.interpolate(ref, "workflow_ref")
    try:
        path = resolve_ref(str(ref), ctx.workflow_path)
        outside = outside_folder(path, ctx.workflow_path)
    except (OSError, ValueError, RuntimeError) as exc:  # NUL bytes, loops, odd names
        return StepOutcome.failed(
            StepFailure(
                ErrorCode.ERR_STEP_FAILED,
                f"Step '{sid}': workflow_ref {_short(ref)} is not a usable path: {exc}",
                step_id=sid,
            )
        )
    if outside and not allow_outside(ctx):
        return StepOutcome.failed(
            StepFailure(
                ErrorCode.ERR_STEP_FAILED,
                f"Step '{sid}': workflow_ref {_short(ref)} resolves to {outside}, outside the "
                f"folder of {ctx.workflow_path.name}; refused (set "
                "defaults.workflow.allow_outside: true in that workflow to allow it)",
                step_id=sid,
            )
        )
    if not path.is_file():
        return StepOutcome.failed(
            StepFailure(
                ErrorCode.ERR_FILE_NOT_FOUND,
                f"Step '{sid}': sub-workflow not found: {ref} (looked in {path.parent})",
                step_id=sid,
            )
        )
    try:
        child = load_workflow(path)
    except CpfError as exc:
        return StepOutcome.failed(
            StepFailure(
                exc.code,
                f"Step '{sid}': sub-workflow {ref} is invalid: {exc.message}",
                step_id=sid,
                details=exc.details,
            )
        )
    errors = check_payload(child.inputs_schema, inputs)
    if errors:
        return StepOutcome.failed(
            StepFailure(
                ErrorCode.ERR_VALIDATION_INPUT,
                f"Step '{sid}': inputs for {child.id} are invalid: {errors[0]}",
                step_id=sid,
                details=[str(e) for e in errors],
            )
        )
    inputs = apply_defaults(child.inputs_schema, inputs)
    scope = {
        "inputs": inputs,
        "steps": {},
        "run": ctx.scope.get("run", {}),
    }
    result = ctx.nested(child.steps, child.steps[0]["id"], scope, label, workflow=child)
    if result.status == "cancelled":
        return StepOutcome(status="cancelled")
    if result.status == "failed":
        err = result.error
        return StepOutcome.failed(
            StepFailure(
                err.code if err else ErrorCode.ERR_STEP_FAILED,
                f"Step '{sid}' (sub-workflow {child.id}): {err.message if err else 'failed'}",
                step_id=sid,
                exit_code=result.exit_code,
            )
        )
    declared = child.workflow.get("outputs")
    if declared:
        # The child's own `workflow.outputs` holds for its result, as at the top level.
        problems = check_payload(declared, {} if result.result is None else result.result)
        if problems:
            return StepOutcome.failed(
                StepFailure(
                    ErrorCode.ERR_STEP_OUTPUT_INVALID,
                    f"Step '{sid}': the result of {child.id} does not match its "
                    f"workflow.outputs: {problems[0]}",
                    step_id=sid,
                    details=[str(e) for e in problems],
                ),
                outputs=result.result,
            )
    if result.result not in (None, "", {}, []):
        return StepOutcome("completed", outputs=result.result)
    return StepOutcome("completed", outputs=dict(result.outputs))


def run(ctx: StepContext) -> StepOutcome:
    inputs = ctx.interpolate(ctx.step.get("inputs") or {}, "inputs")
    return run_child(ctx, ctx.step["workflow_ref"], inputs, label=f"{ctx.step_id}/")


def _short(value: Any, limit: int = 200) -> str:
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")
