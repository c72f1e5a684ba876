"""The store a test runs on: a SQLite file in its base dir, or a fresh PostgreSQL database.

By default every test's store is the SQLite file `<base>/cpf.db` of its own base dir.
With the switch `CPF_TEST_DATABASE_URL=postgresql+psycopg://USER:PW@HOST:PORT/DB` (a
role that may create databases), every store a test makes is a fresh database on that
server instead: `CREATE DATABASE cpf_t_<random> TEMPLATE <template>`, the template
holding the schema (made once per session by the real `Store`), dropped when the test
ends. Tests that are about SQLite itself carry `@pytest.mark.sqlite_only(reason=...)`
and are skipped under the switch.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SWITCH = "CPF_TEST_DATABASE_URL"
SERVER_URL = os.environ.get(SWITCH) or None


def on_postgres() -> bool:
    """True when the switch sends the tests' stores to PostgreSQL."""
    return SERVER_URL is not None


def _libpq(url: str) -> str:
    # SQLAlchemy's "postgresql+psycopg://" is libpq's "postgresql://".
    return "postgresql://" + url.split("://", 1)[1]


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


class Databases:
    """Fresh databases from one template on the switch's server (one per test process)."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.prefix = f"cpf_t_{uuid.uuid4().hex[:8]}"
        self.template: str | None = None
        self.live: set[str] = set()
        self._admin: Any = None

    def _execute(self, sql: str) -> None:
        import psycopg

        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(_libpq(self.server_url), autocommit=True)
        self._admin.execute(sql)

    def _make_template(self) -> str:
        from core.store.store import Store

        name = f"{self.prefix}_tpl"
        self._execute(f'CREATE DATABASE "{name}"')
        # The real store creates its schema (engine and service tables), then lets go: a
        # template must have no connection while it is copied.
        Store(_with_database(self.server_url, name)).close()
        self.template = name
        return name

    def create(self) -> str:
        """A new database holding an empty store; returns its SQLAlchemy URL."""
        template = self.template or self._make_template()
        name = f"{self.prefix}_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self.live.add(name)
        return _with_database(self.server_url, name)

    def drop(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        if name in self.live:
            self.live.discard(name)
            # FORCE: a process the test left behind must not keep the database alive.
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        for name in sorted(self.live):
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.live.clear()
        if self.template is not None:
            self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            self.template = None
        if self._admin is not None:
            self._admin.close()


@contextmanager
def empty_database(server_url: str) -> Iterator[str]:
    """A new, empty database on `server_url` (its first `cpf` creates the schema), dropped
    afterwards; yields its SQLAlchemy URL."""
    dbs = Databases(server_url)
    name = f"{dbs.prefix}_{uuid.uuid4().hex[:12]}"
    dbs._execute(f'CREATE DATABASE "{name}"')
    dbs.live.add(name)
    try:
        yield _with_database(server_url, name)
    finally:
        dbs.close()


_databases: Databases | None = None


def databases() -> Databases:
    global _databases
    assert SERVER_URL is not None, f"{SWITCH} is not set"
    if _databases is None:
        _databases = Databases(SERVER_URL)
    return _databases


def fresh_url() -> str | None:
    """A fresh store URL under the switch (dropped at `drop_url` or at session end),
    else None: the caller's base dir holds the SQLite store."""
    return databases().create() if on_postgres() else None


_by_base: dict[str, str] = {}


def url_for_base(base: Any) -> str | None:
    """The store URL of a base dir under the switch: one fresh database per base dir, so
    processes started on one base share a store as they do the SQLite file (dropped at
    session end); else None."""
    if not on_postgres():
        return None
    key = os.path.realpath(base)
    if key not in _by_base:
        _by_base[key] = databases().create()
    return _by_base[key]


def drop_url(url: str | None) -> None:
    if url is not None and _databases is not None:
        _databases.drop(url)


def close_all() -> None:
    global _databases
    if _databases is not None:
        _databases.close()
        _databases = None
    _by_base.clear()


def store_env(env: dict[str, str], url: str | None) -> dict[str, str]:
    """`env` with the test's store: `CPF_DATABASE_URL` = url, or removed (SQLite in the
    base dir), whatever the caller's environment said."""
    env.pop("CPF_DATABASE_URL", None)
    if url is not None:
        env["CPF_DATABASE_URL"] = url
    return env


class Sql:
    """A plain DB-API connection to a test's store, for tests that look at or change rows
    behind cpf's back: the SQLite file of `base`, or the database at `url`. Statements
    use `?` placeholders on both. As a context manager it commits on success and closes."""

    def __init__(self, base: Any, url: str | None = None) -> None:
        if url is not None and not url.startswith("sqlite"):
            import psycopg

            self.conn: Any = psycopg.connect(_libpq(url))
            self.postgres = True
        else:
            import sqlite3
            from pathlib import Path

            path = url.split("///", 1)[1] if url else Path(base) / "cpf.db"
            self.conn = sqlite3.connect(path, timeout=30)
            self.postgres = False

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.postgres:
            sql = sql.replace("?", "%s")
        return self.conn.execute(sql, params)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Sql:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        try:
            if kind is None:
                self.conn.commit()
        finally:
            self.conn.close()
