"""names as the Hugging Face Hub has them: namespaces and models keep their case, unique case-blind

Unique indexes on ``lower(name)`` (namespaces) and ``(namespace_id, lower(name))`` (models); every lookup by name
goes through them (registry.db.naming). Existing rows carry over as they are: names were lowercase until now,
so no two can collide (the upgrade refuses with the clashing names if some do).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _refuse_clashes() -> None:
    bind = op.get_bind()
    for table, key in (("namespaces", "lower(name)"), ("models", "namespace_id, lower(name)")):
        rows = bind.execute(
            sa.text(f"SELECT {key}, count(*) FROM {table} GROUP BY {key} HAVING count(*) > 1 LIMIT 5")
        ).all()
        if rows:
            raise RuntimeError(
                f"{table} has names that differ only in case ({[tuple(r) for r in rows]}); rename them first"
            )


def upgrade() -> None:
    _refuse_clashes()
    op.create_index("uq_namespaces_name_key", "namespaces", [sa.text("lower(name)")], unique=True)
    op.create_index(
        "uq_models_name_key", "models", [sa.text("namespace_id"), sa.text("lower(name)")], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_models_name_key", table_name="models")
    op.drop_index("uq_namespaces_name_key", table_name="namespaces")
