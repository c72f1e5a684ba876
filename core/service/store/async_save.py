"""The one-round-trip save without a thread: psycopg's asyncio connections, with
concurrent saves committed together.

A save through the thread pool costs the server a hand-off to a worker thread and
back (a queue, wake-ups, the GIL passed between threads) on top of its one store round
trip; on a few shared cores that hand-off cost as much CPU as the save's own Python.
Small saves (the common case) are therefore served on the event loop: the request's
Python runs there and the call of `cpf_save_checkpoint` (save_function.py) is awaited
on one of these connections. Large bodies still go to a thread (parsing a MiB on the
loop would stall every other request).

Group commit: the saves wait in one queue, drained by `size` connections (DRAINERS).
A drainer sends what has queued up while its previous batch was in the store as one
statement (the function called over arrays of arguments, save_function.py
`batch_statement`), so one transaction and one round trip: a busy replica pays the
round trip, the statement's overhead, the commit and its WAL flush once per batch
instead of once per save. A save alone is sent alone, as before. Each save keeps
its own outcome (the function answers conflicts and fallbacks as values); a batch the
store refuses as a whole (a deadlock between replicas' batches, a lost connection) is
sent again one save at a time, each with its own error, so no save fails for another's
sake. Nobody's answer leaves before the COMMIT that holds it succeeded.

The replica's connection bound (`PoolConfig.size`) is shared: these connections are
`async_size` of it (base.py) and the thread pool's SQLAlchemy pool has the rest. Connecting and
the statement's errors are classified as in `core.store.pgexec.Tx.statement`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import orjson
import psycopg

from core.envelope import PersistenceError
from core.service.store.save_function import BATCH_SAVE_FUNCTION, CALL_SAVE_FUNCTION
from core.store import pgexec
from core.store.sqlexec import TransientStoreError

# Connections that drain the queue: few, so that saves arriving while one batch is in
# the store gather into the next; two, so that one batch's commit (its WAL flush)
# overlaps the next one's statements.
DRAINERS = 2
BATCH_MAX = 32  # saves per transaction: bounds a batch's lock time and its retry

Pending = tuple[tuple[Any, ...], "asyncio.Future[dict[str, Any]]"]


def save_lock_order(args: tuple[Any, ...]) -> tuple[str, str]:
    """A save's place in its batch: by key (the rate-limit row it locks first), then
    by workflow (the row it locks next)."""
    return (str(args[0]), str(args[7]))


class AsyncSavePool:
    """`size` asyncio psycopg connections (autocommit, prepared statements), each
    draining the queue of saves."""

    def __init__(
        self,
        conninfo: str,
        size: int,
        timeout: float,
        *,
        statement: str = CALL_SAVE_FUNCTION,
        batch_statement: str = BATCH_SAVE_FUNCTION,
        lock_order: Callable[[tuple[Any, ...]], Any] = save_lock_order,
    ) -> None:
        self.conninfo = conninfo
        self.statement = statement
        self.batch_statement = batch_statement
        self.lock_order = lock_order
        self.size = max(1, size)
        self.timeout = timeout
        self._idle: list[psycopg.AsyncConnection] = []
        self._queue: list[Pending] = []
        self._draining = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def save(self, args: tuple[Any, ...]) -> dict[str, Any]:
        """Call `cpf_save_checkpoint` (in a transaction with the saves queued with it)."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry: Pending = (args, fut)
        self._queue.append(entry)
        if self._draining < self.size:
            self._draining += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            done, _ = await asyncio.wait({fut}, timeout=self.timeout)
            if not done and entry in self._queue:
                self._queue.remove(entry)  # never sent: nothing of it is in the store
                raise PersistenceError(
                    f"Store save failed: no free connection within {self.timeout:g} s"
                )
            return await fut  # sent: its statement's own outcome, however long it takes
        finally:
            if entry in self._queue:  # the caller was cancelled before it was sent
                self._queue.remove(entry)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[:BATCH_MAX]
                del self._queue[:BATCH_MAX]
                try:
                    await self._send([(a, f) for a, f in batch if not f.done()])
                finally:
                    for _, fut in batch:  # the drainer was cancelled (the server stops)
                        fut.cancel()
        finally:
            self._draining -= 1

    async def _send(self, batch: list[Pending]) -> None:
        if len(batch) > 1 and await self._sent_together(batch):
            return
        for args, fut in batch:  # alone, or each on its own after a refused batch
            try:
                row = await self._one(await self._connect(), args)
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(row)

    async def _sent_together(self, batch: list[Pending]) -> bool:
        """True when the batch committed (its members have their answers); False when
        nothing of it is stored, or its COMMIT's outcome is unknown (each save's own call
        then recognizes its own commit by its etag)."""
        try:
            conn = await self._connect()
        except Exception:
            return False  # each save connects on its own, and says why it cannot
        try:
            rows = await self._batch(conn, [args for args, _ in batch])
        except orjson.JSONEncodeError:
            self._idle.append(conn)  # an argument JSON cannot carry: each save alone
            return False
        except psycopg.Error:
            if conn.broken or conn.closed:
                await _close(conn)
            else:
                self._idle.append(conn)  # the statement rolled back on its own
            return False
        except BaseException:
            await _close(conn)  # cancelled mid-batch: the connection's state is unknown
            raise
        self._idle.append(conn)
        for (_, fut), row in zip(batch, rows, strict=True):
            if not fut.done():
                fut.set_result(row)
        return True

    async def _connect(self) -> psycopg.AsyncConnection:
        while self._idle:
            conn = self._idle.pop()
            if not (conn.closed or conn.broken):
                return conn
            await _close(conn)
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except psycopg.Error as exc:
            transient = pgexec.transient(exc, "connect")
            error = TransientStoreError if transient else PersistenceError
            raise error(f"Store save failed: {pgexec.one_line(exc)}") from exc
        # Prepared on first use, unless off (CPF_DB_PREPARE=0: PgBouncer).
        conn.prepare_threshold = 0 if pgexec.prepare_enabled() else None
        return conn

    async def _one(self, conn: psycopg.AsyncConnection, args: tuple[Any, ...]) -> dict[str, Any]:
        """One save as its own transaction (autocommit); the connection goes back idle
        unless it broke."""
        try:
            cur = await conn.execute(self.statement, args)  # type: ignore[arg-type]
            out = _row(cur, await cur.fetchone())
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

    async def _batch(
        self, conn: psycopg.AsyncConnection, batch: list[tuple[Any, ...]]
    ) -> list[dict[str, Any]]:
        """The saves in one statement. Locks are taken in one order (`lock_order`)
        whatever the arrival order, so two replicas' batches rarely wait on each other
        in a cycle (PostgreSQL breaks one if they do)."""
        order = sorted(range(len(batch)), key=lambda i: self.lock_order(batch[i]))
        arrays = orjson.dumps([batch[i] for i in order]).decode()
        cur = await conn.execute(self.batch_statement, (arrays,))
        rows = await cur.fetchall()
        assert len(rows) == len(batch) and cur.description is not None
        names = [d[0] for d in cur.description]
        out: list[dict[str, Any]] = [{}] * len(batch)
        for i, row in zip(order, rows, strict=True):
            out[i] = dict(zip(names, row, strict=True))
        return out

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)


def _row(cur: Any, row: Any) -> dict[str, Any]:
    assert row is not None and cur.description is not None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


async def _close(conn: psycopg.AsyncConnection) -> None:
    with suppress(Exception):  # closing a broken connection may fail: it is gone anyway
        await conn.close()
