"""`api`: one HTTP request with httpx.

Like checkpointflow, requests to loopback, private, link-local, reserved or
unresolvable hosts are refused (a workflow is no way into the operator's network),
unless the workflow opts in with `defaults.api.allow_private: true` or the
environment sets `CPF_API_ALLOW_PRIVATE=1`. The rules, and the connection pinned to
the address that was checked (no DNS rebinding), live in core.netguard.
"""

from __future__ import annotations

import json
from typing import Any

from core import netguard
from core.envelope import CpfError, ErrorCode, StepFailure
from core.steps.base import StepContext, StepOutcome

DEFAULT_TIMEOUT = 30.0
DEFAULT_OK = (200, 201, 204)

# Tests inject an httpx transport here (httpx.MockTransport or a real one); it then
# replaces the pinned connection (the address check still runs without the opt-in).
transport: Any = None

OPT_IN_HINT = "; set defaults.api.allow_private: true (or CPF_API_ALLOW_PRIVATE=1) to allow it"


def _allow_private(ctx: StepContext) -> bool:
    api_defaults = ctx.defaults.get("api") or {}
    if isinstance(api_defaults, dict) and api_defaults.get("allow_private") is True:
        return True
    return netguard.env_flag("CPF_API_ALLOW_PRIVATE")


def _fail(
    ctx: StepContext, message: str, code: str = ErrorCode.ERR_STEP_FAILED, **kw: Any
) -> StepOutcome:
    return StepOutcome.failed(
        StepFailure(code, f"Step '{ctx.step_id}': {message}", step_id=ctx.step_id), **kw
    )


def run(ctx: StepContext) -> StepOutcome:
    import httpx

    step = ctx.step
    try:
        url = str(ctx.interpolate(step["url"], "url"))
        headers = {
            str(k): v if isinstance(v, str) else json.dumps(v)
            for k, v in (ctx.interpolate(step.get("headers") or {}, "headers")).items()
        }
        body = ctx.interpolate(step.get("body"), "body")
    except CpfError as exc:
        return StepOutcome.failed(exc)
    allow_private = _allow_private(ctx)
    try:
        endpoint = netguard.parse(url)
        target = None
        if transport is None or not allow_private:
            target = netguard.check(endpoint, allow_private=allow_private, hint=OPT_IN_HINT)
    except netguard.Refused as exc:
        return _fail(ctx, f"request refused: {exc}")
    kwargs: dict[str, Any] = {}
    if isinstance(body, dict | list):
        kwargs["json"] = body
    elif body is not None:
        kwargs["content"] = body if isinstance(body, str) else json.dumps(body)
    timeout = float(step.get("timeout_seconds") or DEFAULT_TIMEOUT)
    via = transport
    if via is None:
        assert target is not None  # checked above whenever no transport is injected
        via = netguard.sync_transport(target)
    try:
        with httpx.Client(
            timeout=timeout, transport=via, follow_redirects=False, trust_env=False
        ) as client:
            response = client.request(step["method"], url, headers=headers, **kwargs)
    except httpx.TimeoutException:
        return _fail(ctx, f"timed out after {timeout:g}s", ErrorCode.ERR_TIMEOUT)
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError, TypeError) as exc:
        # Transport errors, and headers or bodies httpx cannot encode: the step fails.
        return _fail(ctx, f"request failed: {type(exc).__name__}: {exc}")
    text = response.text
    ctx.output([("stdout", text)] if text else [])
    stdout_path = ctx.write_artifact("stdout", text)
    common: dict[str, Any] = {"stdout_path": stdout_path, "output_bytes": len(response.content)}
    ok = (step.get("success") or {}).get("status_codes") or list(DEFAULT_OK)
    outputs = _outputs(response.status_code, text)
    if response.status_code not in ok:
        return _fail(
            ctx,
            f"HTTP {response.status_code} from {step['method']} {url}",
            outputs=outputs,
            **common,
        )
    schema = step.get("outputs")
    if schema:
        from core.payload import check_payload

        errors = check_payload(schema, outputs)
        if errors:
            return StepOutcome.failed(
                StepFailure(
                    ErrorCode.ERR_STEP_OUTPUT_INVALID,
                    f"Step '{ctx.step_id}' outputs do not match the schema: {errors[0]}",
                    step_id=ctx.step_id,
                    details=[str(e) for e in errors],
                ),
                outputs=outputs,
                **common,
            )
    return StepOutcome("completed", outputs=outputs, **common)


def _outputs(status: int, text: str) -> dict[str, Any]:
    """JSON object body -> its keys; other JSON -> {"body": v}; text -> {"body": text}."""
    out: dict[str, Any]
    if not text.strip():
        out = {}
    else:
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out = dict(value) if isinstance(value, dict) else {"body": value}
    out["status_code"] = status
    return out
