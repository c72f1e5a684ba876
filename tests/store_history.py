"""Stores as earlier cpf versions left them, for the migration tests.

`make_store(url, version)` builds the schema of `version` with the revisions up to it
(revision 0001 is the first released schema) and, unless `stamped`, drops
`alembic_version`: a store made before Alembic has only `cpf_meta.schema_version`.

`copy_rows(rows, url)` writes rows dumped (`dump_rows`) from a store at the head into an
older one, keeping the columns its tables have: real rows written by real `cpf`
commands, in the shape an older cpf stored them.
"""

from __future__ import annotations

from typing import Any

Rows = dict[str, list[dict[str, Any]]]


def make_store(url: str, version: int, *, stamped: bool = False) -> None:
    from alembic import command
    from sqlalchemy import text

    from core.store import migrate

    eng = migrate.engine(url)
    try:
        with eng.connect() as conn, conn.begin():
            command.upgrade(migrate.config(conn), migrate.revision_id(version))
            if not stamped:
                conn.execute(text("DROP TABLE alembic_version"))
    finally:
        eng.dispose()


def _tables(conn: Any) -> Any:
    from sqlalchemy import MetaData

    meta = MetaData()
    meta.reflect(conn)
    return meta


def dump_rows(url: str) -> Rows:
    """Every row of every table of the store at `url` (alembic_version excepted), by
    table, in primary-key order."""
    from sqlalchemy import select

    from core.store import migrate

    eng = migrate.engine(url, write=False)
    try:
        with eng.connect() as conn:
            meta = _tables(conn)
            out: Rows = {}
            for table in meta.sorted_tables:
                if table.name == "alembic_version":
                    continue
                query = select(table).order_by(*table.primary_key.columns)
                out[table.name] = [dict(r._mapping) for r in conn.execute(query)]
            return out
    finally:
        eng.dispose()


def columns(url: str) -> dict[str, set[str]]:
    from sqlalchemy import inspect

    from core.store import migrate

    eng = migrate.engine(url, write=False)
    try:
        with eng.connect() as conn:
            inspector = inspect(conn)
            return {
                t: {c["name"] for c in inspector.get_columns(t)}
                for t in inspector.get_table_names()
            }
    finally:
        eng.dispose()


def copy_rows(rows: Rows, url: str, *, skip: Any = None) -> Rows:
    """Insert `rows` into the tables the store at `url` has, keeping their columns (and
    the rows `skip(table, row)` does not refuse). Returns what was written."""
    from sqlalchemy import insert, text

    from core.store import migrate

    written: Rows = {}
    eng = migrate.engine(url)
    try:
        with eng.connect() as conn, conn.begin():
            meta = _tables(conn)
            for table in meta.sorted_tables:
                if table.name not in rows or table.name == "cpf_meta":
                    continue
                names = set(table.columns.keys())
                kept = [
                    {k: v for k, v in row.items() if k in names}
                    for row in rows[table.name]
                    if skip is None or not skip(table.name, row)
                ]
                if kept:
                    conn.execute(insert(table), kept)
                written[table.name] = kept
                if conn.dialect.name == "postgresql" and kept and "id" in names:
                    # As a store filled by cpf would have it: the next id follows the rows.
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"(SELECT max(id) FROM {table.name}))"
                        )
                    )
    finally:
        eng.dispose()
    return written
