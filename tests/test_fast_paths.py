"""The shortcuts of the hot paths keep the semantics of the slow ones they replace.

- storage/fastsql.py stores exactly what ``Connection.execute`` would (JSON, Boolean,
  NULL, floats), on both engines.
- The SQLite writer waits for another process's write lock off the event loop.
- Mmsc.read falls back to the thread path when the on-loop lookup finds SQLite busy.
- Batched payload puts are each durable and readable, and close() waits for them.
- protocol.mms.encode_notification writes what protocol.mms.encode writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from mmsc.core import Mmsc
from protocol import mms
from protocol.errors import EncodeError
from storage import repository as repo
from storage.fastsql import FastStatement
from storage.models import subscribers
from storage.payloads import FilesystemPayloadStore, InMemoryPayloadStore
from storage.writer import GroupCommitWriter
from tests import strategies
from tests.test_storage import POLICY, open_db, run

ROWS: list[dict[str, Any]] = [
    {
        "address": "+15550000001",
        "user_agent": "Phone/1.0",
        "uaprof_url": None,
        "mms_version": "1.2",
        "capabilities": {"max_message_size": 102400, "accept": ["image/jpeg"], "smil": True},
        "last_seen": 1700000000.25,
    },
    {
        "address": "+15550000002",
        "user_agent": None,
        "uaprof_url": "http://x/p.rdf",
        "mms_version": None,
        "capabilities": None,
        "last_seen": 1700000001.5,
    },
]


def test_fast_statement_stores_what_sqlalchemy_would(db_url: str) -> None:
    columns = tuple(ROWS[0])
    fast = FastStatement(insert(subscribers), columns)

    def write(conn: Connection) -> tuple[None, list[repo.Event]]:
        fast.executemany(conn, [ROWS[0]])
        fast.execute(conn, ROWS[1]).close()
        # The same rows as objects whose attributes are the columns (dataclass rows).
        as_objects = [SimpleNamespace(**{**r, "address": r["address"] + "8"}) for r in ROWS]
        fast.executemany_objects(conn, as_objects[:1])
        fast.execute_object(conn, as_objects[1]).close()
        return None, []

    def write_slow(conn: Connection) -> tuple[None, list[repo.Event]]:
        conn.execute(insert(subscribers), [{**r, "address": r["address"] + "9"} for r in ROWS])
        return None, []

    async def body() -> None:
        async with open_db(db_url) as engine:
            writer = GroupCommitWriter(engine)
            await writer.start()
            try:
                await writer.submit(write)
                await writer.submit(write_slow)
                with pytest.raises(KeyError):  # no defaults to fill in: a missing value is a bug
                    await writer.submit(lambda conn: fast.execute(conn, {"address": "x"}))
            finally:
                await writer.close()
            async with engine.connect() as conn:
                rows = (await conn.execute(select(subscribers).order_by("address"))).all()
            by_suffix: dict[str, list[dict[str, Any]]] = {"1": [], "2": [], "8": [], "9": []}
            for r in rows:
                by_suffix[r.address[-1]].append(r._asdict())
            fast_rows = by_suffix["1"] + by_suffix["2"]
            assert fast_rows == ROWS
            for suffix in "89":
                stored = [{**r, "address": r["address"][:-1]} for r in by_suffix[suffix]]
                assert stored == fast_rows, suffix

    run(body)


def test_sqlite_writer_waits_for_a_foreign_write_lock_off_the_loop(tmp_path: Path) -> None:
    """Another process (here: another connection) holds SQLite's write lock for 0.5 s: the
    unit commits after it lets go, and the event loop keeps running meanwhile."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'mmsc.db'}"

    async def body() -> None:
        async with open_db(url) as engine:
            writer = GroupCommitWriter(engine)
            await writer.start()
            other = sqlite3.connect(
                tmp_path / "mmsc.db", isolation_level=None, check_same_thread=False
            )
            other.execute("BEGIN IMMEDIATE")
            released = threading.Event()

            def release() -> None:
                time.sleep(0.5)
                other.execute("COMMIT")
                released.set()

            threading.Thread(target=release, daemon=True).start()
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while not released.is_set():
                    ticks += 1
                    await asyncio.sleep(0.01)

            def unit(conn: Connection) -> tuple[str, list[repo.Event]]:
                repo.remember_subscriber(
                    conn, "+15550000003", 1.0, user_agent="UA", uaprof_url=None, mms_version=None
                )
                return "done", []

            try:
                tick_task = asyncio.create_task(ticker())
                started = time.monotonic()
                assert await writer.submit(unit) == ("done", [])
                assert released.is_set() and time.monotonic() - started >= 0.45
                await tick_task
                assert ticks >= 20  # ~50 possible in 0.5 s; a blocked loop would give 1
            finally:
                await writer.close()
                other.close()

    run(body)


