"""SQL of the per-key rate limit (one counter row per key, on the database's clock)."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import (
    Float,
    bindparam,
    case,
    cast,
    extract,
    func,
    literal_column,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from core.service.store.base import StoreBase
from core.service.store.tables import (
    RATES,
)


def _rate_hit(dialect: Any, db_now: Any) -> Any:
    """INSERT the key's window, or count one more hit in it (a new window if it ended)."""
    stmt = dialect.insert(RATES).values(bucket=bindparam("bucket"), window_start=db_now, hits=1)
    row, ended = RATES.c, RATES.c.window_start <= db_now - bindparam("window")
    limit = bindparam("limit", type_=None)
    return stmt.on_conflict_do_update(
        index_elements=[RATES.c.bucket],
        set_={
            "hits": case((ended, 1), (row.hits <= limit, row.hits + 1), else_=row.hits),
            "window_start": case((ended, db_now), else_=row.window_start),
        },
    ).returning(RATES.c.hits, RATES.c.window_start, db_now.label("now"))


_RATE_HIT = {
    # Unix seconds by the database's clock (SQLite's 'now' is fixed within a statement).
    "sqlite": _rate_hit(
        sqlite_dialect, literal_column("((julianday('now') - 2440587.5) * 86400.0)", Float)
    ),
    "postgresql": _rate_hit(pg_dialect, cast(extract("epoch", func.statement_timestamp()), Float)),
}


class RateLimitSql(StoreBase):
    """The rate-limit counters."""

    def rate_hit(self, bucket: str, limit: int, window: float) -> tuple[int, float]:
        """Count one request of `bucket` in its window: (hits, seconds until the window
        ends). A window starts at the first request after the previous one ended; hits
        above `limit` are refused and stop counting at limit + 1. One atomic upsert, on
        the database's clock, so all replicas share one count."""
        params = {"bucket": bucket, "limit": limit, "window": float(window)}
        with self.write() as conn:
            if not isinstance(conn, sqlite3.Connection) and not self.is_sqlite:
                # A count lost in a server crash is harmless: do not wait for the WAL
                # flush (it was half of each request's rate-limit cost).
                self.exec_sql(conn, "SET LOCAL synchronous_commit TO off")
            row = self.first(conn, self._dialect_stmt(_RATE_HIT), params)
        assert row is not None
        left = float(row["window_start"]) + float(window) - float(row["now"])
        return int(row["hits"]), left
