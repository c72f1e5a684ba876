"""The engine API: what the CLI, the TUI and the HTTP service call.

Every function returns an `Envelope` (the checkpointflow-run/v1 result object);
errors inside become failure envelopes with the contract's codes, never tracebacks.
Only this module and `runner` talk to the store for runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from core.envelope import (
    ConcurrencyError,
    CpfError,
    Envelope,
    ErrorCode,
    ExitCode,
    RuntimeStateError,
    ValidationError,
)

SURFACES = ("cli", "tui", "api")
INSTRUCTIONS = [
    "Ask the intended audience for input using the prompt.",
    "Collect JSON that matches input_schema.",
    "Resume with the provided run_id and event_name.",
]
_UNSET: Any = object()
F = TypeVar("F", bound=Callable[..., Envelope])


def default_actor() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _guarded(command: str) -> Callable[[F], F]:
    """Turn any error inside an engine call into the contract's failure envelope."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Envelope:
            try:
                return fn(*args, **kwargs)
            except CpfError as err:
                return Envelope.failure(command, err, run_id=getattr(err, "run_id", None))
            except Exception as exc:
                err = CpfError(
                    ErrorCode.ERR_INTERNAL, f"Internal error: {type(exc).__name__}: {exc}"
                )
                return Envelope.failure(command, err, run_id=getattr(exc, "run_id", None))

        return inner  # type: ignore[return-value]

    return wrap


def _shown(text: str, limit: int = 120) -> str:
    """User-given text in a one-line message (control characters escaped, shortened)."""
    from core.limits import shown

    return shown(text, limit)


def _with_run(err: CpfError, run_id: str) -> CpfError:
    err.run_id = run_id  # type: ignore[attr-defined]
    return err


def _not_waiting(message: str, run_id: str) -> CpfError:
    """The contract's exit-20 refusal for a run in the wrong state."""
    return _with_run(RuntimeStateError(ErrorCode.ERR_RUN_NOT_WAITING, message), run_id)


# -- envelopes from runs --------------------------------------------------------------


def _run_fields(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run["run_id"],
        "workflow_id": run["workflow_id"],
        "workflow_name": run.get("workflow_name"),
        "workflow_description": run.get("workflow_description"),
        "workflow_version": run.get("workflow_version"),
        "current_step_id": run.get("current_step_id"),
    }


def wait_block(run: dict[str, Any]) -> dict[str, Any] | None:
    wait = run.get("wait")
    if not wait:
        return None
    return {
        "kind": "external_event",
        "audience": wait.get("audience") or "user",
        "event_name": wait["event_name"],
        "prompt": wait.get("prompt"),
        "summary": wait.get("summary"),
        "input_schema": wait.get("input_schema") or {},
        "instructions": list(INSTRUCTIONS),
        "timeout_at": wait.get("timeout_at"),
        "risk_level": wait.get("risk_level"),
        "resume": {
            "command": (
                f"cpf resume --run-id {run['run_id']} --event {wait['event_name']}"
                " --input @event.json"
            )
        },
    }


def _has_result(result: Any) -> bool:
    return result not in (None, "", {}, [])


STATUS_EXIT = {
    "completed": ExitCode.SUCCESS,
    "waiting": ExitCode.WAITING,
    "failed": ExitCode.STEP_FAILED,
    "cancelled": ExitCode.CANCELLED,
    "running": ExitCode.INTERNAL_ERROR,
    "created": ExitCode.INTERNAL_ERROR,
}


def _outcome_envelope(command: str, run: dict[str, Any], exit_code: int | None = None) -> Envelope:
    """The envelope of run/resume/retry after the executor stopped driving the run."""
    fields = _run_fields(run)
    status = run["status"]
    if status == "completed":
        if _has_result(run.get("result")):
            fields["result"] = run["result"]
        return Envelope.success(command, **fields)
    if status == "waiting":
        return Envelope.success(
            command, status="waiting", exit_code=ExitCode.WAITING, wait=wait_block(run), **fields
        )
    if status == "cancelled":
        reason = (run.get("error") or {}).get("message") or "Run was cancelled"
        return Envelope(
            ok=False,
            command=command,
            status="cancelled",
            exit_code=ExitCode.CANCELLED,
            error={"code": ErrorCode.ERR_CANCELLED.value, "message": reason},
            **fields,
        )
    error = run.get("error") or {"code": ErrorCode.ERR_STEP_FAILED.value, "message": "Run failed"}
    return Envelope(
        ok=False,
        command=command,
        status="failed",
        exit_code=int(exit_code or ExitCode.STEP_FAILED),
        error=error,
        **fields,
    )


