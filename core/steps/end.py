"""`end`: finish the run with an (interpolated, type-preserving) result."""

from __future__ import annotations

from core.envelope import CpfError
from core.steps.base import StepContext, StepOutcome


def run(ctx: StepContext) -> StepOutcome:
    try:
        result = ctx.interpolate(ctx.step.get("result"), "result")
    except CpfError as exc:
        return StepOutcome.failed(exc)
    return StepOutcome(status="end", result=result, outputs=result)
