"""`cli`: run a shell command in its own process group, streaming its output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from core import limits
from core.envelope import CpfError, ErrorCode, StepFailure
from core.steps.base import StepContext, StepOutcome

DEFAULT_MAX_OUTPUT = 10 * 1024 * 1024


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _max_output(ctx: StepContext) -> int:
    for value in (
        ctx.step.get("max_output_bytes"),
        ctx.defaults.get("max_output_bytes"),
        os.environ.get("CPF_MAX_OUTPUT_BYTES"),
    ):
        if value not in (None, ""):
            try:
                return max(1024, int(value))
            except (TypeError, ValueError):
                continue
    return DEFAULT_MAX_OUTPUT


def _fail(ctx: StepContext, code: str, message: str, **kw: Any) -> StepOutcome:
    return StepOutcome.failed(StepFailure(code, message, step_id=ctx.step_id), **kw)


def run(ctx: StepContext) -> StepOutcome:
    from core.process import ShellError, build_argv, run_process

    step, sid = ctx.step, ctx.step_id
    try:
        command = ctx.interpolate(step["command"], "command")
        cwd_value = ctx.interpolate(step.get("cwd"), "cwd")
        env_values = ctx.interpolate(step.get("env") or {}, "env")
    except CpfError as exc:
        return StepOutcome.failed(exc)
    if isinstance(command, list):
        command = [c if isinstance(c, str) else json.dumps(c) for c in command]
    elif not isinstance(command, str):
        command = json.dumps(command)
    try:
        argv = build_argv(command, step.get("shell") or ctx.defaults.get("shell"))
    except ShellError as exc:
        return _fail(ctx, ErrorCode.ERR_STEP_FAILED, f"Step '{sid}': {exc}")

    cwd = None
    if cwd_value not in (None, ""):
        cwd = str(Path(str(cwd_value)).expanduser())
        if not os.path.isdir(cwd):  # False (not an error) for NUL or too-long names
            return _fail(ctx, ErrorCode.ERR_STEP_FAILED, f"Step '{sid}': cwd not found: {cwd}")

    added = {"CPF_RUN_ID": ctx.run_id, "CPF_STEP_ID": sid}
    added.update({str(k): _env_value(v) for k, v in env_values.items()})
    # Only what the step adds is checked: inherited values came from the OS (bytes it
    # could not decode are surrogate-escaped, and go back to it unchanged).
    bad = _unspawnable(argv, cwd, added)
    if bad:
        return _fail(ctx, ErrorCode.ERR_STEP_FAILED, f"Step '{sid}' could not start: {bad}")

    env = {**_inherited_env(ctx.run_id), **added}
    timeout = step.get("timeout_seconds") or None
    try:
        res = run_process(
            argv,
            cwd=cwd,
            env=env,
            timeout=float(timeout) if timeout else None,
            cancel=ctx.cancel,
            on_output=ctx.output,
            max_output_bytes=_max_output(ctx),
            on_start=ctx.on_pid,
            on_running=lambda: ctx.prepare_artifacts("stdout", "stderr"),
        )
    except (OSError, ValueError) as exc:
        ctx.close_artifacts()
        return _fail(ctx, ErrorCode.ERR_STEP_FAILED, f"Step '{sid}' could not start: {exc}")
    try:
        stdout_path = ctx.write_artifact("stdout", res.stdout)
        stderr_path = ctx.write_artifact("stderr", res.stderr)
    finally:
        ctx.close_artifacts()
    common: dict[str, Any] = {
        "exit_code": res.exit_code,
        "stdout_path": stdout_path,
        "stderr_path": stderr_path,
        "output_bytes": res.bytes_out,
        "truncated": res.truncated,
    }
    if res.cancelled:
        return StepOutcome(status="cancelled", **common)
    if res.timed_out:
        return _fail(
            ctx, ErrorCode.ERR_TIMEOUT, f"Step '{sid}' timed out after {timeout}s", **common
        )
    ok_codes = (step.get("success") or {}).get("exit_codes") or [0]
    if res.exit_code not in ok_codes:
        return _fail(
            ctx,
            ErrorCode.ERR_STEP_FAILED,
            f"Step '{sid}' exited with code {res.exit_code}",
            **common,
        )
    outputs = _parse_outputs(res.stdout)
    schema = step.get("outputs")
    if schema:
        error = _check_outputs(sid, schema, outputs)
        if error is not None:
            return StepOutcome.failed(error, outputs=outputs, **common)
    return StepOutcome(status="completed", outputs=outputs, **common)


# The environment steps inherit, read once per run: copying os.environ decodes every
# variable (~0.1 ms a step); a plain dict copies in a microsecond.
_inherited: tuple[str, dict[str, str]] = ("", {})


def _inherited_env(run_id: str) -> dict[str, str]:
    global _inherited
    if _inherited[0] != run_id:
        _inherited = (run_id, dict(os.environ))
    return _inherited[1]


def _unspawnable(argv: list[str], cwd: str | None, env: dict[str, str]) -> str | None:
    """Why the OS cannot take this command line, working folder or these environment
    variables (a NUL byte or text that is not valid Unicode, often from run input), else
    None."""

    def bad(text: str) -> bool:
        return "\0" in text or limits.has_surrogate(text)

    if any(bad(a) for a in argv):
        return "the command contains a NUL byte or invalid Unicode"
    if cwd is not None and bad(cwd):
        return "cwd contains a NUL byte or invalid Unicode"
    for key, value in env.items():
        if not key or "=" in key or bad(key):
            return f"env name {limits.shown(key, 40)!r} is not a valid variable name"
        if bad(value):
            return f"env {limits.shown(key, 40)} contains a NUL byte or invalid Unicode"
    return None


def _parse_outputs(stdout: str) -> dict[str, Any] | None:
    """The whole stdout, stripped, as one JSON object; anything else gives no outputs."""
    text = stdout.strip()
    if not text.startswith("{"):
        return None
    try:
        value = limits.loads(text)  # strict: NaN, 1e999 or runaway nesting are not JSON
    except limits.JsonProblem:
        return None
    return value if isinstance(value, dict) else None


def _check_outputs(sid: str, schema: dict[str, Any], outputs: Any) -> CpfError | None:
    from core.payload import check_payload

    if outputs is None:
        return StepFailure(
            ErrorCode.ERR_STEP_OUTPUT_INVALID,
            f"Step '{sid}' declares an outputs schema but its stdout is not a JSON object",
            step_id=sid,
        )
    errors = check_payload(schema, outputs)
    if errors:
        return StepFailure(
            ErrorCode.ERR_STEP_OUTPUT_INVALID,
            f"Step '{sid}' outputs do not match the schema: {errors[0]}",
            step_id=sid,
            details=[str(e) for e in errors],
        )
    return None
