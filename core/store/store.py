"""The store: sessions, transactions, compare-and-set updates, output chunks, checkpoints.

Writes run in IMMEDIATE transactions on SQLite (the write lock is taken at BEGIN, so
two writers never deadlock upgrading a read lock), reads in deferred ones. Every
change of a run's state is `UPDATE runs ... WHERE run_id = :id AND version = :seen`;
a zero row count means somebody else changed the run first.

On SQLite the store runs the statements of `core.store.statements` precompiled
(`core.store.compiled`) on `sqlite3`, creating a new schema from the compiled DDL: no
SQLAlchemy import. Elsewhere (PostgreSQL) SQLAlchemy runs them. The SQLAlchemy engine
of a SQLite store (`write()`, `read()`) is created on first use. An older store is
migrated with Alembic (`core.store.migrate`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from core.envelope import PersistenceError
from core.statediff import leaf_diff
from core.store.compiled import SCHEMA_VERSION
from core.store.sqlexec import BUSY_TIMEOUT_MS, SqlExecutor, sqlalchemy_error


def __getattr__(name: str) -> Any:
    # The SQLAlchemy tables, for callers that build their own statements (tests, seeds).
    if name in ("RUNS", "ATTEMPTS", "CHUNKS", "EVENTS", "CHECKPOINTS", "META"):
        from core.store import statements

        return getattr(statements, name)
    raise AttributeError(name)


def _clock_skew() -> float:
    # Tests simulate a host whose clock is off (core.liveness must not care).
    try:
        return float(os.environ.get("CPF_TEST_CLOCK_SKEW_SECONDS") or 0)
    except ValueError:
        return 0.0


_SKEW = _clock_skew()


def now_iso() -> str:
    # Always with microseconds, so the text sorts like the instant.
    now = datetime.now(UTC)
    if _SKEW:
        now += timedelta(seconds=_SKEW)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def new_id() -> str:
    """A uuid4 in hex, as `uuid.uuid4().hex` makes it, without importing uuid (and the
    platform module it loads), which costs every command that records something."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# The columns of a run list (the TUI's), without the big JSON ones (inputs, outputs, result).
SUMMARY_COLUMNS = (
    "run_id",
    "workflow_id",
    "workflow_name",
    "status",
    "current_step_id",
    "wait",
    "error",
    "version",
    "executor",
    "lease_expires_at",
    "heartbeat_at",
    "created_at",
    "updated_at",
    "finished_at",
)


def variant(name: str, **flags: Any) -> str:
    """The name of a query variant: `name+flag+...` for the flags that are set."""
    return "+".join((name, *(flag for flag, value in flags.items() if value)))


