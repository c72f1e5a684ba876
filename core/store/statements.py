"""Every statement of the run store, written once as SQLAlchemy Core on the SQLModel tables.

Statements are named. Through SQLAlchemy (PostgreSQL, or `fast=False`) a name is built
here and executed by SQLAlchemy; on SQLite the same name runs precompiled SQL from
`core.store.compiled`, which `python -m core.store.gen_compiled` generates from this
module (tests/test_store_compiled.py fails when the two differ). So a `cpf` command on
SQLite never imports SQLAlchemy, SQLModel or pydantic.

- Queries: a builder per name; each optional filter is a flag, and every combination of
  flags is a variant named `name+flag+flag` (flags in declared order). Values are
  explicit `bindparam`s, so both paths take the same parameters.
- Inserts `insert_<table>`: the columns come from the parameters (defaults filled in).
- Updates whose SET columns come from the parameters (`UPDATES`): the WHERE clause binds
  `w_`-prefixed names, which never collide with a column.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from itertools import combinations
from typing import Any

from sqlalchemy import (
    String,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from core.store.models import Checkpoint, Event, Meta, OutputChunk, Run, StepAttempt
from core.store.store import SUMMARY_COLUMNS

RUNS = Run.__table__
ATTEMPTS = StepAttempt.__table__
CHUNKS = OutputChunk.__table__
EVENTS = Event.__table__
CHECKPOINTS = Checkpoint.__table__
META = Meta.__table__


class db_time(FunctionElement):
    """The database's clock as ISO-8601 UTC text (sortable like `now_iso()`), plus an
    optional offset in seconds: executor leases are set and judged with it, never with
    a process's clock (core.liveness)."""

    type = String()
    name = "db_time"
    inherit_cache = True


_SQLITE_ISO = "'%Y-%m-%dT%H:%M:%f+00:00'"
_PG_ISO = """'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'"""


@compiles(db_time)
def _db_time_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    # SQLite: the clock of the machine that runs the statement (the store is local).
    args = list(element.clauses)
    if not args:
        return f"strftime({_SQLITE_ISO}, 'now')"
    offset = compiler.process(args[0], **kw)
    return f"strftime({_SQLITE_ISO}, julianday('now') + ({offset}) / 86400.0)"


@compiles(db_time, "postgresql")
def _db_time_postgresql(element: Any, compiler: Any, **kw: Any) -> str:
    # clock_timestamp(), not now(): now() is when the transaction began, and a renewal
    # that waited on a lock must not judge (or extend) the lease as of back then.
    args = list(element.clauses)
    at = "clock_timestamp()"
    if args:
        at = f"(clock_timestamp() + make_interval(secs => {compiler.process(args[0], **kw)}))"
    return f"to_char({at} AT TIME ZONE 'UTC', {_PG_ISO})"


def _lease_live() -> Any:
    return or_(RUNS.c.lease_expires_at.is_(None), RUNS.c.lease_expires_at >= db_time())


# Tables with an `insert_<name>` statement.
INSERT_TABLES = {t.name: t for t in (RUNS, ATTEMPTS, CHUNKS, EVENTS, CHECKPOINTS, META)}

UPDATES: dict[str, Any] = {
    # Compare-and-set of a run: every state change goes through it.
    "cas_run": update(RUNS).where(
        RUNS.c.run_id == bindparam("w_run_id"), RUNS.c.version == bindparam("w_version")
    ),
    "update_attempt": update(ATTEMPTS).where(ATTEMPTS.c.id == bindparam("w_id")),
    "close_waiting": update(ATTEMPTS).where(
        ATTEMPTS.c.run_id == bindparam("w_run_id"), ATTEMPTS.c.status == "waiting"
    ),
}

# The run list's JSON columns come back as text, decoded only where shown.
LAZY_JSON = ("wait", "error")


def _limit(stmt: Any, limit: bool) -> Any:
    return stmt.limit(bindparam("limit")) if limit else stmt


