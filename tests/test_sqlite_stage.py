"""The SQLite writer's serial stage (storage/sqlite_stage.py) on its own, on a real file.

The writer and worker tests run it under load; these aim at the paths load rarely
takes: a batch whose waiter was cancelled, another process holding SQLite's write
lock or the writers' turn, and a failing batch followed by a good one.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Connection

from storage import db, sqlite_stage
from storage.sqlite_stage import SqliteStage

Unit = Callable[[Connection], Any]


def _insert(value: str) -> Unit:
    def unit(conn: Connection) -> str:
        conn.exec_driver_sql("INSERT INTO t (v) VALUES (?)", (value,))
        return value

    return unit


def _rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as other:
        return [row[0] for row in other.execute("SELECT v FROM t ORDER BY rowid")]


class _Stage:
    """A stage on a file, with what the writer gives it, and flags set in its thread
    when a batch starts to wait there (so a test knows it waits, without sleeping)."""

    def __init__(self, stage: SqliteStage, path: Path, turn_path: Path) -> None:
        self.stage = stage
        self.path = path
        self.turn_path = turn_path
        self.waiting_for_lock = threading.Event()  # SQLite's write lock
        self.waiting_for_turn = threading.Event()  # the writers' turn (flock)


class _WatchedFcntl:
    """storage.sqlite_stage's view of fcntl: a blocking flock sets a flag first."""

    LOCK_EX, LOCK_NB, LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN

    def __init__(self, flag: threading.Event) -> None:
        self._flag = flag

    def flock(self, fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX:
            self._flag.set()
        fcntl.flock(fd, operation)


@asynccontextmanager
async def _stage(path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[_Stage]:
    with sqlite3.connect(path) as setup:  # as storage.db.upgrade leaves a database
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE IF NOT EXISTS t (v TEXT PRIMARY KEY)")
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    twin = db.sync_twin(engine, poll_lock=True, autocheckpoint=False)
    assert twin is not None
    thread = ThreadPoolExecutor(1, thread_name_prefix="test-stage")
    turn_path = Path(f"{path}.writer-turn")
    turn_fd = os.open(turn_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    tickets = iter(range(1, 1_000_000))
    stage = SqliteStage(twin, thread, turn_fd=turn_fd, committed=lambda: next(tickets))
    holder = _Stage(stage, path, turn_path)
    begin_waiting = stage._begin_waiting

    def watched(entry: Any) -> Any:
        holder.waiting_for_lock.set()
        return begin_waiting(entry)

    stage._begin_waiting = watched  # type: ignore[method-assign]
    monkeypatch.setattr(sqlite_stage, "fcntl", _WatchedFcntl(holder.waiting_for_turn))
    try:
        yield holder
    finally:
        stage.close()
        thread.shutdown(wait=True)
        os.close(turn_fd)
        twin.dispose()
        await engine.dispose()


def _on_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: Callable[[_Stage], Awaitable[None]]
) -> Path:
    """Run ``body`` with a stage on a new database file; the file, once the stage is closed."""
    path = tmp_path / "stage.db"

    async def run() -> None:
        async with _stage(path, monkeypatch) as s:
            await body(s)

    asyncio.run(run())
    return path


def test_batches_commit_in_order_with_increasing_tickets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes: list[tuple[list[Any], int]] = []

    async def body(s: _Stage) -> None:
        futures = [s.stage.run([_insert(f"{i}a"), _insert(f"{i}b")]) for i in range(5)]
        outcomes.extend(await asyncio.gather(*futures))

    path = _on_stage(tmp_path, monkeypatch, body)
    assert [results for results, _ticket in outcomes] == [[f"{i}a", f"{i}b"] for i in range(5)]
    tickets = [ticket for _results, ticket in outcomes]
    assert tickets == sorted(tickets) and len(set(tickets)) == 5
    assert _rows(path) == [f"{i}{x}" for i in range(5) for x in "ab"]


def test_a_cancelled_waiter_s_batch_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that gave up before its batch's turn: its statements never run, and
    the batches behind it still commit."""

    async def body(s: _Stage) -> None:
        first = s.stage.run([_insert("first")])  # runs at once: the stage was idle
        gone = s.stage.run([_insert("gone")])
        last = s.stage.run([_insert("last")])
        gone.cancel()
        assert (await first)[0] == ["first"]
        assert (await last)[0] == ["last"]
        assert gone.cancelled()

    path = _on_stage(tmp_path, monkeypatch, body)
    assert _rows(path) == ["first", "last"]


def test_a_failing_batch_fails_alone_and_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(s: _Stage) -> None:
        bad = s.stage.run([_insert("kept-out"), _insert("dup"), _insert("dup")])
        good = s.stage.run([_insert("after")])
        with pytest.raises(Exception, match="UNIQUE"):
            await bad
        assert (await good)[0] == ["after"]

    path = _on_stage(tmp_path, monkeypatch, body)
    assert _rows(path) == ["after"]


def test_waits_for_another_process_s_write_lock_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection holds SQLite's write lock: the batch waits for it in the
    thread, on a connection of its own, while the event loop keeps running."""

    async def body(s: _Stage) -> None:
        other = sqlite3.connect(s.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (v) VALUES ('other')")
        try:
            waiting = s.stage.run([_insert("mine")])
            await asyncio.to_thread(s.waiting_for_lock.wait, 10)
            assert s.waiting_for_lock.is_set()
            assert not waiting.done()
            other.execute("COMMIT")
        finally:
            other.close()
        assert (await waiting)[0] == ["mine"]
        # The next batch gets the writer's own connection back.
        assert (await s.stage.run([_insert("next")]))[0] == ["next"]

    path = _on_stage(tmp_path, monkeypatch, body)
    assert _rows(path) == ["other", "mine", "next"]


def test_waits_for_another_writer_s_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker process holds the writers' turn (an flock): the batch waits
    for it in the thread, then commits; the turn is given back after the COMMIT."""

    async def body(s: _Stage) -> None:
        other = os.open(s.turn_path, os.O_RDWR)  # its own open file: its own flock
        try:
            fcntl.flock(other, fcntl.LOCK_EX)
            waiting = s.stage.run([_insert("mine")])
            await asyncio.to_thread(s.waiting_for_turn.wait, 10)
            assert s.waiting_for_turn.is_set()
            assert not waiting.done()
            assert _rows(s.path) == []
            fcntl.flock(other, fcntl.LOCK_UN)
            assert (await waiting)[0] == ["mine"]
            # Given back: the other process can take it without waiting.
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(other, fcntl.LOCK_UN)
        finally:
            os.close(other)

    path = _on_stage(tmp_path, monkeypatch, body)
    assert _rows(path) == ["mine"]
