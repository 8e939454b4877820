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
    if op.get_bind().dialect.name == "sqlite":
        # SQLite >= 3.35 drops the column in place; a batch rebuild would drop `namespaces`, which models,
        # members and trusted keys reference (foreign keys are on), so it cannot be recreated under them
        op.execute("ALTER TABLE namespaces DROP COLUMN max_drift")
    else:
        op.drop_column("namespaces", "max_drift")
