"""Read-only views of runs for the TUI and the service: plain dicts, no SQL outside.

Every read of a run that may be `running` first checks its executor is alive
(`engine.touch`), so a crashed run never shows as running forever and a passed
await deadline is applied.
"""

from __future__ import annotations

import json
from typing import Any

from core.engine import _store, touch
from core.store.store import SUMMARY_COLUMNS, variant


def get_run(run_id: str) -> dict[str, Any] | None:
    store = _store()
    run = store.get_run(run_id)
    return None if run is None else touch(store, run)


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
        run = touch(store, run)
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


# -- light reads for live views (the TUI polls these several times a second) -----------

_LAZY_JSON = ("wait", "error")
_JSON_WHEN = {
    "waiting": ("wait",),
    "failed": ("error",),
    "cancelled": ("error",),
    "running": ("error",),
    "created": ("error",),
}


def run_summaries(
    *,
    status: str | None = None,
    workflow_id: str | None = None,
    updated_after: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Runs newest first with the list columns only; `updated_after` (exclusive) returns
    just the runs changed since a previous read. Dead executors are reaped."""
    store = _store()
    # The JSON columns come back as text and are decoded only where the list shows
    # them (the error of a failed run, the wait of a waiting one): on 10,000 runs
    # that halves the read.
    name = variant(
        "run_summaries",
        status=status,
        workflow_id=workflow_id,
        updated_after=updated_after,
        limit=limit,
    )
    params = {
        "status": status,
        "workflow_id": workflow_id,
        "updated_after": updated_after,
        "limit": limit,
    }
    with store.sql.read() as conn:
        rows = store.sql.rows(conn, name, params)
    for row in rows:
        wanted = _JSON_WHEN.get(row["status"], ())
        for name in _LAZY_JSON:
            value = row[name]
            if isinstance(value, str):
                row[name] = json.loads(value) if name in wanted else None
    out = []
    for row in rows:
        if row["status"] in ("running", "created"):
            fresh = touch(store, row)
            if fresh is not row:
                row = {k: fresh.get(k) for k in SUMMARY_COLUMNS}
        if status and row["status"] != status:
            continue
        out.append(row)
    return out


def runs_overview() -> dict[str, Any]:
    """{"total", "by_status": {status: n}, "last_updated"}: cheap enough to poll, and
    it changes whenever any run is added, changed or deleted."""
    store = _store()
    with store.sql.read() as conn:
        by_status = {s: int(n) for s, n in store.sql.tuples(conn, "runs_by_status")}
        last = store.sql.scalar(conn, "runs_last_updated")
    return {"total": sum(by_status.values()), "by_status": by_status, "last_updated": last}


def output_tail(
    run_id: str,
    *,
    step_id: str | None = None,
    attempt_id: int | None = None,
    max_lines: int = 10_000,
    page: int = 200,
) -> dict[str, Any]:
    """The newest output chunks holding at least `max_lines` lines (oldest first), so a
    viewer of a huge log reads only its end. `complete` is False when older chunks exist."""
    store = _store()
    params: dict[str, Any] = {
        "run_id": run_id,
        "step_id": step_id,
        "attempt_id": attempt_id,
        "limit": page,
    }

    def newest(conn: Any, before: int | None, limit: int) -> list[dict[str, Any]]:
        name = variant(
            "output_tail",
            step_id=step_id is not None,
            attempt_id=attempt_id is not None,
            before=before is not None,
        )
        return store.sql.rows(conn, name, {**params, "before": before, "limit": limit})

    picked: list[dict[str, Any]] = []
    lines = 0
    complete = True
    with store.sql.read() as conn:
        before: int | None = None
        while lines < max_lines:
            rows = newest(conn, before, page)
            for row in rows:
                picked.append(row)
                lines += row["text"].count("\n")
                if lines >= max_lines:
                    break
            if len(rows) < page:
                break
            before = rows[-1]["id"]
        if lines >= max_lines and picked:
            complete = not newest(conn, picked[-1]["id"], 1)
    picked.reverse()
    return {"chunks": picked, "complete": complete}


def attempts_signature(run_id: str) -> tuple[int, int, str | None]:
    """(count, newest id, newest finished_at) of a run's attempts: changes whenever an
    attempt is written, even when the run row itself does not (a step that starts)."""
    store = _store()
    with store.sql.read() as conn:
        ((count, newest, finished),) = store.sql.tuples(
            conn, "attempts_signature", {"run_id": run_id}
        )
    return int(count or 0), int(newest or 0), finished
