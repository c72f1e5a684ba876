"""The one-round-trip save without a thread: psycopg's asyncio connections.

A save through the thread pool costs the server a hand-off to a worker thread and
back (a queue, wake-ups, the GIL passed between threads) on top of its one store round
trip; on a few shared cores that hand-off cost as much CPU as the save's own Python.
Small saves (the common case) are therefore served on the event loop: the request's
Python runs there and the call of `cpf_save_checkpoint` (save_function.py) is awaited
on one of these connections. Large bodies still go to a thread (parsing a MiB on the
loop would stall every other request).

The replica's connection bound (`PoolConfig.size`) is shared: these connections are
`async_size` of it and the thread pool's SQLAlchemy pool has the rest. Connecting and
the statement's errors are classified as in `core.store.pgexec.Tx.statement`.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

import psycopg

from core.envelope import PersistenceError
from core.service.store.save_function import CALL_SAVE_FUNCTION
from core.store import pgexec
from core.store.sqlexec import TransientStoreError


class AsyncSavePool:
    """At most `size` asyncio psycopg connections (autocommit, prepared statements)."""

    def __init__(self, conninfo: str, size: int, timeout: float) -> None:
        self.conninfo = conninfo
        self.size = size
        self.timeout = timeout
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots: asyncio.Semaphore | None = None  # made in the serving loop

    async def save(self, args: tuple[Any, ...]) -> dict[str, Any]:
        """Call `cpf_save_checkpoint` as its own transaction."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.timeout)
        except TimeoutError as exc:
            raise PersistenceError(
                f"Store save failed: no free connection within {self.timeout:g} s"
            ) from exc
        try:
            return await self._run(args)
        finally:
            self._slots.release()

    async def _run(self, args: tuple[Any, ...]) -> dict[str, Any]:
        conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed or conn.broken:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            except psycopg.Error as exc:
                transient = pgexec.transient(exc, "connect")
                error = TransientStoreError if transient else PersistenceError
                raise error(f"Store save failed: {pgexec.one_line(exc)}") from exc
            # Prepared on first use, unless off (CPF_DB_PREPARE=0: PgBouncer).
            conn.prepare_threshold = 0 if pgexec.prepare_enabled() else None
        try:
            cur = await conn.execute(CALL_SAVE_FUNCTION, args)  # type: ignore[arg-type]
            row = await cur.fetchone()
            assert row is not None and cur.description is not None
            out = dict(zip([d[0] for d in cur.description], row, strict=True))
        except psycopg.Error as exc:
            # As Tx.statement: a statement that may or may not have committed is
            # transient; the caller's retry recognizes its own commit by its etag.
            broken = conn.broken or conn.closed
            if broken:
                await _close(conn)
            else:
                self._idle.append(conn)
            transient = pgexec.transient(exc, "statement") or broken
            error = TransientStoreError if transient else PersistenceError
            raise error(f"Store save failed: {pgexec.one_line(exc)}") from exc
        except BaseException:
            await _close(conn)  # cancelled mid-statement: the connection's state is unknown
            raise
        self._idle.append(conn)
        return out

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)


async def _close(conn: psycopg.AsyncConnection) -> None:
    with suppress(Exception):  # closing a broken connection may fail: it is gone anyway
        await conn.close()
