"""The store's schema versions and migrations (Alembic, configured here: no alembic.ini).

One number is the schema version: `cpf_meta.schema_version`, which every cpf since the
first release reads (on SQLite a command reads only it, with sqlite3, and goes on when it
is this cpf's version). Revision `000N` in `core/store/migrations/versions` brings a store
to version N. Alembic's own table, `alembic_version`, follows the number: a store is
stamped at revision N before it is upgraded (stores made before Alembic have only the
number), and each revision applied writes its number.

- A new store is created at the head from the models (`create_all`, or the compiled DDL
  on SQLite) and stamped there: revisions run only on older stores.
- An older store is migrated, in one transaction under the store's write lock (SQLite's
  `BEGIN IMMEDIATE`, an advisory lock on PostgreSQL), by the next `cpf` command, or only
  by `cpf db upgrade` when `CPF_DB_AUTO_UPGRADE=0` (for a PostgreSQL shared by a team,
  where the cpf of every host should be upgraded before the schema moves on).
- A store newer than this cpf (a higher number, or a revision this cpf does not know) is
  refused: ERR_PERSISTENCE, exit 60.

After changing a table in core/store/models.py or core/service/store/tables.py, a developer runs

    python -m core.store.migrate revision -m "what changed"

which writes `versions/000N_what_changed.py` (Alembic's autogenerate, against a scratch
SQLite store built by the revisions so far) and regenerates core/store/compiled.py.
Read the revision (autogenerate cannot tell a rename from a drop and an add), then
`python -m core.store.migrate check` exits 1 while the head revision and the models
differ (tests/test_migrations.py checks it on SQLite and PostgreSQL).
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

from core.envelope import PersistenceError

MIGRATIONS = Path(__file__).with_name("migrations")
# Taken (transaction-scoped) by every creation or migration of a PostgreSQL store.
PG_SCHEMA_LOCK = 4242170001


def revision_id(version: int) -> str:
    return f"{version:04d}"


def version_number(revision: str | None) -> int | None:
    """The schema version revision `revision` brings a store to (None if not ours)."""
    if revision is None or not (revision.isascii() and revision.isdigit()):
        return None
    return int(revision)


def auto_upgrade() -> bool:
    """Whether a `cpf` command migrates an older store itself (`CPF_DB_AUTO_UPGRADE`)."""
    value = os.environ.get("CPF_DB_AUTO_UPGRADE", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def config(connection: Any = None) -> Any:
    """Alembic's configuration, built in code: the script location inside the package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@cache
def scripts() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config())


def head_revision() -> str:
    head = scripts().get_current_head()
    if head is None:
        raise RuntimeError("core/store/migrations/versions has no revision")
    return str(head)


def head_version() -> int:
    if scripts().get_current_head() is None:
        return 0  # no revision yet (the first `revision` writes 0001)
    version = version_number(head_revision())
    assert version is not None, "revision ids are schema version numbers (0001, 0002, ...)"
    return version


def known_revision(revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return scripts().get_revision(revision) is not None
    except CommandError:
        return False


# -- hooks of env.py ---------------------------------------------------------------------


def render_item(kind: str, obj: Any, _autogen_context: Any) -> Any:
    """SQLModel's AutoString as plain `sa.String` (revisions never import sqlmodel)."""
    from sqlmodel.sql.sqltypes import AutoString

    if kind == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def record_version(*, ctx: Any, step: Any, heads: set[str], run_args: Any) -> None:
    """After each revision applied: the schema version follows alembic_version."""
    del step, run_args
    if len(heads) != 1:
        return
    head = next(iter(heads))
    version = version_number(head)
    if version is None:
        # The number is what every cpf checks: a revision without one could never be
        # seen (and refused) by an older cpf, so it is not applied (this rolls back).
        raise PersistenceError(
            f"Revision {head!r} is not a schema version number: write revisions with "
            "`python -m core.store.migrate revision`"
        )
    _write_version(ctx.connection, version)


# -- reading a store ---------------------------------------------------------------------


def _write_version(conn: Any, version: int) -> None:
    from sqlalchemy import text

    conn.execute(text("DELETE FROM cpf_meta WHERE key = 'schema_version'"))
    conn.execute(
        text("INSERT INTO cpf_meta (key, value) VALUES ('schema_version', :v)"),
        {"v": str(version)},
    )


def read_version(conn: Any, url: str) -> int | None:
    """The store's schema version (None: no schema yet)."""
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("cpf_meta"):
        return None
    value = conn.execute(text("SELECT value FROM cpf_meta WHERE key = 'schema_version'")).scalar()
    if value is None:
        return None
    if not (str(value).isascii() and str(value).isdigit() and int(value) > 0):
        raise PersistenceError(
            f"The store at {_shown(url)} has an unreadable schema version {str(value)[:40]!r}"
        )
    return int(value)


def read_revision(conn: Any) -> str | None:
    """The revision in alembic_version (None: not stamped, as stores made before Alembic)."""
    from alembic.runtime.migration import MigrationContext

    heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) if heads else None


