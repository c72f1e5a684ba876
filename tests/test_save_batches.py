"""Group commit of `cpf serve`'s small saves (core/service/store/async_save.py).

The pool is driven on a real PostgreSQL database (skipped without
`CPF_TEST_POSTGRES_URL`) with a probe function in place of `cpf_save_checkpoint`: it
logs each call with its transaction id, doubles its argument, and raises on a negative
one. What must hold: saves that queue up while the drainers are busy share a
transaction; each still gets its own answer; a member that fails does not fail the
others, and the batch's rolled-back work is done again exactly once; a save withdrawn
before it was sent never reaches the store.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
import storedb

from core.envelope import PersistenceError
from core.service.store.async_save import AsyncSavePool
from core.service.store.save_function import batch_statement, call_statement

ADMIN_URL = os.environ.get("CPF_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not ADMIN_URL, reason="CPF_TEST_POSTGRES_URL is not set")

PROBE = """
CREATE TABLE probe_log (seq bigserial PRIMARY KEY, x int NOT NULL, xid xid8 NOT NULL);
CREATE FUNCTION probe(p_x int, p_sleep float8, OUT o_v int, OUT o_xid text)
LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_sleep > 0 THEN PERFORM pg_sleep(p_sleep); END IF;
    IF p_x < 0 THEN RAISE EXCEPTION 'probe refuses %', p_x; END IF;
    INSERT INTO probe_log (x, xid) VALUES (p_x, pg_current_xact_id());
    o_v := p_x * 2;
    o_xid := pg_current_xact_id()::text;
END
$fn$;
"""
TYPES = ["int4", "float8"]


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def conninfo() -> Iterator[str]:
    import psycopg

    assert ADMIN_URL is not None
    with storedb.empty_database(ADMIN_URL) as url:
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute(PROBE)
        yield _libpq(url)


def _log(conninfo: str) -> list[tuple[int, str]]:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT x, xid::text FROM probe_log ORDER BY seq").fetchall()
    return [(int(x), str(xid)) for x, xid in rows]


def _pool(conninfo: str, **kwargs: Any) -> AsyncSavePool:
    # Two drainers (size 2); lock order: by the argument, descending (a visible order).
    return AsyncSavePool(
        conninfo,
        2,
        10.0,
        statement=call_statement("probe", TYPES),
        batch_statement=batch_statement("probe", TYPES),
        lock_order=lambda a: -a[0],
        **kwargs,
    )


async def _occupy(pool: AsyncSavePool) -> list[asyncio.Task[dict[str, Any]]]:
    """A slow call on each of the two drainers (one sent before the other queues)."""
    slow = []
    for i in range(2):
        slow.append(asyncio.create_task(pool.save((1000 + i, 0.5))))
        await asyncio.sleep(0.1)
    return slow


async def _busy_then(pool: AsyncSavePool, xs: list[int]) -> list[Any]:
    """Occupy both drainers with slow calls, then queue `xs` behind them."""
    slow = await _occupy(pool)
    results = await asyncio.gather(*(pool.save((x, 0.0)) for x in xs), return_exceptions=True)
    assert [r["o_v"] for r in await asyncio.gather(*slow)] == [2000, 2002]
    await pool.close()
    return results


def test_saves_queued_behind_busy_drainers_share_transactions(conninfo: str) -> None:
    xs = list(range(1, 11))
    results = asyncio.run(_busy_then(_pool(conninfo), xs))
    assert [r["o_v"] for r in results] == [2 * x for x in xs]  # each its own answer
    log = _log(conninfo)
    assert len({xid for x, xid in log if x >= 1000}) == 2  # the slow calls: one each
    logged = [x for x, _ in log if x < 1000]
    assert sorted(logged) == xs  # each once
    xids = {xid for x, xid in log if x < 1000}
    assert len(xids) < len(xs)  # batched: fewer transactions than saves
    for xid in xids:  # inside a transaction, the lock order (descending here)
        members = [x for x, t in log if t == xid]
        assert members == sorted(members, reverse=True)
        assert {r["o_xid"] for r, x in zip(results, xs, strict=True) if x in members} == {xid}


def test_a_failing_member_fails_alone_and_the_others_are_stored_once(conninfo: str) -> None:
    xs = [1, 2, -3, 4, 5, 6]
    results = asyncio.run(_busy_then(_pool(conninfo), xs))
    for x, r in zip(xs, results, strict=True):
        if x < 0:
            assert isinstance(r, PersistenceError) and "probe refuses -3" in str(r)
        else:
            assert r["o_v"] == 2 * x
    logged = [x for x, _ in _log(conninfo) if x < 1000]
    assert sorted(logged) == [1, 2, 4, 5, 6]  # the refused batch left nothing twice


def test_a_save_withdrawn_before_it_was_sent_never_reaches_the_store(conninfo: str) -> None:
    async def scenario() -> None:
        pool = _pool(conninfo)
        slow = await _occupy(pool)
        withdrawn = asyncio.create_task(pool.save((7, 0.0)))
        kept = asyncio.create_task(pool.save((8, 0.0)))
        await asyncio.sleep(0.05)
        withdrawn.cancel()
        assert (await kept)["o_v"] == 16
        with pytest.raises(asyncio.CancelledError):
            await withdrawn
        await asyncio.gather(*slow)
        await pool.close()

    asyncio.run(scenario())
    assert [x for x, _ in _log(conninfo) if x < 1000] == [8]


def test_a_save_alone_is_its_own_transaction_on_a_kept_connection(conninfo: str) -> None:
    import psycopg

    def backends() -> int:
        with psycopg.connect(conninfo) as conn:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0]) - 1  # not this one

    async def scenario() -> tuple[list[Any], int]:
        pool = _pool(conninfo)
        out = [await pool.save((x, 0.0)) for x in range(1, 11)]
        held = backends()
        await pool.close()
        return out, held

    results, held = asyncio.run(scenario())
    assert [r["o_v"] for r in results] == [2 * x for x in range(1, 11)]
    assert len({r["o_xid"] for r in results}) == 10
    assert held == 1  # one connection, kept from save to save
