"""events: the outbox of state changes (pack lifecycle, pointers, nodes, keys, policies, pins)

``manifests.replicated`` remembers whether a pack's content last met its replication target, so reaching
and losing it are events once per change.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(128)),
        sa.Column("model", sa.String(257)),
        sa.Column("pack", sa.String(128)),
        sa.Column("actor", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_type_id", "events", ["type", "id"])
    op.create_index("ix_events_namespace_id", "events", ["namespace", "id"])
    op.create_index("ix_events_created_at", "events", ["created_at"])
    with op.batch_alter_table("manifests") as batch:
        batch.add_column(sa.Column("replicated", sa.Boolean(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # in place: a batch rebuild would drop `manifests`, which packs and shards reference (see 0006)
        op.execute("ALTER TABLE manifests DROP COLUMN replicated")
    else:
        op.drop_column("manifests", "replicated")
    op.drop_table("events")
