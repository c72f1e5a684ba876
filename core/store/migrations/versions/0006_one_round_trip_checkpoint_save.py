"""one round trip checkpoint save on PostgreSQL

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 20:58:00.000000

No table changes: PostgreSQL gets the function `cpf_save_checkpoint`
(core/service/store/save_function.py), the service's save in one statement. SQLite
stores only move their version (nothing to create).
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # The function as the code defines it (CREATE OR REPLACE: a later change of it
        # is a later revision running this again).
        from core.service.store.save_function import CREATE_SAVE_FUNCTION

        bind.exec_driver_sql(CREATE_SAVE_FUNCTION)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        from core.service.store.save_function import DROP_SAVE_FUNCTION

        bind.exec_driver_sql(DROP_SAVE_FUNCTION)
