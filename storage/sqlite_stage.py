"""The SQLite writer's serial stage: one batch at a time on the one write connection.

SQLite has one writer, so a batch's BEGIN, statements and COMMIT are the part of
the group-commit writer (storage/writer.py) that cannot overlap anything of the
same kind: its length per batch caps the accept rate. The statements run on the
event loop (see ``_statements``); waiting for the write lock and the COMMIT run in
the writer thread.

Callbacks rather than a coroutine behind an ``asyncio.Lock``: a coroutine that
awaits the writer thread resumes two passes of the event loop after the thread
is done (one pass sets the future's result, the next runs the task), and handing
the lock to the next batch's coroutine costs a third. Under load a pass of the
loop takes about a millisecond, which was half of the stage's length per batch
(bench/README.md, session 7). Here the callback that sees a COMMIT done starts the
next batch's statements in the same pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Connection, Engine, RootTransaction
from sqlalchemy.exc import OperationalError

from storage.db import LOCK_WAIT_OPTION, WRITE_OPTION

Unit = Callable[[Connection], Any]
Outcome = tuple[list[Any], int]  # the units' results, and the ticket from ``committed``


def apply_units(conn: Connection, units: list[Unit]) -> list[Any]:
    """A batch's statements: every unit on one connection, in one transaction."""
    return [unit(conn) for unit in units]


class _Entry:
    __slots__ = ("future", "spare", "turn", "units")

    def __init__(self, units: list[Unit], future: asyncio.Future[Outcome]) -> None:
        self.units = units
        self.future = future
        self.turn = False  # holds the writers' turn (see _take_turn)
        self.spare: Connection | None = None  # a connection of its own (see _begin)


