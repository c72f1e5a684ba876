"""SQL of webhooks and their delivery outbox."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from core.service.store.base import StoreBase
from core.service.store.tables import (
    DELIVERIES,
    WEBHOOKS,
)

_SEL_HOOKS = select(WEBHOOKS.c.webhook_id, WEBHOOKS.c.events).where(
    WEBHOOKS.c.account == bindparam("account")
)
_INSERT_DELIVERY = insert(DELIVERIES)
_INSERT_WEBHOOK = insert(WEBHOOKS)
_hook_is = and_(
    WEBHOOKS.c.account == bindparam("account"), WEBHOOKS.c.webhook_id == bindparam("webhook_id")
)
_COUNT_WEBHOOKS = (
    select(func.count()).select_from(WEBHOOKS).where(WEBHOOKS.c.account == bindparam("account"))
)
_SEL_WEBHOOK = select(WEBHOOKS).where(_hook_is)
_SEL_WEBHOOK_BY_ID = select(WEBHOOKS).where(WEBHOOKS.c.webhook_id == bindparam("webhook_id"))
_LIST_WEBHOOKS = (
    select(WEBHOOKS)
    .where(WEBHOOKS.c.account == bindparam("account"))
    .order_by(WEBHOOKS.c.created_at, WEBHOOKS.c.webhook_id)
)
_DELETE_WEBHOOK = delete(WEBHOOKS).where(_hook_is)
_CANCEL_DELIVERIES = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.webhook_id == bindparam("w_webhook"),
        # Not IN (...): an expanding parameter would not compile to plain SQL once.
        or_(DELIVERIES.c.status == "pending", DELIVERIES.c.status == "delivering"),
    )
    .values(status="cancelled", lease_until=None)
)
_is_due = or_(
    and_(DELIVERIES.c.status == "pending", DELIVERIES.c.next_attempt_at <= bindparam("now")),
    and_(DELIVERIES.c.status == "delivering", DELIVERIES.c.lease_until <= bindparam("now")),
)
_DUE_DELIVERIES = (
    select(DELIVERIES)
    .where(_is_due)
    .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)
    .limit(bindparam("limit", type_=None))
)
_LEASE_DELIVERY = (
    update(DELIVERIES)
    .where(DELIVERIES.c.id == bindparam("w_id"), _is_due)
    .values(status="delivering", lease_until=bindparam("lease"), updated_at=bindparam("now"))
)
_CLAIM_DUE_PG = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.id.in_(
            select(DELIVERIES.c.id)
            .where(_is_due)
            .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)
            .limit(bindparam("limit", type_=None))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(status="delivering", lease_until=bindparam("lease"), updated_at=bindparam("now"))
    .returning(*DELIVERIES.c)
)
_NEXT_DUE = select(func.min(DELIVERIES.c.next_attempt_at)).where(DELIVERIES.c.status == "pending")
_FINISH_DELIVERY = update(DELIVERIES).where(
    DELIVERIES.c.id == bindparam("w_id"),
    DELIVERIES.c.status == "delivering",
    DELIVERIES.c.lease_until == bindparam("w_lease"),
)
_LIST_DELIVERIES = (
    select(DELIVERIES)
    .where(DELIVERIES.c.webhook_id == bindparam("webhook_id"))
    .order_by(DELIVERIES.c.id.desc())
    .limit(bindparam("limit", type_=None))
)


class WebhooksSql(StoreBase):
    """Webhooks, the outbox and the delivery log."""

    def insert_webhook(self, conn: Any, values: dict[str, Any]) -> None:
        self.insert_row(conn, _INSERT_WEBHOOK, values)

    def count_webhooks(self, conn: Any, account: str) -> int:
        return int(self.scalar(conn, _COUNT_WEBHOOKS, {"account": account}) or 0)

    def webhook(self, conn: Any, account: str, webhook_id: str) -> dict[str, Any] | None:
        return self.first(conn, _SEL_WEBHOOK, {"account": account, "webhook_id": webhook_id})

    def webhook_by_id(self, conn: Any, webhook_id: str) -> dict[str, Any] | None:
        return self.first(conn, _SEL_WEBHOOK_BY_ID, {"webhook_id": webhook_id})

    def list_webhooks(self, account: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            return self.rows(conn, _LIST_WEBHOOKS, {"account": account})

    def delete_webhook(self, conn: Any, account: str, webhook_id: str) -> bool:
        n = self.count(conn, _DELETE_WEBHOOK, {"account": account, "webhook_id": webhook_id})
        if n:
            # Undelivered events of a removed webhook have nowhere to go.
            self.count(conn, _CANCEL_DELIVERIES, {"w_webhook": webhook_id})
        return bool(n)

    def hooks_for(self, conn: Any, account: str) -> list[tuple[str, list[str]]]:
        return [
            (r["webhook_id"], r["events"] or [])
            for r in self.rows(conn, _SEL_HOOKS, {"account": account})
        ]

    def enqueue(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.insert_row(conn, _INSERT_DELIVERY, row)

    def claim_due(self, now: str, lease_until: str, limit: int) -> list[dict[str, Any]]:
        """Lease due deliveries (pending and due, or a lapsed lease of a dead worker).

        Each due row is leased by exactly one caller, whatever the number of replicas:
        on PostgreSQL one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`
        (rows another replica is claiming are skipped, not waited for); on SQLite the
        write lock serializes claims and each lease is conditional on the row still
        being due (its row count says whether we got it)."""
        params = {"now": now, "lease": lease_until, "limit": limit}
        with self.write() as conn:
            if not isinstance(conn, sqlite3.Connection) and not self.is_sqlite:
                return self.rows(conn, _CLAIM_DUE_PG, params)
            claimed = []
            for r in self.rows(conn, _DUE_DELIVERIES, params):
                if self.count(conn, _LEASE_DELIVERY, {**params, "w_id": r["id"]}) == 1:
                    claimed.append({**r, "status": "delivering", "lease_until": lease_until})
            return claimed

    def next_due(self) -> str | None:
        with self.read() as conn:
            return self.scalar(conn, _NEXT_DUE)

    def finish_delivery(self, delivery_pk: int, lease: str, values: dict[str, Any]) -> bool:
        """Record an attempt, if the lease is still ours (False: it lapsed and the
        delivery was claimed again, or it was cancelled; nothing is written)."""
        with self.write() as conn:
            params = {"w_id": delivery_pk, "w_lease": lease, **values}
            return self.count(conn, _FINISH_DELIVERY, params, tuple(sorted(values))) == 1

    def list_deliveries(self, conn: Any, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        return self.rows(conn, _LIST_DELIVERIES, {"webhook_id": webhook_id, "limit": limit})
