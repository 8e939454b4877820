"""pins: the Pinning Service API's pin requests (a replication unit of their own)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requestid", sa.String(length=64), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("cid", sa.String(length=128), nullable=False),
        sa.Column("cid_key", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("origins", sa.JSON(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "pinning",
                "pinned",
                "failed",
                name="pin_status",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("replication_min", sa.Integer(), nullable=True),
        sa.Column("replication_max", sa.Integer(), nullable=True),
        sa.Column("replaces", sa.String(length=64), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("size IS NULL OR size >= 0", name=op.f("ck_pins_size_nonneg")),
        sa.CheckConstraint(
            "replication_min IS NULL OR replication_max IS NULL OR replication_min <= replication_max",
            name=op.f("ck_pins_replication_min_le_max"),
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publishers.id"],
            name=op.f("fk_pins_publisher_id_publishers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pins")),
        sa.UniqueConstraint("requestid", name=op.f("uq_pins_requestid")),
    )
    with op.batch_alter_table("pins", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pins_publisher_id_status_created"),
            ["publisher_id", "status", "created"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_pins_publisher_id_name"), ["publisher_id", "name"], unique=False)
        batch_op.create_index(batch_op.f("ix_pins_cid_key"), ["cid_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_pins_status_updated_at"), ["status", "updated_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_pins_created"), ["created"], unique=False)
        batch_op.create_index(batch_op.f("ix_pins_replaces"), ["replaces"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pins_replaces"))
        batch_op.drop_index(batch_op.f("ix_pins_created"))
        batch_op.drop_index(batch_op.f("ix_pins_status_updated_at"))
        batch_op.drop_index(batch_op.f("ix_pins_cid_key"))
        batch_op.drop_index(batch_op.f("ix_pins_publisher_id_name"))
        batch_op.drop_index(batch_op.f("ix_pins_publisher_id_status_created"))
    op.drop_table("pins")
