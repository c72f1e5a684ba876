"""PostgreSQL through psycopg directly: connections, transactions, compiled statements.

`core.store.sqlexec.SqlExecutor` hands a PostgreSQL store (`postgresql+psycopg://`)
to this module. A named statement runs the SQL precompiled for PostgreSQL into
`core.store.compiled` (`DATA["postgresql"]`); a statement object (the service's) is
compiled once by SQLAlchemy's psycopg dialect and cached. Either way it runs as a
server-side prepared statement (prepared on first use: `prepare_threshold` 0): no
SQLAlchemy compile or execute per statement, and the server parses and plans each
statement once per connection.

Connections: a `cpf` process holds at most one (opened on first use, kept for the
process); `cpf serve` takes raw connections from its bounded SQLAlchemy pool. A
transaction is an explicit BEGIN ... COMMIT on a connection in autocommit mode, so a
dead connection (server restart, idle timeout, PgBouncer) shows at BEGIN, before
anything ran: it is replaced and BEGIN sent again. Failing to connect (`too many
clients`, refused, the server starting) is retried with jittered backoff until
`CPF_DB_RETRY_DEADLINE` seconds (15) have passed (in `cpf serve` the whole request is
retried instead, `CPF_SERVE_RETRY_DEADLINE`). On a connection used in the last few
seconds, and quiet since, a read sends no BEGIN/COMMIT (see `Tx.begin`), and a batch
(the runner's step transactions) sends BEGIN, its statements and COMMIT in one round
trip, its compare-and-set checked by the server (see `Tx.run`). An error inside a transaction
rolls it back and is raised (`TransientStoreError` when running the whole
transaction again is safe: serialization failure, deadlock, a broken connection);
an error during COMMIT never is (the commit may have happened).

Behind PgBouncer in transaction pooling mode older than 1.21, server-side prepared
statements do not survive a transaction: set `CPF_DB_PREPARE=0`.
"""

from __future__ import annotations

import json
import os
import random
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from core.envelope import PersistenceError
from core.store.sqlexec import StaleWrite, TransientStoreError, build_update

DEFAULT_RETRY_DEADLINE = 15.0
# A connection used less than this many seconds ago is taken to be alive (see Tx.begin).
FRESH = 5.0
# Prepared statements per connection (the store's named statements and the service's).
PREPARED_MAX = 1000

# SQLSTATEs after which a transaction may simply be run again: serialization failure,
# deadlock, too many connections, server shutting down or starting, connection errors.
TRANSIENT_STATES = frozenset({"40001", "40P01", "53300", "57P01", "57P02", "57P03"})


