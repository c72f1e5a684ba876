"""`switch`: jump to the `next` of the first case whose `when` is true, else `default`."""

from __future__ import annotations

from core.envelope import ErrorCode, StepFailure
from core.steps.base import StepContext, StepOutcome


def run(ctx: StepContext) -> StepOutcome:
    from core.expr import ExprError, evaluate_condition

    sid = ctx.step_id
    problems: list[str] = []
    for i, case in enumerate(ctx.step.get("cases") or []):
        try:
            if evaluate_condition(case["when"], ctx.scope):
                target = case["next"]
                return StepOutcome(
                    "completed", outputs={"_next_step_id": target}, next_step_id=target
                )
        except ExprError as exc:
            # checkpointflow tries the next case; the error is kept for the no-match report.
            problems.append(f"cases[{i}] '{case['when']}': {exc}")
    default = ctx.step.get("default")
    if default:
        return StepOutcome("completed", outputs={"_next_step_id": default}, next_step_id=default)
    detail = f" ({'; '.join(problems)})" if problems else ""
    return StepOutcome.failed(
        StepFailure(
            ErrorCode.ERR_STEP_FAILED,
            f"Step '{sid}': no case matched and there is no default{detail}",
            step_id=sid,
        )
    )
