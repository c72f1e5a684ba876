"""SQLModel tables of `cpf serve` (the SnapState checkpoint API).

Checkpoints themselves live in `checkpoints` (core.store.models), shared with the engine
(one definition: runs write it, the service reads and writes it).
These tables hold what only the service needs: accounts and API keys (hashes only),
agents, webhooks with their durable delivery outbox, and one row per workflow saved
through the API (its head, counts and expiry, so a save or a resume reads one row).

Defined in the store's schema by `core.store.models.load_all_tables()` (one schema,
one version), and imported by the service's SQL (core/service/store/).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text, UniqueConstraint, event
from sqlmodel import Field, SQLModel


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


class Account(SQLModel, table=True):
    __tablename__ = "svc_accounts"

    name: str = Field(primary_key=True, max_length=128)
    # "active"; anything else makes its keys answer 403.
    status: str = Field(default="active", max_length=16)
    created_at: str


class ApiKey(SQLModel, table=True):
    __tablename__ = "svc_api_keys"
    __table_args__ = (
        UniqueConstraint("key_hash", name="uq_svc_api_keys_hash"),
        Index("ix_svc_api_keys_account", "account"),
    )

    key_id: str = Field(primary_key=True, max_length=64)
    account: str = Field(max_length=128)
    # SHA-256 hex of the whole key; the key itself is shown once and never stored.
    key_hash: str = Field(max_length=64)
    prefix: str = Field(max_length=16)
    label: str | None = None
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None


class Agent(SQLModel, table=True):
    __tablename__ = "svc_agents"
    __table_args__ = (UniqueConstraint("account", "agent_id", name="uq_svc_agents"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(max_length=128)
    agent_id: str = Field(max_length=255)
    name: str | None = None
    description: str | None = Field(default=None, sa_column=Column(Text))
    capabilities: Any = _json()
    meta: Any = Field(default=None, sa_column=Column("metadata", JSON))
    last_seen_at: str | None = None
    created_at: str
    updated_at: str


class ApiWorkflow(SQLModel, table=True):
    """A workflow saved through the API: its head (the most recently written checkpoint),
    live checkpoint count and expiry. Runs' workflows have no row (derived on read)."""

    __tablename__ = "svc_workflows"
    __table_args__ = (
        UniqueConstraint("account", "workflow_id", name="uq_svc_workflows"),
        Index("ix_svc_workflows_expires", "expires_at"),
        Index("ix_svc_workflows_min_expires", "min_expires_at"),
        Index("ix_svc_workflows_activity", "account", "last_activity_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(max_length=128)
    workflow_id: str = Field(max_length=128)
    head_id: int  # checkpoints.id of the head
    head_step: int = Field(sa_type=BigInteger)  # up to MAX_STEP: 64 bits everywhere
    head_etag: str
    total: int = 0
    started_at: str
    last_activity_at: str
    # The workflow expires with its last save's TTL (it slides with every write).
    expires_at: str | None = None
    # The earliest expiry of any of its checkpoints: reads count live rows only when due.
    min_expires_at: str | None = None


class Webhook(SQLModel, table=True):
    __tablename__ = "svc_webhooks"
    __table_args__ = (Index("ix_svc_webhooks_account", "account"),)

    webhook_id: str = Field(primary_key=True, max_length=64)
    account: str = Field(max_length=128)
    url: str = Field(sa_column=Column(Text, nullable=False))
    events: Any = _json()
    secret: str | None = None
    created_at: str


class WebhookDelivery(SQLModel, table=True):
    """The outbox and the delivery log: one row per (event, webhook), written in the
    same transaction as the change it announces; the worker delivers and retries it."""

    __tablename__ = "svc_webhook_deliveries"
    __table_args__ = (
        Index("ix_svc_deliveries_due", "status", "next_attempt_at"),
        Index("ix_svc_deliveries_webhook", "webhook_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(max_length=64, unique=True)
    webhook_id: str = Field(max_length=64)
    account: str = Field(max_length=128)
    event: str = Field(max_length=64)
    data: Any = _json()
    # pending -> delivering (leased) -> delivered | pending (retry) | failed (gave up)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: str
    lease_until: str | None = None
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: str
    updated_at: str
    delivered_at: str | None = None


class RateWindow(SQLModel, table=True):
    """The request count of one API key in its current rate-limit window. Kept in the
    store so every replica of `cpf serve` counts against the same limit; one atomic
    upsert per request (core/service/store/ratelimit.py `rate_hit`)."""

    __tablename__ = "svc_rate_windows"

    bucket: str = Field(primary_key=True, max_length=128)
    # Unix seconds by the database's clock (replicas' clocks may disagree).
    window_start: float
    # Requests in the window, counted up to limit + 1 (rejected ones stop there).
    hits: int = 0


def _create_save_function(target: Any, connection: Any, **kw: Any) -> None:
    # A new PostgreSQL store gets the one-round-trip save with its tables (an older
    # one from Alembic revision 0006); SQLite has no functions and needs none.
    if connection.dialect.name == "postgresql":
        from core.service.store.save_function import CREATE_SAVE_FUNCTION

        connection.exec_driver_sql(CREATE_SAVE_FUNCTION)


event.listen(ApiWorkflow.__table__, "after_create", _create_save_function)

SERVICE_TABLES = [Account, ApiKey, Agent, ApiWorkflow, Webhook, WebhookDelivery, RateWindow]

# The tables as SQLAlchemy Core handles, for the statements in core/service/store/.
ACCOUNTS = Account.__table__
KEYS = ApiKey.__table__
AGENTS = Agent.__table__
WORKFLOWS = ApiWorkflow.__table__
WEBHOOKS = Webhook.__table__
DELIVERIES = WebhookDelivery.__table__
RATES = RateWindow.__table__