def conninfo(url: str) -> str:
    """The libpq connection URI of a SQLAlchemy URL (`postgresql+psycopg://...`)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((scheme, parts.netloc, parts.path, query, ""))


def prepare_enabled() -> bool:
    """Server-side prepared statements (off with CPF_DB_PREPARE=0, for PgBouncer)."""
    return os.environ.get("CPF_DB_PREPARE", "1").strip().lower() not in ("0", "false", "no", "off")


def retry_deadline() -> float:
    try:
        return max(0.0, float(os.environ.get("CPF_DB_RETRY_DEADLINE", DEFAULT_RETRY_DEADLINE)))
    except ValueError:
        return DEFAULT_RETRY_DEADLINE


def transient(exc: BaseException, phase: str) -> bool:
    """Whether the transaction may be run again after `exc` (a psycopg error, or a
    SQLAlchemy one wrapping it from the pool) met in `phase` (connect, statement,
    commit)."""
    if phase == "commit":
        return False  # a failed COMMIT may have committed
    orig = getattr(exc, "orig", None) or exc
    if not isinstance(orig, psycopg.Error):
        return False  # a pool timeout already waited
    state = orig.sqlstate or ""
    if state in TRANSIENT_STATES or state.startswith("08"):
        return True
    # Failing to connect, or a connection that broke, left nothing written.
    return isinstance(orig, psycopg.OperationalError) and (
        phase == "connect" or getattr(exc, "connection_invalidated", False) or not state
    )


def one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def configure(conn: psycopg.Connection) -> psycopg.Connection:
    """Our transactions are explicit BEGIN/COMMIT; a statement is prepared on its first
    execution (never, with prepared statements off: `prepare_threshold` None)."""
    if not conn.autocommit:
        conn.autocommit = True
    conn.prepare_threshold = 0 if prepare_enabled() else None
    conn.prepared_max = PREPARED_MAX
    return conn


def connect(info: str) -> psycopg.Connection:
    return configure(psycopg.connect(info, autocommit=True))


def backoff(deadline: float) -> Iterator[float]:
    """Jittered exponential delays (20 ms doubling up to 2 s) while `deadline`
    (monotonic) is ahead. The cap is not lower because every refused attempt costs the
    server a backend start and an authentication: many clients polling a full server
    fast would keep it busy refusing them."""
    delay = 0.02
    while time.monotonic() + delay < deadline:
        yield delay * (0.5 + random.random())
        delay = min(delay * 2, 2.0)


class Tx:
    """Begin, commit and roll back on a psycopg connection, with the error policy
    above. `acquire()` gives (connection, release); `release(broken)` puts it back or
    drops it."""

    def __init__(
        self,
        acquire: Callable[[], tuple[psycopg.Connection, Callable[[bool], None]]],
        deadline: float | None = None,
    ) -> None:
        self.acquire = acquire
        self.deadline = retry_deadline() if deadline is None else deadline

    def begin(
        self, what: str, read: bool = False, batch: bool = False
    ) -> tuple[psycopg.Connection, Callable[[bool], None], str]:
        """A connection inside BEGIN (connecting and a dead connection are retried):
        (connection, release, state). `state` is "open" after BEGIN; "none" for a read on
        a connection used moments ago, which sends no BEGIN/COMMIT (under READ COMMITTED
        each statement of a transaction sees its own snapshot anyway, and two round trips
        are saved); "batch" for a batch on such a connection, whose BEGIN goes out with
        its statements."""
        delays = backoff(time.monotonic() + self.deadline)
        while True:
            release: Callable[[bool], None] | None = None
            try:
                conn, release = self.acquire()
                if (read or batch) and _quiet(conn):
                    return conn, release, "batch" if batch else "none"
                conn.execute(b"BEGIN", prepare=False)
                return conn, release, "open"
            except Exception as exc:
                if release is not None:
                    release(True)
                if not _is_db_error(exc):
                    raise
                if transient(exc, "connect"):
                    delay = next(delays, None)
                    if delay is not None:
                        time.sleep(delay)
                        continue
                    raise TransientStoreError(f"Store {what} failed: {one_line(exc)}") from exc
                raise PersistenceError(f"Store {what} failed: {one_line(exc)}") from exc

    @contextmanager
    def run(
        self, what: str, read: bool = False, batch: bool = False
    ) -> Iterator[psycopg.Connection]:
        """One transaction. With `batch`, its statements are pipelined: sent with BEGIN
        and COMMIT in one round trip when the block ends (a read inside the block, such
        as a row count, first waits for what was sent). A failed `guarded` update
        (see `guarded_sql`) aborts it as `StaleWrite`."""
        conn, release, state = self.begin(what, read, batch)
        broken = True
        try:
            try:
                if batch:
                    with conn.pipeline() as pipe:
                        conn._cpf_pipeline = pipe  # type: ignore[attr-defined]
                        try:
                            if state == "batch":
                                conn.execute(b"BEGIN", prepare=False)
                            yield conn
                            conn.execute(b"COMMIT", prepare=False)
                        finally:
                            conn._cpf_pipeline = None  # type: ignore[attr-defined]
                else:
                    yield conn
            except BaseException as exc:
                if state != "none" and not conn.broken:
                    with suppress(psycopg.Error):
                        conn.execute(b"ROLLBACK", prepare=False)
                if isinstance(exc, psycopg.Error) and stale(exc):
                    broken = conn.broken
                    raise StaleWrite(one_line(exc)) from exc
                if isinstance(exc, psycopg.Error) and not isinstance(exc, psycopg.IntegrityError):
                    # A batch sent its COMMIT: without an answer from the server, it
                    # may have committed.
                    phase = "commit" if batch and not exc.sqlstate else "statement"
                    error = TransientStoreError if transient(exc, phase) else PersistenceError
                    raise error(f"Store {what} failed: {one_line(exc)}") from exc
                broken = conn.broken
                raise
            try:
                if state == "open" and not batch:
                    conn.execute(b"COMMIT", prepare=False)
            except psycopg.Error as exc:
                with suppress(psycopg.Error):
                    conn.execute(b"ROLLBACK", prepare=False)
                raise PersistenceError(f"Store commit failed: {one_line(exc)}") from exc
            broken = False
            conn._cpf_used = time.monotonic()  # type: ignore[attr-defined]
        finally:
            release(broken or conn.broken or conn.closed)

    @contextmanager
    def statement(self, what: str) -> Iterator[psycopg.Connection]:
        """A connection for one statement that is its own transaction (autocommit: no
        BEGIN or COMMIT round trips). Any error that may have left the statement
        uncommitted or committed-but-unanswered (a broken connection, a transient
        SQLSTATE) is a `TransientStoreError`: the caller must make running it again
        safe (the service's save recognizes its own earlier commit by its etag)."""
        delays = backoff(time.monotonic() + self.deadline)
        while True:
            try:
                conn, release = self.acquire()
                break
            except Exception as exc:
                if not _is_db_error(exc):
                    raise
                delay = next(delays, None) if transient(exc, "connect") else None
                if delay is None:
                    error = TransientStoreError if transient(exc, "connect") else PersistenceError
                    raise error(f"Store {what} failed: {one_line(exc)}") from exc
                time.sleep(delay)
        broken = True
        try:
            try:
                yield conn
            except psycopg.Error as exc:
                error = (
                    TransientStoreError
                    if transient(exc, "statement") or conn.broken or conn.closed
                    else PersistenceError
                )
                raise error(f"Store {what} failed: {one_line(exc)}") from exc
            broken = False
            conn._cpf_used = time.monotonic()  # type: ignore[attr-defined]
        finally:
            release(broken and (conn.broken or conn.closed))


def _quiet(conn: psycopg.Connection) -> bool:
    """Whether `conn` may be taken to be alive without a round trip: used moments ago,
    and nothing arrived since (a server that ends a session says so first, e.g. when
    restarted or after pg_terminate_backend: then BEGIN finds out, and is retried)."""
    if time.monotonic() - getattr(conn, "_cpf_used", -FRESH) >= FRESH:
        return False
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return False
    return not readable


def settle(conn: psycopg.Connection) -> None:
    """Inside a batch: wait for the answers to what was sent so far (before reading a
    row count: psycopg fetches rows by itself, not counts)."""
    pipe = getattr(conn, "_cpf_pipeline", None)
    if pipe is not None:
        pipe.sync()


# What a failed guarded update says (SQLSTATE 22P02: the text is cast to an integer).
STALE_MARK = "cpf: stale write"


def stale(exc: psycopg.Error) -> bool:
    """Whether `exc` is a guarded update that changed no row (see `guarded_sql`)."""
    return exc.sqlstate == "22P02" and STALE_MARK in str(exc)


def _is_db_error(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.Error):
        return True
    from core.store.sqlexec import sqlalchemy_error

    return sqlalchemy_error(exc)


# -- statements -------------------------------------------------------------------------


def _pg() -> dict[str, Any]:
    from core.store.compiled import DATA

    return DATA["postgresql"]


@cache
def table_insert(table: str, with_pk: bool) -> tuple[str, frozenset[str], dict[str, Any], str]:
    """(insert SQL, JSON columns, every column's default, primary key) of a table.

    The precompiled insert leaves out an autoincrement key (RETURNING gives it);
    `with_pk` is for the rare caller that sets it."""
    info = _pg()["tables"][table]
    defaults = dict(info["defaults"])
    sql = info["insert"]
    if with_pk and info["serial"]:
        cols = info["columns"]
        sql = (
            f"INSERT INTO {table} ({', '.join(cols.values())}) "
            f"VALUES ({', '.join(f'%({k})s' for k in cols)}) RETURNING {cols[info['pk']]}"
        )
    return sql, frozenset(info["json"]), defaults, info["pk"]


@cache
def update_sql(name: str, keys: tuple[str, ...]) -> tuple[str, frozenset[str], dict[str, Any]]:
    return build_update(_pg(), name, keys, "%({})s")


@cache
def guarded_sql(name: str, keys: tuple[str, ...]) -> tuple[str, frozenset[str], dict[str, Any]]:
    """A named update that must change exactly one row, else it fails with an error
    (`stale`): so a batch can carry a compare-and-set and its COMMIT in one round trip,
    and the server, not a row count read in between, decides that nothing is written.
    The CASE is evaluated per row count, so the failing cast never happens at plan time."""
    sql, json_in, defaults = update_sql(name, keys)
    guarded = (
        f"WITH changed AS ({sql} RETURNING 1) "
        f"SELECT CAST(CASE count(*) WHEN 1 THEN '1' ELSE '{STALE_MARK}' END AS integer) "
        "FROM changed"
    )
    return guarded, json_in, defaults


def query_sql(name: str) -> tuple[str, dict[str, Any]]:
    query = _pg()["queries"][name]
    return query["sql"], query["params"]


@cache
def dialect() -> Any:
    from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

    return pg_psycopg.dialect()


def bind(defaults: dict[str, Any], params: dict[str, Any], json_in: frozenset[str]) -> dict:
    out = {**defaults, **params}
    for name in json_in:
        value = out.get(name)
        if value is not None:
            out[name] = json.dumps(value)
    return out
