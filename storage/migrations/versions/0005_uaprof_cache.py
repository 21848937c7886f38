"""UAProf documents fetched, shared by every node and kept across restarts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uaprof_profiles",
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("fetched_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("url", name=op.f("pk_uaprof_profiles")),
    )


def downgrade() -> None:
    op.drop_table("uaprof_profiles")
