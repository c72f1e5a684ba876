"""The store: sessions, transactions, compare-and-set updates, output chunks, checkpoints.

Writes run in IMMEDIATE transactions on SQLite (the write lock is taken at BEGIN, so
two writers never deadlock upgrading a read lock), reads in deferred ones. Every
change of a run's state is `UPDATE runs ... WHERE run_id = :id AND version = :seen`;
a zero row count means somebody else changed the run first.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from core.envelope import PersistenceError
from core.statediff import leaf_diff
from core.store.models import (
    SCHEMA_VERSION,
    Checkpoint,
    Event,
    Meta,
    OutputChunk,
    Run,
    StepAttempt,
)
from core.store.sqlexec import BUSY_TIMEOUT_MS, SqlExecutor

RUNS = Run.__table__
ATTEMPTS = StepAttempt.__table__
CHUNKS = OutputChunk.__table__
EVENTS = Event.__table__
CHECKPOINTS = Checkpoint.__table__
META = Meta.__table__


# Hot-path statements are built once: SET columns come from the execution parameters,
# so SQLAlchemy compiles each shape once instead of rebuilding `.values()` per step.
_CAS_RUN = update(RUNS).where(
    RUNS.c.run_id == bindparam("w_run_id"), RUNS.c.version == bindparam("w_version")
)
_INSERT_ATTEMPT = insert(ATTEMPTS)
_UPDATE_ATTEMPT = update(ATTEMPTS).where(ATTEMPTS.c.id == bindparam("w_id"))
_INSERT_CHECKPOINT = insert(CHECKPOINTS)
_INSERT_EVENT = insert(EVENTS)
_INSERT_CHUNK = insert(CHUNKS)
_CLOSE_WAITING = update(ATTEMPTS).where(
    ATTEMPTS.c.run_id == bindparam("w_run_id"), ATTEMPTS.c.status == "waiting"
)


def now_iso() -> str:
    # Always with microseconds, so the text sorts like the instant.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def new_id() -> str:
    return uuid.uuid4().hex


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _row(row: Any) -> dict[str, Any] | None:
    return None if row is None else dict(row._mapping)


def _add_missing_columns(conn: Connection, table: Any) -> None:
    """Columns added to an existing table since it was created (schema 3: `proc`)."""
    from sqlalchemy import inspect

    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    for column in table.columns:
        if column.name not in have:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


def _install_sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below), so the driver must not.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL survives a killed process; only an OS crash can lose the last commit.
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("cpf_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Store:
    """All persistence of runs, attempts, output, events and checkpoints."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        try:
            if self.is_sqlite:
                self._prepare_sqlite_dir(url)
                self.engine = create_engine(
                    url,
                    connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
                )
                _install_sqlite_pragmas(self.engine)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
            self._ensure_schema()
            # The runner's per-step statements go through it (sqlite3 directly on SQLite).
            self.sql = SqlExecutor(self)
        except PersistenceError:
            raise
        except (SQLAlchemyError, OSError, ValueError) as exc:
            raise PersistenceError(
                f"Cannot open the store at {_safe_url(url)}: {_one_line(exc)}"
            ) from exc

    @staticmethod
    def _prepare_sqlite_dir(url: str) -> None:
        from pathlib import Path

        path = url.split("///", 1)[1] if "///" in url else ""
        if not path or path == ":memory:":
            return
        parent = Path(path).expanduser().parent
        if parent.exists() and not parent.is_dir():
            raise PersistenceError(f"Cannot open the store: {parent} is not a directory")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PersistenceError(f"Cannot create the store directory {parent}: {exc}") from exc

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite)."""
        try:
            with self.engine.connect().execution_options(cpf_write=True) as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise PersistenceError(f"Store write failed: {_one_line(exc)}") from exc

    def hot(self) -> Any:
        """A write transaction for the per-step hot path: a `sqlite3` connection on
        SQLite, else a SQLAlchemy one. Only the methods below that take `conn` and say
        "either connection" may be called in it."""
        return self.sql.write()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise PersistenceError(f"Store read failed: {_one_line(exc)}") from exc

    def _ensure_schema(self) -> None:
        version = self._read_schema_version()
        if version == SCHEMA_VERSION:
            return
        if version is not None and version > SCHEMA_VERSION:
            raise PersistenceError(
                f"The store at {_safe_url(self.url)} has schema version {version}, newer than this "
                f"cpf understands ({SCHEMA_VERSION}); upgrade cpf to use it"
            )
        # New store, or an older one: create what is missing, under the write lock so
        # concurrent first runs do not race. Migrations so far only add tables.
        from sqlmodel import SQLModel

        # The service's tables are only imported here and by the service itself, so a
        # `cpf run` does not pay for defining them.
        from core.store import service_models  # noqa: F401

        with self.write() as conn:
            if self.engine.dialect.name == "postgresql":
                # Concurrent first runs must not create the tables twice: take a
                # transaction-scoped lock (SQLite's BEGIN IMMEDIATE does the same).
                conn.execute(text("SELECT pg_advisory_xact_lock(4242170001)"))
            SQLModel.metadata.create_all(conn)
            have = conn.execute(select(META.c.value).where(META.c.key == "schema_version")).scalar()
            if have is not None and int(have) < 3:
                _add_missing_columns(conn, ATTEMPTS)
            if have is None:
                conn.execute(insert(META).values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(have) < SCHEMA_VERSION:
                conn.execute(
                    update(META)
                    .where(META.c.key == "schema_version")
                    .values(value=str(SCHEMA_VERSION))
                )
            elif int(have) > SCHEMA_VERSION:
                raise PersistenceError(
                    f"The store has schema version {have}, newer than this cpf understands "
                    f"({SCHEMA_VERSION}); upgrade cpf to use it"
                )

    def _read_schema_version(self) -> int | None:
        try:
            with self.engine.connect() as conn:
                value = conn.execute(
                    select(META.c.value).where(META.c.key == "schema_version")
                ).scalar()
        except SQLAlchemyError:
            return None
        return None if value is None else int(value)

    def close(self) -> None:
        self.engine.dispose()

    # -- runs ---------------------------------------------------------------------------

    def insert_run(self, conn: Connection, values: dict[str, Any]) -> None:
        conn.execute(insert(RUNS).values(**values))

    def get_run(self, run_id: str, conn: Connection | None = None) -> dict[str, Any] | None:
        stmt = select(RUNS).where(RUNS.c.run_id == run_id)
        if conn is not None:
            return _row(conn.execute(stmt).first())
        with self.read() as c:
            return _row(c.execute(stmt).first())

    def cas_run(self, conn: Any, run_id: str, version: int, **values: Any) -> bool:
        """Compare-and-set: apply `values` only if the run is still at `version`.
        (Either connection.)"""
        values.setdefault("updated_at", now_iso())
        values["version"] = version + 1
        params = {"w_run_id": run_id, "w_version": version, **values}
        return self.sql.count(conn, _CAS_RUN, params, tuple(sorted(values))) == 1

    def touch_heartbeat(self, run_id: str, executor: str) -> None:
        with self.write() as conn:
            conn.execute(
                update(RUNS)
                .where(RUNS.c.run_id == run_id, RUNS.c.executor == executor)
                .values(heartbeat_at=now_iso())
            )

    def run_status(self, run_id: str) -> tuple[str, int] | None:
        with self.read() as conn:
            row = conn.execute(
                select(RUNS.c.status, RUNS.c.version).where(RUNS.c.run_id == run_id)
            ).first()
        return None if row is None else (row[0], row[1])

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        limit: int | None = None,
        account: str = "local",
    ) -> list[dict[str, Any]]:
        stmt = select(RUNS).where(RUNS.c.account == account)
        if status:
            stmt = stmt.where(RUNS.c.status == status)
        if workflow_id:
            stmt = stmt.where(RUNS.c.workflow_id == workflow_id)
        stmt = stmt.order_by(RUNS.c.created_at.desc(), RUNS.c.run_id.desc())
        if limit:
            stmt = stmt.limit(limit)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def delete_run(self, conn: Connection, run_id: str) -> None:
        # Explicit child deletes: not every backend enforces ON DELETE CASCADE.
        conn.execute(delete(CHUNKS).where(CHUNKS.c.run_id == run_id))
        conn.execute(delete(EVENTS).where(EVENTS.c.run_id == run_id))
        conn.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.run_id == run_id))
        conn.execute(update(ATTEMPTS).where(ATTEMPTS.c.run_id == run_id).values(parent_id=None))
        conn.execute(delete(ATTEMPTS).where(ATTEMPTS.c.run_id == run_id))
        conn.execute(delete(RUNS).where(RUNS.c.run_id == run_id))

    # -- attempts -----------------------------------------------------------------------

    def insert_attempt(self, conn: Any, values: dict[str, Any]) -> int:
        """(Either connection.)"""
        return int(self.sql.insert_row(conn, _INSERT_ATTEMPT, values))

    def update_attempt(self, conn: Any, attempt_id: int, **values: Any) -> None:
        """(Either connection.)"""
        self.sql.count(conn, _UPDATE_ATTEMPT, {"w_id": attempt_id, **values}, tuple(sorted(values)))

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                select(ATTEMPTS)
                .where(ATTEMPTS.c.run_id == run_id)
                .order_by(ATTEMPTS.c.seq, ATTEMPTS.c.id)
            )
            return [dict(r._mapping) for r in rows]

    def fail_open_attempts(self, conn: Connection, run_id: str, code: str, message: str) -> None:
        conn.execute(
            update(ATTEMPTS)
            .where(ATTEMPTS.c.run_id == run_id, ATTEMPTS.c.status == "running")
            .values(status="failed", error_code=code, error_message=message, finished_at=now_iso())
        )

    def close_waiting_attempts(
        self,
        conn: Any,
        run_id: str,
        *,
        outputs: Any = None,
        status: str | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        """Close the attempt that waited for an event: completed with the payload
        (resume), cancelled (no payload), or `status` with an error (timeout).
        (Either connection.)"""
        values: dict[str, Any] = {"finished_at": now_iso()}
        if status is not None:
            values["status"] = status
        elif outputs is None:
            values["status"] = "cancelled"
        else:
            values.update(status="completed", outputs=outputs)
        if error is not None:
            values.update(error_code=error[0], error_message=error[1])
        self.sql.count(conn, _CLOSE_WAITING, {"w_run_id": run_id, **values}, tuple(sorted(values)))

    # -- output -------------------------------------------------------------------------

    def append_output(
        self, run_id: str, attempt_id: int, step_id: str, batch: list[tuple[str, str]]
    ) -> None:
        if not batch:
            return
        at = now_iso()
        rows = [
            {
                "run_id": run_id,
                "attempt_id": attempt_id,
                "step_id": step_id,
                "stream": stream,
                "text": text,
                "created_at": at,
            }
            for stream, text in batch
            if text
        ]
        if rows:
            with self.hot() as conn:
                self.sql.execute(conn, _INSERT_CHUNK, rows, tuple(sorted(rows[0])))

    def output(
        self,
        run_id: str,
        *,
        after_id: int = 0,
        step_id: str | None = None,
        attempt_id: int | None = None,
        stream: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Output chunks after `after_id`, oldest first (readers tail by id)."""
        stmt = select(CHUNKS).where(CHUNKS.c.run_id == run_id, CHUNKS.c.id > after_id)
        if step_id is not None:
            stmt = stmt.where(CHUNKS.c.step_id == step_id)
        if attempt_id is not None:
            stmt = stmt.where(CHUNKS.c.attempt_id == attempt_id)
        if stream is not None:
            stmt = stmt.where(CHUNKS.c.stream == stream)
        stmt = stmt.order_by(CHUNKS.c.id)
        if limit:
            stmt = stmt.limit(limit)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    # -- events -------------------------------------------------------------------------

    def insert_event(self, conn: Any, **values: Any) -> str:
        """(Either connection.)"""
        values.setdefault("event_id", new_id())
        values.setdefault("created_at", now_iso())
        self.sql.insert_row(conn, _INSERT_EVENT, values)
        return values["event_id"]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                select(EVENTS)
                .where(EVENTS.c.run_id == run_id)
                .order_by(EVENTS.c.created_at, EVENTS.c.event_id)
            )
            return [dict(r._mapping) for r in rows]

    # -- checkpoints --------------------------------------------------------------------

    def insert_run_checkpoint(
        self,
        conn: Any,
        *,
        run_id: str,
        step: int,
        label: str,
        state: dict[str, Any],
        previous_state: dict[str, Any] | None,
        metadata: dict[str, Any],
        account: str = "local",
    ) -> str:
        """The checkpoint of one committed step transition of a run (same transaction).
        (Either connection.)"""
        body = compact_json(state)
        checkpoint_id = f"cp_{run_id}_{step:03d}"
        etag = checkpoint_etag(account, run_id, step, body)
        self.sql.insert_row(
            conn,
            _INSERT_CHECKPOINT,
            {
                "checkpoint_id": checkpoint_id,
                "account": account,
                "workflow_id": run_id,
                "run_id": run_id,
                "step": step,
                "label": label,
                "state": state,
                "metadata": metadata,
                "etag": etag,
                "diff_from_previous": leaf_diff(previous_state, state),
                "size_bytes": len(body.encode("utf-8")),
                "created_at": now_iso(),
            },
        )
        return checkpoint_id

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                select(CHECKPOINTS)
                .where(CHECKPOINTS.c.run_id == run_id)
                .order_by(CHECKPOINTS.c.step)
            )
            return [dict(r._mapping) for r in rows]

    def checkpoint_count(self, run_id: str) -> int:
        with self.read() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(CHECKPOINTS)
                    .where(CHECKPOINTS.c.run_id == run_id)
                ).scalar()
                or 0
            )


def checkpoint_etag(account: str, workflow_id: str, step: int, body: str) -> str:
    """Opaque and unique per checkpoint: the same state at another step gets another etag."""
    digest = hashlib.sha256(f"{account}\0{workflow_id}\0{step}\0{body}".encode()).hexdigest()
    return f'"{digest[:16]}"'


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _safe_url(url: str) -> str:
    # Never print a password from CPF_DATABASE_URL.
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


_STORE: Store | None = None


def open_store(url: str | None = None) -> Store:
    """The process-wide store for `url` (default: `core.paths.database_url()`)."""
    global _STORE
    from core.paths import database_url

    url = url or database_url()
    if _STORE is None or _STORE.url != url:
        _STORE = Store(url)
    return _STORE
