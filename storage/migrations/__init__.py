"""Alembic migrations of the mmsc schema (run by storage.db.upgrade at start-up)."""
