"""Alembic environment: always run with a connection handed in by storage.db.upgrade."""

from __future__ import annotations

from alembic import context

from storage.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only storage.db drives migrations
    raise RuntimeError("mmsc migrations run through storage.db.upgrade(), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
