"""namespace max_drift: a namespace policy's limit on behavioural drift from the curated pack

``namespaces.max_drift`` holds ``{"min_top1_agreement": x, "max_mean_kl": y}`` (either may be absent) or
NULL (no limit). Curation refuses a pack whose fingerprint drifts past it from the pack curated now.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("namespaces") as batch:
        batch.add_column(sa.Column("max_drift", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("namespaces") as batch:
        batch.drop_column("max_drift")
