"""outbox.kind wide enough for "mm7-delivery-report" (19 characters).

It was String(16): SQLite ignores the length, PostgreSQL refused the row, so on
PostgreSQL a VASP message that asked for a delivery report could be neither
confirmed nor expired, and its failing row stopped every later expiry sweep.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite does not enforce the length, but the schema should say what the models
    # say: there batch mode copies the table once (the outbox holds pushes for
    # [storage] keep_pushes, so this is bounded).
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "kind",
            existing_type=sa.String(length=16),
            type_=sa.String(length=32),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "kind",
            existing_type=sa.String(length=32),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
