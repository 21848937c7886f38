"""Group commit: one task writes the work of many requests in one transaction.

A durable commit costs an fsync; doing one per message caps the accept rate
at the disk's fsync rate (about 1,700 commits/s measured here through async
SQLAlchemy, 4,900 rows/s when batched: performance.md c4 vs c7). Requests
hand their writes to the writer as *units* and wait for the commit that
includes them, so the answer to the sender still comes only after its data
is durable.

Units are synchronous functions of a connection. The writer runs a whole
batch in one go: on SQLite on a plain pysqlite connection, on the event loop
with only BEGIN and COMMIT in its own thread (see ``_execute_sqlite``), on
PostgreSQL through ``run_sync`` on an asyncpg connection.

If a batch fails, each of its units is retried in a transaction of its own,
so one bad unit fails alone and the others still commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import WRITE_OPTION, sync_twin
from storage.payloads import PayloadStore

log = logging.getLogger("mmsc.storage.writer")

T = TypeVar("T")
Unit = Callable[[Connection], Any]


class WriterClosed(RuntimeError):
    """The writer stopped before this unit could be committed."""


class GroupCommitWriter:
    def __init__(
        self, engine: AsyncEngine, *, payloads: PayloadStore | None = None, max_batch: int = 256
    ) -> None:
        self.engine = engine
        self.payloads = payloads
        self.max_batch = max_batch
        self._sync_engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.units = 0

    async def start(self) -> None:
        if self._task is None:
            self._sync_engine = sync_twin(self.engine)
            if self._sync_engine is not None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="mmsc-writer")
            self._task = asyncio.create_task(self._run(), name="group-commit-writer")

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is not None:
            await self._queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
            self._sync_engine = None

    async def submit(
        self, unit: Callable[[Connection], T], *, payload: tuple[str, bytes] | None = None
    ) -> T:
        """Run ``unit`` in a transaction and return its result once that is committed.

        ``payload`` (key, body) is stored durably before the transaction that holds
        the unit, whose rows name it. With a filesystem store the whole batch's
        payloads are written in the writer's thread in one go, right before BEGIN:
        one thread hand-off per batch instead of one per message. If storing it
        fails, the unit is not applied and ``submit`` raises that error.
        """
        if self._task is None or self._task.done():
            raise WriterClosed("the database writer is not running")
        if payload is not None and self.payloads is None:
            raise RuntimeError("this writer has no payload store")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(unit, future, payload))
        return await future

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            item = await self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            await self._commit(batch)
        # Fail whatever arrived after the stop marker: nothing is silently dropped.
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and not item.future.done():
                item.future.set_exception(WriterClosed("the database writer stopped"))

    @staticmethod
    def _apply(conn: Connection, units: list[Unit]) -> list[Any]:
        return [unit(conn) for unit in units]

    def _store_payloads_blocking(self, batch: list[_Item]) -> None:
        """The batch's pending payloads in one call (in a worker thread); a failure is
        kept on its item, whose unit is then left out."""
        pending = [item for item in batch if item.payload is not None]
        if not pending:
            return
        put_many = getattr(self.payloads, "put_many_blocking", None)
        assert put_many is not None
        errors = put_many([item.payload for item in pending])
        for item, error in zip(pending, errors, strict=True):
            item.error = error
            item.payload = None  # stored: a retry of the batch does not repeat it

    async def _store_payloads(self, batch: list[_Item]) -> bool:
        """Store what ``_store_payloads_blocking`` cannot (a store without a blocking
        batch put); True if pending payloads are left for the blocking path."""
        pending = [item for item in batch if item.payload is not None]
        if not pending:
            return False
        if hasattr(self.payloads, "put_many_blocking"):
            return True
        assert self.payloads is not None
        store = self.payloads
        results = await asyncio.gather(
            *(store.put(*item.payload) for item in pending if item.payload is not None),
            return_exceptions=True,
        )
        for item, result in zip(pending, results, strict=True):
            item.error = result if isinstance(result, Exception) else None
            item.payload = None
        return False

    async def _execute(self, batch: list[_Item]) -> list[Any]:
        """Store the batch's payloads, leave out the units whose payload failed, apply
        and commit."""
        loop = asyncio.get_running_loop()
        blocking = await self._store_payloads(batch)
        if self._thread is not None:
            return await self._execute_sqlite(batch)
        if blocking:
            await loop.run_in_executor(None, self._store_payloads_blocking, batch)
        units = [item.unit for item in batch if item.error is None]
        if not units:
            return []
        async with self.engine.connect() as raw:
            conn = await raw.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                results: list[Any] = await conn.run_sync(self._apply, units)
                return results

    def _payloads_and_begin(self, batch: list[_Item], conn: Connection) -> Any:
        self._store_payloads_blocking(batch)
        return conn.begin() if any(item.error is None for item in batch) else None

    async def _execute_sqlite(self, batch: list[_Item]) -> list[Any]:
        """The batch's statements on the event loop, the blocking steps in the writer thread.

        pysqlite releases the GIL around every statement; from a second thread each
        statement then has to win the GIL back from a busy event loop (up to the 5 ms
        switch interval), which made a batch of a few hundred statements take 40-100 ms.
        Run on the loop, the same statements cost a few µs each (storage/fastsql.py).
        What blocks stays in the thread, in two hand-offs per batch: the payload
        files and their fsyncs (storage/durable.py) with BEGIN IMMEDIATE, which waits for the
        write lock if another process holds it; then COMMIT (the fsync, a checkpoint).
        """
        assert self._sync_engine is not None and self._thread is not None
        loop = asyncio.get_running_loop()
        with self._sync_engine.connect() as raw:
            conn = raw.execution_options(**{WRITE_OPTION: True})
            trans = await loop.run_in_executor(self._thread, self._payloads_and_begin, batch, conn)
            if trans is None:
                return []
            try:
                results = self._apply(conn, [item.unit for item in batch if item.error is None])
            except BaseException:
                trans.rollback()
                raise
            await loop.run_in_executor(self._thread, trans.commit)
            return results

    async def _commit(self, batch: list[_Item]) -> None:
        try:
            results = iter(await self._execute(batch))
        except Exception as exc:  # isolate the failing unit below
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            log.warning("batch of %d failed (%s); committing its units one by one", len(batch), exc)
            for item in batch:
                await self._commit([item])
            return
        self.batches += 1
        self.units += len(batch)
        for item in batch:
            if item.future.done():
                if item.error is None:
                    next(results)
                continue
            if item.error is not None:
                item.future.set_exception(item.error)
            else:
                item.future.set_result(next(results))


class _Item:
    """A unit waiting in the writer's queue."""

    __slots__ = ("error", "future", "payload", "unit")

    def __init__(
        self, unit: Unit, future: asyncio.Future[Any], payload: tuple[str, bytes] | None
    ) -> None:
        self.unit = unit
        self.future = future
        self.payload = payload
        self.error: BaseException | None = None
