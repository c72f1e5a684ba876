"""`await_event`: pause the run until `cpf resume` delivers a matching event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.envelope import CpfError
from core.steps.base import StepContext, StepOutcome


def run(ctx: StepContext) -> StepOutcome:
    step = ctx.step
    try:
        prompt = ctx.interpolate(step.get("prompt"), "prompt")
        summary = ctx.interpolate(step.get("summary"), "summary")
    except CpfError as exc:
        return StepOutcome.failed(exc)
    wait = {
        "step_id": ctx.step_id,
        "event_name": step["event_name"],
        "audience": step.get("audience", "user"),
        "input_schema": step.get("input_schema") or {},
        "prompt": None if prompt is None else str(prompt),
        "summary": None if summary is None else str(summary),
        "risk_level": step.get("risk_level"),
        "timeout_at": None,
        # Kept with the wait so expiry needs no re-read of the workflow file.
        "on_timeout_next": (step.get("on_timeout") or {}).get("next"),
    }
    timeout = step.get("timeout_seconds")
    if timeout:
        at = datetime.now(UTC) + timedelta(seconds=int(timeout))
        wait["timeout_at"] = at.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    return StepOutcome(status="waiting", wait=wait)
