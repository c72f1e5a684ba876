"""Connections and transactions of the service's store (every area's SQL runs in them).

On SQLite the statements run on a per-thread `sqlite3` connection to the store's file
(core.store.sqlexec: compiled once, a few C calls each). Writes of one process also
take a process-wide lock before `BEGIN IMMEDIATE`: the server's worker threads queue on
a cheap mutex instead of SQLite's busy handler, which sleeps in growing steps and
wrecks tail latency. Other processes (cpf runs, another server) still meet at SQLite's
write lock (busy timeout 30 s).

On a database server (PostgreSQL) the service has its own bounded pool (`pool_size`
connections, no overflow; a request waits up to `pool_timeout` s for a free one), so a
replica never holds more than that (half of them serve small saves on the event loop:
store/async_save.py); the process-wide write lock is not taken (row
locks do that job, and requests of one replica run concurrently). Errors that leave
nothing written (cannot connect, too many clients, connection reset before COMMIT,
serialization failure, deadlock) are raised as `TransientStoreError`, which the
checkpoint service retries with backoff within a deadline; an error during COMMIT is
never retried (the commit may have happened).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import literal, select

from core.envelope import PersistenceError
from core.store.sqlexec import INTEGRITY_ERRORS, SqlExecutor, TransientStoreError
from core.store.store import pg_connect_args

__all__ = ["INTEGRITY_ERRORS", "PoolConfig", "StoreBase", "TransientStoreError"]


@dataclass(frozen=True)
class PoolConfig:
    """The service's connections to a database server (not used on SQLite)."""

    size: int = 10
    timeout: float = 30.0


# SQLSTATEs after which a transaction may simply be run again: serialization failure,
# deadlock, too many connections, server shutting down or starting, connection errors.
_TRANSIENT_STATES = frozenset({"40001", "40P01", "53300", "57P01", "57P02", "57P03"})


def _is_transient(exc: BaseException, phase: str) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    if phase == "commit" or not isinstance(exc, DBAPIError):
        return False  # a failed COMMIT may have committed; pool timeouts already waited
    state = getattr(exc.orig, "sqlstate", None) or ""
    if state in _TRANSIENT_STATES or state.startswith("08"):
        return True
    if exc.connection_invalidated:
        return True  # the connection broke: the server rolled the transaction back
    # Failing to connect (refused, "too many clients", starting up) changed nothing.
    return phase == "connect" and isinstance(exc, OperationalError)


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


_PING = select(literal(1))


class StoreBase(SqlExecutor):
    """Transactions over the engine's `Store` (same database), for every area's SQL."""

    def __init__(self, store: Any, *, fast: bool | None = None, pool: PoolConfig | None = None):
        super().__init__(store, fast=fast)
        self.pool = pool or PoolConfig()
        self._engine: Any = None
        self._async_pool: Any = None
        if not self.is_sqlite:
            self._server_engine()  # closes the store's idle connections now

    def _server_engine(self) -> Any:
        """The service's own bounded pool over the store's database (created once)."""
        if self._engine is None:
            from sqlalchemy import create_engine

            self._engine = create_engine(
                self.store.url,
                pool_size=self.pool.size - self.async_size,
                max_overflow=0,
                pool_timeout=self.pool.timeout,
                # No ping per checkout (a round trip per request): a connection the
                # server dropped fails its first statement, which is retried on a new one.
                pool_pre_ping=False,
                connect_args=pg_connect_args(self.store.url),
            )
            # The store's own connection (its schema check) is not needed any more: the
            # process then holds at most `pool.size` connections.
            self.store.engine.dispose()
        return self._engine

    @property
    def async_size(self) -> int:
        """Connections of the event loop's save pool (store/async_save.py): its
        drainers, at most half of the bound, on PostgreSQL through psycopg with a bound
        of 2 or more; else 0. The thread pool has the rest."""
        if self.is_sqlite or not self.pg or self.pool.size < 2:
            return 0
        from core.service.store.async_save import DRAINERS

        return min(DRAINERS, self.pool.size // 2)

    def async_saves(self) -> Any:
        """The event loop's save pool (None when `async_size` is 0)."""
        if self._async_pool is None and self.async_size:
            from core.service.store.async_save import AsyncSavePool
            from core.store.pgexec import conninfo

            self._async_pool = AsyncSavePool(
                conninfo(self.store.url), self.async_size, self.pool.timeout
            )
        return self._async_pool

    def _pg_pool(self) -> Any:
        return self._server_engine()  # the psycopg fast path takes this pool's connections

    @contextmanager
    def _server_tx(self, what: str) -> Iterator[Any]:
        from sqlalchemy.exc import SQLAlchemyError

        phase = "connect"
        try:
            with self._server_engine().connect() as conn:
                phase = "statement"
                with conn.begin():
                    yield conn
                    phase = "commit"
        except SQLAlchemyError as exc:
            error = TransientStoreError if _is_transient(exc, phase) else PersistenceError
            raise error(f"Store {what} failed: {_one_line(exc)}") from exc

    @contextmanager
    def write(self) -> Iterator[Any]:
        """One write transaction. On SQLite, serialized in-process and by the file's
        write lock; elsewhere concurrent, the row locks taken below keep it correct."""
        if self.fast or self.is_sqlite:
            with super().write() as conn:
                yield conn
            return
        with self._server_tx("write") as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Any]:
        if self.fast or self.is_sqlite:
            with super().read() as conn:
                yield conn
            return
        with self._server_tx("read") as conn:
            yield conn

    def close(self) -> None:
        if self._engine is not None:
            with suppress(Exception):
                self._engine.dispose()
            self._engine = None

    def _dialect_stmt(self, stmts: dict[str, Any]) -> Any:
        return stmts["sqlite" if self.is_sqlite else "postgresql"]

    def health(self) -> None:
        with self.read() as conn:
            self.scalar(conn, _PING)