def newer_error(url: str, version: int) -> PersistenceError:
    return PersistenceError(
        f"The store at {_shown(url)} has schema version {version}, newer than this "
        f"cpf understands ({head_version()}); upgrade cpf to use it",
        details={"schema_version": version, "supported": head_version()},
    )


def unknown_revision_error(url: str, revision: str) -> PersistenceError:
    return PersistenceError(
        f"The store at {_shown(url)} has schema revision {revision[:80]!r}, unknown to this "
        f"cpf (its newest is {head_revision()}); upgrade cpf to use it",
        details={"revision": revision[:80], "supported": head_revision()},
    )


def older_error(url: str, version: int) -> PersistenceError:
    return PersistenceError(
        f"The store at {_shown(url)} has schema version {version}, older than this cpf's "
        f"({head_version()}), and CPF_DB_AUTO_UPGRADE=0: run `cpf db upgrade`",
        details={"schema_version": version, "supported": head_version()},
    )


# -- changing a store --------------------------------------------------------------------


def lock(conn: Any) -> None:
    """Concurrent creations or migrations of a PostgreSQL store wait for each other
    (SQLite's BEGIN IMMEDIATE, taken by the caller, does the same)."""
    from sqlalchemy import text

    if conn.dialect.name == "postgresql":
        conn.execute(text(f"SELECT pg_advisory_xact_lock({PG_SCHEMA_LOCK})"))


def _stamp(conn: Any, revision: str) -> None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import text

    context = MigrationContext.configure(conn)
    if context.get_current_heads():
        conn.execute(text("DELETE FROM alembic_version"))
    context.stamp(scripts(), revision)


def create(conn: Any) -> None:
    """Create the schema at the head from the models (the caller holds the lock)."""
    from sqlmodel import SQLModel

    from core.store import models

    models.load_all_tables()  # register every table, the service's too

    SQLModel.metadata.create_all(conn)
    _write_version(conn, head_version())
    _stamp(conn, head_revision())


def bring_to_head(conn: Any, url: str, *, migrate_older: bool) -> tuple[int | None, int]:
    """Create, stamp or migrate the store on `conn` (in a transaction the caller commits):
    (version before, version after). Refuses a newer store, and an older one unless
    `migrate_older`."""
    lock(conn)
    head = head_version()
    version = read_version(conn, url)
    if version is None:
        create(conn)
        return None, head
    if version > head:
        raise newer_error(url, version)
    revision = read_revision(conn)
    if revision is not None and not known_revision(revision):
        raise unknown_revision_error(url, revision)
    if version == head:
        if revision != head_revision():
            _stamp(conn, head_revision())
        return version, head
    if not migrate_older:
        raise older_error(url, version)
    from alembic import command

    # The number is the version: alembic_version is set from it, then moved on.
    _stamp(conn, revision_id(version))
    command.upgrade(config(conn), "head")
    _check_foreign_keys(conn, url)
    return version, head


def _check_foreign_keys(conn: Any, url: str) -> None:
    # SQLite migrates with foreign keys off (see `engine`): check before committing.
    from sqlalchemy import text

    if conn.dialect.name == "sqlite":
        bad = conn.execute(text("PRAGMA foreign_key_check")).fetchall()
        if bad:
            raise PersistenceError(
                f"Upgrading the store at {_shown(url)} broke {len(bad)} foreign keys "
                f"(first: {tuple(bad[0])}); nothing was changed"
            )


