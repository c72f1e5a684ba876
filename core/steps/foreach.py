"""`foreach`: run the body steps (or a sub-workflow) once per item of a list.

Body steps go through the one step loop like any other step (if, retry, jumps,
attempts recorded under the foreach attempt), seeing `${item}` and `${item_index}`.
"""

from __future__ import annotations

from typing import Any

from core.envelope import ErrorCode, StepFailure
from core.steps.base import StepContext, StepOutcome


def _items(ctx: StepContext) -> list[Any]:
    from core.expr import ExprError, evaluate

    spec = ctx.step["items"]
    try:
        value = evaluate(spec, ctx.scope) if isinstance(spec, str) else spec
    except ExprError as exc:
        raise StepFailure(
            ErrorCode.ERR_STEP_FAILED,
            f"Step '{ctx.step_id}': cannot resolve items '{spec}': {exc}",
            step_id=ctx.step_id,
        ) from exc
    if not isinstance(value, list):
        raise StepFailure(
            ErrorCode.ERR_STEP_FAILED,
            f"Step '{ctx.step_id}': items '{spec}' is not a list",
            step_id=ctx.step_id,
        )
    return value


def run(ctx: StepContext) -> StepOutcome:
    assert ctx.nested is not None
    sid = ctx.step_id
    items = _items(ctx)
    body = ctx.step.get("body")
    ref = ctx.step.get("workflow_ref")
    iterations: list[Any] = []
    for index, item in enumerate(items):
        if ctx.cancel.is_set():
            return StepOutcome(status="cancelled")
        label = f"{sid}[{index}]/"
        if ref is not None:
            from core.steps.workflow import run_child

            outcome = run_child(
                ctx, ref, {"_foreach_item": item, "_foreach_index": index}, label=label
            )
            if outcome.status != "completed":
                return _iteration_failed(ctx, index, outcome)
            iterations.append(outcome.outputs)
            continue
        scope = {
            **ctx.scope,
            "steps": dict(ctx.scope.get("steps") or {}),
            "item": item,
            "item_index": index,
        }
        result = ctx.nested(body, body[0]["id"] if body else None, scope, label)
        if result.status == "cancelled":
            return StepOutcome(status="cancelled")
        if result.status == "failed":
            err = result.error
            message = err.message if err else "a body step failed"
            return StepOutcome.failed(
                StepFailure(
                    err.code if err else ErrorCode.ERR_STEP_FAILED,
                    f"Step '{sid}' iteration {index}: {message}",
                    step_id=sid,
                    exit_code=result.exit_code,
                ),
                outputs={"iterations": iterations},
            )
        iterations.append(dict(result.outputs))
    return StepOutcome("completed", outputs={"iterations": iterations})


def _iteration_failed(ctx: StepContext, index: int, outcome: StepOutcome) -> StepOutcome:
    if outcome.status == "cancelled":
        return outcome
    err = outcome.error
    return StepOutcome.failed(
        StepFailure(
            err.code if err else ErrorCode.ERR_STEP_FAILED,
            f"Step '{ctx.step_id}' iteration {index}: {err.message if err else 'failed'}",
            step_id=ctx.step_id,
        )
    )
