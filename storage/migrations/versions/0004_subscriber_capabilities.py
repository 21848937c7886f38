"""Per-subscriber capability overrides for content adaptation.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("capabilities", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("subscribers", "capabilities")