def _list_runs(status: bool = False, workflow_id: bool = False, limit: bool = False) -> Any:
    stmt = select(RUNS).where(RUNS.c.account == bindparam("account"))
    if status:
        stmt = stmt.where(RUNS.c.status == bindparam("status"))
    if workflow_id:
        stmt = stmt.where(RUNS.c.workflow_id == bindparam("workflow_id"))
    return _limit(stmt.order_by(RUNS.c.created_at.desc(), RUNS.c.run_id.desc()), limit)


def _run_summaries(
    status: bool = False,
    workflow_id: bool = False,
    updated_after: bool = False,
    limit: bool = False,
) -> Any:
    cols = [
        type_coerce(RUNS.c[name], Text).label(name) if name in LAZY_JSON else RUNS.c[name]
        for name in SUMMARY_COLUMNS
    ]
    stmt = select(*cols).where(RUNS.c.account == "local")
    if status:
        stmt = stmt.where(RUNS.c.status == bindparam("status"))
    if workflow_id:
        stmt = stmt.where(RUNS.c.workflow_id == bindparam("workflow_id"))
    if updated_after:
        stmt = stmt.where(RUNS.c.updated_at > bindparam("updated_after"))
    return _limit(stmt.order_by(RUNS.c.created_at.desc(), RUNS.c.run_id.desc()), limit)


def _output(
    step_id: bool = False, attempt_id: bool = False, stream: bool = False, limit: bool = False
) -> Any:
    """Chunks after `after_id`, oldest first (readers tail by id)."""
    stmt = select(CHUNKS).where(
        CHUNKS.c.run_id == bindparam("run_id"), CHUNKS.c.id > bindparam("after_id")
    )
    if step_id:
        stmt = stmt.where(CHUNKS.c.step_id == bindparam("step_id"))
    if attempt_id:
        stmt = stmt.where(CHUNKS.c.attempt_id == bindparam("attempt_id"))
    if stream:
        stmt = stmt.where(CHUNKS.c.stream == bindparam("stream"))
    return _limit(stmt.order_by(CHUNKS.c.id), limit)


def _output_tail(step_id: bool = False, attempt_id: bool = False, before: bool = False) -> Any:
    """Newest chunks first, `limit` of them, older than `before` (an id)."""
    stmt = select(CHUNKS).where(CHUNKS.c.run_id == bindparam("run_id"))
    if step_id:
        stmt = stmt.where(CHUNKS.c.step_id == bindparam("step_id"))
    if attempt_id:
        stmt = stmt.where(CHUNKS.c.attempt_id == bindparam("attempt_id"))
    if before:
        stmt = stmt.where(CHUNKS.c.id < bindparam("before"))
    return stmt.order_by(CHUNKS.c.id.desc()).limit(bindparam("limit"))


def _fixed(stmt: Any) -> Callable[[], Any]:
    return lambda: stmt


def _by_run(table: Any, *order: Any) -> Callable[[], Any]:
    return _fixed(select(table).where(table.c.run_id == bindparam("run_id")).order_by(*order))


def _delete_by_run(table: Any) -> Callable[[], Any]:
    return _fixed(delete(table).where(table.c.run_id == bindparam("run_id")))