def test_read_falls_back_to_the_thread_when_sqlite_is_busy(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mmsc.db'}"
    calls: list[str] = []

    def lookup(conn: Connection, value: int) -> int:
        calls.append(conn.dialect.driver)
        if len(calls) == 1:  # what pysqlite raises for SQLITE_BUSY with timeout 0
            raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))
        return value * 2

    def broken(conn: Connection) -> None:
        raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: x"))

    async def body() -> None:
        async with open_db(url) as engine:
            core = Mmsc(engine, InMemoryPayloadStore(), POLICY)
            await core.start()
            try:
                assert await core.read(lookup, 21) == 42
                # First on the loop's own pysqlite connection, then through aiosqlite (whose
                # calls wait in its thread, not on the loop).
                assert calls == ["pysqlite", "aiosqlite"]
                with pytest.raises(OperationalError, match="no such table"):
                    await core.read(broken)  # anything else is not retried
                assert await core.read(repo.get_subscriber, "+15550000009") is None
            finally:
                await core.close()

    run(body)


def test_concurrent_puts_are_batched_durable_and_closed_cleanly(tmp_path: Path) -> None:
    store = FilesystemPayloadStore(tmp_path / "payloads", max_flushers=1)
    blobs = {f"k{i}": bytes([i]) * (1000 + i) for i in range(50)}

    async def body() -> None:
        sizes = await asyncio.gather(*(store.put(k, v) for k, v in blobs.items()))
        assert sizes == [len(v) for v in blobs.values()]
        pending = [asyncio.create_task(store.put(f"late{i}", b"x" * i)) for i in range(5)]
        await asyncio.sleep(0)
        await store.close()  # waits for what is in flight
        assert all(t.done() for t in pending)
        for key, value in blobs.items():
            assert await store.get(key) == value

    run(body)
    fresh = FilesystemPayloadStore(tmp_path / "payloads")
    assert asyncio.run(fresh.get("late4")) == b"xxxx"


