"""Alembic's environment for the cpf store.

Run only through `core.store.migrate`, which opens the connection (and its transaction,
under the store's write lock) and passes it in `config.attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from core.store import migrate, models

models.load_all_tables()  # register the service tables too

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the store's migrations through `python -m core.store.migrate`")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite alters most things by copying the table: "batch" operations do that (and
    # are plain ALTERs on PostgreSQL), so one revision serves both backends.
    render_as_batch=True,
    # SQLite's DDL is transactional too: a failed migration leaves the store as it was.
    transactional_ddl=True,
    compare_type=True,
    render_item=migrate.render_item,
    on_version_apply=migrate.record_version,
    process_revision_directives=context.config.attributes.get("process_revision_directives"),
)

with context.begin_transaction():
    context.run_migrations()
