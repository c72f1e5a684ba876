"""The one step loop.

Every context (the top level now; foreach bodies, parallel branches and sub-workflows
as they arrive) runs its steps through `Runner.drive`: `if`, retry, attempts, output
streaming and the committed transition are handled here once, for every kind.

Each attempt costs two write transactions: `begin` (compare-and-set the run to
running at this step, insert the attempt) and `commit` (compare-and-set the run's
next state, close the attempt, write the checkpoint). Output chunks are appended in
their own small transactions while the step runs.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from core.envelope import CpfError, ErrorCode, ExitCode, StepFailure
from core.liveness import HEARTBEAT_SECONDS
from core.steps import handler_for
from core.steps.base import StepContext, StepOutcome
from core.store.store import Store, now_iso
from core.workflow.loader import LoadedWorkflow

WATCH_SECONDS = 0.25


class RunTaken(Exception):
    """The run was changed by someone else (cancelled, or another executor): stop."""


class Runner:
    def __init__(
        self, store: Store, wf: LoadedWorkflow, run: dict[str, Any], executor: str, run_dir: Path
    ) -> None:
        self.store = store
        self.wf = wf
        self.run = dict(run)
        self.run_id: str = run["run_id"]
        self.executor = executor
        self.run_dir = run_dir
        self.cancel = threading.Event()
        self.exit_code: int | None = None  # set when a step fails with a non-30 code
        self.interrupted: str | None = None  # the signal that stopped this executor
        # (attempt id, process group) of the step process running now; the watcher
        # records it in the store once the step outlives one tick, so a reaper can
        # stop the group if this executor dies (trivial steps never pay for it).
        self._child: tuple[int, int] | None = None
        self._child_recorded = False
        self.inputs = run.get("inputs") or {}
        self.step_outputs: dict[str, Any] = dict(run.get("step_outputs") or {})
        self.steps_scope = {k: {"outputs": v} for k, v in self.step_outputs.items()}
        self.scope: dict[str, Any] = {
            "inputs": self.inputs,
            "steps": self.steps_scope,
            "run": {"id": self.run_id, "workflow_id": wf.id},
        }

    # -- state -------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "step_outputs": self.step_outputs}

    def _set_output(self, step_id: str, outputs: Any) -> None:
        if outputs is None:
            return
        self.step_outputs = {**self.step_outputs, step_id: outputs}
        self.steps_scope[step_id] = {"outputs": outputs}

    def _cas(self, conn: Any, **values: Any) -> None:
        values.setdefault("updated_at", now_iso())
        if not self.store.cas_run(conn, self.run_id, self.run["version"], **values):
            raise RunTaken()
        self.run.update(values)
        self.run["version"] += 1

    def _next_id(self, index: int, jump: str | None) -> str | None:
        if jump is not None:
            return jump
        steps = self.wf.steps
        return steps[index + 1]["id"] if index + 1 < len(steps) else None

    # -- the loop ----------------------------------------------------------------------

    def drive(self, start_step_id: str | None) -> dict[str, Any]:
        """Run from `start_step_id` until the run waits, ends, fails or is taken away."""
        watcher = threading.Thread(target=self._watch, name="cpf-watch", daemon=True)
        stop = threading.Event()
        self._stop_watch = stop
        watcher.start()
        try:
            return self._drive(start_step_id)
        except RunTaken:
            return self._reload()
        finally:
            stop.set()

    def _drive(self, step_id: str | None) -> dict[str, Any]:
        index_of = self.wf.index_of
        steps = self.wf.steps
        while step_id is not None:
            if step_id not in index_of:
                return self._fail_run(
                    step_id,
                    StepFailure(
                        ErrorCode.ERR_STEP_FAILED,
                        f"Jump to unknown step '{step_id}'",
                        step_id=step_id,
                    ),
                )
            index = index_of[step_id]
            step = steps[index]
            cond = step.get("if")
            if cond is not None:
                from core.expr import ExprError, evaluate_condition

                try:
                    take = evaluate_condition(cond, self.scope)
                except ExprError as exc:
                    return self._fail_run(
                        step_id,
                        StepFailure(
                            ErrorCode.ERR_STEP_FAILED,
                            f"Step '{step_id}' has an invalid if-condition '{cond}': {exc}",
                            step_id=step_id,
                        ),
                    )
                if not take:
                    step_id = self._next_id(index, None)
                    continue
            outcome, attempt_id = self._attempts(step)
            next_id = self._next_id(index, outcome.next_step_id)
            self._commit(step, attempt_id, outcome, next_id)
            if outcome.status != "completed":
                return self.run
            step_id = next_id
        self._complete_implicitly()
        return self.run

    def _attempts(self, step: dict[str, Any]) -> tuple[StepOutcome, int]:
        retry = step.get("retry") or {}
        max_attempts = max(1, int(retry.get("max_attempts", 1)))
        backoff = float(retry.get("backoff_seconds", 0) or 0)
        exponential = retry.get("strategy") == "exponential"
        attempt = 1
        while True:
            attempt_id = self._begin(step, attempt)
            outcome = self._execute(step, attempt, attempt_id)
            if outcome.status != "failed" or attempt >= max_attempts or self.cancel.is_set():
                return outcome, attempt_id
            self._close_attempt(attempt_id, outcome)
            delay = backoff * (2 ** (attempt - 1) if exponential else 1)
            if delay > 0 and self.cancel.wait(delay):
                return StepOutcome(status="cancelled"), attempt_id
            attempt += 1

    def _execute(self, step: dict[str, Any], attempt: int, attempt_id: int) -> StepOutcome:
        kind = step["kind"]
        handler = handler_for(kind)
        if handler is None:
            return StepOutcome.failed(
                CpfError(
                    ErrorCode.ERR_UNSUPPORTED_STEP,
                    f"Step '{step['id']}': kind '{kind}' is not supported by this cpf",
                    exit_code=ExitCode.UNSUPPORTED,
                    step_id=step["id"],
                )
            )
        sid = step["id"]

        def sink(batch: list[tuple[str, str]]) -> None:
            self.store.append_output(self.run_id, attempt_id, sid, batch)

        ctx = StepContext(
            run_id=self.run_id,
            step=step,
            attempt=attempt,
            scope=self.scope,
            defaults=self.wf.defaults,
            workflow_path=self.wf.path,
            run_dir=self.run_dir,
            cancel=self.cancel,
            output=sink,
            on_pid=lambda pid: self._set_child(attempt_id, pid),
        )
        try:
            return handler(ctx)
        except CpfError as exc:
            return StepOutcome.failed(exc)
        except Exception as exc:  # a bug in a kind must still leave the run consistent
            return StepOutcome.failed(
                CpfError(
                    ErrorCode.ERR_INTERNAL,
                    f"Step '{sid}' crashed: {type(exc).__name__}: {exc}",
                    exit_code=ExitCode.INTERNAL_ERROR,
                    step_id=sid,
                )
            )

    # -- transactions ------------------------------------------------------------------

    def _begin(self, step: dict[str, Any], attempt: int) -> int:
        now = now_iso()
        with self.store.write() as conn:
            seq = int(self.run.get("attempt_seq") or 0) + 1
            self._cas(
                conn,
                status="running",
                current_step_id=step["id"],
                attempt_seq=seq,
                heartbeat_at=now,
                updated_at=now,
            )
            return self.store.insert_attempt(
                conn,
                {
                    "run_id": self.run_id,
                    "seq": seq,
                    "step_id": step["id"],
                    "step_kind": step["kind"],
                    "attempt": attempt,
                    "status": "running",
                    "started_at": now,
                },
            )

    def _attempt_values(self, outcome: StepOutcome, status: str) -> dict[str, Any]:
        err = outcome.error
        return {
            "status": status,
            "exit_code": outcome.exit_code,
            "error_code": err.code if err else None,
            "error_message": err.message if err else None,
            "outputs": outcome.outputs,
            "stdout_path": outcome.stdout_path,
            "stderr_path": outcome.stderr_path,
            "output_bytes": outcome.output_bytes,
            "truncated": outcome.truncated,
            "finished_at": now_iso(),
        }

    def _close_attempt(self, attempt_id: int, outcome: StepOutcome) -> None:
        with self.store.write() as conn:
            self.store.update_attempt(conn, attempt_id, **self._attempt_values(outcome, "failed"))

    def _commit(
        self, step: dict[str, Any], attempt_id: int, outcome: StepOutcome, next_id: str | None
    ) -> None:
        sid = step["id"]
        status = outcome.status
        previous = self._state()
        run_values: dict[str, Any]
        if status == "completed":
            self._set_output(sid, outcome.outputs)
            run_values = {"current_step_id": next_id, "step_outputs": self.step_outputs}
            attempt_status = "completed"
        elif status == "waiting":
            run_values = {"status": "waiting", "wait": outcome.wait, "current_step_id": sid}
            attempt_status = "waiting"
        elif status == "end":
            result = outcome.result
            self._set_output(sid, result)
            run_values = {
                "status": "completed",
                "result": result,
                "step_outputs": self.step_outputs,
                "current_step_id": sid,
                "finished_at": now_iso(),
                "wait": None,
            }
            attempt_status = "completed"
        elif status == "cancelled":
            # Only a cancel from elsewhere stops a step; the run row already says so.
            with self.store.write() as conn:
                self.store.update_attempt(
                    conn, attempt_id, **self._attempt_values(outcome, "cancelled")
                )
            raise RunTaken()
        else:
            err = outcome.error or StepFailure(ErrorCode.ERR_STEP_FAILED, f"Step '{sid}' failed")
            if err.step_id is None:
                err.step_id = sid
            if err.exit_code != ExitCode.STEP_FAILED:
                self.exit_code = err.exit_code
            run_values = {
                "status": "failed",
                "error": err.to_error(),
                "current_step_id": sid,
                "finished_at": now_iso(),
            }
            attempt_status = "failed"
        cp_step = int(self.run.get("checkpoint_step", -1)) + 1
        run_values["checkpoint_step"] = cp_step
        try:
            with self.store.write() as conn:
                self._cas(conn, **run_values)
                self.store.update_attempt(
                    conn, attempt_id, **self._attempt_values(outcome, attempt_status)
                )
                self.store.insert_run_checkpoint(
                    conn,
                    run_id=self.run_id,
                    step=cp_step,
                    label=sid,
                    state=self._state(),
                    previous_state=previous,
                    metadata={
                        "run_id": self.run_id,
                        "step_kind": step["kind"],
                        "status": self.run["status"],
                        "attempt_id": attempt_id,
                    },
                )
        except RunTaken:
            with self.store.write() as conn:
                self.store.update_attempt(
                    conn, attempt_id, **self._attempt_values(outcome, attempt_status)
                )
            raise

    def accept_event(
        self,
        wait: dict[str, Any],
        event_name: str,
        payload: Any,
        *,
        actor: str,
        surface: str,
    ) -> str | None:
        """Record a validated event on the waiting step and take its transition, in one
        transaction (a compare-and-set from waiting: of racing resumes one wins).

        Returns the next step id; on a bad transition the run is left failed."""
        from core.expr import ExprError, evaluate_condition

        sid = wait["step_id"]
        index = self.wf.index_of[sid]
        step = self.wf.steps[index]
        scope = {**self.scope, "event": payload}
        jump: str | None = None
        error: CpfError | None = None
        for i, tr in enumerate(step.get("transitions") or []):
            try:
                if evaluate_condition(tr["when"], scope):
                    jump = tr["next"]
                    break
            except ExprError as exc:
                error = StepFailure(
                    ErrorCode.ERR_STEP_FAILED,
                    f"Step '{sid}': transitions[{i}] '{tr['when']}' cannot be evaluated: {exc}",
                    step_id=sid,
                )
                break
        if error is None and jump is not None and jump not in self.wf.index_of:
            error = StepFailure(
                ErrorCode.ERR_STEP_FAILED,
                f"Step '{sid}': transition target '{jump}' does not exist",
                step_id=sid,
            )
        previous = self._state()
        self._set_output(sid, payload)
        next_id = self._next_id(index, jump)
        now = now_iso()
        values: dict[str, Any] = {
            "status": "running",
            "wait": None,
            "step_outputs": self.step_outputs,
            "current_step_id": next_id,
            "executor": self.executor,
            "heartbeat_at": now,
            "updated_at": now,
        }
        if error is not None:
            values.update(
                status="failed", error=error.to_error(), current_step_id=sid, finished_at=now
            )
        cp_step = int(self.run.get("checkpoint_step", -1)) + 1
        values["checkpoint_step"] = cp_step
        with self.store.write() as conn:
            self._cas(conn, **values)
            self.store.insert_event(
                conn,
                run_id=self.run_id,
                step_id=sid,
                kind="event",
                event_name=event_name,
                data=payload,
                actor=actor,
                surface=surface,
            )
            self.store.close_waiting_attempts(conn, self.run_id, outputs=payload)
            self.store.insert_run_checkpoint(
                conn,
                run_id=self.run_id,
                step=cp_step,
                label=sid,
                state=self._state(),
                previous_state=previous,
                metadata={
                    "run_id": self.run_id,
                    "step_kind": "await_event",
                    "status": values["status"],
                    "event_name": event_name,
                },
            )
        return next_id

    def _fail_run(self, step_id: str, err: CpfError) -> dict[str, Any]:
        """A failure outside any attempt (bad `if`, bad jump): mark the run failed."""
        with self.store.write() as conn:
            self._cas(
                conn,
                status="failed",
                error=err.to_error(),
                current_step_id=step_id,
                finished_at=now_iso(),
            )
        return self.run

    def _complete_implicitly(self) -> None:
        with self.store.write() as conn:
            self._cas(conn, status="completed", current_step_id=None, finished_at=now_iso())

    def _reload(self) -> dict[str, Any]:
        fresh = self.store.get_run(self.run_id)
        if fresh is not None:
            self.run = fresh
        return self.run

    # -- liveness and cancellation -------------------------------------------------------

    def _set_child(self, attempt_id: int, pid: int) -> None:
        self._child = (attempt_id, pid)
        self._child_recorded = False

    def _watch(self) -> None:
        """Beat the heartbeat, and notice a cancel written by another process."""
        last_beat = time.monotonic()
        stop = self._stop_watch
        while not stop.wait(WATCH_SECONDS):
            try:
                state = self.store.run_status(self.run_id)
                # Someone else ended the run (cancel, or a reaper): stop the step.
                if state is None or (
                    state[0] in ("cancelled", "failed", "completed")
                    and state[1] != self.run["version"]
                ):
                    self.cancel.set()
                child = self._child
                if child is not None and not self._child_recorded:
                    with self.store.write() as conn:
                        self.store.update_attempt(conn, child[0], pid=child[1])
                    self._child_recorded = True
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    self.store.touch_heartbeat(self.run_id, self.executor)
                    last_beat = time.monotonic()
            except CpfError:
                continue  # a busy store must not kill the executor; try again next tick
