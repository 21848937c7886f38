"""SQLite WAL checkpoints in a thread of their own, off the group-commit writer's path.

By default SQLite checkpoints inside the COMMIT that takes the log past 1,000
pages: that COMMIT copies the log into the database file and, with
``synchronous=FULL``, fsyncs both before it returns. Under load that was about
once a second, and every request waiting for that batch waited for it: the
p99 of the accept benchmark (bench/README.md, session 6). The writer's
connections therefore run with ``wal_autocheckpoint=0`` and this thread
checkpoints instead: PASSIVE checkpoints (https://sqlite.org/c3ref/wal_checkpoint_v2.html)
take no lock that a writer or reader waits for, so commits go on meanwhile.
Durability does not change: every commit is still fsynced in the log, and a
checkpoint only moves committed pages into the database file.

A checkpoint runs when a commit wakes the thread and at least ``interval``
seconds passed since the previous one, so under load the log holds about
``interval`` seconds of writes, and a quiet database is checkpointed right
after its last commit.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

log = logging.getLogger("mmsc.storage.checkpoint")


class Checkpointer:
    def __init__(self, database: str, *, interval: float = 0.25) -> None:
        self.database = database
        self.interval = interval
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mmsc-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """A commit added to the log (called from any thread; costs a flag)."""
        self._wake.set()

    def close(self) -> None:
        """Stop after a last checkpoint of what is in the log."""
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(self.database, timeout=0, check_same_thread=False)
        # A checkpoint syncs the log before copying it and the database file before the
        # log may be reused, as this connection's level says: FULL whatever the file's
        # level, since the writer may commit unsynced (storage/writer.py _log_sync_mode).
        conn.execute("PRAGMA synchronous=FULL")
        try:
            last = 0.0
            while True:
                self._wake.wait()
                pause = last + self.interval - time.monotonic()
                if pause > 0 and not self._stop:
                    time.sleep(pause)  # let the commits of an interval gather
                self._wake.clear()
                self._checkpoint(conn)
                last = time.monotonic()
                if self._stop:  # set before the wake-up that close() sends
                    return
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # e.g. another process's checkpoint: the next one will do
            log.debug("checkpoint skipped: %s", exc)
