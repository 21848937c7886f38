"""Indexes for the expiry sweep and the queue-depth counts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_expires_at", "messages", ["expires_at"])
    op.create_index("ix_recipients_state", "recipients", ["state"])


def downgrade() -> None:
    op.drop_index("ix_recipients_state", table_name="recipients")
    op.drop_index("ix_messages_expires_at", table_name="messages")
