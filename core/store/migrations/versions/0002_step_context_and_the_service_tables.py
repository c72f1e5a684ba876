"""step context and the service tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 17:15:20.888947
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Stores made before Alembic were upgraded by "create what is missing", and development
# builds gave one number to different contents: this revision creates only what a store
# lacks (revisions after 0003 are plain).
def _tables() -> set[str]:
    return set(sa.inspect(op.get_bind()).get_table_names())


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    tables = _tables()
    if "svc_accounts" not in tables:
        op.create_table(
            "svc_accounts",
            sa.Column("name", sa.String(length=128), nullable=False),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("created_at", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if "svc_agents" not in tables:
        op.create_table(
            "svc_agents",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("account", sa.String(length=128), nullable=False),
            sa.Column("agent_id", sa.String(length=255), nullable=False),
            sa.Column("name", sa.String(), nullable=True),
            sa.Column("description", sa.Text(), nullable=True),
            sa.Column("capabilities", sa.JSON(), nullable=True),
            sa.Column("metadata", sa.JSON(), nullable=True),
            sa.Column("last_seen_at", sa.String(), nullable=True),
            sa.Column("created_at", sa.String(), nullable=False),
            sa.Column("updated_at", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("account", "agent_id", name="uq_svc_agents"),
        )
    if "svc_api_keys" not in tables:
        op.create_table(
            "svc_api_keys",
            sa.Column("key_id", sa.String(length=64), nullable=False),
            sa.Column("account", sa.String(length=128), nullable=False),
            sa.Column("key_hash", sa.String(length=64), nullable=False),
            sa.Column("prefix", sa.String(length=16), nullable=False),
            sa.Column("label", sa.String(), nullable=True),
            sa.Column("created_at", sa.String(), nullable=False),
            sa.Column("expires_at", sa.String(), nullable=True),
            sa.Column("revoked_at", sa.String(), nullable=True),
            sa.PrimaryKeyConstraint("key_id"),
            sa.UniqueConstraint("key_hash", name="uq_svc_api_keys_hash"),
        )
        with op.batch_alter_table("svc_api_keys", schema=None) as batch_op:
            batch_op.create_index("ix_svc_api_keys_account", ["account"], unique=False)
    if "svc_webhook_deliveries" not in tables:
        op.create_table(
            "svc_webhook_deliveries",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("delivery_id", sa.String(length=64), nullable=False),
            sa.Column("webhook_id", sa.String(length=64), nullable=False),
            sa.Column("account", sa.String(length=128), nullable=False),
            sa.Column("event", sa.String(length=64), nullable=False),
            sa.Column("data", sa.JSON(), nullable=True),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("next_attempt_at", sa.String(), nullable=False),
            sa.Column("lease_until", sa.String(), nullable=True),
            sa.Column("last_status_code", sa.Integer(), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("created_at", sa.String(), nullable=False),
            sa.Column("updated_at", sa.String(), nullable=False),
            sa.Column("delivered_at", sa.String(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("delivery_id"),
        )
        with op.batch_alter_table("svc_webhook_deliveries", schema=None) as batch_op:
            batch_op.create_index(
                "ix_svc_deliveries_due", ["status", "next_attempt_at"], unique=False
            )
            batch_op.create_index("ix_svc_deliveries_webhook", ["webhook_id", "id"], unique=False)
    if "svc_webhooks" not in tables:
        op.create_table(
            "svc_webhooks",
            sa.Column("webhook_id", sa.String(length=64), nullable=False),
            sa.Column("account", sa.String(length=128), nullable=False),
            sa.Column("url", sa.Text(), nullable=False),
            sa.Column("events", sa.JSON(), nullable=True),
            sa.Column("secret", sa.String(), nullable=True),
            sa.Column("created_at", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("webhook_id"),
        )
        with op.batch_alter_table("svc_webhooks", schema=None) as batch_op:
            batch_op.create_index("ix_svc_webhooks_account", ["account"], unique=False)
    if "svc_workflows" not in tables:
        op.create_table(
            "svc_workflows",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("account", sa.String(length=128), nullable=False),
            sa.Column("workflow_id", sa.String(length=128), nullable=False),
            sa.Column("head_id", sa.Integer(), nullable=False),
            sa.Column("head_step", sa.Integer(), nullable=False),
            sa.Column("head_etag", sa.String(), nullable=False),
            sa.Column("total", sa.Integer(), nullable=False),
            sa.Column("started_at", sa.String(), nullable=False),
            sa.Column("last_activity_at", sa.String(), nullable=False),
            sa.Column("expires_at", sa.String(), nullable=True),
            sa.Column("min_expires_at", sa.String(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("account", "workflow_id", name="uq_svc_workflows"),
        )
        with op.batch_alter_table("svc_workflows", schema=None) as batch_op:
            batch_op.create_index(
                "ix_svc_workflows_activity", ["account", "last_activity_at"], unique=False
            )
            batch_op.create_index("ix_svc_workflows_expires", ["expires_at"], unique=False)
            batch_op.create_index("ix_svc_workflows_min_expires", ["min_expires_at"], unique=False)
    if "context" not in _columns("step_attempts"):
        with op.batch_alter_table("step_attempts", schema=None) as batch_op:
            batch_op.add_column(sa.Column("context", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("step_attempts", schema=None) as batch_op:
        batch_op.drop_column("context")

    with op.batch_alter_table("svc_workflows", schema=None) as batch_op:
        batch_op.drop_index("ix_svc_workflows_min_expires")
        batch_op.drop_index("ix_svc_workflows_expires")
        batch_op.drop_index("ix_svc_workflows_activity")

    op.drop_table("svc_workflows")
    with op.batch_alter_table("svc_webhooks", schema=None) as batch_op:
        batch_op.drop_index("ix_svc_webhooks_account")

    op.drop_table("svc_webhooks")
    with op.batch_alter_table("svc_webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_svc_deliveries_webhook")
        batch_op.drop_index("ix_svc_deliveries_due")

    op.drop_table("svc_webhook_deliveries")
    with op.batch_alter_table("svc_api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_svc_api_keys_account")

    op.drop_table("svc_api_keys")
    op.drop_table("svc_agents")
    op.drop_table("svc_accounts")
