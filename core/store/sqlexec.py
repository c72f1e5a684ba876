"""Run the store's statements fast on SQLite and PostgreSQL, anywhere through SQLAlchemy.

Statements are written once, as SQLAlchemy Core on the SQLModel tables
(`core.store.statements`), and passed here by name; the service passes statement
objects. How they run depends on the store:

- any database: on the engine's connections (SQLAlchemy executes them);
- PostgreSQL through psycopg (`postgresql+psycopg://`): on psycopg connections, as
  server-side prepared statements, from SQL precompiled for PostgreSQL; see
  `core.store.pgexec` (connections, retries, PgBouncer);
- SQLite (the default store): on a per-thread `sqlite3` connection to the same file. A
  named statement runs the SQL precompiled into `core.store.compiled`, so the process
  never imports SQLAlchemy; a statement object is compiled once by SQLAlchemy. Either
  way a statement costs a few C calls instead of SQLAlchemy's per-statement machinery.
  Both paths are tested.

Writes of one process also take a process-wide lock before `BEGIN IMMEDIATE`: threads
queue on a cheap mutex instead of SQLite's busy handler, which sleeps in growing steps
and wrecks tail latency. Other processes still meet at SQLite's write lock.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import cache
from typing import Any

from core.envelope import PersistenceError

BUSY_TIMEOUT_MS = 30_000


class TransientStoreError(PersistenceError):
    """A store error after which nothing was written: the transaction may be retried."""


class StaleWrite(Exception):
    """A guarded update (`SqlExecutor.guarded`) found its row changed by someone else:
    its transaction wrote nothing."""


def __getattr__(name: str) -> Any:
    # What a unique-constraint violation looks like on every path (the SQLAlchemy and
    # psycopg halves are only imported by whoever asks).
    if name == "INTEGRITY_ERRORS":
        from sqlalchemy.exc import IntegrityError

        errors: tuple[type[BaseException], ...] = (IntegrityError, sqlite3.IntegrityError)
        psycopg = sys.modules.get("psycopg")
        if psycopg is not None:
            errors += (psycopg.IntegrityError,)
        return errors
    raise AttributeError(name)


def _is_pg(conn: Any) -> bool:
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(conn, psycopg.Connection)


@cache
def _dialect() -> Any:
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    return sqlite_dialect.dialect(paramstyle="named")


@cache
def _json_columns(table: Any) -> frozenset[str]:
    from sqlalchemy import JSON

    return frozenset(c.key for c in table.columns if isinstance(c.type, JSON))


def _compiled() -> dict[str, Any]:
    from core.store.compiled import DATA

    return DATA


@cache
def _table_binds(table: str) -> tuple[str, frozenset[str], dict[str, Any]]:
    """(insert SQL, JSON columns, every column's default) of a table."""
    info = _compiled()["tables"][table]
    return info["insert"], frozenset(info["json"]), dict(info["defaults"])


def build_update(
    data: dict[str, Any], name: str, keys: tuple[str, ...], bind: str
) -> tuple[str, frozenset[str], dict[str, Any]]:
    """A named update of one dialect's compiled `data` whose SET columns are `keys`
    (checked against the table's columns); `bind` formats a parameter (":{}")."""
    info = data["updates"][name]
    table = data["tables"][info["table"]]
    columns = table["columns"]
    unknown = [k for k in keys if k not in columns]
    if unknown or not keys:
        raise ValueError(f"bad SET columns for {name}: {keys}")
    sets = ", ".join(f"{columns[k]}={bind.format(k)}" for k in keys)
    sql = f"UPDATE {info['table']} SET {sets} WHERE {info['where']}"
    return sql, frozenset(table["json"]) & frozenset(keys), dict(info["params"])


@cache
def _update_sql(name: str, keys: tuple[str, ...]) -> tuple[str, frozenset[str], dict[str, Any]]:
    return build_update(_compiled(), name, keys, ":{}")


def _decode(value: Any, kind: str | None) -> Any:
    """A column read by sqlite3 as SQLAlchemy would return it (JSON, Boolean)."""
    if kind is None or value is None:
        return value
    if kind == "json":
        return json.loads(value) if isinstance(value, str) else value
    return bool(value)


def _sa_statement(name: str) -> Any:
    from core.store.statements import statement

    return statement(name)


class SqlExecutor:
    """Transactions and statement execution over a `Store`'s database."""

    _write_lock = threading.Lock()

    def __init__(self, store: Any, *, fast: bool | None = None) -> None:
        self.store = store
        self.is_sqlite = store.is_sqlite
        self._path = sqlite_path(store.url) if store.is_sqlite else None
        # The psycopg fast path (PostgreSQL); `fast=False` forces SQLAlchemy (tests).
        self.pg = fast is not False and pg_url(store.url)
        # A fast path (sqlite3 or psycopg); `fast=False` forces SQLAlchemy everywhere.
        sqlite_fast = self._path is not None and fast is not False
        self.fast = sqlite_fast or self.pg
        self._local = threading.local()
        self._compiled: dict[Any, tuple[Any, ...]] = {}
        # PostgreSQL without a pool: the process's one connection, one transaction at
        # a time (threads queue on the lock; a nested transaction joins the open one).
        self._pg_lock = threading.RLock()
        self._pg_conn: Any = None
        self._pg_depth = 0
        self._pg_tx: Any = None

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def write(self, batch: bool = False) -> Iterator[Any]:
        """One write transaction (BEGIN IMMEDIATE on SQLite), serialized in-process
        (on PostgreSQL, row locks serialize writers instead).

        `batch`: on PostgreSQL its statements go to the server together with BEGIN and
        COMMIT when the block ends (pgexec.Tx.run), so the block should read nothing
        it writes (`insert_later` gives a key afterwards; a read waits for what was
        sent, costing a round trip). Elsewhere it changes nothing."""
        if self.pg:
            with self._pg_transaction("write", batch) as conn:
                yield conn
            return
        with self._write_lock:
            if not self.fast:
                with self.store.write() as conn:
                    yield conn
                return
            with self._raw_tx("BEGIN IMMEDIATE") as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Any]:
        if self.pg:
            with self._pg_transaction("read") as conn:
                yield conn
            return
        if not self.fast:
            with self.store.read() as conn:
                yield conn
            return
        with self._raw_tx("BEGIN") as conn:
            yield conn

    # -- PostgreSQL connections ------------------------------------------------------------

    def _pg_pool(self) -> Any:
        """A SQLAlchemy engine whose bounded pool gives the connections, or None for the
        process's one connection (`ServiceStore` has a pool)."""
        return None

    @contextmanager
    def _pg_transaction(self, what: str, batch: bool = False) -> Iterator[Any]:
        from core.store import pgexec

        engine = self._pg_pool()
        if engine is not None:
            # The pool is the process's connections now (the store's own is dropped).
            # No retry here: the service runs the whole request again after a
            # transient error (CPF_SERVE_RETRY_DEADLINE), on another connection.
            with self._pg_transaction_tx(engine).run(what, read=what == "read") as conn:
                yield conn
            return
        with self._pg_lock:
            if self._pg_depth:
                yield self._pg_conn  # a nested transaction joins the open one
                return
            if self._pg_tx is None:
                self._pg_tx = pgexec.Tx(self._pg_single)
            self._pg_depth += 1
            try:
                with self._pg_tx.run(what, read=what == "read", batch=batch) as conn:
                    yield conn
            finally:
                self._pg_depth -= 1

    @contextmanager
    def pg_statement(self, what: str) -> Iterator[Any]:
        """A pooled psycopg connection for one autocommit statement (see
        `pgexec.Tx.statement`); only for a store with a pool (`cpf serve`)."""
        engine = self._pg_pool()
        assert self.pg and engine is not None
        with self._pg_transaction_tx(engine).statement(what) as conn:
            yield conn

    def _pg_transaction_tx(self, engine: Any) -> Any:
        from core.store import pgexec

        if self._pg_tx is None:
            if self.store.sql is not self:
                self.store.sql.close()
            self._pg_tx = pgexec.Tx(lambda: self._pg_checkout(engine), deadline=0.0)
        return self._pg_tx

    def _pg_single(self) -> tuple[Any, Any]:
        from core.store import pgexec

        conn = self._pg_conn
        if conn is None or conn.closed:
            self._pg_conn = None
            conn = self._pg_conn = pgexec.connect(pgexec.conninfo(self.store.url))

        def release(broken: bool) -> None:
            if broken:
                self._pg_drop()

        return conn, release

    def _pg_drop(self) -> None:
        conn, self._pg_conn = self._pg_conn, None
        if conn is not None:
            with suppress(Exception):
                conn.close()

    @staticmethod
    def _pg_checkout(engine: Any) -> tuple[Any, Any]:
        from core.store import pgexec

        fairy = engine.raw_connection()
        conn = pgexec.configure(fairy.driver_connection)

        def release(broken: bool) -> None:
            if broken:
                with suppress(Exception):
                    fairy.invalidate()
            fairy.close()

        return conn, release

    def _raw(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _raw_tx(self, begin: str) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._raw()
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise PersistenceError(f"Store transaction failed: {exc}") from exc
        try:
            yield conn
        except BaseException as exc:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
                raise PersistenceError(f"Store transaction failed: {exc}") from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise PersistenceError(f"Store commit failed: {exc}") from exc

    # -- the two executors ----------------------------------------------------------------

    def _compile(self, stmt: Any, keys: tuple[str, ...] | None) -> tuple[Any, ...]:
        """(sql, JSON input columns, bind defaults, JSON-ness of each output column) of
        a statement object, compiled by SQLAlchemy.

        Only module-level statements come here (the cache is keyed by identity and
        keeps the statement alive, so an id is never reused for another one)."""
        cache_key = (id(stmt), keys)
        hit = self._compiled.get(cache_key)
        if hit is not None and hit[0] is stmt:
            return hit[1:]
        from sqlalchemy import JSON

        compiled = stmt.compile(
            dialect=_dialect(),
            column_keys=list(keys) if keys else None,
        )
        table = getattr(stmt, "table", None)
        json_in = _json_columns(table) if table is not None else frozenset()
        json_out = [isinstance(c.type, JSON) for c in getattr(stmt, "selected_columns", [])] or None
        defaults = dict(compiled.construct_params(_check=False))
        if table is not None and getattr(stmt, "is_insert", False):
            # SQLAlchemy fills Python-side column defaults at execution; so must we.
            for column in table.columns:
                default = column.default
                if (
                    default is not None
                    and default.is_scalar
                    and defaults.get(column.key) is None
                    and (keys is None or column.key not in keys)
                ):
                    defaults[column.key] = default.arg
        out = [("json" if j else None) for j in json_out] if json_out else None
        entry = (stmt, str(compiled), json_in, defaults, out)
        self._compiled[cache_key] = entry
        return entry[1:]

    @staticmethod
    def _named(name: str, keys: tuple[str, ...] | None) -> tuple[Any, ...]:
        """(sql, JSON input columns, bind defaults, output kinds) of a named statement,
        from the precompiled SQL: no SQLAlchemy."""
        if name.startswith("insert_"):
            sql, json_in, defaults = _table_binds(name.removeprefix("insert_"))
            return sql, json_in, defaults, None
        if keys is not None:
            sql, json_in, defaults = _update_sql(name, keys)
            return sql, json_in, defaults, None
        query = _compiled()["queries"][name]
        return query["sql"], frozenset(), query["params"], query["out"]

    def _prepared(self, stmt: Any, keys: tuple[str, ...] | None) -> tuple[Any, ...]:
        return self._named(stmt, keys) if isinstance(stmt, str) else self._compile(stmt, keys)

    def execute(
        self,
        conn: Any,
        stmt: Any,
        params: dict[str, Any] | list[dict[str, Any]] | None = None,
        keys: tuple[str, ...] | None = None,
    ) -> Any:
        """Execute a statement (object or name); returns a sqlite3 or psycopg cursor
        (fast paths) or a SQLAlchemy result. `keys`: the SET columns of a named update."""
        if not isinstance(conn, sqlite3.Connection):
            if _is_pg(conn):
                return self._pg_execute(conn, stmt, params, keys)
            if isinstance(stmt, str):
                stmt = _sa_statement(stmt)
            return conn.execute(stmt, params) if params is not None else conn.execute(stmt)
        sql, json_in, defaults, _out = self._prepared(stmt, keys)
        if isinstance(params, list):
            rows = [self._bind(defaults, p, json_in) for p in params]
            return conn.executemany(sql, rows)
        return conn.execute(sql, self._bind(defaults, params or {}, json_in))

    def exec_sql(self, conn: Any, sql: str) -> None:
        """Run one literal SQL command (no parameters, nothing returned)."""
        if isinstance(conn, sqlite3.Connection):
            conn.execute(sql)
        elif _is_pg(conn):
            conn.execute(sql.encode(), prepare=False)
        else:
            conn.exec_driver_sql(sql)

    # -- PostgreSQL statements --------------------------------------------------------------

    def _pg_statement(
        self, stmt: Any, keys: tuple[str, ...] | None, params: dict[str, Any]
    ) -> tuple[str, frozenset[str], dict[str, Any], str | None]:
        """(sql, JSON input columns, bind defaults, primary key of an insert)."""
        from core.store import pgexec

        if isinstance(stmt, str):
            if stmt.startswith("insert_"):
                table = stmt.removeprefix("insert_")
                serial_pk = pgexec.table_insert(table, False)[3]
                with_pk = params.get(serial_pk) is not None
                return pgexec.table_insert(table, with_pk)
            if keys is not None:
                return (*pgexec.update_sql(stmt, keys), None)
            sql, defaults = pgexec.query_sql(stmt)
            return sql, frozenset(), defaults, None
        cache_key = (id(stmt), keys)
        hit = self._compiled.get(("pg", cache_key))
        if hit is not None and hit[0] is stmt:
            return hit[1:]
        compiled = stmt.compile(dialect=pgexec.dialect(), column_keys=list(keys) if keys else None)
        table = getattr(stmt, "table", None)
        json_in = _json_columns(table) if table is not None else frozenset()
        defaults = dict(compiled.construct_params(_check=False))
        pk = None
        if table is not None and getattr(stmt, "is_insert", False):
            pk = next(iter(table.primary_key.columns)).key
        entry = (stmt, str(compiled), json_in, defaults, pk)
        self._compiled[("pg", cache_key)] = entry
        return entry[1:]

    def _pg_execute(
        self,
        conn: Any,
        stmt: Any,
        params: dict[str, Any] | list[dict[str, Any]] | None,
        keys: tuple[str, ...] | None,
    ) -> Any:
        from core.store import pgexec

        if isinstance(params, list):
            if not params:
                return conn.cursor()
            sql, json_in, defaults, _pk = self._pg_statement(stmt, keys, params[0])
            cur = conn.cursor()
            cur.executemany(sql, [pgexec.bind(defaults, p, json_in) for p in params])
            return cur
        params = params or {}
        sql, json_in, defaults, _pk = self._pg_statement(stmt, keys, params)
        # Prepared on first use, per the connection's threshold (see pgexec.configure).
        return conn.execute(sql, pgexec.bind(defaults, params, json_in))

    @staticmethod
    def _bind(defaults: dict[str, Any], params: dict[str, Any], json_in: frozenset[str]) -> dict:
        out = {**defaults, **params}
        for name in json_in:
            value = out.get(name)
            if value is not None:
                out[name] = json.dumps(value)
        return out

    def rows(self, conn: Any, stmt: Any, params: dict[str, Any] | None = None) -> list[dict]:
        if not isinstance(conn, sqlite3.Connection):
            if _is_pg(conn):
                cur = self._pg_execute(conn, stmt, params, None)
                _settle(conn)
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            return [dict(r._mapping) for r in self.execute(conn, stmt, params)]
        cur = self.execute(conn, stmt, params)
        kinds = self._prepared(stmt, None)[3]
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        if kinds:
            rows = [[_decode(v, k) for v, k in zip(row, kinds, strict=True)] for row in rows]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def first(self, conn: Any, stmt: Any, params: dict[str, Any] | None = None) -> dict | None:
        rows = self.rows(conn, stmt, params)
        return rows[0] if rows else None

    def scalar(self, conn: Any, stmt: Any, params: dict[str, Any] | None = None) -> Any:
        if not isinstance(conn, sqlite3.Connection) and not _is_pg(conn):
            return self.execute(conn, stmt, params).scalar()
        cur = self.execute(conn, stmt, params)
        _settle(conn)
        row = cur.fetchone()
        return None if row is None else row[0]

    def tuples(self, conn: Any, stmt: Any, params: dict[str, Any] | None = None) -> list[tuple]:
        """Plain rows (for aggregates: no column names, no decoding)."""
        cur = self.execute(conn, stmt, params)
        _settle(conn)
        return [tuple(r) for r in cur.fetchall()]

    def count(
        self,
        conn: Any,
        stmt: Any,
        params: dict[str, Any] | None = None,
        keys: tuple[str, ...] | None = None,
    ) -> int:
        """Execute a write; return the affected row count."""
        cur = self.execute(conn, stmt, params, keys)
        _settle(conn)
        return int(cur.rowcount or 0)

    def guarded(self, conn: Any, name: str, params: dict[str, Any], keys: tuple[str, ...]) -> None:
        """A named update that must change exactly one row; otherwise its transaction
        writes nothing and raises `StaleWrite` (on PostgreSQL from the server, when the
        batch is sent: nothing is read here)."""
        if _is_pg(conn):
            from core.store import pgexec

            sql, json_in, defaults = pgexec.guarded_sql(name, keys)
            conn.execute(sql, pgexec.bind(defaults, params, json_in))
            return
        if self.count(conn, name, params, keys) != 1:
            raise StaleWrite(f"{name}: the row changed")

    def insert_later(self, conn: Any, stmt: Any, values: dict[str, Any]) -> Callable[[], Any]:
        """Insert one row without waiting for its key: the returned function gives it
        once the transaction is over (at once off PostgreSQL)."""
        if _is_pg(conn):
            keys = tuple(sorted(values))
            cur = self._pg_execute(conn, stmt, values, keys)
            pk = self._pg_statement(stmt, keys, values)[3]
            if pk is not None and values.get(pk) is not None:
                return lambda: values[pk]
            return lambda: cur.fetchone()[0]
        key = self.insert_row(conn, stmt, values)
        return lambda: key

    def insert_row(self, conn: Any, stmt: Any, values: dict[str, Any]) -> Any:
        """Insert one row; return its primary key (the rowid on the fast path)."""
        if not isinstance(conn, sqlite3.Connection):
            if _is_pg(conn):
                keys = tuple(sorted(values))
                cur = self._pg_execute(conn, stmt, values, keys)
                pk = self._pg_statement(stmt, keys, values)[3]
                if pk is not None and values.get(pk) is not None:
                    return values[pk]
                _settle(conn)
                row = cur.fetchone() if cur.description else None
                return None if row is None else row[0]
            if isinstance(stmt, str):
                stmt = _sa_statement(stmt)
            return conn.execute(stmt, values).inserted_primary_key[0]
        cur = self.execute(conn, stmt, values, tuple(sorted(values)))
        return cur.lastrowid

    def close(self) -> None:
        """Close this thread's sqlite3 connection (and the PostgreSQL one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with suppress(sqlite3.Error):
                conn.close()
        with self._pg_lock:
            if not self._pg_depth:
                self._pg_drop()


def _settle(conn: Any) -> None:
    """Before reading a result inside a batch (pgexec.settle); else nothing."""
    if getattr(conn, "_cpf_pipeline", None) is not None:
        from core.store import pgexec

        pgexec.settle(conn)


def pg_url(url: str) -> bool:
    """Whether a store URL goes through psycopg directly (psycopg 3 installed)."""
    if not url.startswith("postgresql+psycopg://"):
        return False
    import importlib.util

    return importlib.util.find_spec("psycopg") is not None


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for memory or URI databases, or anything unusual,
    which then goes through SQLAlchemy)."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            database = url[len(prefix) :]
            break
    else:
        return None
    if (
        not database
        or database == ":memory:"
        or database.startswith("file:")
        or any(c in database for c in "?%#")
    ):
        return None
    from pathlib import Path

    return str(Path(database).expanduser())


def sqlalchemy_error(exc: BaseException) -> bool:
    """Whether `exc` is a SQLAlchemy error (without importing SQLAlchemy)."""
    exc_module = sys.modules.get("sqlalchemy.exc")
    return exc_module is not None and isinstance(exc, exc_module.SQLAlchemyError)
