"""`parallel`: run each branch's `start_at` step concurrently, each in its own context.

Branch targets run once, here: the walk of the enclosing steps skips them. When a
branch fails the others still run to completion; then the step fails naming every
failed branch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.envelope import ErrorCode, StepFailure
from core.steps.base import FrameResult, StepContext, StepOutcome

DEFAULT_MAX_BRANCHES = 8


def _pool_size(ctx: StepContext, branches: int) -> int:
    configured = ctx.defaults.get("max_parallel") or os.environ.get("CPF_MAX_PARALLEL")
    try:
        limit = int(configured) if configured else DEFAULT_MAX_BRANCHES
    except (TypeError, ValueError):
        limit = DEFAULT_MAX_BRANCHES
    return max(1, min(branches, limit))


def run(ctx: StepContext) -> StepOutcome:
    assert ctx.nested is not None
    nested = ctx.nested
    sid = ctx.step_id
    frame_steps = _frame_steps(ctx)
    targets = [b["start_at"] for b in ctx.step.get("branches") or []]
    missing = [t for t in targets if t not in frame_steps]
    if missing:
        return StepOutcome.failed(
            StepFailure(
                ErrorCode.ERR_STEP_FAILED,
                f"Step '{sid}': unknown branch target(s): {', '.join(missing)}",
                step_id=sid,
            )
        )

    def branch(target: str) -> FrameResult:
        scope = {**ctx.scope, "steps": dict(ctx.scope.get("steps") or {})}
        return nested([frame_steps[target]], target, scope, f"{sid}/")

    with ThreadPoolExecutor(max_workers=_pool_size(ctx, len(targets))) as pool:
        results = list(pool.map(branch, targets))

    outputs: dict[str, Any] = {}
    failures = []
    for target, result in zip(targets, results, strict=True):
        if result.status == "failed":
            failures.append(f"{target}: {result.error.message if result.error else 'failed'}")
        elif result.status == "cancelled":
            return StepOutcome(status="cancelled")
        elif target in result.outputs:
            outputs[target] = result.outputs[target]
    if failures:
        return StepOutcome.failed(
            StepFailure(
                ErrorCode.ERR_STEP_FAILED,
                f"Step '{sid}': {len(failures)} of {len(targets)} branch(es) failed "
                f"(the others ran to completion): {'; '.join(failures)}",
                step_id=sid,
                details=failures,
            ),
            outputs=outputs,
        )
    return StepOutcome("completed", outputs=outputs, extra={"set_outputs": dict(outputs)})


def _frame_steps(ctx: StepContext) -> dict[str, dict[str, Any]]:
    """The steps of the context this parallel step stands in, by id."""
    return {s["id"]: s for s in ctx.siblings}
