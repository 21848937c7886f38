"""Small message bodies in the database, larger ones in a file store, behind one PayloadStore.

Why: a body kept as a file of its own costs a file's creation, a write, a rename
and directory updates, and a syncfs before the COMMIT that names it. On the
machines this project is measured on that is 160 µs of kernel CPU per 31 KB
file with its shard directories cached and over 1 ms when the kernel has
evicted them (bench/README.md, session 5), against about 100 µs for the same
body written as a BLOB in the group commit's transaction (one sequential
append to the WAL, made durable by the commit's own fsync, no second flush).
A body in the database also needs no filesystem shared between the nodes of a
PostgreSQL cluster. Bodies larger than ``max_size`` (and everything written
with :meth:`put`: adapted variants, replaced content) stay in the file store,
where big objects belong.

The rows are written by the caller's own unit (:meth:`inline_unit`), so a body
is durable exactly when the message row that names it is, and a refused
message rolls both back. Reads go through the lookups the server already uses
(on SQLite a point lookup on the event loop, tens of µs).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.engine import Connection

from storage.fastsql import FastStatement
from storage.models import payload_blobs
from storage.payloads import PayloadStore, StagedPayload, validate_key

# Off by default: the contract is a filesystem payload store by default, and
# an operator opts in ([storage] inline_payload_max = bytes).
INLINE_PAYLOAD_MAX = 0

Reader = Callable[..., Awaitable[Any]]  # Mmsc.read: fn(conn, *args) on a read connection
Writer = Callable[[Callable[[Connection], Any]], Awaitable[Any]]  # Mmsc.write

_INSERT_BLOB = FastStatement(insert(payload_blobs), ("key", "data"))


# Built once (a retrieval reads a body per cache miss); ``exists`` reads the key only.
_SELECT_BLOB = select(payload_blobs.c.data).where(payload_blobs.c.key == bindparam("key"))
_SELECT_KEY = select(payload_blobs.c.key).where(payload_blobs.c.key == bindparam("key"))
_DELETE_BLOB = delete(payload_blobs).where(payload_blobs.c.key == bindparam("key"))


def _get_blob(conn: Connection, key: str) -> bytes | None:
    data = conn.execute(_SELECT_BLOB, {"key": key}).scalar_one_or_none()
    return None if data is None else bytes(data)


def _has_blob(conn: Connection, key: str) -> bool:
    return conn.execute(_SELECT_KEY, {"key": key}).first() is not None


def _blob_keys(conn: Connection) -> list[str]:
    return list(conn.execute(select(payload_blobs.c.key)).scalars())


def _delete_blob(conn: Connection, key: str) -> tuple[bool, list[Any]]:
    removed = conn.execute(_DELETE_BLOB, {"key": key}).rowcount
    return bool(removed), []


class InlinePayloadStore:
    """A :class:`PayloadStore`: bodies up to ``max_size`` bytes in the ``payload_blobs``
    table, written by the accept unit; the rest, and every :meth:`put`, in ``files``."""

    def __init__(self, files: PayloadStore, max_size: int) -> None:
        if max_size < 0:
            raise ValueError("inline_payload_max must be >= 0")
        self.files = files
        self.max_size = max_size
        self._read: Reader | None = None
        self._write: Writer | None = None
        self._scan: Reader | None = None

    def bind(self, read: Reader, write: Writer, scan: Reader | None = None) -> None:
        """The server's lookups, group-commit writer and, for reads of the whole table,
        a reader off the event loop (they need the core, which needs this store: bound
        once both exist)."""
        self._read, self._write, self._scan = read, write, scan

    def inline_unit(
        self, key: str, data: bytes | memoryview
    ) -> Callable[[Connection], None] | None:
        """A function for the caller's unit that stores ``data`` under ``key`` in its
        transaction; None when the body is too big for the database (stage or put it)."""
        if len(data) > self.max_size:
            return None
        validate_key(key)
        blob = data if isinstance(data, bytes) else bytes(data)

        def store(conn: Connection) -> None:
            _INSERT_BLOB.execute(conn, {"key": key, "data": blob})

        return store

    def stage(self, key: str, data: bytes | memoryview) -> StagedPayload | None:
        return self.files.stage(key, data)

    async def put(self, key: str, data: bytes | memoryview) -> int:
        return await self.files.put(key, data)

    async def get(self, key: str) -> bytes:
        validate_key(key)
        blob = await self._reader()(_get_blob, key)
        if blob is not None:
            return blob  # type: ignore[no-any-return]
        return await self.files.get(key)

    async def delete(self, key: str) -> bool:
        validate_key(key)
        assert self._write is not None, "InlinePayloadStore used before bind()"
        removed = bool(await self._write(lambda conn: _delete_blob(conn, key)))
        return await self.files.delete(key) or removed

    async def exists(self, key: str) -> bool:
        validate_key(key)
        if await self._reader()(_has_blob, key):
            return True
        return await self.files.exists(key)

    async def stale_keys(self, older_than_seconds: float) -> list[str]:
        """The files' stale keys, and every body kept in the database: those are written
        in their message's own transaction, so whatever age one has, a body no message
        names is left over from a delete that did not happen."""
        files = await self.files.stale_keys(older_than_seconds)
        return [*files, *await (self._scan or self._reader())(_blob_keys)]

    async def close(self) -> None:
        await self.files.close()

    def _reader(self) -> Reader:
        assert self._read is not None, "InlinePayloadStore used before bind()"
        return self._read


__all__ = ["INLINE_PAYLOAD_MAX", "InlinePayloadStore"]
