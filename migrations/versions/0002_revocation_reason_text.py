"""signing_keys.revocation_reason holds any reason trust.max_reason_len allows (Text, was VARCHAR(512))

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.alter_column(
            "revocation_reason", existing_type=sa.String(length=512), type_=sa.Text(), existing_nullable=True
        )


def downgrade() -> None:
    # reasons longer than the old column are cut to fit (Postgres refuses to narrow over longer values)
    op.execute(
        sa.text(
            "UPDATE signing_keys SET revocation_reason = substr(revocation_reason, 1, 512) "
            "WHERE length(revocation_reason) > 512"
        )
    )
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.alter_column(
            "revocation_reason", existing_type=sa.Text(), type_=sa.String(length=512), existing_nullable=True
        )
