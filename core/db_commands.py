"""`cpf db status` and `cpf db upgrade`: the store's schema version and its migrations.

`status` changes nothing: the backend (a URL's password masked), the store's schema
version and Alembic revision, this cpf's head, and whether an upgrade is needed. `upgrade`
creates a new store or migrates an older one to the head and reports from -> to; a store
newer than this cpf is refused (ERR_PERSISTENCE, exit 60) by both.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.envelope import CpfError, Envelope, emit


def main(args: argparse.Namespace) -> int:
    from core.paths import database_url

    url = database_url()
    try:
        result = _status(url) if args.db_command == "status" else _upgrade(url)
    except CpfError as err:
        return emit(Envelope.failure("db", err))
    warnings = None
    if result.get("state") == "newer":
        warnings = ["the store is newer than this cpf, which refuses to use it: upgrade cpf"]
    elif result.get("state") == "behind" and not result["auto_upgrade"]:
        warnings = ["CPF_DB_AUTO_UPGRADE=0: commands refuse this store until `cpf db upgrade`"]
    return emit(Envelope.success("db", result=result, warnings=warnings))


def _status(url: str) -> dict[str, Any]:
    from core.store import migrate

    return migrate.status(url)


def _upgrade(url: str) -> dict[str, Any]:
    from core.store import migrate
    from core.store.store import Store

    if url.startswith("sqlite"):
        Store._prepare_sqlite_dir(url)
    before = migrate.status(url)
    if before["state"] == "newer":
        version = before["schema_version"]
        revision = before["revision"]
        if version is not None and version > before["head_version"]:
            raise migrate.newer_error(url, version)
        raise migrate.unknown_revision_error(url, str(revision))
    was, now = migrate.upgrade(url, migrate_older=True)
    return {
        "backend": before["backend"],
        "url": before["url"],
        "from_version": was,
        "to_version": now,
        "from_revision": None if was is None else migrate.revision_id(was),
        "to_revision": migrate.revision_id(now),
        "created": was is None,
        "upgraded": was is not None and was != now,
    }
