"""Cancel, retry and delete runs from any screen that shows one (with confirmations).

Cancel and delete call the engine in a worker thread; retry spawns a detached
`cpf retry` process so the continued run outlives the app.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen

from cpf_tui.screens.dialogs import ConfirmDialog, ReasonDialog, RetryDialog
from cpf_tui.work import off_thread, track

ACTIVE = ("created", "running", "waiting")
FINISHED = ("completed", "failed", "cancelled")


def allowed(action: str, run: dict[str, Any] | None) -> bool:
    """Whether a run action applies to `run` (hides the key from the footer when not)."""
    needs = {"answer": ("waiting",), "cancel": ACTIVE, "retry": ("failed",), "delete": FINISHED}
    if action not in needs:
        return True
    return run is not None and run.get("status") in needs[action]


def refusal(action: str, run: dict[str, Any] | None) -> str | None:
    """Why a run action does not apply to `run` (None when it does)."""
    if allowed(action, run):
        return None
    if run is None:
        return "The run is not loaded yet."
    status = run.get("status")
    return {
        "answer": f"This run is {status}: it is not waiting for input.",
        "cancel": f"This run is {status}: nothing to cancel.",
        "retry": f"Only failed runs can be retried (this one is {status}).",
        "delete": f"Only finished runs can be deleted (this one is {status}); cancel it first.",
    }.get(action)


def run_label(run: dict[str, Any]) -> str:
    return f"{run.get('workflow_id')} run {run['run_id'][:8]}"


class RunControl(Screen[Any]):
    """Screens that act on runs implement `control_done()` to refresh themselves."""

    def control_done(self, run_id: str) -> None:
        """Called after a control action changed `run_id`."""

    # -- cancel ----------------------------------------------------------------------------

    def control_cancel(self, run: dict[str, Any] | None) -> None:
        if run is None:
            return
        if reason := refusal("cancel", run):
            self.notify(reason, severity="warning")
            return
        self.run_worker(self._cancel(run), group="control", exclusive=True)

    async def _cancel(self, run: dict[str, Any]) -> None:
        from core import engine

        reason = await self.app.push_screen_wait(
            ReasonDialog(
                f"Cancel {run_label(run)}?",
                f"The run is {run['status']}"
                + (f" at step '{run.get('current_step_id')}'" if run.get("current_step_id") else "")
                + ". A running step is stopped (its whole process group). "
                "The reason is recorded with your user name.",
            )
        )
        if not reason:
            return
        envelope = await off_thread(
            engine.cancel_run,
            run["run_id"],
            reason,
            actor=engine.default_actor(),
            surface="tui",
        )
        if envelope.ok:
            self.notify(f"Cancelled {run_label(run)}.", title="Cancel")
        else:
            self._engine_error("Cancel", envelope)
        self.control_done(run["run_id"])

    # -- retry -----------------------------------------------------------------------------

    def control_retry(self, run: dict[str, Any] | None) -> None:
        if run is None:
            return
        if reason := refusal("retry", run):
            self.notify(reason, severity="warning")
            return
        self.run_worker(self._retry(run), group="control", exclusive=True)

    async def _retry(self, run: dict[str, Any]) -> None:
        from core import engine, spawn

        steps = await off_thread(_retry_steps, run)
        failed = (run.get("error") or {}).get("step_id") or run.get("current_step_id")
        step = await self.app.push_screen_wait(RetryDialog(run_label(run), steps, failed))
        if not step:
            return
        spawned = await off_thread(
            spawn.spawn_retry, run["run_id"], step, actor=engine.default_actor()
        )
        track(self, spawned, "retry")
        self.notify(f"Retrying {run_label(run)} from '{step}'.", title="Retry")
        self.control_done(run["run_id"])

    # -- delete ----------------------------------------------------------------------------

    def control_delete(self, run: dict[str, Any] | None) -> None:
        if run is None:
            return
        if reason := refusal("delete", run):
            self.notify(reason, severity="warning")
            return
        self.run_worker(self._delete(run), group="control", exclusive=True)

    async def _delete(self, run: dict[str, Any]) -> None:
        from core import engine

        ok = await self.app.push_screen_wait(
            ConfirmDialog(
                f"Delete {run_label(run)}?",
                "Its record, output, events, checkpoints and artifacts are removed for good.",
                confirm="Delete",
                danger=True,
            )
        )
        if not ok:
            return
        envelope = await off_thread(engine.delete_run, run["run_id"])
        if envelope.ok:
            self.notify(f"Deleted {run_label(run)}.", title="Delete")
        else:
            self._engine_error("Delete", envelope)
        self.control_done(run["run_id"])

    def _engine_error(self, title: str, envelope: Any) -> None:
        error = envelope.error or {}
        self.notify(
            f"{error.get('code', 'error')}: {error.get('message', '')}",
            title=title,
            severity="error",
            timeout=10,
        )


def _retry_steps(run: dict[str, Any]) -> list[str]:
    """The steps a run can continue from: its workflow's top-level steps (or, when the
    file cannot be read, the steps it ran)."""
    from core import queries
    from core.envelope import CpfError
    from core.workflow.loader import load_workflow

    try:
        return [s["id"] for s in load_workflow(run["workflow_path"]).steps]
    except (CpfError, KeyError, OSError):
        seen: list[str] = []
        for a in queries.attempts(run["run_id"]):
            if a.get("parent_id") is None and a["step_id"] not in seen:
                seen.append(a["step_id"])
        return seen
