"""Run SQLAlchemy Core statements fast on SQLite, and anywhere through SQLAlchemy.

Statements are written once, as SQLAlchemy Core on the SQLModel tables. How they run
depends on the store:

- any database: on the engine's connections (SQLAlchemy executes them);
- SQLite (the default store): compiled once to SQLite SQL and run on a per-thread
  `sqlite3` connection to the same file. A statement then costs a few C calls instead
  of SQLAlchemy's per-statement machinery, which was most of the CPU of a trivial step
  and of a checkpoint save. Both paths are tested.

Writes of one process also take a process-wide lock before `BEGIN IMMEDIATE`: threads
queue on a cheap mutex instead of SQLite's busy handler, which sleeps in growing steps
and wrecks tail latency. Other processes still meet at SQLite's write lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from core.envelope import PersistenceError

# What a unique-constraint violation looks like on either path.
INTEGRITY_ERRORS = (SAIntegrityError, sqlite3.IntegrityError)

_DIALECT = sqlite_dialect.dialect(paramstyle="named")
BUSY_TIMEOUT_MS = 30_000


@cache
def _json_columns(table: Any) -> frozenset[str]:
    return frozenset(c.key for c in table.columns if isinstance(c.type, JSON))


class SqlExecutor:
    """Transactions and statement execution over a `Store`'s database."""

    _write_lock = threading.Lock()

    def __init__(self, store: Any, *, fast: bool | None = None) -> None:
        self.store = store
        self.is_sqlite = store.is_sqlite
        self._path = sqlite_path(store.url) if store.is_sqlite else None
        # The sqlite3 fast path; `fast=False` forces SQLAlchemy everywhere (tests).
        self.fast = self._path is not None if fast is None else (fast and self._path is not None)
        self._local = threading.local()
        self._compiled: dict[Any, tuple[Any, ...]] = {}

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Any]:
        """One write transaction (BEGIN IMMEDIATE on SQLite), serialized in-process."""
        with self._write_lock:
            if not self.fast:
                with self.store.write() as conn:
                    yield conn
                return
            with self._raw_tx("BEGIN IMMEDIATE") as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Any]:
        if not self.fast:
            with self.store.read() as conn:
                yield conn
            return
        with self._raw_tx("BEGIN") as conn:
            yield conn

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
        """(sql, JSON input columns, bind defaults, JSON-ness of each output column).

        Only module-level statements come here (the cache is keyed by identity and
        keeps the statement alive, so an id is never reused for another one)."""
        cache_key = (id(stmt), keys)
        hit = self._compiled.get(cache_key)
        if hit is not None and hit[0] is stmt:
            return hit[1:]
        compiled = stmt.compile(
            dialect=_DIALECT,
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
        entry = (stmt, str(compiled), json_in, defaults, json_out)
        self._compiled[cache_key] = entry
        return entry[1:]

    def execute(
        self,
        conn: Any,
        stmt: Any,
        params: dict[str, Any] | list[dict[str, Any]] | None = None,
        keys: tuple[str, ...] | None = None,
    ) -> Any:
        """Execute; returns a sqlite3 cursor (fast path) or a SQLAlchemy result."""
        if not isinstance(conn, sqlite3.Connection):
            return conn.execute(stmt, params) if params is not None else conn.execute(stmt)
        sql, json_in, defaults, _json_out = self._compile(stmt, keys)
        if isinstance(params, list):
            rows = [self._bind(defaults, p, json_in) for p in params]
            return conn.executemany(sql, rows)
        return conn.execute(sql, self._bind(defaults, params or {}, json_in))

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
            return [dict(r._mapping) for r in self.execute(conn, stmt, params)]
        cur = self.execute(conn, stmt, params)
        json_out = self._compile(stmt, None)[3]
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            if json_out:
                row = [
                    json.loads(v) if j and isinstance(v, str) else v
                    for v, j in zip(row, json_out, strict=True)
                ]
            out.append(dict(zip(names, row, strict=True)))
        return out

    def first(self, conn: Any, stmt: Any, params: dict[str, Any] | None = None) -> dict | None:
        rows = self.rows(conn, stmt, params)
        return rows[0] if rows else None

    def scalar(self, conn: Any, stmt: Any, params: dict[str, Any] | None = None) -> Any:
        if not isinstance(conn, sqlite3.Connection):
            return self.execute(conn, stmt, params).scalar()
        row = self.execute(conn, stmt, params).fetchone()
        return None if row is None else row[0]

    def count(
        self,
        conn: Any,
        stmt: Any,
        params: dict[str, Any] | None = None,
        keys: tuple[str, ...] | None = None,
    ) -> int:
        """Execute a write; return the affected row count."""
        return int(self.execute(conn, stmt, params, keys).rowcount or 0)

    def insert_row(self, conn: Any, stmt: Any, values: dict[str, Any]) -> Any:
        """Insert one row; return its primary key (the rowid on the fast path)."""
        if not isinstance(conn, sqlite3.Connection):
            return conn.execute(stmt, values).inserted_primary_key[0]
        cur = self.execute(conn, stmt, values, tuple(sorted(values)))
        return cur.lastrowid


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for memory or URI databases)."""
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    from pathlib import Path

    return str(Path(database).expanduser())
