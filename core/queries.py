"""Read-only views of runs for the TUI and the service: plain dicts, no SQL outside.

Every read of a run that may be `running` first checks its executor is alive
(`engine.reap`), so a crashed run never shows as running forever.
"""

from __future__ import annotations

from typing import Any

from core.engine import _store, reap


def get_run(run_id: str) -> dict[str, Any] | None:
    store = _store()
    run = store.get_run(run_id)
    return None if run is None else reap(store, run)


def list_runs(
    *,
    status: str | None = None,
    workflow_id: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Runs newest first; `running` ones reaped if their executor died."""
    store = _store()
    out = []
    for run in store.list_runs(status=status, workflow_id=workflow_id, limit=limit):
        run = reap(store, run) if run["status"] in ("running", "created") else run
        if status and run["status"] != status:
            continue
        out.append(run)
    return out


def attempts(run_id: str) -> list[dict[str, Any]]:
    return _store().attempts(run_id)


def events(run_id: str) -> list[dict[str, Any]]:
    """Every recorded event of a run: resume payloads (kind "event"), start, cancel, retry."""
    return _store().events(run_id)


def checkpoints(run_id: str) -> list[dict[str, Any]]:
    return _store().checkpoints(run_id)


def output(
    run_id: str,
    *,
    after_id: int = 0,
    step_id: str | None = None,
    attempt_id: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Output chunks (id, step_id, attempt_id, stream, text, created_at) after `after_id`."""
    return _store().output(
        run_id, after_id=after_id, step_id=step_id, attempt_id=attempt_id, limit=limit
    )


def check_event(run: dict[str, Any], payload: Any) -> list[Any]:
    """Validate an event payload for a waiting run with the same validator as `cpf resume`.

    Returns a list of `core.payload.FieldError` (empty when valid)."""
    from core.payload import check_payload

    wait = run.get("wait") or {}
    return check_payload(wait.get("input_schema"), payload)


def check_inputs(schema: dict[str, Any] | None, payload: Any) -> list[Any]:
    """Validate run inputs as `cpf run` does (FieldErrors, empty when valid)."""
    from core.payload import check_payload

    return check_payload(schema, payload)
