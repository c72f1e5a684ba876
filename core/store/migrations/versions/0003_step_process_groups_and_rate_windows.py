"""step process groups and shared rate windows

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 17:15:24.868419
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | None = "0002"
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
    if "svc_rate_windows" not in tables:
        op.create_table(
            "svc_rate_windows",
            sa.Column("bucket", sa.String(length=128), nullable=False),
            sa.Column("window_start", sa.Float(), nullable=False),
            sa.Column("hits", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("bucket"),
        )
    if "proc" not in _columns("step_attempts"):
        with op.batch_alter_table("step_attempts", schema=None) as batch_op:
            batch_op.add_column(sa.Column("proc", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("step_attempts", schema=None) as batch_op:
        batch_op.drop_column("proc")

    op.drop_table("svc_rate_windows")
