"""pack files: a manifest's ``files`` (config.json, tokenizer.json...) are rows of ``shards`` with role 'file'

They are stored, verified, replicated, served and pulled exactly as weight shards are; ``role`` tells the
two apart and positions of files continue after the shards'. Existing rows are weight shards.

``blob_uploaders``: every publisher who uploaded a blob's bytes (not only the first), so bytes no pack
references stay private to those who hold them, and any of them may publish a pack that uses them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blob_uploaders",
        sa.Column("cid", sa.String(length=128), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cid"], ["blobs.cid"], name=op.f("fk_blob_uploaders_cid_blobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publishers.id"],
            name=op.f("fk_blob_uploaders_publisher_id_publishers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cid", "publisher_id", name=op.f("pk_blob_uploaders")),
    )
    op.execute(
        "INSERT INTO blob_uploaders (cid, publisher_id, created_at) "
        "SELECT cid, uploaded_by, created_at FROM blobs WHERE uploaded_by IS NOT NULL"
    )
    with op.batch_alter_table("shards") as batch:
        batch.add_column(sa.Column("role", sa.String(length=8), server_default="shard", nullable=False))
        batch.create_check_constraint(op.f("ck_shards_role_known"), "role IN ('shard', 'file')")


def downgrade() -> None:
    op.execute("DELETE FROM shards WHERE role = 'file'")
    with op.batch_alter_table("shards") as batch:
        batch.drop_constraint(op.f("ck_shards_role_known"), type_="check")
        batch.drop_column("role")
    op.drop_table("blob_uploaders")