# -- store access ---------------------------------------------------------------------


def _store() -> Any:
    from core.store.store import open_store

    return open_store()


def _load_run(store: Any, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    if run is None:
        raise ValidationError(ErrorCode.ERR_RUN_NOT_FOUND, f"Run not found: {_shown(run_id)}")
    run = touch(store, run)
    if _interrupted(run):
        # A command about this one run, on the host that owns what its interrupted
        # attempts left: stop it (a reader elsewhere may have declared it interrupted).
        _stop_here(store, _left_groups(store, run))
    return run


def _interrupted(run: dict[str, Any]) -> bool:
    return (
        run["status"] == "failed"
        and (run.get("error") or {}).get("code") == ErrorCode.ERR_RUN_INTERRUPTED.value
    )


def touch(store: Any, run: dict[str, Any]) -> dict[str, Any]:
    """Bring a run up to date before anyone reads or acts on it: a dead executor makes
    it interrupted, a passed await deadline takes its timeout path."""
    if run["status"] in ("running", "created"):
        return reap(store, run)
    if run["status"] == "waiting":
        return expire(store, run)
    return run


def _due(wait: dict[str, Any] | None) -> bool:
    from datetime import UTC, datetime

    at = (wait or {}).get("timeout_at")
    if not at:
        return False
    try:
        return datetime.fromisoformat(at) <= datetime.now(UTC)
    except ValueError:
        return False


def expire(store: Any, run: dict[str, Any]) -> dict[str, Any]:
    """Apply a passed `timeout_seconds` of the await_event the run waits at.

    With `on_timeout.next` the run continues there in a new detached executor;
    without, it fails with ERR_TIMEOUT."""
    from core.store.store import now_iso

    wait = run.get("wait") or {}
    if run["status"] != "waiting" or not _due(wait):
        return run
    step = wait.get("step_id")
    target = wait.get("on_timeout_next")
    message = (
        f"Step '{step}' timed out waiting for event '{wait.get('event_name')}' "
        f"(deadline {wait.get('timeout_at')})"
    )
    now = now_iso()
    values: dict[str, Any]
    if target:
        # Handed off: the executor spawned below takes it over (`cpf continue`) under a
        # lease; until then the run holds one of its own, so it is not interrupted.
        values = {
            "status": "running",
            "wait": None,
            "current_step_id": target,
            "executor": None,
            "executor_id": None,
            "heartbeat_at": now,
        }
    else:
        err = {"code": ErrorCode.ERR_TIMEOUT.value, "message": message, "step_id": step}
        values = {"status": "failed", "wait": None, "error": err, "finished_at": now}
    with store.hot() as conn:
        if not store.cas_run(conn, run["run_id"], run["version"], **values):
            return store.get_run(run["run_id"], conn) or run
        if target:
            from core.liveness import LEASE_SECONDS

            store.grant_lease(conn, run["run_id"], LEASE_SECONDS)
        store.close_waiting_attempts(
            conn, run["run_id"], status="timed_out", error=(ErrorCode.ERR_TIMEOUT.value, message)
        )
        store.insert_event(
            conn,
            run_id=run["run_id"],
            step_id=step,
            kind="timeout",
            data={"timeout_at": wait.get("timeout_at"), "next": target},
            actor="cpf",
            surface="cli",
        )
    if target:
        from core.spawn import spawn_continue

        spawn_continue(run["run_id"])
    return store.get_run(run["run_id"]) or run


def reap(store: Any, run: dict[str, Any]) -> dict[str, Any]:
    """Mark a run whose executor is gone as failed/ERR_RUN_INTERRUPTED (and return it
    fresh): its pid is dead on this very host instance, or its lease has expired by the
    database's clock (core.liveness). Never by comparing this process's clock."""
    if run["status"] not in ("running", "created"):
        return run
    from core import liveness
    from core.store.store import now_iso

    executor = run.get("executor")
    if run.get("lease_expires_at") is None:
        # A row from before leases: its pid on the same host, else its heartbeat's age.
        # Handed off (await timeout) and not picked up yet: give the new executor time.
        beat = run.get("heartbeat_at")
        if executor is None and beat and _age(beat) < liveness.STALE_SECONDS:
            return run
        if liveness.executor_alive(executor, run.get("heartbeat_at")):
            return run
        how = "stopped"
    elif liveness.executor_gone(executor):
        how = "stopped"
    elif store.lease_expired(run["run_id"]):
        how = "stopped renewing its lease" if executor else "never took over the hand-off"
    else:
        return run
    step = run.get("current_step_id")
    err = {
        "code": ErrorCode.ERR_RUN_INTERRUPTED.value,
        "message": (
            f"The process executing this run ({liveness.describe(executor)}) {how}"
            + (f" during step '{step}'" if step else "")
            + "; `cpf retry` continues it"
        ),
        "step_id": step,
    }
    orphans = _left_groups(store, run)
    with store.hot() as conn:
        if store.cas_run(
            conn, run["run_id"], run["version"], status="failed", error=err, finished_at=now_iso()
        ):
            store.fail_open_attempts(conn, run["run_id"], err["code"], err["message"])
    # Only on the host that owns them; elsewhere they wait for a `cpf` command there
    # (or `cpf tick`), and `retry` here refuses until then.
    _stop_here(store, orphans)
    return store.get_run(run["run_id"]) or run


def _age(stamp: str) -> float:
    from datetime import UTC, datetime

    try:
        return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()
    except ValueError:
        return float("inf")


def _left_groups(store: Any, run: dict[str, Any]) -> dict[Any, list[int]]:
    """Process groups of attempts an executor left unfinished (still running, or closed
    as interrupted), not yet known gone, with the attempts that recorded them."""
    from core.liveness import StepGroup

    interrupted = ErrorCode.ERR_RUN_INTERRUPTED.value
    host = (run.get("executor") or "").split(":", 1)[0]
    groups: dict[Any, list[int]] = {}
    for a in store.attempts(run["run_id"]):
        if not a["pid"]:
            continue  # never started, or stopped and confirmed gone
        if a.get("proc") and (a["status"] == "running" or a["error_code"] == interrupted):
            group = StepGroup.parse(a["proc"])
        elif a["status"] == "running":  # a row from before `proc` existed
            group = StepGroup.parse(None, a["pid"], host)
        else:
            continue
        if group is not None:
            groups.setdefault(group, []).append(a["id"])
    return groups


def _stop_here(store: Any, groups: dict[Any, list[int]]) -> list[Any]:
    """Stop the groups this host owns and record them gone (the attempt's `pid` is
    cleared); return those that may still be alive (another host's, or unstoppable)."""
    if not groups:
        return []
    from core.liveness import stop_groups

    left = stop_groups(list(groups))
    gone = [aid for group, ids in groups.items() if group not in left for aid in ids]
    if gone:
        with store.hot() as conn:
            for attempt_id in gone:
                store.update_attempt(conn, attempt_id, pid=None)
    return left


def _stop_leftovers(
    store: Any, run: dict[str, Any], host_gone: str | None = None, command: str = "continue"
) -> dict[Any, list[int]]:
    """Before a run's steps execute again (retry, continue): stop every process an
    earlier attempt left alive, or refuse (exit 20) while any cannot be stopped, so two
    copies of a step never run at once.

    `host_gone` (`cpf retry --host-gone HOST`): the operator declares that HOST, which
    owns the groups left, is gone for good. Nothing is signalled (a reader never stops
    another host's groups); once the run's lease has expired by the database's clock,
    those groups are returned, to be recorded gone with the retry (`_declare_gone`)."""
    groups = _left_groups(store, run)
    left = _stop_here(store, groups)
    if not left:
        return {}
    run_id = run["run_id"]
    remote = [g for g in left if not g.local]
    hosts = sorted({g.host or "an unknown host" for g in remote})
    if host_gone is None or len(remote) < len(left):
        where = ", ".join(str(g) for g in left)
        hint = ""
        if command == "retry" and len(remote) == len(left) and len(hosts) == 1:
            hint = f"; if {hosts[0]} is gone for good, say so with --host-gone {hosts[0]}"
        raise _with_run(
            RuntimeStateError(
                ErrorCode.ERR_RUN_NOT_WAITING,
                f"Run {run_id}: an earlier attempt's processes may still be alive"
                f" ({where}) and cannot be stopped from here; run `cpf tick` (or any cpf"
                f" command on this run) on that host, or retry there{hint}",
            ),
            run_id,
        )
    if hosts != [host_gone]:
        raise _with_run(
            RuntimeStateError(
                ErrorCode.ERR_RUN_NOT_WAITING,
                f"Run {run_id}: --host-gone names '{_shown(host_gone, 80)}' but the processes"
                f" left are on {', '.join(hosts)}; name the host that is gone",
            ),
            run_id,
        )
    if run.get("lease_expires_at") is not None and not store.lease_expired(run_id):
        raise _with_run(
            RuntimeStateError(
                ErrorCode.ERR_RUN_NOT_WAITING,
                f"Run {run_id}: its executor's lease has not expired (by the database's"
                f" clock), so it may still be alive; --host-gone is refused until it has",
            ),
            run_id,
        )
    return {g: groups[g] for g in left}


def _declare_gone(
    store: Any,
    conn: Any,
    run_id: str,
    host: str,
    declared: dict[Any, list[int]],
    actor: str,
    surface: str,
) -> None:
    """Record, in the retry's transaction, that the groups `declared` are gone with
    their host: an event saying who declared it, and their attempts' pid cleared (as for
    a group stopped here; `proc` stays for the record)."""
    if not declared:
        return
    store.insert_event(
        conn,
        run_id=run_id,
        kind="host_gone",
        data={
            "host": host,
            "groups": [
                {"pgid": g.pgid, "host_id": g.host_id, "attempt_ids": ids}
                for g, ids in declared.items()
            ],
        },
        actor=actor,
        surface=surface,
    )
    for ids in declared.values():
        for attempt_id in ids:
            store.update_attempt(conn, attempt_id, pid=None)


# -- commands -------------------------------------------------------------------------


@_guarded("validate")
def validate(path: str | Path) -> Envelope:
    from core.workflow.loader import load_workflow

    wf = load_workflow(path)
    return Envelope.success(
        "validate",
        workflow_id=wf.id,
        workflow_version=wf.version,
        warnings=list(wf.warnings) or None,
    )


def _check_inputs(wf: Any, inputs: Any) -> Any:
    from core.payload import apply_defaults, check_payload

    errors = check_payload(wf.inputs_schema, inputs)
    if errors:
        raise ValidationError(
            ErrorCode.ERR_VALIDATION_INPUT,
            f"Input validation failed: {errors[0]}",
            details=[str(e) for e in errors],
        )
    return apply_defaults(wf.inputs_schema, inputs)


@_guarded("run")
def start_run(
    path: str | Path,
    raw_input: str | None = None,
    *,
    inputs: Any = _UNSET,
    actor: str | None = None,
    surface: str = "cli",
    run_id: str | None = None,
) -> Envelope:
    """Validate the workflow and inputs, create the run and execute it in this process.

    `run_id` lets a caller that spawns the executor (the TUI) know the id beforehand."""
    from core.inputs import read_input
    from core.workflow.loader import load_workflow

    wf = load_workflow(path, remember=True)
    if inputs is _UNSET:
        inputs = read_input(raw_input or "{}", error_code=ErrorCode.ERR_VALIDATION_INPUT)
    inputs = _check_inputs(wf, inputs)
    store = _store()
    from core.liveness import LEASE_SECONDS, executor_values
    from core.store.store import new_id, now_iso

    if run_id is None:
        run_id = new_id()
    elif not (len(run_id) == 32 and all(c in "0123456789abcdef" for c in run_id)):
        raise ValidationError(ErrorCode.ERR_VALIDATION_INPUT, "--run-id must be 32 hex digits")
    now = now_iso()
    run = {
        "run_id": run_id,
        "account": "local",
        "workflow_id": wf.id,
        "workflow_name": wf.name,
        "workflow_description": wf.description,
        "workflow_version": wf.version,
        "workflow_path": str(wf.path),
        "workflow_hash": wf.sha256,
        "status": "running",
        # The step about to run: attempt rows are written lazily, the run row says it.
        "current_step_id": wf.steps[0]["id"],
        "inputs": inputs,
        "step_outputs": {},
        "version": 0,
        **executor_values(),
        "heartbeat_at": now,
        "attempt_seq": 0,
        "checkpoint_step": -1,
        "created_at": now,
        "updated_at": now,
    }
    granted = time.monotonic()
    with store.hot() as conn:
        store.insert_run(conn, run)
        store.grant_lease(conn, run_id, LEASE_SECONDS)
        store.insert_event(
            conn,
            run_id=run_id,
            kind="start",
            data={"inputs": inputs},
            actor=actor or default_actor(),
            surface=surface,
        )
    return _execute("run", _runner(store, wf, run, granted), wf.steps[0]["id"])


def _runner(store: Any, wf: Any, run: dict[str, Any], granted: float | None = None) -> Any:
    """The runner of a run handed to this process; `granted`: the monotonic time just
    before the transaction that granted its lease (the runner fences from there)."""
    from core.liveness import current_executor
    from core.paths import run_dir
    from core.runner import Runner

    runner = Runner(store, wf, run, current_executor(), run_dir(run["run_id"]))
    if granted is not None:
        runner.lease_from = granted
    return runner


def _execute(command: str, runner: Any, start_step: str | None) -> Envelope:
    store = runner.store
    try:
        with _interrupts_as_cancel(runner):
            final = runner.drive(start_step)
    except Exception as exc:
        if runner.fenced:
            raise _fenced(runner) from exc
        # Never leave the run `running` behind an error (later misread as interrupted).
        _fail_unfinished(store, runner.run["run_id"], exc)
        raise
    if runner.fenced:
        # Its steps are stopped; the store is not written again by this process.
        raise _fenced(runner)
    if runner.interrupted:
        final = _mark_interrupted(store, final, runner.interrupted)
    if runner.completed_implicitly and final["status"] == "completed":
        # As checkpointflow: the command that completes a run without an `end` step names
        # no step; `status` and `inspect` name the last step that ran.
        final = {**final, "current_step_id": None}
    return _outcome_envelope(command, final, runner.exit_code)


def _fenced(runner: Any) -> CpfError:
    from core.envelope import PersistenceError

    run_id = runner.run["run_id"]
    return _with_run(
        PersistenceError(
            f"Lost the lease on run {run_id} ({runner.fence_reason}), so its running step"
            " was stopped and this executor made no further change; once the lease has"
            " expired the run shows as interrupted and `cpf retry` continues it"
        ),
        run_id,
    )


class _interrupts_as_cancel:
    """SIGINT/SIGTERM stop the running step (its whole process group) instead of
    leaving it orphaned; the run is then recorded as interrupted."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.saved: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        self.runner.interrupted = signal.Signals(signum).name
        self.runner.cancel.set()

    def __enter__(self) -> None:
        self.runner.interrupted = None
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _fail_unfinished(store: Any, run_id: str, exc: Exception) -> None:
    """Record a run whose executor hit an unexpected error as failed, with that error."""
    from core.store.store import now_iso

    with contextlib.suppress(Exception):
        fresh = store.get_run(run_id)
        if fresh is None or fresh["status"] != "running":
            return
        code = exc.code if isinstance(exc, CpfError) else ErrorCode.ERR_INTERNAL.value
        step = fresh.get("current_step_id")
        err = {
            "code": code,
            "message": (
                "The run stopped"
                + (f" at step '{step}'" if step else "")
                + f": {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            ),
            "step_id": step,
        }
        with store.hot() as conn:
            store.cas_run(
                conn, run_id, fresh["version"], status="failed", error=err, finished_at=now_iso()
            )
            store.fail_open_attempts(conn, run_id, err["code"], err["message"])


def _mark_interrupted(store: Any, run: dict[str, Any], signame: str) -> dict[str, Any]:
    from core.store.store import now_iso

    fresh = store.get_run(run["run_id"]) or run
    if fresh["status"] != "running":
        return fresh
    step = fresh.get("current_step_id")
    err = {
        "code": ErrorCode.ERR_RUN_INTERRUPTED.value,
        "message": f"cpf received {signame}" + (f" during step '{step}'" if step else ""),
        "step_id": step,
    }
    with store.hot() as conn:
        store.cas_run(
            conn,
            fresh["run_id"],
            fresh["version"],
            status="failed",
            error=err,
            finished_at=now_iso(),
        )
        store.fail_open_attempts(conn, fresh["run_id"], err["code"], err["message"])
    return store.get_run(run["run_id"]) or fresh


def _load_run_workflow(run: dict[str, Any], *, allow_changed: bool = False) -> tuple[Any, bool]:
    """The run's workflow file, checked against the hash taken at `run`."""
    from core.workflow.loader import load_workflow, sha256_file

    path = Path(run["workflow_path"])
    if not path.is_file():
        raise _with_run(
            ValidationError(ErrorCode.ERR_FILE_NOT_FOUND, f"Workflow file not found: {path}"),
            run["run_id"],
        )
    changed = sha256_file(path) != run["workflow_hash"]
    if changed and not allow_changed:
        raise _with_run(
            ValidationError(
                ErrorCode.ERR_VALIDATION_WORKFLOW,
                f"Workflow file changed since the run started: {path}",
            ),
            run["run_id"],
        )
    try:
        return load_workflow(path, remember=True), changed
    except CpfError as err:
        raise _with_run(err, run["run_id"]) from err


@_guarded("resume")
def resume_run(
    run_id: str,
    event_name: str,
    raw_input: str | None = None,
    *,
    payload: Any = _UNSET,
    actor: str | None = None,
    surface: str = "cli",
) -> Envelope:
    """Deliver an event to a waiting run and continue it (contract §9 order)."""
    from core.inputs import read_input
    from core.payload import check_payload

    store = _store()
    run = _load_run(store, run_id)
    if run["status"] != "waiting":
        raise _not_waiting(
            f"Run {run_id} is not waiting (status: {run['status']})",
            run_id,
        )
    wait = run.get("wait") or {}
    if event_name != wait.get("event_name"):
        raise _with_run(
            RuntimeStateError(
                ErrorCode.ERR_RESUME_EVENT_MISMATCH,
                f"Expected event '{wait.get('event_name')}', got '{_shown(event_name)}'",
            ),
            run_id,
        )
    try:
        if payload is _UNSET:
            payload = read_input(raw_input or "", error_code=ErrorCode.ERR_VALIDATION_EVENT_INPUT)
        errors = check_payload(wait.get("input_schema"), payload)
    except CpfError as err:
        raise _with_run(err, run_id) from err
    if errors:
        raise _with_run(
            ValidationError(
                ErrorCode.ERR_VALIDATION_EVENT_INPUT,
                f"Event validation failed: {errors[0]}",
                details=[str(e) for e in errors],
            ),
            run_id,
        )
    # Integrity before anything is recorded: a refused resume leaves no event behind.
    wf, _ = _load_run_workflow(run)
    from core.runner import RunTaken

    runner = _runner(store, wf, run)
    try:
        next_step = runner.accept_event(
            wait, event_name, payload, actor=actor or default_actor(), surface=surface
        )
    except RunTaken:
        fresh = store.get_run(run_id) or run
        if fresh["status"] != "waiting":
            raise _not_waiting(
                f"Run {run_id} is not waiting (status: {fresh['status']}): "
                "another resume or cancel got there first",
                run_id,
            ) from None
        raise _with_run(
            ConcurrencyError(f"Run {run_id} changed while resuming; try again"), run_id
        ) from None
    if runner.run["status"] != "running":
        return _outcome_envelope("resume", runner.run)
    return _execute("resume", runner, next_step)


def _lookup(command: str) -> Callable[[str], Envelope]:
    def query(run_id: str) -> Envelope:
        store = _store()
        run = _load_run(store, run_id)
        fields = _run_fields(run)
        status = run["status"]
        extra: dict[str, Any] = {}
        if command == "status":
            if status == "waiting":
                extra["wait"] = wait_block(run)
            elif status == "completed" and _has_result(run.get("result")):
                extra["result"] = run["result"]
        else:
            extra["result"] = history(store, run)
        if status in ("failed", "cancelled") and run.get("error"):
            extra["error"] = run["error"]
        return Envelope.success(
            command,
            status=status,
            exit_code=STATUS_EXIT.get(status, ExitCode.INTERNAL_ERROR),
            started_at=run.get("created_at"),
            updated_at=run.get("updated_at"),
            **fields,
            **extra,
        )

    return _guarded(command)(query)


status = _lookup("status")
inspect = _lookup("inspect")


def history(store: Any, run: dict[str, Any]) -> dict[str, Any]:
    """The `inspect` result: inputs, outputs, every attempt, events, checkpoints."""
    run_id = run["run_id"]
    attempts = store.attempts(run_id)
    events = store.events(run_id)
    return {
        "inputs": run.get("inputs") or {},
        "step_outputs": run.get("step_outputs") or {},
        "result": run.get("result"),
        "error": run.get("error"),
        "step_results": [
            {
                "step_id": a["step_id"],
                "step_kind": a["step_kind"],
                "attempt": a["attempt"],
                "status": a["status"],
                "exit_code": a["exit_code"],
                "error_code": a["error_code"],
                "error_message": a["error_message"],
                "outputs": a["outputs"],
                "stdout_path": a["stdout_path"],
                "stderr_path": a["stderr_path"],
                "output_bytes": a["output_bytes"],
                "truncated": bool(a["truncated"]),
                "parent_id": a["parent_id"],
                "context": a.get("context"),
                "id": a["id"],
                "started_at": a["started_at"],
                "finished_at": a["finished_at"],
                "created_at": a["started_at"],
            }
            for a in attempts
        ],
        "events": [
            {
                "event_name": e["event_name"],
                "event_data": e["data"],
                "step_id": e["step_id"],
                "actor": e["actor"],
                "surface": e["surface"],
                "created_at": e["created_at"],
            }
            for e in events
            if e["kind"] == "event"
        ],
        "actions": [
            {
                "kind": e["kind"],
                "data": e["data"],
                "step_id": e["step_id"],
                "actor": e["actor"],
                "surface": e["surface"],
                "created_at": e["created_at"],
            }
            for e in events
            if e["kind"] != "event"
        ],
        "checkpoints": store.checkpoint_count(run_id),
    }


@_guarded("cancel")
def cancel_run(
    run_id: str, reason: str, *, actor: str | None = None, surface: str = "cli"
) -> Envelope:
    from core.store.store import now_iso

    store = _store()
    run = _load_run(store, run_id)
    if run["status"] not in ("waiting", "running", "created"):
        raise _not_waiting(
            f"Run {run_id} cannot be cancelled (status: {run['status']})",
            run_id,
        )
    who = actor or default_actor()
    err = {
        "code": ErrorCode.ERR_CANCELLED.value,
        "message": f"Cancelled by {_shown(who)}: {_shown(reason, 500)}",
    }
    with store.hot() as conn:
        if not store.cas_run(
            conn, run_id, run["version"], status="cancelled", error=err, finished_at=now_iso()
        ):
            fresh = store.get_run(run_id, conn) or run
            if fresh["status"] not in ("waiting", "running", "created"):
                raise _not_waiting(
                    f"Run {run_id} cannot be cancelled (status: {fresh['status']})",
                    run_id,
                )
            raise _with_run(ConcurrencyError(f"Run {run_id} changed while cancelling"), run_id)
        store.close_waiting_attempts(conn, run_id)
        store.insert_event(
            conn,
            run_id=run_id,
            step_id=run.get("current_step_id"),
            kind="cancel",
            data={"reason": reason},
            actor=who,
            surface=surface,
        )
    return Envelope.success(
        "cancel", status="cancelled", result={"reason": reason}, **_run_fields(run)
    )


@_guarded("delete")
def delete_run(run_id: str) -> Envelope:
    from core.paths import run_dir

    store = _store()
    run = _load_run(store, run_id)
    if run["status"] in ("created", "running", "waiting"):
        raise _not_waiting(
            f"Cannot delete active run {run_id} (status: {run['status']})",
            run_id,
        )
    with store.hot() as conn:
        store.delete_run(conn, run_id)
    import shutil

    shutil.rmtree(run_dir(run_id), ignore_errors=True)
    return Envelope.success("delete", result={"deleted": True}, **_run_fields(run))


@_guarded("retry")
def retry_run(
    run_id: str,
    from_step: str | None = None,
    *,
    actor: str | None = None,
    surface: str = "cli",
    host_gone: str | None = None,
) -> Envelope:
    """Continue a failed or interrupted run from its failed step (or `from_step`).
    `host_gone`: see `_stop_leftovers`."""
    from core.liveness import LEASE_SECONDS, executor_values
    from core.store.store import now_iso

    store = _store()
    run = _load_run(store, run_id)
    if run["status"] != "failed":
        raise _not_waiting(
            f"Run {run_id} is not failed (status: {run['status']}); only failed runs retry",
            run_id,
        )
    wf, changed = _load_run_workflow(run, allow_changed=True)
    start = from_step or (run.get("error") or {}).get("step_id") or run.get("current_step_id")
    start = start or wf.steps[0]["id"]
    if start not in wf.index_of:
        raise _with_run(
            ValidationError(
                ErrorCode.ERR_VALIDATION_INPUT, f"Step '{_shown(start)}' is not in workflow {wf.id}"
            ),
            run_id,
        )
    values: dict[str, Any] = {
        "status": "running",
        "error": None,
        "finished_at": None,
        **executor_values(),
        "heartbeat_at": now_iso(),
        "current_step_id": start,
    }
    if changed:
        values.update(workflow_hash=wf.sha256, workflow_version=wf.version)
    declared = _stop_leftovers(store, run, host_gone, "retry")
    granted = time.monotonic()
    with store.hot() as conn:
        if not store.cas_run(conn, run_id, run["version"], **values):
            raise _with_run(ConcurrencyError(f"Run {run_id} changed while retrying"), run_id)
        store.grant_lease(conn, run_id, LEASE_SECONDS)
        if host_gone is not None:
            actor = actor or default_actor()
            _declare_gone(store, conn, run_id, host_gone, declared, actor, surface)
        store.insert_event(
            conn,
            run_id=run_id,
            step_id=start,
            kind="retry",
            data={"from_step": start, "workflow_changed": changed},
            actor=actor or default_actor(),
            surface=surface,
        )
    run = store.get_run(run_id) or run
    envelope = _execute("retry", _runner(store, wf, run, granted), start)
    if changed:
        envelope.warnings = ["The workflow file changed since the run started; retried with it"]
    return envelope


@_guarded("continue")
def continue_run(run_id: str) -> Envelope:
    """Execute a run handed off without an executor (an await timeout's `on_timeout`)."""
    from core.liveness import LEASE_SECONDS, executor_values

    store = _store()
    run = store.get_run(run_id)
    if run is None:
        raise ValidationError(ErrorCode.ERR_RUN_NOT_FOUND, f"Run not found: {_shown(run_id)}")
    if run["status"] != "running" or run.get("executor") is not None:
        raise _not_waiting(
            f"Run {run_id} has no pending hand-off (status: {run['status']})",
            run_id,
        )
    wf, _ = _load_run_workflow(run)
    _stop_leftovers(store, run)
    granted = time.monotonic()
    with store.hot() as conn:
        if not store.cas_run(conn, run_id, run["version"], **executor_values()):
            raise _with_run(ConcurrencyError(f"Run {run_id} was taken by another executor"), run_id)
        store.grant_lease(conn, run_id, LEASE_SECONDS)
    run = store.get_run(run_id) or run
    return _execute("continue", _runner(store, wf, run, granted), run["current_step_id"])


@_guarded("tick")
def tick() -> Envelope:
    """Apply every await timeout that is due, and mark runs whose executor died as
    interrupted (for cron, or the TUI's clock)."""
    store = _store()
    applied = []
    for run in store.list_runs(status="waiting"):
        if _due(run.get("wait")):
            after = expire(store, run)
            applied.append(
                {
                    "run_id": run["run_id"],
                    "step_id": run["wait"].get("step_id"),
                    "status": after["status"],
                }
            )
    interrupted = [
        run["run_id"]
        for run in store.list_runs(status="running")
        if reap(store, run)["status"] == "failed"
    ]
    # What interrupted runs left on this host (declared interrupted by a reader
    # elsewhere, or by a reaper that died before stopping it) is stopped here.
    for run in store.list_runs(status="failed"):
        if _interrupted(run):
            _stop_here(store, _left_groups(store, run))
    return Envelope.success("tick", result={"expired": applied, "interrupted": interrupted})


@_guarded("runs")
def list_runs(
    status: str | None = None, workflow_id: str | None = None, limit: int | None = None
) -> Envelope:
    store = _store()
    rows = store.list_runs(status=status, workflow_id=workflow_id, limit=limit)
    out = []
    for run in rows:
        run = touch(store, run)
        if status and run["status"] != status:
            continue
        out.append(
            {
                "run_id": run["run_id"],
                "workflow_id": run["workflow_id"],
                "workflow_name": run.get("workflow_name"),
                "status": run["status"],
                "current_step_id": run.get("current_step_id"),
                "created_at": run["created_at"],
                "updated_at": run["updated_at"],
                "finished_at": run.get("finished_at"),
                "error_code": (run.get("error") or {}).get("code"),
            }
        )
    return Envelope.success("runs", result={"runs": out})


@_guarded("init")
def init_workflow(file: str | Path, force: bool = False) -> Envelope:
    """Write the starter workflow; never into a FIFO or device, never half a file."""
    import stat
    import tempfile
    from importlib.resources import files

    from core.envelope import PersistenceError
    from core.limits import shown

    path = Path(file)
    name = shown(str(path))
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ValidationError(
            ErrorCode.ERR_VALIDATION_INPUT, f"Cannot use {name} ({reason})"
        ) from None
    if st is not None and not force:
        raise ValidationError(
            ErrorCode.ERR_FILE_EXISTS, f"File already exists: {name}. Use --force to overwrite."
        )
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ValidationError(
            ErrorCode.ERR_VALIDATION_INPUT, f"Not a regular file, will not overwrite: {name}"
        )
    template = files("core").joinpath("init_template.yaml").read_text(encoding="utf-8")
    tmp = None
    try:
        # A temporary file renamed over the target: an interrupted write leaves no half file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cpf-init-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(template)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PersistenceError(f"Failed to write file: {name} ({reason})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return Envelope.success("init", result={"file": str(path)})


def follow_output(
    run_id: str,
    *,
    step_id: str | None = None,
    stream: str | None = None,
    follow: bool = False,
    poll: float = 0.1,
) -> Iterator[str]:
    """Yield the stored output text of a run; with `follow`, until the run stops running.

    Raises CpfError (ERR_RUN_NOT_FOUND) for an unknown run.
    """
    store = _store()
    _load_run(store, run_id)
    last = 0
    while True:
        chunks = store.output(run_id, after_id=last, step_id=step_id, stream=stream, limit=1000)
        for chunk in chunks:
            last = chunk["id"]
            yield chunk["text"]
        if chunks:
            continue
        if not follow:
            return
        run = store.get_run(run_id)
        if run is None:
            return
        if touch(store, run)["status"] not in ("running", "created"):
            # One more read: output committed just before the final transition.
            tail = store.output(run_id, after_id=last, step_id=step_id, stream=stream)
            for chunk in tail:
                yield chunk["text"]
            return
        time.sleep(poll)
