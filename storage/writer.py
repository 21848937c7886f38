"""Group commit: one task writes the work of many requests in one transaction.

A durable commit costs an fsync; doing one per message caps the accept rate
at the disk's fsync rate (about 1,700 commits/s measured here through async
SQLAlchemy, 4,900 rows/s when batched: performance.md c4 vs c7). Requests
hand their writes to the writer as *units* and wait for the commit that
includes them, so the answer to the sender still comes only after its data
is durable.

Units are synchronous functions of a connection. The writer runs a whole
batch in one go: on SQLite on a plain pysqlite connection, one batch at a time
(storage/sqlite_stage.py) while the next ones run their barriers and the ones
before wait for their log sync; on PostgreSQL through ``run_sync`` on an
asyncpg connection, with up to ``concurrency`` batches in flight in
transactions of their own.

If a batch fails, each of its units is retried in a transaction of its own,
so one bad unit fails alone and the others still commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import durable
from storage.checkpoint import Checkpointer
from storage.db import WRITE_OPTION, sqlite_synchronous, sync_twin
from storage.sqlite_stage import SqliteStage, apply_units

log = logging.getLogger("mmsc.storage.writer")

T = TypeVar("T")
Unit = Callable[[Connection], Any]
# Runs in a thread of its own from the moment the batch is gathered, while the batch
# waits for the database and runs its statements; its COMMIT waits for it, and it raises
# to fail the batch (e.g. StagedPayload.make_durable: the files the new rows name).
Barrier = Callable[[], None]
# The unit, its waiter, its barrier, and when it was submitted (the loop's clock).
Item = tuple[Unit, "asyncio.Future[Any]", Barrier | None, float]
# Called once per committed batch with its unit count and the seconds each stage took:
# "queue" (the mean unit's wait before its batch was gathered), "barrier" (only for a
# batch with barriers: after the gathering, until its payload files were durable),
# "transaction" (then until its COMMIT returned: waiting for the batches before it,
# BEGIN, statements, COMMIT), "log_sync" (SQLite: the syncfs round that makes the
# COMMIT durable). What an operator reads to tell why accepts wait
# (mmsc_commit_stage_seconds).
BatchObserver = Callable[[int, dict[str, float]], None]


class WriterClosed(RuntimeError):
    """The writer stopped before this unit could be committed."""


class CommitUncertain(RuntimeError):
    """The batch's COMMIT was sent, but whether it is durable is unknown: the log sync
    after it failed (SQLite), or the COMMIT itself did not come back (PostgreSQL).

    Its units are not run again, as a failure before the COMMIT would be: they may
    well be committed, and running them twice would store twice (or, for an accept,
    delete the body of a message whose rows exist). The caller answers as for a
    transient failure and keeps what the units may have committed."""


class GroupCommitWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 256,
        concurrency: int = 2,
        log_sync: bool = True,
    ) -> None:
        """``concurrency``: batches in flight at once, each in its own transaction, on
        PostgreSQL (SQLite has one writer): there a batch spends most of its time waiting
        for round trips, and a second one in flight carried 31% more accepts (356 ->
        467/s, bench/README.md). Units must then not depend on the commit order of
        other units (none does: each reads what it changes under row locks). On
        SQLite two batches are in flight: one in its transaction, the next one
        running its barriers and waiting for the first one's COMMIT.

        ``log_sync``: on SQLite with ``synchronous=FULL``, sync the log with syncfs(2)
        rounds instead of an fsync inside each COMMIT (see ``_log_sync_mode``)."""
        if concurrency < 1:
            raise ValueError("the writer's concurrency must be at least 1")
        self.engine = engine
        self.max_batch = max_batch
        self.concurrency = concurrency
        self._in_flight: set[asyncio.Task[None]] = set()
        self._sync_engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._barrier_thread: ThreadPoolExecutor | None = None  # see _start_barriers
        self._stage: SqliteStage | None = None
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._turn_fd: int | None = None  # see SqliteStage._take_turn
        self._checkpointer: Checkpointer | None = None
        self._log_rounds: durable.SyncRounds | None = None  # SQLite: see _log_sync_mode
        self._log_thread: ThreadPoolExecutor | None = None
        self._log_sync_wanted = log_sync
        self.batches = 0
        self.units = 0
        self.on_batch: BatchObserver | None = None

    async def start(self) -> None:
        if self._task is None:
            self._log_rounds = self._log_sync_mode()
            self._sync_engine = sync_twin(
                self.engine,
                poll_lock=True,
                autocheckpoint=False,
                synchronous="OFF" if self._log_rounds is not None else None,
            )
            if self._sync_engine is not None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="mmsc-writer")
                # A batch in its transaction, the next ones running their barriers and
                # those before waiting for their log sync (measured: 3 -> 4 carried
                # about 10% more, bench/README.md session 7).
                self.concurrency = 4
                database = self._sync_engine.url.database
                if database and database != ":memory:":
                    path = f"{database}.writer-turn"
                    self._turn_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    self._checkpointer = Checkpointer(database)
                    self._checkpointer.start()
                self._stage = SqliteStage(
                    self._sync_engine,
                    self._thread,
                    turn_fd=self._turn_fd,
                    committed=self._committed,
                )
            self._task = asyncio.create_task(self._run(), name="group-commit-writer")

    def _log_sync_mode(self) -> durable.SyncRounds | None:
        """The syncfs rounds that make this writer's commits durable, or None when each
        COMMIT fsyncs its log itself (SQLite's own ``synchronous`` at work).

        With ``synchronous=FULL`` a COMMIT fsyncs the log while the write lock is held,
        and the next batch waits for that: the serial stage was statements, barrier,
        then COMMIT with its fsync (bench/README.md, session 7). Instead the writer's
        connection commits with ``synchronous=OFF`` (the log is only handed to the
        kernel) and the batch's requests are answered after a syncfs(2) of the
        database's filesystem that started after the COMMIT: one syncfs covers several
        batches, and the one that makes the next batch's payload files durable (when
        on the same filesystem) also covers this batch's log. What stays true:

        - a request is answered only when its rows are durable;
        - a row is never durable before the payload files it names: a batch's COMMIT
          still waits for its barriers;
        - the log is append-only with checksummed frames, so a crash loses at most
          the unsynced tail, never an earlier commit; the checkpointer (its own
          connection, synchronous=FULL) syncs the log before copying it into the
          database file and that file before the log may be reused
          (https://sqlite.org/wal.html).

        Other connections may read a committed row before it is durable. What they
        do with it waits for a commit of their own, and that one is answered after a
        syncfs that covers this one.
        """
        database = self.engine.url.database
        if (
            self.engine.dialect.name != "sqlite"
            or not database
            or database == ":memory:"
            or sqlite_synchronous(self.engine) not in ("FULL", "EXTRA")
            or not durable.HAS_SYNCFS
            or not self._log_sync_wanted
        ):
            return None
        return durable.rounds_for(os.path.dirname(os.path.abspath(database)))

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is not None:
            await self._queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._stage is not None:
            self._stage.close()
            self._stage = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        for executor in (self._barrier_thread, self._log_thread):
            if executor is not None:
                executor.shutdown(wait=True)
        self._barrier_thread = self._log_thread = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
            self._sync_engine = None
        if self._turn_fd is not None:
            os.close(self._turn_fd)
            self._turn_fd = None
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    async def submit(self, unit: Callable[[Connection], T], barrier: Barrier | None = None) -> T:
        """Run ``unit`` in a transaction and return its result once that is committed.

        ``barrier``, if given, runs in a worker thread and that COMMIT waits for it;
        if it raises, the unit fails with its exception and nothing of it is
        committed."""
        if self._task is None or self._task.done():
            raise WriterClosed("the database writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        await self._queue.put((unit, future, barrier, loop.time()))
        return await future

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            await self._wait_for_slot()
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
            gathered = asyncio.get_running_loop().time()
            task = asyncio.create_task(self._commit(batch, self._start_barriers(batch), gathered))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        # Fail whatever arrived after the stop marker: nothing is silently dropped.
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and not item[1].done():
                item[1].set_exception(WriterClosed("the database writer stopped"))

    async def _wait_for_slot(self) -> None:
        """Wait until fewer than ``concurrency`` batches are in flight, *then* gather the
        next one: what arrives meanwhile joins it rather than the batch after."""
        while len(self._in_flight) >= self.concurrency:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    def _start_barriers(self, batch: list[Item]) -> Future[None] | None:
        """Start the batch's barriers (the payloads' flush and syncfs) now, in a thread of
        their own: they need no database, so they run while the batches before this
        one hold the database (bench/README.md, session 6: the writer's cycle was
        statements + flush + COMMIT end to end). The batch enters the serial stage
        only once they are done (session 7: waiting for them there made the stage
        twice as long)."""
        barriers = [barrier for _unit, _future, barrier, _at in batch if barrier is not None]
        if not barriers:
            return None
        if self._barrier_thread is None:
            self._barrier_thread = ThreadPoolExecutor(1, thread_name_prefix="mmsc-barriers")
        return self._barrier_thread.submit(self._run_barriers, barriers)

    @staticmethod
    def _run_barriers(barriers: list[Barrier]) -> None:
        for barrier in barriers:
            barrier()

    def _committed(self) -> int:
        """Right after each SQLite COMMIT, in the writer thread: the syncfs ticket that
        covers it (see ``_log_sync_mode``), and the checkpointer woken."""
        ticket = self._log_rounds.ticket() if self._log_rounds is not None else 0
        if self._checkpointer is not None:
            self._checkpointer.committed()
        return ticket

    async def _execute(
        self, units: list[Unit], barriers: Future[None] | None, stages: dict[str, float]
    ) -> list[Any]:
        """Commit ``units``; ``stages`` gets the seconds of each stage (BatchObserver)."""
        loop = asyncio.get_running_loop()
        mark = loop.time()
        if self._stage is not None:
            if barriers is not None:  # the files durable before the rows that name them
                await asyncio.wrap_future(barriers)
                now = loop.time()
                stages["barrier"], mark = now - mark, now
            results, ticket = await self._stage.run(units)
            now = loop.time()
            stages["transaction"], mark = now - mark, now
            if self._log_rounds is not None:  # the stage goes on with the next batch
                if self._log_thread is None:
                    self._log_thread = ThreadPoolExecutor(1, thread_name_prefix="mmsc-log-sync")
                try:
                    await loop.run_in_executor(
                        self._log_thread, self._log_rounds.sync_after, ticket
                    )
                except Exception as exc:
                    raise CommitUncertain(f"the log sync after COMMIT failed: {exc}") from exc
                stages["log_sync"] = loop.time() - mark
            return results
        async with self.engine.connect() as raw:
            conn = await raw.execution_options(**{WRITE_OPTION: True})
            trans = await conn.begin()
            try:
                done: list[Any] = await conn.run_sync(apply_units, units)
                if barriers is not None:  # waited for inside the transaction, before COMMIT
                    waited = loop.time()
                    await asyncio.wrap_future(barriers)
                    stages["barrier"] = loop.time() - waited
            except BaseException:
                await trans.rollback()
                raise
            try:
                await trans.commit()
            except Exception as exc:  # the server may have committed before the link broke
                raise CommitUncertain(f"COMMIT did not complete: {exc}") from exc
        stages["transaction"] = loop.time() - mark - stages.get("barrier", 0.0)
        return done

    async def _commit(
        self, batch: list[Item], barriers: Future[None] | None, gathered: float
    ) -> None:
        stages = {"queue": gathered - sum(at for *_rest, at in batch) / len(batch)}
        try:
            results = await self._execute(
                [unit for unit, _future, _barrier, _at in batch], barriers, stages
            )
        except CommitUncertain as exc:  # never run again what may be committed
            log.error("batch of %d: %s", len(batch), exc)
            for _unit, future, _barrier, _at in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception as exc:  # isolate the failing unit below
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            log.warning("batch of %d failed (%s); committing its units one by one", len(batch), exc)
            for item in batch:
                await self._commit([item], self._start_barriers([item]), gathered)
            return
        self.batches += 1
        self.units += len(batch)
        for (_unit, future, _barrier, _at), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        if self.on_batch is not None:
            try:
                self.on_batch(len(batch), stages)
            except Exception:  # an observer's bug must not look like a failed commit
                log.exception("the batch observer failed")