def _install_sqlite_pragmas(engine: Any) -> None:
    from sqlalchemy import event

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
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("cpf_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Store:
    """All persistence of runs, attempts, output, events and checkpoints."""

    def __init__(self, url: str, *, fast: bool | None = None) -> None:
        """`fast=False` runs everything through SQLAlchemy even on SQLite (tests)."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._engine: Any = None
        try:
            if self.is_sqlite:
                self._prepare_sqlite_dir(url)
            # The statements run through it (sqlite3 directly on SQLite).
            self.sql = SqlExecutor(self, fast=fast)
            if self.sql.fast and self.is_sqlite:
                self._ensure_sqlite_schema()
            else:
                self._ensure_schema()
        except PersistenceError:
            raise
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise PersistenceError(
                f"Cannot open the store at {_safe_url(url)}: {_one_line(exc)}"
            ) from exc
        except Exception as exc:
            if not sqlalchemy_error(exc):
                raise
            raise PersistenceError(
                f"Cannot open the store at {_safe_url(url)}: {_one_line(exc)}"
            ) from exc

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine (created on first use)."""
        if self._engine is None:
            from sqlalchemy import create_engine

            if self.is_sqlite:
                engine = create_engine(
                    self.url,
                    connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
                )
                _install_sqlite_pragmas(engine)
            else:
                # A cpf process holds at most one connection: none idles in a pool
                # (the statements run on the executor's own; see core.store.pgexec).
                from sqlalchemy.pool import NullPool

                engine = create_engine(
                    self.url, poolclass=NullPool, connect_args=pg_connect_args(self.url)
                )
            self._engine = engine
        return self._engine

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
    def write(self) -> Iterator[Any]:
        """One SQLAlchemy write transaction (BEGIN IMMEDIATE on SQLite): for callers that
        build their own statements. The engine's own code uses `hot()`."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect().execution_options(cpf_write=True) as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise PersistenceError(f"Store write failed: {_one_line(exc)}") from exc

    def hot(self, batch: bool = False) -> Any:
        """A write transaction: a `sqlite3` connection on SQLite, a psycopg one on
        PostgreSQL, else a SQLAlchemy one. Every method below that takes `conn` accepts
        either (and a `write()` one). `batch`: see `SqlExecutor.write` (one round trip
        on PostgreSQL for a block that reads nothing back)."""
        return self.sql.write(batch)

    @contextmanager
    def read(self) -> Iterator[Any]:
        """One SQLAlchemy read transaction (see `write()`)."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise PersistenceError(f"Store read failed: {_one_line(exc)}") from exc

    def _newer(self, version: int) -> PersistenceError:
        return PersistenceError(
            f"The store at {_safe_url(self.url)} has schema version {version}, newer than this "
            f"cpf understands ({SCHEMA_VERSION}); upgrade cpf to use it",
            details={"schema_version": version, "supported": SCHEMA_VERSION},
        )

    def _sqlite_schema_version(self, conn: sqlite3.Connection) -> int | None:
        try:
            value = self.sql.scalar(conn, "schema_version")
        except sqlite3.OperationalError:  # no cpf_meta table yet
            return None
        return None if value is None else int(value)

    def _ensure_sqlite_schema(self) -> None:
        """Create a new SQLite store from the compiled DDL (no SQLAlchemy), stamped at the
        head revision; an older one is migrated by `core.store.migrate` (Alembic)."""
        conn = self.sql._raw()
        version = self._sqlite_schema_version(conn)
        if version == SCHEMA_VERSION:
            return
        if version is not None and version > SCHEMA_VERSION:
            raise self._newer(version)
        if version is None:
            from core.store.compiled import DATA, HEAD_REVISION

            # Outside any transaction (SQLite refuses it inside); it persists in the file.
            conn.execute("PRAGMA journal_mode = WAL")
            # Under the write lock, so concurrent first runs do not race.
            with self.sql.write() as tx:
                version = self._sqlite_schema_version(tx)
                if version is None:
                    for ddl in DATA["ddl"]:
                        tx.execute(ddl)
                    values = {"key": "schema_version", "value": str(SCHEMA_VERSION)}
                    self.sql.insert_row(tx, "insert_cpf_meta", values)
                    tx.execute(
                        "INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD_REVISION,)
                    )
                    return
            if version == SCHEMA_VERSION:
                return
        self._upgrade()

    def _ensure_schema(self) -> None:
        """Create or upgrade the schema through SQLAlchemy (PostgreSQL, odd SQLite URLs)."""
        version = self._read_schema_version()
        if version == SCHEMA_VERSION:
            return
        if version is not None and version > SCHEMA_VERSION:
            raise self._newer(version)
        if version is None:
            from core.store import migrate

            # A new store: created from the models on this store's own engine (an
            # in-memory SQLite database has no other), under the write lock.
            with self.write() as conn:
                migrate.lock(conn)
                version = migrate.read_version(conn, self.url)
                if version is None:
                    migrate.create(conn)
                    return
            if version == SCHEMA_VERSION:
                return
        self._upgrade()

    def _upgrade(self) -> None:
        """Migrate an older store (or refuse: `CPF_DB_AUTO_UPGRADE=0`, a newer one)."""
        from core.store import migrate

        migrate.upgrade(self.url, migrate_older=migrate.auto_upgrade())

    def _read_schema_version(self) -> int | None:
        if self.sql.pg:
            # On the fast path's connection: an up-to-date store needs no SQLAlchemy.
            import psycopg

            try:
                with self.sql.read() as conn:
                    value = self.sql.scalar(conn, "schema_version")
            except PersistenceError as exc:
                if not isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
                    raise PersistenceError(
                        f"Cannot open the store at {_safe_url(self.url)}: {exc}"
                    ) from exc
                value = None
            if value is None or int(value) != SCHEMA_VERSION:
                self.sql.close()  # the schema work below runs on SQLAlchemy's
            return None if value is None else int(value)
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as conn:
                value = self.sql.scalar(conn, "schema_version")
        except SQLAlchemyError:
            return None
        return None if value is None else int(value)

    def close(self) -> None:
        self.sql.close()
        if self._engine is not None:
            self._engine.dispose()

    # -- runs ---------------------------------------------------------------------------

    def insert_run(self, conn: Any, values: dict[str, Any]) -> None:
        self.sql.insert_row(conn, "insert_runs", values)

    def get_run(self, run_id: str, conn: Any = None) -> dict[str, Any] | None:
        if conn is not None:
            return self.sql.first(conn, "get_run", {"run_id": run_id})
        with self.sql.read() as c:
            return self.sql.first(c, "get_run", {"run_id": run_id})

    def cas_run(self, conn: Any, run_id: str, version: int, **values: Any) -> bool:
        """Compare-and-set: apply `values` only if the run is still at `version`."""
        values.setdefault("updated_at", now_iso())
        values["version"] = version + 1
        params = {"w_run_id": run_id, "w_version": version, **values}
        return self.sql.count(conn, "cas_run", params, tuple(sorted(values))) == 1

    def set_run(self, conn: Any, run_id: str, version: int, **values: Any) -> None:
        """`cas_run` that makes the whole transaction write nothing, raising
        `StaleWrite`, when the run is no longer at `version` (in a batch, when it is
        sent: the server checks, nothing is read back)."""
        values.setdefault("updated_at", now_iso())
        values["version"] = version + 1
        params = {"w_run_id": run_id, "w_version": version, **values}
        self.sql.guarded(conn, "cas_run", params, tuple(sorted(values)))

    # -- executor leases (core.liveness) --------------------------------------------------

    def grant_lease(self, conn: Any, run_id: str, seconds: float) -> None:
        """In the transaction that hands the run over: its lease ends `seconds` from now,
        by the database's clock."""
        self.sql.count(conn, "grant_lease", {"w_run_id": run_id, "w_seconds": float(seconds)})

    def renew_lease(self, run_id: str, executor_id: str, seconds: float) -> bool:
        """Extend the lease of a running run held by `executor_id`; False when the run is
        no longer running, is held by another executor, or its lease already expired."""
        params = {
            "w_run_id": run_id,
            "w_executor_id": executor_id,
            "w_seconds": float(seconds),
            "w_at": now_iso(),
        }
        with self.sql.write() as conn:
            return self.sql.count(conn, "renew_lease", params) == 1

    def lease_expired(self, run_id: str) -> bool:
        """Whether the run's lease has expired by the database's clock (False without
        a lease)."""
        with self.sql.read() as conn:
            return self.sql.first(conn, "lease_expired", {"run_id": run_id}) is not None

    def run_status(self, run_id: str) -> tuple[str, int] | None:
        with self.sql.read() as conn:
            row = self.sql.first(conn, "run_status", {"run_id": run_id})
        return None if row is None else (row["status"], row["version"])

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        limit: int | None = None,
        account: str = "local",
    ) -> list[dict[str, Any]]:
        name = variant("list_runs", status=status, workflow_id=workflow_id, limit=limit)
        params = {"account": account, "status": status, "workflow_id": workflow_id}
        params["limit"] = limit
        with self.sql.read() as conn:
            return self.sql.rows(conn, name, params)

    def delete_run(self, conn: Any, run_id: str) -> None:
        # Explicit child deletes: not every backend enforces ON DELETE CASCADE.
        for name in ("delete_chunks", "delete_events", "delete_checkpoints"):
            self.sql.count(conn, name, {"run_id": run_id})
        self.sql.count(conn, "unparent_attempts", {"w_run_id": run_id})
        self.sql.count(conn, "delete_attempts", {"run_id": run_id})
        self.sql.count(conn, "delete_run", {"run_id": run_id})

    # -- attempts -----------------------------------------------------------------------

    def insert_attempt(self, conn: Any, values: dict[str, Any]) -> int:
        return int(self.sql.insert_row(conn, "insert_step_attempts", values))

    def insert_attempt_later(self, conn: Any, values: dict[str, Any]) -> Callable[[], int]:
        """Insert an attempt; its id is given by the returned function once the
        transaction is over (a batch reads nothing back while it is built)."""
        key = self.sql.insert_later(conn, "insert_step_attempts", values)
        return lambda: int(key())

    def update_attempt(self, conn: Any, attempt_id: int, **values: Any) -> None:
        params = {"w_id": attempt_id, **values}
        self.sql.execute(conn, "update_attempt", params, tuple(sorted(values)))

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        with self.sql.read() as conn:
            return self.sql.rows(conn, "attempts", {"run_id": run_id})

    def fail_open_attempts(self, conn: Any, run_id: str, code: str, message: str) -> None:
        params = {"w_run_id": run_id, "w_code": code, "w_message": message, "w_at": now_iso()}
        self.sql.count(conn, "fail_open_attempts", params)

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
        (resume), cancelled (no payload), or `status` with an error (timeout)."""
        values: dict[str, Any] = {"finished_at": now_iso()}
        if status is not None:
            values["status"] = status
        elif outputs is None:
            values["status"] = "cancelled"
        else:
            values.update(status="completed", outputs=outputs)
        if error is not None:
            values.update(error_code=error[0], error_message=error[1])
        params = {"w_run_id": run_id, **values}
        self.sql.count(conn, "close_waiting", params, tuple(sorted(values)))

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
                self.sql.execute(conn, "insert_output_chunks", rows)

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
        name = variant(
            "output",
            step_id=step_id is not None,
            attempt_id=attempt_id is not None,
            stream=stream is not None,
            limit=limit,
        )
        params = {
            "run_id": run_id,
            "after_id": after_id,
            "step_id": step_id,
            "attempt_id": attempt_id,
            "stream": stream,
            "limit": limit,
        }
        with self.sql.read() as conn:
            return self.sql.rows(conn, name, params)

    # -- events -------------------------------------------------------------------------

    def insert_event(self, conn: Any, **values: Any) -> str:
        values.setdefault("event_id", new_id())
        values.setdefault("created_at", now_iso())
        self.sql.insert_row(conn, "insert_events", values)
        return values["event_id"]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self.sql.read() as conn:
            return self.sql.rows(conn, "events", {"run_id": run_id})

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
        """The checkpoint of one committed step transition of a run (same transaction)."""
        body = compact_json(state)
        checkpoint_id = f"cp_{run_id}_{step:03d}"
        etag = checkpoint_etag(account, run_id, step, body)
        values = {
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
        }
        # Its key is not read back (a batch stays one round trip).
        self.sql.execute(conn, "insert_checkpoints", values, tuple(sorted(values)))
        return checkpoint_id

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        with self.sql.read() as conn:
            return self.sql.rows(conn, "checkpoints", {"run_id": run_id})

    def checkpoint_count(self, run_id: str) -> int:
        with self.sql.read() as conn:
            return int(self.sql.scalar(conn, "checkpoint_count", {"run_id": run_id}) or 0)


def checkpoint_etag(account: str, workflow_id: str, step: int, body: str) -> str:
    """Opaque and unique per checkpoint: the same state at another step gets another etag."""
    import hashlib

    digest = hashlib.sha256(f"{account}\0{workflow_id}\0{step}\0{body}".encode()).hexdigest()
    return f'"{digest[:16]}"'


def pg_connect_args(url: str) -> dict[str, Any]:
    """psycopg's connect arguments: no automatic server-side prepared statements when
    they are off (CPF_DB_PREPARE=0, PgBouncer in transaction mode before 1.21)."""
    if not url.startswith("postgresql+psycopg"):
        return {}
    from core.store.pgexec import prepare_enabled

    return {} if prepare_enabled() else {"prepare_threshold": None}


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _safe_url(url: str) -> str:
    # Never print a password from CPF_DATABASE_URL (a SQLite URL has none).
    if url.startswith("sqlite"):
        return url
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