def test_the_id_list_statements_take_long_lists_and_only_what_qualifies(db_url: str) -> None:
    """mark_notified and finish_pushes run one compiled statement per list length, in
    chunks of repo.IN_LIST_CHUNK ids: a batch longer than a chunk is handled whole, and
    only the rows that qualify (pending recipients; pushes still this node's) move."""
    from sqlalchemy import update

    from storage.models import outbox, recipients
    from tests.test_storage import accept_many

    total = repo.IN_LIST_CHUNK * 2 + 7

    async def body() -> None:
        async with open_db(db_url) as engine:
            core = Mmsc(engine, InMemoryPayloadStore(), POLICY, node_id="node-a")
            await core.start()
            try:
                rids = await accept_many(core, total, per_message=50)
                retrieved = set(rids[::5])

                def fetch_some(conn: Connection) -> tuple[None, list[repo.Event]]:
                    conn.execute(
                        update(recipients)
                        .where(recipients.c.id.in_(retrieved))
                        .values(state=repo.RETRIEVED)
                    )
                    return None, []

                await core.write(fetch_some)

                def notify(conn: Connection) -> tuple[set[int], list[repo.Event]]:
                    return repo.mark_notified(conn, rids, 5.0), []

                assert await core.write(notify) == set(rids) - retrieved

                def queue(conn: Connection) -> tuple[list[int], list[repo.Event]]:
                    ids = [
                        repo.enqueue_push(
                            conn,
                            kind="notification",
                            destination=f"+1555{i:07d}",
                            pdu=b"x",
                            now=1.0,
                            message_id=None,
                            recipient_id=None,
                        )
                        for i in range(total)
                    ]
                    return ids, []

                push_ids = await core.write(queue)

                def claim(conn: Connection) -> tuple[list[Any], list[repo.Event]]:
                    return repo.claim_outbox(conn, 2.0, total, "node-a", 60.0), []

                assert len(await core.write(claim)) == total
                stolen = set(push_ids[1::3])

                def take_over(conn: Connection) -> tuple[None, list[repo.Event]]:
                    conn.execute(
                        update(outbox).where(outbox.c.id.in_(stolen)).values(claimed_by="node-b")
                    )
                    return None, []

                await core.write(take_over)
                outcomes = [repo.PushOutcome(i, repo.SENT, None, None, 3.0) for i in push_ids]

                def finish(conn: Connection) -> tuple[set[int], list[repo.Event]]:
                    return repo.finish_pushes(conn, "node-a", outcomes), []

                assert await core.write(finish) == set(push_ids) - stolen
            finally:
                await core.close()

    run(body)


# -- protocol.mms.encode_notification: the generic encoder's bytes, faster ------------

_notification_fields = st.fixed_dictionaries(
    {
        "transaction_id": strategies.ascii_text.filter(bool),
        "version": st.sampled_from(["1.0", "1.1", "1.2", "1.3"]),
        "sender": st.one_of(st.none(), strategies.address),
        "subject": st.one_of(st.none(), strategies.text),
        "message_class": st.one_of(
            st.sampled_from(["Personal", "advertisement", "Informational", "Auto"]),
            st.sampled_from(strategies.CLASS_TEXTS),
        ),
        "size": st.integers(0, 2**40),
        "expiry_seconds": st.integers(1, 2**31),
        "delivery_report": st.booleans(),
        "content_location": strategies.ascii_text.filter(bool),
    }
)


@settings(max_examples=400, deadline=None)
@given(_notification_fields)
def test_encode_notification_writes_what_the_generic_encoder_writes(f: dict[str, Any]) -> None:
    headers: dict[str, Any] = {}
    if f["sender"] is not None:
        headers["From"] = f["sender"]
    if f["subject"] is not None:
        headers["Subject"] = f["subject"]
    headers["X-Mms-Message-Class"] = f["message_class"]
    headers["X-Mms-Message-Size"] = f["size"]
    headers["X-Mms-Expiry"] = {"relative": f["expiry_seconds"]}
    if f["delivery_report"]:
        headers["X-Mms-Delivery-Report"] = "Yes"
    headers["X-Mms-Content-Location"] = f["content_location"]
    pdu = mms.MmsPdu("m-notification-ind", f["transaction_id"], f["version"], headers)
    try:
        expected: bytes | EncodeError = mms.encode(pdu)
    except EncodeError as exc:
        expected = exc
    try:
        got: bytes | EncodeError = mms.encode_notification(**f)
    except EncodeError as exc:
        got = exc
    if isinstance(expected, EncodeError):
        assert isinstance(got, EncodeError), got
    else:
        assert got == expected
        assert mms.decode(got).headers == mms.decode(expected).headers


def test_encode_notification_refuses_what_encode_refuses() -> None:
    fields: dict[str, Any] = {
        "sender": None,
        "subject": None,
        "message_class": "Personal",
        "size": 1,
        "expiry_seconds": 60,
        "delivery_report": False,
        "content_location": "http://x/y",
    }
    with pytest.raises(EncodeError):
        mms.encode_notification("t", "2.0", **fields)
    with pytest.raises(EncodeError):
        mms.encode_notification("\x01t", "1.2", **fields)
    with pytest.raises(EncodeError):
        mms.encode_notification("t", "1.2", **{**fields, "size": -1})
