"""A throw-away PostgreSQL database per test, on the server at 127.0.0.1:5432.

scripts/test-deps.sh makes sure that server runs; MMSC_TEST_PG overrides where
it is (an asyncpg URL of a database we may CREATE DATABASE from).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

ADMIN_URL = os.environ.get("MMSC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def temp_database() -> Iterator[str]:
    """Create a database, yield its SQLAlchemy URL, drop it (with its connections) after."""
    name = f"mmsc_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