def engine(url: str, *, write: bool = True) -> Any:
    """An engine for creating, reading or migrating the schema (one connection, closed
    after use). On SQLite: WAL, `BEGIN IMMEDIATE` for writes, and foreign keys off, since
    a batch operation copies a table and drops the old one, which with foreign keys on
    would delete every row pointing at it."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    from core.store.sqlexec import BUSY_TIMEOUT_MS

    if not url.startswith("sqlite"):
        return create_engine(url, poolclass=NullPool)
    eng = create_engine(url, poolclass=NullPool, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if write:
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = OFF")
        cur.close()

    @event.listens_for(eng, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return eng


def upgrade(url: str, *, migrate_older: bool = True) -> tuple[int | None, int]:
    """Bring the store at `url` to the head: (version before, version after)."""
    from sqlalchemy.exc import SQLAlchemyError

    eng = engine(url)
    try:
        with eng.connect() as conn, conn.begin():
            return bring_to_head(conn, url, migrate_older=migrate_older)
    except SQLAlchemyError as exc:
        raise PersistenceError(
            f"Cannot upgrade the store at {_shown(url)}: {_one_line(exc)}"
        ) from exc
    finally:
        eng.dispose()


def status(url: str) -> dict[str, Any]:
    """Where the store at `url` stands, without changing it."""
    from sqlalchemy.exc import SQLAlchemyError

    from core.store.sqlexec import sqlite_path

    path = sqlite_path(url)
    version = revision = None
    if path is None or Path(path).exists():
        eng = engine(url, write=False)
        try:
            with eng.connect() as conn:
                version = read_version(conn, url)
                revision = read_revision(conn)
        except SQLAlchemyError as exc:
            raise PersistenceError(
                f"Cannot read the store at {_shown(url)}: {_one_line(exc)}"
            ) from exc
        finally:
            eng.dispose()
    head = head_version()
    if version is None:
        state = "empty"
    elif version > head or (revision is not None and not known_revision(revision)):
        state = "newer"
    elif version < head:
        state = "behind"
    else:
        state = "current"
    return {
        "backend": "sqlite" if url.startswith("sqlite") else url.split(":", 1)[0].split("+")[0],
        "url": _shown(url),
        "state": state,
        "schema_version": version,
        "revision": revision,
        "head_version": head,
        "head_revision": head_revision(),
        "upgrade_needed": state in ("empty", "behind"),
        "auto_upgrade": auto_upgrade(),
    }


def _shown(url: str) -> str:
    from core.store.store import _safe_url

    return _safe_url(url)


def _one_line(exc: BaseException) -> str:
    from core.store.store import _one_line as one_line

    return one_line(exc)


# -- for developers: python -m core.store.migrate revision|check ---------------------------


def _scratch_at_head(directory: Path) -> Any:
    """An engine on a scratch SQLite store built by every revision from nothing."""
    from alembic import command

    eng = engine(f"sqlite:///{directory / 'scratch.db'}")
    with eng.connect() as conn, conn.begin():
        command.upgrade(config(conn), "head")
    return eng


def differences(conn: Any) -> list[Any]:
    """What autogenerate would change to make the store on `conn` match the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    from core.store import models

    models.load_all_tables()

    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


def _revision(message: str, *, empty: bool) -> int:
    import importlib.util
    import tempfile

    from alembic import command

    from core.store import gen_compiled

    next_id = revision_id(head_version() + 1)
    with tempfile.TemporaryDirectory() as tmp:
        eng = _scratch_at_head(Path(tmp))
        try:
            with eng.connect() as conn, conn.begin():
                if not empty and not differences(conn):
                    print("the models match the head revision: nothing to migrate", file=sys.stderr)
                    return 1
                cfg = config(conn)
                if importlib.util.find_spec("ruff") is not None:
                    # Written in the repository's style (`ruff format`).
                    for key, value in (
                        ("hooks", "ruff"),
                        ("ruff.type", "module"),
                        ("ruff.module", "ruff"),
                        ("ruff.options", "format REVISION_SCRIPT_FILENAME"),
                    ):
                        cfg.set_section_option("post_write_hooks", key, value)
                script = command.revision(
                    cfg, message=message, autogenerate=not empty, rev_id=next_id
                )
        finally:
            eng.dispose()
    scripts.cache_clear()
    print(f"wrote {script.path}")  # type: ignore[union-attr]
    return gen_compiled.main([])


def _check() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        eng = _scratch_at_head(Path(tmp))
        try:
            with eng.connect() as conn:
                diff = differences(conn)
        finally:
            eng.dispose()
    for item in diff:
        print(item)
    if diff:
        print("the models differ from the head revision: python -m core.store.migrate revision")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m core.store.migrate", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("revision", help="write the next revision from the models' changes")
    r.add_argument("-m", "--message", required=True)
    r.add_argument("--empty", action="store_true", help="an empty revision (a data migration)")
    sub.add_parser("check", help="exit 1 while the models differ from the head revision")
    args = p.parse_args(argv)
    if args.action == "revision":
        return _revision(args.message, empty=args.empty)
    return _check()


if __name__ == "__main__":
    raise SystemExit(main())