class SqliteStage:
    def __init__(
        self,
        engine: Engine,
        thread: ThreadPoolExecutor,
        *,
        turn_fd: int | None,
        committed: Callable[[], int],
    ) -> None:
        """``engine``: the writer's synchronous twin (storage.db.sync_twin with
        ``poll_lock``); ``thread``: the one thread that may block on the database;
        ``turn_fd``: the ``<database>.writer-turn`` file shared with the other
        processes writing the same file (``[server] workers``), or None;
        ``committed``: called in the thread right after each COMMIT, its result
        returned with the batch's (the writer's syncfs ticket)."""
        self._engine = engine
        self._thread = thread
        self._turn_fd = turn_fd
        self._committed = committed
        self._queue: deque[_Entry] = deque()
        self._busy = False
        self._conn: Connection | None = None  # see _own_connection

    def run(self, units: list[Unit]) -> asyncio.Future[Outcome]:
        """Run ``units`` in one transaction after the batches before them; the future
        is the units' results once the COMMIT has returned."""
        loop = asyncio.get_running_loop()
        entry = _Entry(units, loop.create_future())
        self._queue.append(entry)
        if not self._busy:
            self._next()
        return entry.future

    def close(self) -> None:
        """Called when no batch is in flight."""
        self._drop_connection()

    # -- the steps, each on the event loop -------------------------------------------

    def _next(self) -> None:
        while self._queue:
            entry = self._queue.popleft()
            if entry.future.done():  # its waiter was cancelled
                continue
            self._busy = True
            self._take_turn(entry)
            return
        self._busy = False

    def _take_turn(self, entry: _Entry) -> None:
        """Queue with the other writers on this database file for the right to write.

        SQLite's write lock is not fair: a writer polling for it can lose to another
        process that takes it back within microseconds, batch after batch (p99 near
        1 s with two workers). An exclusive flock on ``<database>.writer-turn`` puts
        the waiter to sleep in the kernel, which hands it the lock when the holder
        lets go. Uncontended it costs one system call, made here without waiting;
        the turn is given back right after the COMMIT, in the thread."""
        fd = self._turn_fd
        if fd is None:
            self._begin(entry)
            return
        entry.turn = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._in_thread(entry, fcntl.flock, (fd, fcntl.LOCK_EX), self._turn_taken)
            return
        self._begin(entry)

    def _turn_taken(self, entry: _Entry, _result: object) -> None:
        self._begin(entry)

    def _begin(self, entry: _Entry) -> None:
        """BEGIN IMMEDIATE on the writer's own connection without waiting; if another
        connection (another process) holds the write lock, a connection of the batch's
        own waits for it in the thread, so the loop never blocks on it."""
        try:
            conn = self._own_connection()
            trans = self._begin_now(conn)
        except Exception as exc:
            self._fail(entry, exc)
            return
        if trans is not None:
            self._statements(entry, conn, trans)
            return
        self._conn = None  # invalidated by _begin_now
        self._in_thread(entry, self._begin_waiting, (entry,), self._begun)

    def _begin_waiting(self, entry: _Entry) -> tuple[Connection, RootTransaction]:
        conn = entry.spare = self._engine.connect()
        conn.execution_options(**{WRITE_OPTION: True})
        return conn, conn.begin()

    def _begun(self, entry: _Entry, begun: tuple[Connection, RootTransaction]) -> None:
        self._statements(entry, *begun)

    def _statements(self, entry: _Entry, conn: Connection, trans: RootTransaction) -> None:
        """The batch's statements, on the event loop.

        pysqlite releases the GIL around every statement; from a second thread each
        statement then has to win the GIL back from a busy event loop (up to the
        switch interval), which made a batch of a few hundred statements take
        40-100 ms. Run on the loop, the same statements cost a few µs each
        (storage/fastsql.py)."""
        try:
            results = apply_units(conn, entry.units)
        except Exception as exc:
            with contextlib.suppress(Exception):
                trans.rollback()
            self._fail(entry, exc)
            return
        self._in_thread(entry, self._commit, (entry, trans), self._done, results)

    def _commit(self, entry: _Entry, trans: RootTransaction) -> int:
        """In the thread: COMMIT, then give the next writer its turn at once (giving it
        back after a trip through the busy event loop kept the others waiting)."""
        try:
            trans.commit()
            return self._committed()
        finally:
            self._release(entry)

    def _done(self, entry: _Entry, ticket: int, results: list[Any]) -> None:
        if not entry.future.done():
            entry.future.set_result((results, ticket))
        self._next()

    def _fail(self, entry: _Entry, exc: BaseException) -> None:
        self._drop_connection()  # a failed batch: the next one starts afresh
        with contextlib.suppress(Exception):  # already failing: keep the first error
            self._release(entry)
        if not entry.future.done():
            entry.future.set_exception(exc)
        self._next()

    # -- helpers ---------------------------------------------------------------------

    def _in_thread(
        self,
        entry: _Entry,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        then: Callable[..., None],
        *extra: Any,
    ) -> None:
        """Run ``function(*args)`` in the writer thread, then ``then(entry, result,
        *extra)`` on the loop, or fail the entry with what it raised."""
        loop = asyncio.get_running_loop()

        def finished(future: Future[Any]) -> None:
            exc = future.exception()
            if exc is not None:
                self._fail(entry, exc)
            else:
                then(entry, future.result(), *extra)

        def back_on_loop(future: Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(finished, future)

        self._thread.submit(function, *args).add_done_callback(back_on_loop)

    def _release(self, entry: _Entry) -> None:
        """Give the writers' turn back and close the batch's own connection, if any."""
        if entry.turn and self._turn_fd is not None:
            entry.turn = False
            fcntl.flock(self._turn_fd, fcntl.LOCK_UN)
        if entry.spare is not None:
            spare, entry.spare = entry.spare, None
            spare.close()

    def _own_connection(self) -> Connection:
        """The writer's connection, kept from batch to batch: checking one out of the pool
        and back in (with its reset) for every batch was 2-3% of the event loop's time."""
        if self._conn is None:
            self._conn = self._engine.connect()
            self._conn.execution_options(**{WRITE_OPTION: True, LOCK_WAIT_OPTION: False})
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    @staticmethod
    def _begin_now(conn: Connection) -> RootTransaction | None:
        """BEGIN IMMEDIATE without waiting; None (and the connection discarded) if another
        connection holds the write lock."""
        try:
            return conn.begin()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            conn.invalidate()
            return None
