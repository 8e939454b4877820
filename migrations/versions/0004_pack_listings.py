"""pack listings: content (manifests, by CID) split from listings (packs, one per model that published it)

A CID is no longer one row: ``manifests`` holds what depends only on the bytes (shards, signatures and
validation reports hang off it); ``packs`` is a listing with a surrogate id, unique per (model_id, cid),
with its own state. Pointers and state history reference the listing by (model_id, pack_cid).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONTENT_TABLES = ("shards", "signatures", "validation_reports")  # keyed by the content CID
LISTING_COLUMNS = (
    "cid, model_id, model_version, state, state_reason, flagged, published_by, created_at, updated_at"
)


def _state() -> sa.Enum:
    return sa.Enum(
        "received",
        "available",
        "validated",
        "curated",
        "rejected",
        name="pack_state",
        native_enum=False,
        create_constraint=True,
    )


def _listing_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("state", _state(), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("flagged", sa.Text(), nullable=True),
        sa.Column("published_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_packs_model_id_models"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["published_by"],
            ["publishers.id"],
            name=op.f("fk_packs_published_by_publishers"),
            ondelete="SET NULL",
        ),
    ]


def _repoint(table: str, old: str, new: str, ondelete: str) -> None:
    """The content table's ``pack_cid`` FK: from ``old``.cid to ``new``.cid."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f(f"fk_{table}_pack_cid_{old}"), type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f(f"fk_{table}_pack_cid_{new}"), new, ["pack_cid"], ["cid"], ondelete=ondelete
        )


def upgrade() -> None:
    op.create_table(
        "manifests",
        sa.Column("cid", sa.String(length=128), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("total_size", sa.BigInteger(), nullable=False),
        sa.Column("shard_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("shard_count >= 1", name=op.f("ck_manifests_shard_count_positive")),
        sa.CheckConstraint("total_size >= 0", name=op.f("ck_manifests_total_size_nonneg")),
        sa.PrimaryKeyConstraint("cid", name=op.f("pk_manifests")),
    )
    op.execute(
        "INSERT INTO manifests (cid, manifest, total_size, shard_count, created_at) "
        "SELECT cid, manifest, total_size, shard_count, created_at FROM packs"
    )
    for table in CONTENT_TABLES:
        _repoint(table, "packs", "manifests", "CASCADE")
    # the listing of a history row: its pack's model (a CID was one model's until now)
    with op.batch_alter_table("pack_state_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_id", sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f("fk_pack_state_history_pack_cid_packs"), type_="foreignkey")
    op.execute(
        "UPDATE pack_state_history SET model_id = "
        "(SELECT packs.model_id FROM packs WHERE packs.cid = pack_state_history.pack_cid)"
    )
    with op.batch_alter_table("pack_state_history", schema=None) as batch_op:
        batch_op.alter_column("model_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("pointers", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_pointers_pack_cid_packs"), type_="foreignkey")

    # Rebuild packs as listings (nothing references it now): keep the rows aside, recreate, copy back.
    op.execute(f"CREATE TABLE packs_0004 AS SELECT {LISTING_COLUMNS} FROM packs")
    op.drop_table("packs")
    op.create_table(
        "packs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cid", sa.String(length=128), nullable=False),
        *_listing_columns(),
        sa.ForeignKeyConstraint(
            ["cid"], ["manifests.cid"], name=op.f("fk_packs_cid_manifests"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packs")),
        sa.UniqueConstraint("model_id", "cid", name=op.f("uq_packs_model_id_cid")),
    )
    with op.batch_alter_table("packs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_packs_cid"), ["cid"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_packs_model_id_created_at"), ["model_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_packs_state_updated_at"), ["state", "updated_at"], unique=False)
    op.execute(
        f"INSERT INTO packs ({LISTING_COLUMNS}) SELECT {LISTING_COLUMNS} FROM packs_0004 ORDER BY created_at, cid"
    )
    op.drop_table("packs_0004")

    with op.batch_alter_table("pack_state_history", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_pack_state_history_model_id_packs"),
            "packs",
            ["model_id", "pack_cid"],
            ["model_id", "cid"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("pointers", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_pointers_model_id_packs"),
            "packs",
            ["model_id", "pack_cid"],
            ["model_id", "cid"],
            ondelete="RESTRICT",
        )


def downgrade() -> None:
    shared = (
        op.get_bind()
        .execute(sa.text("SELECT cid FROM packs GROUP BY cid HAVING COUNT(*) > 1 ORDER BY cid LIMIT 6"))
        .scalars()
        .all()
    )
    if shared:
        shown = ", ".join(shared[:5]) + (" and more" if len(shared) > 5 else "")
        raise RuntimeError(
            f"cannot downgrade below 0004: pack(s) {shown} are listed under several models, which the older "
            "schema cannot hold (a CID was one model's); delete the extra listings first"
        )
    with op.batch_alter_table("pointers", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_pointers_model_id_packs"), type_="foreignkey")
    with op.batch_alter_table("pack_state_history", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_pack_state_history_model_id_packs"), type_="foreignkey")
    for table in CONTENT_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"fk_{table}_pack_cid_manifests"), type_="foreignkey")
        # content no listing holds has no place in the older schema
        op.execute(f"DELETE FROM {table} WHERE pack_cid NOT IN (SELECT cid FROM packs)")

    op.execute(
        "CREATE TABLE packs_0004 AS SELECT p.cid, p.model_id, p.model_version, m.manifest, p.state, "
        "p.state_reason, p.flagged, m.total_size, m.shard_count, p.published_by, p.created_at, p.updated_at "
        "FROM packs p JOIN manifests m ON m.cid = p.cid"
    )
    op.drop_table("packs")
    op.create_table(
        "packs",
        sa.Column("cid", sa.String(length=128), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("total_size", sa.BigInteger(), nullable=False),
        sa.Column("shard_count", sa.Integer(), nullable=False),
        *_listing_columns(),
        sa.CheckConstraint("shard_count >= 1", name=op.f("ck_packs_shard_count_positive")),
        sa.CheckConstraint("total_size >= 0", name=op.f("ck_packs_total_size_nonneg")),
        sa.PrimaryKeyConstraint("cid", name=op.f("pk_packs")),
    )
    with op.batch_alter_table("packs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_packs_model_id_created_at"), ["model_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_packs_state_updated_at"), ["state", "updated_at"], unique=False)
    columns = f"{LISTING_COLUMNS}, manifest, total_size, shard_count"
    op.execute(f"INSERT INTO packs ({columns}) SELECT {columns} FROM packs_0004")
    op.drop_table("packs_0004")
    op.drop_table("manifests")

    for table in CONTENT_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(
                batch_op.f(f"fk_{table}_pack_cid_packs"), "packs", ["pack_cid"], ["cid"], ondelete="CASCADE"
            )
    with op.batch_alter_table("pointers", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_pointers_pack_cid_packs"), "packs", ["pack_cid"], ["cid"], ondelete="RESTRICT"
        )
    with op.batch_alter_table("pack_state_history", schema=None) as batch_op:
        batch_op.drop_column("model_id")
        batch_op.create_foreign_key(
            batch_op.f("fk_pack_state_history_pack_cid_packs"),
            "packs",
            ["pack_cid"],
            ["cid"],
            ondelete="CASCADE",
        )
