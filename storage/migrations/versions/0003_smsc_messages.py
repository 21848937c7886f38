"""SMSC message ids of submitted pushes, for matching delivery receipts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "smsc_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("smsc_id", sa.String(length=65), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=True),
        sa.Column("recipient_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smsc_messages")),
    )
    op.create_index(op.f("ix_smsc_messages_smsc_id"), "smsc_messages", ["smsc_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_smsc_messages_smsc_id"), table_name="smsc_messages")
    op.drop_table("smsc_messages")
