"""pin_usage: each publisher's live pin count and bytes, kept by triggers on pins (the PSA's quotas in O(1))

The quota check counted and summed the publisher's live pins on every add; that grew with the pins. Triggers
keep the totals in the same transaction as any insert, delete or change of ``deleted_at``/``size``, so every
writer (the API, the replication worker, a later migration) keeps them true. Existing pins are counted here.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ADD = (
    "INSERT INTO pin_usage (publisher_id, pins, bytes) VALUES (NEW.publisher_id, 1, coalesce(NEW.size, 0)) "
    "ON CONFLICT (publisher_id) DO UPDATE SET pins = pin_usage.pins + 1, bytes = pin_usage.bytes + excluded.bytes"
)
# a DELETE of a publisher cascades to its usage row and its pins in either order: only ever UPDATE on removal
_SUB = (
    "UPDATE pin_usage SET pins = pins - 1, bytes = bytes - coalesce(OLD.size, 0) "
    "WHERE publisher_id = OLD.publisher_id"
)
_CHANGED = (
    "OLD.deleted_at IS NOT NEW.deleted_at OR OLD.size IS NOT NEW.size OR OLD.publisher_id <> NEW.publisher_id"
)

SQLITE = [
    f"CREATE TRIGGER pins_usage_insert AFTER INSERT ON pins WHEN NEW.deleted_at IS NULL BEGIN {_ADD}; END",
    f"CREATE TRIGGER pins_usage_delete AFTER DELETE ON pins WHEN OLD.deleted_at IS NULL BEGIN {_SUB}; END",
    "CREATE TRIGGER pins_usage_update AFTER UPDATE OF deleted_at, size, publisher_id ON pins "
    f"WHEN {_CHANGED} BEGIN "
    f"{_SUB} AND OLD.deleted_at IS NULL; "
    # SQLite reads "SELECT ... ON CONFLICT" as an upsert only with a WHERE clause
    "INSERT INTO pin_usage (publisher_id, pins, bytes) "
    "SELECT NEW.publisher_id, 1, coalesce(NEW.size, 0) WHERE NEW.deleted_at IS NULL "
    "ON CONFLICT (publisher_id) DO UPDATE SET pins = pin_usage.pins + 1, bytes = pin_usage.bytes + excluded.bytes; END",
]
POSTGRES = [
    f"""CREATE FUNCTION pin_usage_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NOT ({_CHANGED.replace(" IS NOT ", " IS DISTINCT FROM ")}) THEN
            RETURN NULL;
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        IF OLD.deleted_at IS NULL THEN
            {_SUB};
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF NEW.deleted_at IS NULL THEN
            {_ADD};
        END IF;
    END IF;
    RETURN NULL;
END
$$""",
    "CREATE TRIGGER pins_usage AFTER INSERT OR DELETE OR UPDATE OF deleted_at, size, publisher_id ON pins "
    "FOR EACH ROW EXECUTE FUNCTION pin_usage_track()",
]


def upgrade() -> None:
    op.create_table(
        "pin_usage",
        sa.Column("publisher_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("pins", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publishers.id"],
            name=op.f("fk_pin_usage_publisher_id_publishers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("publisher_id", name=op.f("pk_pin_usage")),
    )
    op.execute(
        "INSERT INTO pin_usage (publisher_id, pins, bytes) "
        "SELECT publisher_id, count(*), coalesce(sum(size), 0) FROM pins WHERE deleted_at IS NULL "
        "GROUP BY publisher_id"
    )
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER pins_usage ON pins")
        op.execute("DROP FUNCTION pin_usage_track()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER pins_usage_{name}")
    op.drop_table("pin_usage")
