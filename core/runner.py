"""The one step loop.

Every context runs its steps through `Runner.run_frame`: the top level of a run, a
foreach iteration, a parallel branch, a sub-workflow. `if`, retry, attempts, output
streaming, jumps and the committed transition are handled here once, for every kind.

A step's transition (compare-and-set the run's next state, close the attempt, write
the checkpoint) is one transaction. A `cli` step also records its attempt and process
group before its command may run (crash safety, core.process); the previous step's
transition is deferred into that transaction, so a chain of `cli` steps costs one
durable commit per step (see `Runner._commit`). Output chunks are appended in their own
small transactions while the step runs. Parallel branches commit from several threads;
one lock keeps the run's compare-and-set sequence in order.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.envelope import CpfError, ErrorCode, ExitCode, StepFailure
from core.liveness import FENCE_MARGIN, LEASE_SECONDS, RENEW_SECONDS, executor_id
from core.steps import handler_for
from core.steps.base import FrameResult, StepContext, StepOutcome
from core.store.sqlexec import StaleWrite
from core.store.store import Store, now_iso
from core.workflow.loader import LoadedWorkflow

WATCH_SECONDS = 0.25
# A backward jump can loop; past this many visits of one step, the run fails.
MAX_VISITS = 10_000
# Kinds that do nothing outside the store before their first store write: a `cli` step's
# command is held until its process group is recorded; the others only compute. The
# previous step's deferred transition joins that first write (see Runner._commit).
JOINING_KINDS = frozenset({"cli", "end", "switch", "await_event"})


class RunTaken(Exception):
    """The run was changed by someone else (cancelled, or another executor): stop."""


@dataclass
class Frame:
    """One context of the step loop: a list of steps, its scope and where it records."""

    steps: list[dict[str, Any]]
    scope: dict[str, Any]  # expression roots; scope["steps"] is this frame's map
    workflow: LoadedWorkflow
    top: bool = False
    parent_id: int | None = None  # the attempt of the step that opened this frame
    label: str = ""  # "loop[2]/", "fan/", "deploy/": prefixes records of nested steps
    outputs: dict[str, Any] = field(default_factory=dict)
    depth: int = 0

    def __post_init__(self) -> None:
        self.index_of = {s["id"]: i for i, s in enumerate(self.steps)}
        # Steps that are parallel branch targets run only as branches, never by the walk.
        self.branch_only = {
            b["start_at"]
            for s in self.steps
            if s.get("kind") == "parallel"
            for b in s.get("branches") or []
        }


@dataclass
class Attempt:
    """One attempt of one step. Its row is written lazily: at commit for a step that
    ends quickly, or as soon as it prints, opens a nested context or outlives one
    watcher tick, so a trivial step costs one transaction, not two."""

    frame: Frame
    step: dict[str, Any]
    number: int
    seq: int
    started_at: str
    id: int | None = None
    pid: int | None = None
    proc: str | None = None  # its process group, "host:pgid:start" (core.liveness)
    born: float = field(default_factory=time.monotonic)

    def row(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "seq": self.seq,
            "step_id": self.step["id"],
            "step_kind": self.step["kind"],
            "attempt": self.number,
            "parent_id": self.frame.parent_id,
            "context": self.frame.label.rstrip("/") or None,
            "status": "running",
            "started_at": self.started_at,
        }


@dataclass
class Transition:
    """One committed outcome of an attempt, as `Runner._commit` writes it."""

    att: Attempt
    attempt_values: dict[str, Any]
    run_values: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    kind: str = ""


class Runner:
    # Set when the run completed after its last step, without an `end` step.
    completed_implicitly = False

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
        # The lease (core.liveness): renewals match this id; `lease_from` is the
        # monotonic time just before the last successful grant or renewal began.
        self.executor_id = executor_id()
        self.lease_from = time.monotonic()
        self.fenced = False  # the lease could not be kept: steps stopped, no more writes
        self.fence_reason = ""
        self._lock = threading.RLock()
        # Transitions deferred by `_commit`, written by the next transaction (`_hot`).
        self._pending: list[Transition] = []
        # Attempts in flight (parallel branches run several): the watcher writes the rows
        # of those that outlive a tick (trivial steps never pay for it). Process groups
        # are recorded before their command runs (_record_process).
        self._active: dict[int, Attempt] = {}
        self.inputs = run.get("inputs") or {}
        self.step_outputs: dict[str, Any] = dict(run.get("step_outputs") or {})
        self.top = Frame(
            steps=wf.steps,
            scope={
                "inputs": self.inputs,
                "steps": {k: {"outputs": v} for k, v in self.step_outputs.items()},
                "run": {"id": self.run_id, "workflow_id": wf.id},
            },
            workflow=wf,
            top=True,
            outputs=self.step_outputs,
        )

    # -- state -------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "step_outputs": dict(self.step_outputs)}

    @staticmethod
    def _set_output(frame: Frame, step_id: str, outputs: Any) -> None:
        if outputs is None:
            return
        frame.outputs[step_id] = outputs
        frame.scope["steps"][step_id] = {"outputs": outputs}

    @contextlib.contextmanager
    def _hot(self) -> Iterator[Any]:
        """A write transaction, unless this executor fenced itself (then it stops). It
        first writes the transitions deferred so far (`_commit`), so they become durable
        no later than whatever this transaction records."""
        if self.fenced:
            raise RunTaken()
        with self._lock:
            pending, self._pending = self._pending, []
            saved = dict(self.run)
            unsaved = [t.att for t in pending if t.att.id is None]
            try:
                try:
                    # A batch: on PostgreSQL sent in one round trip when the block ends;
                    # a lost compare-and-set (`_cas`) then aborts it there.
                    with self.store.hot(batch=True) as conn:
                        for transition in pending:
                            self._write_transition(conn, transition)
                        yield conn
                except StaleWrite as exc:
                    raise RunTaken() from exc
            except RunTaken:
                self._close_taken(pending)
                raise
            except BaseException:
                # Rolled back: the owed transitions are written by the next transaction,
                # against the run's version before this one.
                self.run.clear()
                self.run.update(saved)
                for att in unsaved:
                    att.id = None
                self._pending = pending + self._pending
                raise

    def _flush(self) -> None:
        """Write the deferred transitions now (before a step that may act outside the
        store before its first write)."""
        with self._lock:
            if self._pending:
                with self._hot():
                    pass

    def _close_taken(self, transitions: list[Transition]) -> None:
        """The run was taken while transitions were owed: close their attempts anyway
        (as `_commit` does), unless fenced."""
        if not transitions or self.fenced:
            return
        with self.store.hot() as conn:
            for transition in transitions:
                self._save_attempt(conn, transition.att, transition.attempt_values)

    def _cas(self, conn: Any, **values: Any) -> None:
        """Compare-and-set the run in a `_hot` transaction: if another process changed
        it, the whole transaction writes nothing and raises RunTaken (on PostgreSQL
        when the batch is sent; the in-memory row is then stale, and unused)."""
        values.setdefault("updated_at", now_iso())
        self.store.set_run(conn, self.run_id, self.run["version"], **values)
        self.run.update(values)
        self.run["version"] += 1

    @staticmethod
    def _next_id(frame: Frame, index: int, jump: str | None) -> str | None:
        if jump is not None:
            return jump
        steps = frame.steps
        return steps[index + 1]["id"] if index + 1 < len(steps) else None

    # -- the loop ----------------------------------------------------------------------

    def drive(self, start_step_id: str | None) -> dict[str, Any]:
        """Run the top level from `start_step_id` until it waits, ends, fails or is
        taken away; return the run row as it stands."""
        stop = threading.Event()
        self._stop_watch = stop
        threading.Thread(target=self._watch, name="cpf-watch", daemon=True).start()
        threading.Thread(target=self._fence_watch, name="cpf-fence", daemon=True).start()
        try:
            result = self.run_frame(self.top, start_step_id)
            self._flush()  # (the last transition is never deferred: nothing is owed)
            if result.status == "completed":
                self._complete_implicitly()
            return self.run
        except RunTaken:
            # Fenced: no read either (the store may hang); the caller reports it.
            return self.run if self.fenced else self._reload()
        finally:
            stop.set()

    def run_frame(self, frame: Frame, step_id: str | None) -> FrameResult:
        """Walk `frame` from `step_id`. Top frame: run-level transitions are committed as
        they happen. Nested frames: their steps are recorded under `frame.parent_id`,
        and the result goes back to the step that opened the frame."""
        visits: dict[str, int] = {}
        first = True
        while step_id is not None:
            if step_id not in frame.index_of:
                err = StepFailure(
                    ErrorCode.ERR_STEP_FAILED, f"Jump to unknown step '{step_id}'", step_id=step_id
                )
                return self._frame_failure(frame, step_id, err)
            index = frame.index_of[step_id]
            step = frame.steps[index]
            # A branch target is skipped by the walk (its parallel step ran it), except
            # when a frame is opened on it: a parallel branch, or a retry from it.
            if step_id in frame.branch_only and not first:
                step_id = self._next_id(frame, index, None)
                continue
            first = False
            visits[step_id] = visits.get(step_id, 0) + 1
            if visits[step_id] > MAX_VISITS:
                err = StepFailure(
                    ErrorCode.ERR_STEP_FAILED,
                    f"Step '{step_id}' ran {MAX_VISITS} times in one context: a jump loops",
                    step_id=step_id,
                )
                return self._frame_failure(frame, step_id, err)
            cond = step.get("if")
            if cond is not None:
                from core.expr import ExprError, evaluate_condition

                try:
                    take = evaluate_condition(cond, frame.scope)
                except ExprError as exc:
                    err = StepFailure(
                        ErrorCode.ERR_STEP_FAILED,
                        f"Step '{step_id}' has an invalid if-condition '{cond}': {exc}",
                        step_id=step_id,
                    )
                    return self._frame_failure(frame, step_id, err)
                if not take:
                    step_id = self._next_id(frame, index, None)
                    continue
            outcome, att = self._attempts(frame, step)
            if (
                outcome.status == "completed"
                and outcome.next_step_id is not None
                and outcome.next_step_id not in frame.index_of
            ):
                outcome = StepOutcome.failed(
                    StepFailure(
                        ErrorCode.ERR_STEP_FAILED,
                        f"Step '{step_id}' jumps to unknown step '{outcome.next_step_id}'",
                        step_id=step_id,
                    ),
                    outputs=outcome.outputs,
                )
            next_id = self._next_id(frame, index, outcome.next_step_id)
            self._commit(frame, step, att, outcome, next_id)
            if outcome.status == "end":
                return FrameResult("end", result=outcome.result, outputs=frame.outputs)
            if outcome.status == "failed":
                err = outcome.error
                return FrameResult(
                    "failed", error=err, outputs=frame.outputs, exit_code=self._exit_code(err)
                )
            if outcome.status != "completed":
                return FrameResult(outcome.status, outputs=frame.outputs)
            step_id = next_id
        return FrameResult("completed", outputs=frame.outputs)

    def _frame_failure(self, frame: Frame, step_id: str, err: CpfError) -> FrameResult:
        if frame.top:
            self._fail_run(step_id, err)
        return FrameResult("failed", error=err, outputs=frame.outputs)

    @staticmethod
    def _exit_code(err: CpfError | None) -> int:
        return int(err.exit_code) if err is not None else int(ExitCode.STEP_FAILED)

    def _attempts(self, frame: Frame, step: dict[str, Any]) -> tuple[StepOutcome, Attempt]:
        retry = step.get("retry") or {}
        max_attempts = max(1, int(retry.get("max_attempts", 1)))
        backoff = float(retry.get("backoff_seconds", 0) or 0)
        exponential = retry.get("strategy") == "exponential"
        number = 1
        while True:
            att = self._begin(frame, step, number)
            outcome = self._execute(frame, step, att)
            if outcome.status != "failed" or number >= max_attempts or self.cancel.is_set():
                return outcome, att
            self._close_attempt(att, outcome)
            left = self._stop_leftovers(att)
            if left is not None:
                return StepOutcome.failed(left), att
            delay = backoff * (2 ** (number - 1) if exponential else 1)
            if delay > 0 and self.cancel.wait(delay):
                return StepOutcome(status="cancelled"), att
            number += 1

    def _execute(self, frame: Frame, step: dict[str, Any], att: Attempt) -> StepOutcome:
        kind = step["kind"]
        sid = step["id"]
        if kind == "await_event" and not frame.top:
            return StepOutcome.failed(
                StepFailure(
                    ErrorCode.ERR_STEP_FAILED,
                    f"Step '{sid}': await_event can only run at the top level of a workflow",
                    step_id=sid,
                )
            )
        if kind not in JOINING_KINDS:
            self._flush()  # it may act outside the store before its first write
        handler = handler_for(kind)
        if handler is None:
            return StepOutcome.failed(
                CpfError(
                    ErrorCode.ERR_UNSUPPORTED_STEP,
                    f"Step '{sid}': kind '{kind}' is not supported by this cpf",
                    exit_code=ExitCode.UNSUPPORTED,
                    step_id=sid,
                )
            )

        def sink(batch: list[tuple[str, str]]) -> None:
            attempt_id = self._ensure(att)
            if self.fenced:
                raise RunTaken()
            self.store.append_output(self.run_id, attempt_id, sid, batch)

        def nested(
            steps: list[dict[str, Any]],
            start: str | None,
            scope: dict[str, Any],
            label: str,
            workflow: LoadedWorkflow | None = None,
        ) -> FrameResult:
            child = Frame(
                steps=steps,
                scope=scope,
                workflow=workflow or frame.workflow,
                parent_id=self._ensure(att),
                label=f"{frame.label}{label}",
                depth=frame.depth + 1,
            )
            if child.depth > 20:
                err = StepFailure(
                    ErrorCode.ERR_STEP_FAILED,
                    f"Step '{sid}': contexts nested more than 20 deep",
                    step_id=sid,
                )
                return FrameResult("failed", error=err)
            return self.run_frame(child, start)

        ctx = StepContext(
            run_id=self.run_id,
            step=step,
            attempt=att.number,
            scope=frame.scope,
            defaults=frame.workflow.defaults,
            workflow_path=frame.workflow.path,
            run_dir=self.run_dir,
            cancel=self.cancel,
            output=sink,
            on_pid=lambda pid: self._record_process(att, pid),
            artifact_name=f"{frame.label}{sid}",
            nested=nested,
            siblings=frame.steps,
        )
        try:
            return _snapshot(handler(ctx), sid)
        except RunTaken:
            raise
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
        finally:
            att.pid = None

    @staticmethod
    def _stop_leftovers(att: Attempt) -> CpfError | None:
        """Before the next attempt: stop what the failed one left running in its process
        group (background children), so two attempts never run at once."""
        if att.proc is None:
            return None
        from core.liveness import StepGroup, stop_groups

        group = StepGroup.parse(att.proc)
        if group is None or not stop_groups([group]):
            return None
        sid = att.step["id"]
        return StepFailure(
            ErrorCode.ERR_STEP_FAILED,
            f"Step '{sid}': attempt {att.number} left processes that cannot be stopped "
            f"({group}); not starting another attempt beside them",
            step_id=sid,
        )

    # -- transactions ------------------------------------------------------------------

    def _begin(self, frame: Frame, step: dict[str, Any], number: int) -> Attempt:
        with self._lock:
            seq = int(self.run.get("attempt_seq") or 0) + 1
            self.run["attempt_seq"] = seq  # persisted with the next compare-and-set
            att = Attempt(frame, step, number, seq, now_iso())
            self._active[seq] = att
            return att

    def _ensure(self, att: Attempt) -> int:
        """Write the attempt's row now (it prints, nests or runs long); return its id."""
        with self._lock:
            if att.id is None:
                with self._hot() as conn:
                    if att.id is None:  # (a deferred transition written first may have)
                        att.id = self.store.insert_attempt(conn, att.row(self.run_id))
            return att.id

    def _record_process(self, att: Attempt, pid: int) -> None:
        """Commit the attempt's process group (row written now if need be). The
        process is held before its command until this returns, so no step process
        runs unrecorded: if this executor dies, a reaper finds the group here."""
        from core.liveness import process_identity

        with self._lock:
            # Known before the fenced check below: a fence either sees it here and stops
            # the group, or this write refuses and core.process kills the held child.
            att.pid = pid
            att.proc = process_identity(pid)
            new_id = None
            with self._hot() as conn:
                if att.id is None:
                    row = {**att.row(self.run_id), "pid": pid, "proc": att.proc}
                    new_id = self.store.insert_attempt_later(conn, row)
                else:
                    self.store.update_attempt(conn, att.id, pid=pid, proc=att.proc)
            if new_id is not None:
                att.id = new_id()

    def _save_attempt(self, conn: Any, att: Attempt, values: dict[str, Any]) -> int:
        """Close the attempt in the caller's transaction: insert or update its row."""
        if att.id is None:
            att.id = self.store.insert_attempt(conn, {**att.row(self.run_id), **values})
        else:
            self.store.update_attempt(conn, att.id, **values)
        self._active.pop(att.seq, None)
        return att.id

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

    def _close_attempt(self, att: Attempt, outcome: StepOutcome) -> None:
        with self._lock, self._hot() as conn:
            self._save_attempt(conn, att, self._attempt_values(outcome, "failed"))

    def _run_values(
        self, frame: Frame, step: dict[str, Any], outcome: StepOutcome, next_id: str | None
    ) -> tuple[dict[str, Any], str]:
        """The run-row changes and the attempt status of one committed outcome."""
        sid = step["id"]
        status = outcome.status
        if status in ("completed", "end"):
            self._set_output(frame, sid, outcome.outputs)
            for child_id, child_out in (outcome.extra.get("set_outputs") or {}).items():
                self._set_output(frame, child_id, child_out)
        if not frame.top:
            if status == "failed" and outcome.error is not None and outcome.error.step_id is None:
                outcome.error.step_id = sid
            return {}, "failed" if status == "failed" else "completed"
        if status == "completed":
            # After the last step the run keeps naming it (as checkpointflow does).
            values = {"current_step_id": next_id or sid, "step_outputs": dict(self.step_outputs)}
            return values, status
        if status == "waiting":
            return {"status": "waiting", "wait": outcome.wait, "current_step_id": sid}, "waiting"
        if status == "end":
            error = self._check_workflow_outputs(outcome.result)
            if error is not None:
                outcome.status, outcome.error = "failed", error
                return self._failed_values(sid, error), "completed"
            values = {
                "status": "completed",
                "result": outcome.result,
                "step_outputs": dict(self.step_outputs),
                "current_step_id": sid,
                "finished_at": now_iso(),
                "wait": None,
            }
            return values, "completed"
        err = outcome.error or StepFailure(ErrorCode.ERR_STEP_FAILED, f"Step '{sid}' failed")
        if err.step_id is None:
            err.step_id = sid
        outcome.error = err
        return self._failed_values(sid, err), "failed"

    def _failed_values(self, sid: str, err: CpfError) -> dict[str, Any]:
        if err.exit_code != ExitCode.STEP_FAILED:
            self.exit_code = err.exit_code
        return {
            "status": "failed",
            "error": err.to_error(),
            "current_step_id": sid,
            "step_outputs": dict(self.step_outputs),
            "finished_at": now_iso(),
        }

    def _commit(
        self,
        frame: Frame,
        step: dict[str, Any],
        att: Attempt,
        outcome: StepOutcome,
        next_id: str | None,
    ) -> None:
        """The run's next state (compare-and-set), the attempt's row, and the checkpoint
        of the transition, in one transaction.

        A step that completed with a next step in its frame is deferred: its transition
        joins the next transaction (`_hot`), which for a `cli` step is the one that
        records the next step's process group before its command may run. So a chain of
        steps pays one durable commit per step, not two, and nothing of step N+1 acts
        outside the store before step N's transition is durable (`_execute` writes it
        first for kinds that could). An executor that dies in between loses step N's
        transition, as if it had died just before committing it: `cpf retry` runs N
        again, never N+1 beside it."""
        if outcome.status == "cancelled":
            # Only a cancel from elsewhere stops a step; the run row already says so.
            values = self._attempt_values(outcome, "cancelled")
            try:
                with self._lock, self._hot() as conn:
                    self._save_attempt(conn, att, values)
            except RunTaken:
                self._close_taken([Transition(att, values)])
            raise RunTaken()
        with self._lock:
            transition = self._transition(frame, step, att, outcome, next_id)
            if outcome.status == "completed" and next_id is not None:
                self._pending.append(transition)
                return
            try:
                with self._hot() as conn:
                    self._write_transition(conn, transition)
            except RunTaken:
                self._close_taken([transition])
                raise

    def _transition(
        self,
        frame: Frame,
        step: dict[str, Any],
        att: Attempt,
        outcome: StepOutcome,
        next_id: str | None,
    ) -> Transition:
        """What `_commit` writes for one outcome; the in-memory state (outputs, the
        checkpoint counter) moves on now, the run's version when it is written."""
        previous = self._state()
        run_values, attempt_status = self._run_values(frame, step, outcome, next_id)
        cp_step = int(self.run.get("checkpoint_step", -1)) + 1
        run_values.update(checkpoint_step=cp_step, heartbeat_at=now_iso())
        self.run["checkpoint_step"] = cp_step
        return Transition(
            att,
            self._attempt_values(outcome, attempt_status),
            run_values=run_values,
            checkpoint={
                "step": cp_step,
                "label": f"{frame.label}{step['id']}",
                "state": self._state(),
                "previous_state": previous,
            },
            kind=step["kind"],
        )

    def _write_transition(self, conn: Any, transition: Transition) -> None:
        # attempt_seq: the highest drawn so far (a deferred transition is written with
        # the next step's attempt, whose seq it covers).
        self._cas(conn, **transition.run_values, attempt_seq=self.run["attempt_seq"])
        attempt_id = self._save_attempt(conn, transition.att, transition.attempt_values)
        self.store.insert_run_checkpoint(
            conn,
            run_id=self.run_id,
            **transition.checkpoint,
            metadata={
                "run_id": self.run_id,
                "step_kind": transition.kind,
                "status": self.run["status"],
                "attempt_id": attempt_id,
            },
        )

    def _check_workflow_outputs(self, result: Any) -> CpfError | None:
        """Workflow-level `outputs`: the final result must match it."""
        schema = self.wf.workflow.get("outputs")
        if not schema:
            return None
        from core.payload import check_payload

        errors = check_payload(schema, {} if result is None else result)
        if not errors:
            return None
        return StepFailure(
            ErrorCode.ERR_STEP_OUTPUT_INVALID,
            f"The workflow result does not match workflow.outputs: {errors[0]}",
            details=[str(e) for e in errors],
        )

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

        frame = self.top
        sid = wait["step_id"]
        index = frame.index_of[sid]
        step = frame.steps[index]
        scope = {**frame.scope, "event": payload}
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
        if error is None and jump is not None and jump not in frame.index_of:
            error = StepFailure(
                ErrorCode.ERR_STEP_FAILED,
                f"Step '{sid}': transition target '{jump}' does not exist",
                step_id=sid,
            )
        previous = self._state()
        self._set_output(frame, sid, payload)
        next_id = self._next_id(frame, index, jump)
        now = now_iso()
        values: dict[str, Any] = {
            "status": "running",
            "wait": None,
            "step_outputs": dict(self.step_outputs),
            "current_step_id": next_id or sid,
            "executor": self.executor,
            "executor_id": self.executor_id,
            "heartbeat_at": now,
            "updated_at": now,
        }
        if error is not None:
            values.update(
                status="failed", error=error.to_error(), current_step_id=sid, finished_at=now
            )
        cp_step = int(self.run.get("checkpoint_step", -1)) + 1
        values["checkpoint_step"] = cp_step
        granted = time.monotonic()
        with self._hot() as conn:
            self._cas(conn, **values)
            if values["status"] == "running":
                self.store.grant_lease(conn, self.run_id, LEASE_SECONDS)
                self.lease_from = granted
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

    def _fail_run(self, step_id: str, err: CpfError) -> None:
        """A failure outside any attempt (bad `if`, bad jump): mark the run failed."""
        with self._lock, self._hot() as conn:
            self._cas(conn, **self._failed_values(step_id, err))

    def _complete_implicitly(self) -> None:
        error = self._check_workflow_outputs(None)
        with self._lock, self._hot() as conn:
            if error is not None:
                self.exit_code = error.exit_code
                values = self._failed_values(self.run.get("current_step_id") or "", error)
                values["current_step_id"] = None
                self._cas(conn, **values)
                return
            # current_step_id stays the last step that ran.
            self._cas(conn, status="completed", finished_at=now_iso())
            self.completed_implicitly = True

    def _reload(self) -> dict[str, Any]:
        fresh = self.store.get_run(self.run_id)
        if fresh is not None:
            self.run = fresh
        return self.run

    # -- liveness and cancellation -------------------------------------------------------

    def _watch(self) -> None:
        """Renew the lease, write the rows of long-lived attempts, and notice a cancel
        written by another process."""
        stop = self._stop_watch
        renew_at = self.lease_from + RENEW_SECONDS
        failing = False
        while not stop.wait(WATCH_SECONDS) and not self.fenced:
            try:
                state = self.store.run_status(self.run_id)
                # Someone else ended the run (cancel, or a reaper): stop the steps.
                if state is None or (
                    state[0] in ("cancelled", "failed", "completed")
                    and state[1] != self.run["version"]
                ):
                    self.cancel.set()
                for att in list(self._active.values()):
                    if time.monotonic() - att.born < WATCH_SECONDS:
                        continue
                    self._ensure(att)
            except Exception:
                pass  # a busy store (or any error) must not stop the renewal below
            if time.monotonic() < renew_at or self.fenced:
                continue
            started = time.monotonic()
            try:
                held = self.store.renew_lease(self.run_id, self.executor_id, LEASE_SECONDS)
            except Exception as exc:  # whatever the store raises: said, then retried
                # Not silent, and retried soon; the fence thread stops the steps in time.
                if not failing:
                    _warn(f"cannot renew the lease of run {self.run_id} ({exc}); retrying")
                failing = True
                renew_at = time.monotonic() + min(RENEW_SECONDS, 1.0)
                continue
            if held:
                self.lease_from = started
                renew_at = started + RENEW_SECONDS
                if failing:
                    _warn(f"renewed the lease of run {self.run_id} again")
                failing = False
            elif self._lease_lost():
                # Still running but the lease is gone (expired by the database's clock):
                # whoever reads the run may now take it over.
                self._fence("its lease expired")
                return
            else:
                renew_at = time.monotonic() + WATCH_SECONDS

    def _lease_lost(self) -> bool:
        """After a refused renewal: whether the run is still running (so the lease, not
        the run, is gone). Read afresh: a cancel may have landed since the last look."""
        try:
            state = self.store.run_status(self.run_id)
        except CpfError:
            return False  # unknown: the fence thread keeps the time
        return state is not None and state[0] == "running" and not self.cancel.is_set()

    def _fence_watch(self) -> None:
        """Stop the steps before the lease can expire, whatever the store does: this
        thread never touches it (a renewal may hang on a lock)."""
        stop = self._stop_watch
        while not self.fenced:
            left = self.lease_from + LEASE_SECONDS - FENCE_MARGIN - time.monotonic()
            if left <= 0:
                self._fence(
                    f"its lease could not be renewed for {LEASE_SECONDS - FENCE_MARGIN:g} s"
                )
                return
            if stop.wait(min(left, 1.0)):
                return

    def _fence(self, why: str) -> None:
        """Stop every running step's process group; make no further store writes."""
        if self.fenced:
            return
        self.fence_reason = why
        self.fenced = True
        self.cancel.set()
        from core.liveness import StepGroup, stop_groups

        groups = [StepGroup.parse(att.proc) for att in list(self._active.values()) if att.proc]
        live = [g for g in groups if g is not None]
        _warn(f"run {self.run_id}: {why}; stopping its steps and this executor")
        stop_groups(live, grace=min(1.0, FENCE_MARGIN / 4))


def _warn(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"cpf: {message}\n")
        sys.stderr.flush()


def _snapshot(outcome: StepOutcome, sid: str) -> StepOutcome:
    """The outcome with its outputs and result as fresh JSON trees, so what is committed
    is a value (never a live scope that would contain itself); a value that is not
    bounded JSON fails the step cleanly instead of failing the commit."""
    from core import limits

    try:
        outcome.outputs = limits.json_copy(outcome.outputs)
        outcome.result = limits.json_copy(outcome.result)
        if outcome.wait is not None:
            outcome.wait = limits.json_copy(outcome.wait)
    except limits.JsonProblem as exc:
        return StepOutcome.failed(
            StepFailure(
                ErrorCode.ERR_STEP_OUTPUT_INVALID,
                f"Step '{sid}' produced a value that cannot be stored: {exc}",
                step_id=sid,
            ),
            exit_code=outcome.exit_code,
            stdout_path=outcome.stdout_path,
            stderr_path=outcome.stderr_path,
            output_bytes=outcome.output_bytes,
            truncated=outcome.truncated,
        )
    return outcome