# name -> builder; the builder's keyword arguments are the optional flags.
QUERIES: dict[str, Callable[..., Any]] = {
    "schema_version": _fixed(select(META.c.value).where(META.c.key == "schema_version")),
    "get_run": _fixed(select(RUNS).where(RUNS.c.run_id == bindparam("run_id"))),
    "run_status": _fixed(
        select(RUNS.c.status, RUNS.c.version).where(RUNS.c.run_id == bindparam("run_id"))
    ),
    "list_runs": _list_runs,
    # Executor leases (core.liveness): granted with the run's hand-over, renewed by the
    # executor only while its lease still holds, judged by the database's clock.
    "grant_lease": _fixed(
        update(RUNS)
        .where(RUNS.c.run_id == bindparam("w_run_id"))
        .values(lease_expires_at=db_time(bindparam("w_seconds")))
    ),
    "renew_lease": _fixed(
        update(RUNS)
        .where(
            RUNS.c.run_id == bindparam("w_run_id"),
            RUNS.c.executor_id == bindparam("w_executor_id"),
            RUNS.c.status == "running",
            _lease_live(),
        )
        .values(lease_expires_at=db_time(bindparam("w_seconds")), heartbeat_at=bindparam("w_at"))
    ),
    "lease_expired": _fixed(
        select(RUNS.c.run_id).where(
            and_(
                RUNS.c.run_id == bindparam("run_id"),
                RUNS.c.lease_expires_at.is_not(None),
                RUNS.c.lease_expires_at < db_time(),
            )
        )
    ),
    "attempts": _by_run(ATTEMPTS, ATTEMPTS.c.seq, ATTEMPTS.c.id),
    "fail_open_attempts": _fixed(
        update(ATTEMPTS)
        .where(ATTEMPTS.c.run_id == bindparam("w_run_id"), ATTEMPTS.c.status == "running")
        .values(
            status="failed",
            error_code=bindparam("w_code"),
            error_message=bindparam("w_message"),
            finished_at=bindparam("w_at"),
        )
    ),
    "attempts_signature": _fixed(
        select(func.count(), func.max(ATTEMPTS.c.id), func.max(ATTEMPTS.c.finished_at)).where(
            ATTEMPTS.c.run_id == bindparam("run_id")
        )
    ),
    "events": _by_run(EVENTS, EVENTS.c.created_at, EVENTS.c.event_id),
    "checkpoints": _by_run(CHECKPOINTS, CHECKPOINTS.c.step),
    "checkpoint_count": _fixed(
        select(func.count())
        .select_from(CHECKPOINTS)
        .where(CHECKPOINTS.c.run_id == bindparam("run_id"))
    ),
    "output": _output,
    "output_tail": _output_tail,
    "run_summaries": _run_summaries,
    "runs_by_status": _fixed(
        select(RUNS.c.status, func.count()).where(RUNS.c.account == "local").group_by(RUNS.c.status)
    ),
    "runs_last_updated": _fixed(
        select(func.max(RUNS.c.updated_at)).where(RUNS.c.account == "local")
    ),
    # Deleting a run: explicit child deletes, since not every backend enforces
    # ON DELETE CASCADE; attempts are unparented first (they reference each other).
    "delete_chunks": _delete_by_run(CHUNKS),
    "delete_events": _delete_by_run(EVENTS),
    "delete_checkpoints": _delete_by_run(CHECKPOINTS),
    "unparent_attempts": _fixed(
        update(ATTEMPTS).where(ATTEMPTS.c.run_id == bindparam("w_run_id")).values(parent_id=None)
    ),
    "delete_attempts": _delete_by_run(ATTEMPTS),
    "delete_run": _fixed(delete(RUNS).where(RUNS.c.run_id == bindparam("run_id"))),
}


def flags_of(builder: Callable[..., Any]) -> tuple[str, ...]:
    code = builder.__code__
    return code.co_varnames[: code.co_argcount]


def variants(name: str) -> list[str]:
    """Every variant name of a query: `name`, `name+flag`, ... (flags in declared order)."""
    flags = flags_of(QUERIES[name])
    out = []
    for n in range(len(flags) + 1):
        for combo in combinations(flags, n):
            out.append("+".join((name, *combo)))
    return out


@cache
def statement(name: str) -> Any:
    """The SQLAlchemy statement of a name (a query variant, an update or an insert)."""
    if name in UPDATES:
        return UPDATES[name]
    if name.startswith("insert_"):
        return insert(INSERT_TABLES[name.removeprefix("insert_")])
    base, *flags = name.split("+")
    return QUERIES[base](**dict.fromkeys(flags, True))
