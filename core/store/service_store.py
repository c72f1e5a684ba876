"""SQL of `cpf serve`: keys, API workflows and their checkpoints, agents, webhooks, outbox.

Only SQL lives here; the decisions (If-Match, expiry, what an error is) are made in
`core.checkpoints`, which calls these functions inside one `ServiceStore.write()`
transaction per change. Statements use SQLAlchemy Core on the SQLModel tables, as
`core.store.store` does, and the hot ones are built once.

Writes of one process go through a process-wide lock before `BEGIN IMMEDIATE`: the
server's worker threads then queue on a cheap mutex instead of SQLite's busy handler,
which sleeps in growing steps and would wreck tail latency. Other processes (cpf runs,
a second server) still meet at SQLite's write lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from core.store.models import Checkpoint, Run
from core.store.service_models import (
    Account,
    Agent,
    ApiKey,
    ApiWorkflow,
    Webhook,
    WebhookDelivery,
)
from core.store.store import Store

CP = Checkpoint.__table__
RUNS = Run.__table__
ACCOUNTS = Account.__table__
KEYS = ApiKey.__table__
AGENTS = Agent.__table__
WORKFLOWS = ApiWorkflow.__table__
WEBHOOKS = Webhook.__table__
DELIVERIES = WebhookDelivery.__table__

__all__ = ["IntegrityError", "ServiceStore"]

# Columns of a checkpoint as the API shows it (everything but the account).
def _cp_cols(raw_state: bool) -> list[Any]:
    # raw_state: the state as its stored JSON text, for callers that pass it through
    # to a response unparsed (a replay page of large states costs no parse at all).
    state = cast(CP.c.state, Text).label("state") if raw_state else CP.c.state
    return [
        CP.c.id,
        CP.c.checkpoint_id,
        CP.c.workflow_id,
        CP.c.run_id,
        CP.c.step,
        CP.c.label,
        state,
        CP.c.metadata,
        CP.c.etag,
        CP.c.diff_from_previous,
        CP.c.size_bytes,
        CP.c.created_at,
        CP.c.expires_at,
    ]


_live_cp = or_(CP.c.expires_at.is_(None), CP.c.expires_at > bindparam("now"))

_SEL_WORKFLOW = select(WORKFLOWS).where(
    WORKFLOWS.c.account == bindparam("account"),
    WORKFLOWS.c.workflow_id == bindparam("workflow_id"),
)
_SEL_CP_AT = {
    raw: select(*_cp_cols(raw)).where(
        CP.c.account == bindparam("account"),
        CP.c.workflow_id == bindparam("workflow_id"),
        CP.c.step == bindparam("step"),
    )
    for raw in (False, True)
}
_SEL_CP_BY_ID = {
    raw: select(*_cp_cols(raw)).where(CP.c.id == bindparam("id")) for raw in (False, True)
}
_SEL_STATE_BY_ID = select(CP.c.state).where(CP.c.id == bindparam("id"))
_INSERT_CP = insert(CP)
# SQLite keeps JSON as text: hand it the compact text the caller already made instead
# of letting the JSON type serialize a large state a second time.
_INSERT_CP_TEXT = insert(CP).values(state=bindparam("state_text", type_=Text()))
_INSERT_WORKFLOW = insert(WORKFLOWS)
_UPDATE_WORKFLOW = update(WORKFLOWS).where(WORKFLOWS.c.id == bindparam("w_id"))
_SEL_KEY = (
    select(KEYS.c.key_id, KEYS.c.account, KEYS.c.revoked_at, KEYS.c.expires_at, ACCOUNTS.c.status)
    .select_from(KEYS.outerjoin(ACCOUNTS, ACCOUNTS.c.name == KEYS.c.account))
    .where(KEYS.c.key_hash == bindparam("key_hash"))
)
_TOUCH_AGENT = (
    update(AGENTS)
    .where(AGENTS.c.account == bindparam("w_account"), AGENTS.c.agent_id == bindparam("w_agent"))
    .values(last_seen_at=bindparam("seen"))
)
_SEL_HOOKS = select(WEBHOOKS.c.webhook_id, WEBHOOKS.c.events).where(
    WEBHOOKS.c.account == bindparam("account")
)
_INSERT_DELIVERY = insert(DELIVERIES)


def _row(row: Any) -> dict[str, Any] | None:
    return None if row is None else dict(row._mapping)


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result]


class ServiceStore:
    """The service's persistence over the engine's `Store` (same engine, same database)."""

    _write_lock = threading.Lock()

    def __init__(self, store: Store) -> None:
        self.store = store
        self.is_sqlite = store.is_sqlite

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._write_lock, self.store.write() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.store.read() as conn:
            yield conn

    # -- accounts and keys ----------------------------------------------------------------

    def ensure_account(self, conn: Connection, name: str, now: str) -> None:
        have = conn.execute(select(ACCOUNTS.c.name).where(ACCOUNTS.c.name == name)).first()
        if have is None:
            conn.execute(insert(ACCOUNTS).values(name=name, status="active", created_at=now))

    def insert_key(self, conn: Connection, values: dict[str, Any]) -> None:
        conn.execute(insert(KEYS).values(**values))

    def list_keys(self, account: str | None) -> list[dict[str, Any]]:
        stmt = select(
            KEYS.c.key_id,
            KEYS.c.account,
            KEYS.c.prefix,
            KEYS.c.label,
            KEYS.c.created_at,
            KEYS.c.expires_at,
            KEYS.c.revoked_at,
        ).order_by(KEYS.c.created_at, KEYS.c.key_id)
        if account is not None:
            stmt = stmt.where(KEYS.c.account == account)
        with self.read() as conn:
            return _rows(conn.execute(stmt))

    def get_key(self, conn: Connection, key_id: str) -> dict[str, Any] | None:
        return _row(conn.execute(select(KEYS).where(KEYS.c.key_id == key_id)).first())

    def revoke_key(self, conn: Connection, key_id: str, now: str) -> None:
        conn.execute(update(KEYS).where(KEYS.c.key_id == key_id).values(revoked_at=now))

    def key_by_hash(self, key_hash: str) -> dict[str, Any] | None:
        with self.read() as conn:
            return _row(conn.execute(_SEL_KEY, {"key_hash": key_hash}).first())

    # -- runs (read-only workflows of account `local`) ------------------------------------

    def run_exists(self, conn: Connection, run_id: str) -> bool:
        row = conn.execute(select(RUNS.c.run_id).where(RUNS.c.run_id == run_id)).first()
        return row is not None

    def derived_workflow(
        self, conn: Connection, account: str, workflow_id: str
    ) -> dict[str, Any] | None:
        """Head and counts of a workflow with no svc_workflows row (a cpf run)."""
        where = and_(CP.c.account == account, CP.c.workflow_id == workflow_id)
        row = conn.execute(
            select(
                func.count(),
                func.min(CP.c.created_at),
                func.max(CP.c.id),
            ).where(where)
        ).first()
        if row is None or not row[0]:
            return None
        head = self.checkpoint_by_pk(conn, int(row[2]))
        assert head is not None
        return {
            "account": account,
            "workflow_id": workflow_id,
            "head_id": head["id"],
            "head_step": head["step"],
            "head_etag": head["etag"],
            "total": int(row[0]),
            "started_at": row[1],
            "last_activity_at": head["created_at"],
            "expires_at": None,
            "min_expires_at": None,
            "run_id": head["run_id"],
        }

    # -- API workflows --------------------------------------------------------------------

    def workflow(self, conn: Connection, account: str, workflow_id: str) -> dict[str, Any] | None:
        return _row(
            conn.execute(_SEL_WORKFLOW, {"account": account, "workflow_id": workflow_id}).first()
        )

    def insert_workflow(self, conn: Connection, values: dict[str, Any]) -> None:
        conn.execute(_INSERT_WORKFLOW, values)

    def update_workflow(self, conn: Connection, row_id: int, **values: Any) -> None:
        conn.execute(_UPDATE_WORKFLOW, {"w_id": row_id, **values})

    def delete_workflow(self, conn: Connection, account: str, workflow_id: str) -> int:
        """Delete a workflow's checkpoints and row; return how many checkpoints went."""
        n = conn.execute(
            delete(CP).where(CP.c.account == account, CP.c.workflow_id == workflow_id)
        ).rowcount
        conn.execute(
            delete(WORKFLOWS).where(
                WORKFLOWS.c.account == account, WORKFLOWS.c.workflow_id == workflow_id
            )
        )
        return int(n or 0)

    def list_workflows(
        self, account: str, now: str, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """API workflows and (for account `local`) run workflows, most recent activity first."""
        api = (
            select(
                WORKFLOWS.c.workflow_id,
                WORKFLOWS.c.head_step,
                WORKFLOWS.c.total,
                WORKFLOWS.c.started_at,
                WORKFLOWS.c.last_activity_at,
                WORKFLOWS.c.expires_at,
                literal(None).label("run_id"),
            )
            .where(WORKFLOWS.c.account == account)
            .where(or_(WORKFLOWS.c.expires_at.is_(None), WORKFLOWS.c.expires_at > now))
        )
        runs = (
            select(
                CP.c.workflow_id,
                func.max(CP.c.step).label("head_step"),
                func.count().label("total"),
                func.min(CP.c.created_at).label("started_at"),
                func.max(CP.c.created_at).label("last_activity_at"),
                literal(None).label("expires_at"),
                func.max(CP.c.run_id).label("run_id"),
            )
            .where(CP.c.account == account, CP.c.run_id.is_not(None))
            .group_by(CP.c.workflow_id)
        )
        both = api.union_all(runs).subquery()
        stmt = (
            select(both)
            .order_by(both.c.last_activity_at.desc(), both.c.workflow_id)
            .limit(limit)
            .offset(offset)
        )
        with self.read() as conn:
            return _rows(conn.execute(stmt))

    # -- checkpoints ----------------------------------------------------------------------

    def checkpoint_at(
        self,
        conn: Connection,
        account: str,
        workflow_id: str,
        step: int,
        raw_state: bool = False,
    ) -> dict[str, Any] | None:
        return _row(
            conn.execute(
                _SEL_CP_AT[raw_state],
                {"account": account, "workflow_id": workflow_id, "step": step},
            ).first()
        )

    def checkpoint_by_pk(
        self, conn: Connection, pk: int, raw_state: bool = False
    ) -> dict[str, Any] | None:
        return _row(conn.execute(_SEL_CP_BY_ID[raw_state], {"id": pk}).first())

    def state_by_pk(self, conn: Connection, pk: int) -> Any:
        return conn.execute(_SEL_STATE_BY_ID, {"id": pk}).scalar()

    def insert_checkpoint(
        self, conn: Connection, values: dict[str, Any], state_text: str | None = None
    ) -> int:
        """Insert a checkpoint row; `state_text` is the compact JSON of values["state"]."""
        if state_text is not None and self.is_sqlite:
            values = {k: v for k, v in values.items() if k != "state"}
            res = conn.execute(_INSERT_CP_TEXT, {**values, "state_text": state_text})
        else:
            res = conn.execute(_INSERT_CP, values)
        return int(res.inserted_primary_key[0])

    def delete_checkpoint(self, conn: Connection, pk: int) -> None:
        conn.execute(delete(CP).where(CP.c.id == pk))

    def replay(
        self,
        conn: Connection,
        account: str,
        workflow_id: str,
        now: str,
        from_step: int | None,
        to_step: int | None,
        limit: int,
        raw_state: bool = False,
    ) -> list[dict[str, Any]]:
        """Live checkpoints by step, the step range applied before the limit."""
        stmt = select(*_cp_cols(raw_state)).where(
            CP.c.account == account, CP.c.workflow_id == workflow_id, _live_cp
        )
        if from_step is not None:
            stmt = stmt.where(CP.c.step >= from_step)
        if to_step is not None:
            stmt = stmt.where(CP.c.step <= to_step)
        stmt = stmt.order_by(CP.c.step).limit(limit)
        return _rows(conn.execute(stmt, {"now": now}))

    def count_live(
        self,
        conn: Connection,
        account: str,
        workflow_id: str,
        now: str,
        from_step: int | None = None,
        to_step: int | None = None,
    ) -> int:
        stmt = (
            select(func.count())
            .select_from(CP)
            .where(CP.c.account == account, CP.c.workflow_id == workflow_id, _live_cp)
        )
        if from_step is not None:
            stmt = stmt.where(CP.c.step >= from_step)
        if to_step is not None:
            stmt = stmt.where(CP.c.step <= to_step)
        return int(conn.execute(stmt, {"now": now}).scalar() or 0)

    def min_expiry(self, conn: Connection, account: str, workflow_id: str) -> str | None:
        return conn.execute(
            select(func.min(CP.c.expires_at)).where(
                CP.c.account == account, CP.c.workflow_id == workflow_id
            )
        ).scalar()

    def purge_expired_checkpoints(
        self, conn: Connection, account: str, workflow_id: str, now: str
    ) -> int:
        return int(
            conn.execute(
                delete(CP).where(
                    CP.c.account == account,
                    CP.c.workflow_id == workflow_id,
                    CP.c.expires_at.is_not(None),
                    CP.c.expires_at <= now,
                )
            ).rowcount
            or 0
        )

    def expired_workflows(self, now: str, limit: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            return _rows(
                conn.execute(
                    select(WORKFLOWS)
                    .where(WORKFLOWS.c.expires_at.is_not(None), WORKFLOWS.c.expires_at <= now)
                    .order_by(WORKFLOWS.c.expires_at)
                    .limit(limit)
                )
            )

    def workflows_with_expired_checkpoints(self, now: str, limit: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            return _rows(
                conn.execute(
                    select(WORKFLOWS)
                    .where(
                        WORKFLOWS.c.min_expires_at.is_not(None),
                        WORKFLOWS.c.min_expires_at <= now,
                    )
                    .order_by(WORKFLOWS.c.min_expires_at)
                    .limit(limit)
                )
            )

    # -- agents ---------------------------------------------------------------------------

    def touch_agent(self, conn: Connection, account: str, agent_id: str, now: str) -> None:
        conn.execute(_TOUCH_AGENT, {"w_account": account, "w_agent": agent_id, "seen": now})

    def agent(self, conn: Connection, account: str, agent_id: str) -> dict[str, Any] | None:
        return _row(
            conn.execute(
                select(AGENTS).where(AGENTS.c.account == account, AGENTS.c.agent_id == agent_id)
            ).first()
        )

    def count_agents(self, conn: Connection, account: str) -> int:
        return int(
            conn.execute(
                select(func.count()).select_from(AGENTS).where(AGENTS.c.account == account)
            ).scalar()
            or 0
        )

    def insert_agent(self, conn: Connection, values: dict[str, Any]) -> None:
        conn.execute(insert(AGENTS).values(**values))

    def update_agent(self, conn: Connection, row_id: int, values: dict[str, Any]) -> None:
        conn.execute(update(AGENTS).where(AGENTS.c.id == row_id).values(**values))

    def delete_agent(self, conn: Connection, account: str, agent_id: str) -> bool:
        n = conn.execute(
            delete(AGENTS).where(AGENTS.c.account == account, AGENTS.c.agent_id == agent_id)
        ).rowcount
        return bool(n)

    def list_agents(self, account: str) -> list[dict[str, Any]]:
        # last_seen_at descending with never-seen agents last, then newest first.
        stmt = (
            select(AGENTS)
            .where(AGENTS.c.account == account)
            .order_by(
                AGENTS.c.last_seen_at.is_(None),
                AGENTS.c.last_seen_at.desc(),
                AGENTS.c.created_at.desc(),
                AGENTS.c.id.desc(),
            )
        )
        with self.read() as conn:
            return _rows(conn.execute(stmt))

    # -- webhooks and the outbox ----------------------------------------------------------

    def insert_webhook(self, conn: Connection, values: dict[str, Any]) -> None:
        conn.execute(insert(WEBHOOKS).values(**values))

    def count_webhooks(self, conn: Connection, account: str) -> int:
        return int(
            conn.execute(
                select(func.count()).select_from(WEBHOOKS).where(WEBHOOKS.c.account == account)
            ).scalar()
            or 0
        )

    def webhook(self, conn: Connection, account: str, webhook_id: str) -> dict[str, Any] | None:
        return _row(
            conn.execute(
                select(WEBHOOKS).where(
                    WEBHOOKS.c.account == account, WEBHOOKS.c.webhook_id == webhook_id
                )
            ).first()
        )

    def webhook_by_id(self, conn: Connection, webhook_id: str) -> dict[str, Any] | None:
        return _row(
            conn.execute(select(WEBHOOKS).where(WEBHOOKS.c.webhook_id == webhook_id)).first()
        )

    def list_webhooks(self, account: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            return _rows(
                conn.execute(
                    select(WEBHOOKS)
                    .where(WEBHOOKS.c.account == account)
                    .order_by(WEBHOOKS.c.created_at, WEBHOOKS.c.webhook_id)
                )
            )

    def delete_webhook(self, conn: Connection, account: str, webhook_id: str) -> bool:
        n = conn.execute(
            delete(WEBHOOKS).where(
                WEBHOOKS.c.account == account, WEBHOOKS.c.webhook_id == webhook_id
            )
        ).rowcount
        if n:
            # Undelivered events of a removed webhook have nowhere to go.
            conn.execute(
                update(DELIVERIES)
                .where(
                    DELIVERIES.c.webhook_id == webhook_id,
                    DELIVERIES.c.status.in_(("pending", "delivering")),
                )
                .values(status="cancelled", lease_until=None)
            )
        return bool(n)

    def hooks_for(self, conn: Connection, account: str) -> list[tuple[str, list[str]]]:
        return [(r[0], r[1] or []) for r in conn.execute(_SEL_HOOKS, {"account": account})]

    def enqueue(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if rows:
            conn.execute(_INSERT_DELIVERY, rows)

    def claim_due(
        self, now: str, lease_until: str, limit: int
    ) -> list[dict[str, Any]]:
        """Lease due deliveries (pending and due, or a lapsed lease of a dead worker)."""
        with self.write() as conn:
            rows = _rows(
                conn.execute(
                    select(DELIVERIES)
                    .where(
                        or_(
                            and_(
                                DELIVERIES.c.status == "pending",
                                DELIVERIES.c.next_attempt_at <= now,
                            ),
                            and_(
                                DELIVERIES.c.status == "delivering",
                                DELIVERIES.c.lease_until <= now,
                            ),
                        )
                    )
                    .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)
                    .limit(limit)
                )
            )
            if rows:
                conn.execute(
                    update(DELIVERIES)
                    .where(DELIVERIES.c.id.in_([r["id"] for r in rows]))
                    .values(status="delivering", lease_until=lease_until, updated_at=now)
                )
            return rows

    def next_due(self) -> str | None:
        with self.read() as conn:
            return conn.execute(
                select(func.min(DELIVERIES.c.next_attempt_at)).where(
                    DELIVERIES.c.status == "pending"
                )
            ).scalar()

    def finish_delivery(self, delivery_pk: int, values: dict[str, Any]) -> None:
        with self.write() as conn:
            conn.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id == delivery_pk, DELIVERIES.c.status == "delivering")
                .values(**values)
            )

    def list_deliveries(
        self, conn: Connection, webhook_id: str, limit: int
    ) -> list[dict[str, Any]]:
        return _rows(
            conn.execute(
                select(DELIVERIES)
                .where(DELIVERIES.c.webhook_id == webhook_id)
                .order_by(DELIVERIES.c.id.desc())
                .limit(limit)
            )
        )

    def health(self) -> None:
        with self.read() as conn:
            conn.execute(select(literal(1))).scalar()
