"""SQL of API keys and their accounts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from core.service.store.base import StoreBase
from core.service.store.tables import (
    ACCOUNTS,
    KEYS,
)

_SEL_KEY = (
    select(KEYS.c.key_id, KEYS.c.account, KEYS.c.revoked_at, KEYS.c.expires_at, ACCOUNTS.c.status)
    .select_from(KEYS.outerjoin(ACCOUNTS, ACCOUNTS.c.name == KEYS.c.account))
    .where(KEYS.c.key_hash == bindparam("key_hash"))
)
_LOCK_ACCOUNT = (
    select(ACCOUNTS.c.name).where(ACCOUNTS.c.name == bindparam("name")).with_for_update()
)
_INSERT_ACCOUNT_NEW = {
    "sqlite": sqlite_dialect.insert(ACCOUNTS).on_conflict_do_nothing(),
    "postgresql": pg_dialect.insert(ACCOUNTS).on_conflict_do_nothing(),
}
_INSERT_KEY = insert(KEYS)
_key_cols = (
    KEYS.c.key_id,
    KEYS.c.account,
    KEYS.c.prefix,
    KEYS.c.label,
    KEYS.c.created_at,
    KEYS.c.expires_at,
    KEYS.c.revoked_at,
)
_LIST_KEYS = select(*_key_cols).order_by(KEYS.c.created_at, KEYS.c.key_id)
_LIST_KEYS_OF = (
    select(*_key_cols)
    .where(KEYS.c.account == bindparam("account"))
    .order_by(KEYS.c.created_at, KEYS.c.key_id)
)
_SEL_KEY_BY_ID = select(KEYS).where(KEYS.c.key_id == bindparam("k"))
_REVOKE_KEY = (
    update(KEYS).where(KEYS.c.key_id == bindparam("k")).values(revoked_at=bindparam("now"))
)


class KeysSql(StoreBase):
    """Accounts and API keys (hashes only)."""

    def ensure_account(self, conn: Any, name: str, now: str) -> None:
        # Concurrent first keys of one account: the second insert does nothing.
        values = {"name": name, "status": "active", "created_at": now}
        self.count(conn, self._dialect_stmt(_INSERT_ACCOUNT_NEW), values, tuple(sorted(values)))

    def lock_account(self, conn: Any, name: str) -> None:
        """Serialize count-limited writes of one account (agents, webhooks) across
        replicas (the account row always exists: every key made it)."""
        self.first(conn, _LOCK_ACCOUNT, {"name": name})

    def insert_key(self, conn: Any, values: dict[str, Any]) -> None:
        self.insert_row(conn, _INSERT_KEY, values)

    def list_keys(self, account: str | None) -> list[dict[str, Any]]:
        with self.read() as conn:
            if account is None:
                return self.rows(conn, _LIST_KEYS)
            return self.rows(conn, _LIST_KEYS_OF, {"account": account})

    def get_key(self, conn: Any, key_id: str) -> dict[str, Any] | None:
        return self.first(conn, _SEL_KEY_BY_ID, {"k": key_id})

    def revoke_key(self, conn: Any, key_id: str, now: str) -> None:
        self.count(conn, _REVOKE_KEY, {"k": key_id, "now": now})

    def key_by_hash(self, key_hash: str) -> dict[str, Any] | None:
        with self.read() as conn:
            return self.first(conn, _SEL_KEY, {"key_hash": key_hash})
