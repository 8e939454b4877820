"""models: an index on the case-folded name compared bytewise, for the model list's name-prefix search

``GET /v1/models?prefix=`` filtered every model with ``lower(name) LIKE 'p%'`` and sorted the matches: at 100k
models a page cost a scan. The search now also bounds ``lower(name)`` (bytewise: ``COLLATE "C"`` on Postgres,
SQLite's default) to the prefix's range, which this index serves whatever plan a prepared statement gets.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    key = '(lower(name) COLLATE "C")' if postgres else "lower(name)"
    op.create_index("ix_models_name_bytes", "models", [sa.text(key)])


def downgrade() -> None:
    op.drop_index("ix_models_name_bytes", table_name="models")
