"""Storage, core and scheduler behaviour, run against SQLite (a file) and PostgreSQL.

Why: DESIGN.md §4 promises that an accepted message is durable and that no
recipient is notified twice by two nodes sharing one PostgreSQL database. The
HTTP tests only see the outside; these drive the real storage layer, the core
and the scheduler directly with explicit clocks (no sleeps), so that every
row, state change and outbox push can be checked, on both engines.

The only double is ``RecordingBackend``, standing in for the SMS gateway (the
real gateway path is covered by tests/test_mm1_e2e.py). PostgreSQL being
unreachable fails the postgresql cases; nothing here is skipped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, inspect, select, text, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select

from mmsc import mm7_ops
from mmsc.addresses import NumberPlan, parse_address
from mmsc.core import Accepted, Mmsc, Policy, SendRefused
from mmsc.ids import new_id
from mmsc.mm7_outbound import MM7_KINDS, Mm7Outbound
from mmsc.notify.base import NotificationBackend, PushRequest, SendResult
from mmsc.notify.none import DETAIL as NO_BACKEND
from mmsc.notify.none import NoneBackend
from mmsc.receipts import ReceiptRecorder
from mmsc.scheduler import DEPTHS_MAX_SHARE, LEASE_SECONDS, Scheduler, depths_interval
from protocol import mms, wap_push
from protocol.mms import MmsPdu
from protocol.smpp_receipt import Receipt
from protocol.wsp import Part
from storage import db, durable
from storage import repository as repo
from storage.inline import InlinePayloadStore
from storage.models import (
    events,
    messages,
    metadata,
    outbox,
    payload_blobs,
    recipients,
    subscribers,
    uaprof_profiles,
)
from storage.payloads import (
    FilesystemPayloadStore,
    InMemoryPayloadStore,
    PayloadNotFound,
    PayloadStore,
)
from storage.writer import CommitUncertain, GroupCommitWriter, WriterClosed
from tests.pg import temp_database

A, B, C, D = "+15550000001", "+15550000002", "+15550000003", "+15550000004"
PLAN = NumberPlan()
SENDER = parse_address(A, PLAN)
POLICY = Policy(
    notify_backoff=300.0,
    notify_backoff_max=3600.0,
    notify_max_attempts=3,
    push_retry=5.0,
    push_retry_max=60.0,
    push_max_attempts=3,
)
TABLES = {
    "messages",
    "recipients",
    "outbox",
    "events",
    "subscribers",
    "smsc_messages",
    "uaprof_profiles",
    "payload_blobs",
}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def pg_url() -> Iterator[str]:
    """PostgreSQL only: the multi-node promise is made for it alone."""
    with temp_database() as url:
        yield url


# ----------------------------------------------------------------------------- helpers


class RecordingBackend:
    """Test double for the SMS side: records every push and answers from a script.

    Once the script is used up every push succeeds.
    """

    name = "recording"
    ready = True

    def __init__(self, script: Sequence[SendResult] = ()) -> None:
        self.script = list(script)
        self.sent: list[PushRequest] = []

    async def start(self) -> None:
        """Nothing to acquire."""

    async def send(self, push: PushRequest) -> SendResult:
        self.sent.append(push)
        if self.script:
            return self.script.pop(0)
        return SendResult(ok=True, detail="delivered to SMSC")

    async def close(self) -> None:
        """Nothing to release."""


def pushed_pdu(push: PushRequest) -> MmsPdu:
    """The MMS PDU a handset would get out of the SMS segments of ``push``."""
    _udh, datagram = wap_push.reassemble([s.user_data for s in push.segments])
    return wap_push.decode_mms_push(datagram)[1]


def send_req(
    to: Sequence[str],
    *,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    report: bool = False,
    expiry: int | None = None,
    tid: str = "T1",
    subject: str = "Grüße",
) -> tuple[MmsPdu, bytes]:
    """An encoded m-send-req and its decoded form, as the MM1 handler hands them to accept."""
    headers: dict[str, Any] = {"From": None, "To": list(to)}
    if cc:
        headers["Cc"] = list(cc)
    if bcc:
        headers["Bcc"] = list(bcc)
    headers["Subject"] = subject
    headers["X-Mms-Message-Class"] = "Personal"
    headers["X-Mms-Delivery-Report"] = "Yes" if report else "No"
    if expiry is not None:
        headers["X-Mms-Expiry"] = {"relative": expiry}
    pdu = MmsPdu(
        "m-send-req",
        tid,
        "1.2",
        headers,
        "application/vnd.wap.multipart.mixed",
        {},
        [Part("text/plain", {"charset": "utf-8"}, {}, f"message {tid}".encode())],
    )
    raw = mms.encode(pdu)
    return mms.decode(raw), raw


def plmn(number: str) -> str:
    return f"{number}/TYPE=PLMN"


async def accept(core: Mmsc, to: Sequence[str], **kwargs: Any) -> Accepted:
    pdu, raw = send_req([plmn(n) for n in to], **kwargs)
    return await core.accept(pdu, raw, SENDER)


@asynccontextmanager
async def open_db(url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine, disposed afterwards."""
    engine = db.create_engine(url)
    try:
        await db.upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def running_core(
    engine: AsyncEngine,
    *,
    node_id: str = "node-a",
    payloads: PayloadStore | None = None,
    policy: Policy = POLICY,
) -> AsyncIterator[Mmsc]:
    core = Mmsc(engine, payloads or InMemoryPayloadStore(), policy, node_id=node_id)
    await core.start()
    try:
        yield core
    finally:
        await core.close()


async def fetch(engine: AsyncEngine, query: Select[Any]) -> list[Row[Any]]:
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        q = select(func.count()).select_from(table).where(*where)
        return int((await conn.execute(q)).scalar_one())


async def message_row(engine: AsyncEngine, message_id: str) -> Row[Any]:
    (row,) = await fetch(engine, select(messages).where(messages.c.id == message_id))
    return row


async def recipient_row(engine: AsyncEngine, recipient_id: int) -> Row[Any]:
    (row,) = await fetch(engine, select(recipients).where(recipients.c.id == recipient_id))
    return row


async def pushes_for(engine: AsyncEngine, recipient_id: int) -> list[Row[Any]]:
    q = select(outbox).where(outbox.c.recipient_id == recipient_id).order_by(outbox.c.id)
    return await fetch(engine, q)


def sample(name: str, **labels: str) -> float:
    """A metric's value in the process's registry (0 before its first count). Counters
    are shared by every test: compare before and after."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def message_events(engine: AsyncEngine, message_id: str) -> list[Row[Any]]:
    q = select(events).where(events.c.message_id == message_id).order_by(events.c.id)
    return await fetch(engine, q)


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """pytest-asyncio is not installed: each test runs its async body in a fresh loop."""
    asyncio.run(body())


# ----------------------------------------------------------------------------- 1. schema


def test_upgrade_creates_schema_and_is_idempotent(db_url: str) -> None:
    """An empty database gets the whole schema; upgrading again changes nothing, keeps data."""

    def diff(conn: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async def body() -> None:
        engine = db.create_engine(db_url)
        try:
            assert await db.current_revision(engine) is None
            await db.upgrade(engine)
            assert await db.current_revision(engine) == "0008"
            async with engine.connect() as conn:
                names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
                assert await conn.run_sync(diff) == []  # the migration builds the models
            assert names >= TABLES | {"alembic_version"}
            async with engine.begin() as conn:
                await conn.execute(insert(subscribers).values(address=B, last_seen=1.0))
            await db.upgrade(engine)
            await db.upgrade(engine)
            assert await db.current_revision(engine) == "0008"
            assert await count(engine, subscribers) == 1
            async with engine.connect() as conn:
                versions = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).all()
            assert [v[0] for v in versions] == ["0008"]  # one row, not one per upgrade
        finally:
            await engine.dispose()

    run(body)


def test_upgrade_from_0005_copies_each_message_expiry_to_its_recipients(db_url: str) -> None:
    """0006 gives recipients their own expiry (for the expiry sweep's index): rows that
    existed before the upgrade get their message's."""

    def to_0005(conn: Connection) -> None:
        from alembic import command

        command.upgrade(db._alembic_config(conn), "0005")

    async def body() -> None:
        engine = db.create_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(to_0005)
                for mid, expiry in (("m1", 100.0), ("m2", 200.0)):
                    await conn.execute(
                        text(
                            "INSERT INTO messages (id, transaction_id, originator,"
                            " origin_interface, mms_version, message_class, content_type,"
                            " size, payload_key, headers, delivery_report, read_report,"
                            " sender_visible, created_at, expires_at, state) VALUES (:id,"
                            " 't', '+1', 'mm1', '1.2', 'Personal', 'x', 1, :id, '{}', false,"
                            " false, true, 1.0, :exp, 'accepted')"
                        ),
                        {"id": mid, "exp": expiry},
                    )
                    await conn.execute(
                        text(
                            "INSERT INTO recipients (message_id, token, address, kind, route,"
                            " state, attempts, updated_at) VALUES (:id, :tok, '+2', 'to',"
                            " 'local', 'pending', 0, 1.0)"
                        ),
                        {"id": mid, "tok": f"tok-{mid}"},
                    )
            await db.upgrade(engine)
            rows = await fetch(
                engine, select(recipients.c.message_id, recipients.c.expires_at).order_by("id")
            )
            assert [(r.message_id, r.expires_at) for r in rows] == [("m1", 100.0), ("m2", 200.0)]
        finally:
            await engine.dispose()

    asyncio.run(body())


# ----------------------------------------------------------------------------- 2. group commit


def _subscriber_unit(address: str, result: Any) -> Callable[[Connection], Any]:
    """A writer unit inserting one subscriber row (primary key: the address)."""

    def unit(conn: Connection) -> Any:
        conn.execute(insert(subscribers).values(address=address, last_seen=1.0))
        return result

    return unit


def test_group_commit_batches_concurrent_units(db_url: str) -> None:
    """Group commit is the accept path's throughput: many units share one commit, none lost."""

    async def body() -> None:
        async with open_db(db_url) as engine:
            writer = GroupCommitWriter(engine)
            await writer.start()
            try:
                units = [_subscriber_unit(f"+1555300{i:04d}", i) for i in range(200)]
                results = await asyncio.gather(*(writer.submit(u) for u in units))
            finally:
                await writer.close()
            assert results == list(range(200))
            assert writer.units == 200
            assert 1 <= writer.batches < writer.units
            assert await count(engine, subscribers) == 200

    run(body)


def test_group_commit_reports_each_batch_and_its_stages(db_url: str) -> None:
    """mmsc_commit_stage_seconds is how an operator sees why accepts wait: every
    committed unit is counted in exactly one batch, and each batch reports the stages
    it went through (the log's sync round only where the writer syncs the log)."""
    seen: list[tuple[int, dict[str, float]]] = []
    barriers_run: list[int] = []

    async def body() -> None:
        async with open_db(db_url) as engine:
            writer = GroupCommitWriter(engine)
            writer.on_batch = lambda units, stages: seen.append((units, dict(stages)))
            await writer.start()
            try:
                units = [_subscriber_unit(f"+1555310{i:04d}", i) for i in range(50)]
                results = await asyncio.gather(
                    *(writer.submit(u, lambda: barriers_run.append(1)) for u in units)
                )
            finally:
                await writer.close()
            assert results == list(range(50))
            assert len(barriers_run) == 50
            assert sum(units for units, _stages in seen) == 50
            assert len(seen) == writer.batches
            expected = {"queue", "barrier", "transaction"}
            if writer._log_rounds is not None:  # SQLite, synchronous=FULL, syncfs(2)
                expected.add("log_sync")
            assert engine.dialect.name != "sqlite" or "log_sync" in expected
            for _units, stages in seen:
                assert set(stages) == expected
                assert all(0.0 <= seconds < 30.0 for seconds in stages.values()), stages

    run(body)


def test_group_commit_survives_a_failing_batch_observer(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The observer only reports: its failure is logged, the commit still answers."""

    def observer(units: int, stages: dict[str, float]) -> None:
        raise RuntimeError("observer bug")

    async def body() -> None:
        async with open_db(db_url) as engine:
            writer = GroupCommitWriter(engine)
            writer.on_batch = observer
            await writer.start()
            try:
                with caplog.at_level(logging.ERROR, logger="mmsc.storage.writer"):
                    assert await writer.submit(_subscriber_unit(B, "kept")) == "kept"
            finally:
                await writer.close()
            assert "the batch observer failed" in caplog.text
            assert await count(engine, subscribers) == 1

    run(body)


def test_group_commit_failing_unit_fails_alone(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One bad request must not cost the others in its batch their accepted messages."""

    def duplicate(conn: Connection) -> str:
        # A new row first, then a duplicate key: the new row must be rolled back too.
        conn.execute(insert(subscribers).values(address="+15559999999", last_seen=1.0))
        conn.execute(insert(subscribers).values(address=B, last_seen=2.0))
        return "never"

    def broken(conn: Connection) -> str:
        conn.execute(insert(subscribers).values(address="+15558888888", last_seen=1.0))
        raise ValueError("a bug in a unit")

    async def body() -> None:
        async with open_db(db_url) as engine:
            writer = GroupCommitWriter(engine)
            await writer.start()
            try:
                assert await writer.submit(_subscriber_unit(B, "first")) == "first"
                units = [
                    _subscriber_unit(C, "c"),
                    duplicate,
                    _subscriber_unit(D, "d"),
                    broken,
                    _subscriber_unit("+15550000005", "e"),
                ]
                with caplog.at_level(logging.WARNING, logger="mmsc.storage.writer"):
                    results = await asyncio.gather(
                        *(writer.submit(u) for u in units), return_exceptions=True
                    )
            finally:
                await writer.close()
            assert results[0] == "c" and results[2] == "d" and results[4] == "e"
            assert isinstance(results[1], IntegrityError)
            assert isinstance(results[3], ValueError)
            # The five really shared one transaction, which failed and was split up.
            assert "batch of 5 failed" in caplog.text
            rows = await fetch(engine, select(subscribers).order_by(subscribers.c.address))
            assert [(r.address, r.last_seen) for r in rows] == [
                (B, 1.0),
                (C, 1.0),
                (D, 1.0),
                ("+15550000005", 1.0),
            ]

    run(body)


def test_writer_close_commits_queued_then_refuses(db_url: str) -> None:
    """close() must not drop work queued before it; later units get WriterClosed, not a hang."""

    async def body() -> None:
        async with open_db(db_url) as engine:
            writer = GroupCommitWriter(engine)
            with pytest.raises(WriterClosed):
                await writer.submit(_subscriber_unit(A, None))  # never started
            await writer.start()
            queued = [writer.submit(_subscriber_unit(f"+1555400{i:04d}", i)) for i in range(5)]
            *results, _ = await asyncio.gather(*queued, writer.close())
            assert results == [0, 1, 2, 3, 4]
            assert await count(engine, subscribers) == 5

            # A unit that arrives after the stop marker is failed, not silently dropped.
            await writer.start()
            late = await asyncio.gather(
                writer.close(), writer.submit(_subscriber_unit(B, "late")), return_exceptions=True
            )
            assert isinstance(late[1], WriterClosed)

            with pytest.raises(WriterClosed):
                await writer.submit(_subscriber_unit(C, None))
            await writer.close()  # idempotent
            assert await count(engine, subscribers) == 5

    run(body)


# ----------------------------------------------------------------------------- 3. accept


def test_accept_stores_message_recipients_events_payload(db_url: str, tmp_path: Path) -> None:
    """An accepted m-send-req is all there: message, one row per address, events, the body."""
    payloads = FilesystemPayloadStore(tmp_path / "payloads", fsync=False)

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine, payloads=payloads) as core:
            pdu, raw = send_req(
                [plmn(B), "+1 (555) 000-0002/TYPE=PLMN", plmn(C)],
                cc=[plmn(B)],
                bcc=["carol@Example.COM"],
                report=True,
            )
            before = time.time()
            accepted = await core.accept(pdu, raw, SENDER)
            after = time.time()
            mid = accepted.message_id

            msg = await message_row(engine, mid)
            assert (msg.originator, msg.origin_interface, msg.transaction_id) == (A, "mm1", "T1")
            assert (msg.subject, msg.size, msg.payload_key, msg.state) == (
                "Grüße",
                len(raw),
                mid,
                "accepted",
            )
            assert msg.delivery_report is True and msg.read_report is False
            assert before <= msg.created_at <= after
            assert msg.expires_at == msg.created_at + POLICY.default_expiry
            assert msg.headers["Subject"] == "Grüße"

            rows = await fetch(
                engine,
                select(recipients).where(recipients.c.message_id == mid).order_by(recipients.c.id),
            )
            # B three times (two spellings in To, once in Cc) collapses to one row.
            assert [(r.address, r.kind, r.route, r.state) for r in rows] == [
                (B, "to", "local", repo.PENDING),
                (C, "to", "local", repo.PENDING),
                ("carol@example.com", "bcc", "unsupported", repo.REJECTED),
            ]
            assert accepted.recipients == [(r.id, r.address) for r in rows]
            assert [r.next_attempt_at for r in rows] == [msg.created_at, msg.created_at, None]
            assert all(r.attempts == 0 and r.notified_at is None for r in rows)
            assert len({r.token for r in rows}) == 3

            evs = await fetch(engine, select(events).where(events.c.message_id == mid))
            assert sorted((e.event, e.recipient_id, e.state) for e in evs) == sorted(
                [("accepted", None, "accepted")]
                + [("recipient-added", r.id, r.state) for r in rows]
            )
            assert await payloads.get(mid) == raw
            assert payloads.path_for(mid).is_file()

        # Committed, not just visible to this engine: a fresh engine (a restart) finds it all.
        async with open_db(db_url) as engine:
            assert (await message_row(engine, mid)).payload_key == mid
            assert await count(engine, recipients, recipients.c.message_id == mid) == 3
        assert await FilesystemPayloadStore(payloads.root).get(mid) == raw

    run(body)


def test_retrieve_conf_from_the_cache_is_each_recipients_own(db_url: str) -> None:
    """The cached encoding (core.retrieve_conf) gives every recipient the PDU a fresh encode
    would: its own Transaction-ID, the same envelope and parts; other versions apart."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            accepted = await accept(core, [B, C, "+15550000009"], report=True)
            rows = [
                await core.read(repo.get_recipient_by_id, rid) for rid, _ in accepted.recipients
            ]
            for version in ("1.2", "1.1"):
                for row in rows:
                    cached = await core.retrieve_conf(row, version)
                    fresh = await core._encode_retrieve_conf(row, version, row.m_payload_key)
                    assert cached == fresh
                    pdu = mms.decode(cached)
                    assert (pdu.transaction_id, pdu.mms_version) == (row.token, version)
                    assert pdu.headers["Message-ID"] == accepted.message_id
                    assert pdu.parts[0].data == b"message T1"
            assert len(core._conf_cache) == 2  # one encoding per version, not per recipient

    run(body)


def test_accept_refused_or_failed_stores_nothing(db_url: str, tmp_path: Path) -> None:
    """No half-stored message: a refusal, or a failed commit, leaves no row and no payload."""
    payloads = FilesystemPayloadStore(tmp_path / "payloads", fsync=False)

    def payload_files() -> list[Path]:
        return [p for p in payloads.root.rglob("*") if p.is_file()]

    async def tables(engine: AsyncEngine) -> list[int]:
        return [await count(engine, t) for t in (messages, recipients, events, outbox)]

    async def body() -> None:
        async with open_db(db_url) as engine:
            async with running_core(engine, payloads=payloads) as core:
                pdu, raw = send_req(["dave@example.com", "not a number/TYPE=PLMN"])
                with pytest.raises(SendRefused) as refused:
                    await core.accept(pdu, raw, SENDER)
                assert refused.value.status == "Error-permanent-sending-address-unresolved"
                pdu, raw = send_req([])
                with pytest.raises(SendRefused) as refused:
                    await core.accept(pdu, raw, SENDER)
                assert refused.value.status == "Error-permanent-message-format-corrupt"
                pdu, raw = send_req([B])
                untyped = dataclasses.replace(pdu, content_type=None, content_type_params={})
                with pytest.raises(SendRefused, match="no Content-Type") as refused:
                    await core.accept(untyped, raw, SENDER)
                assert refused.value.status == "Error-permanent-message-format-corrupt"
                assert await tables(engine) == [0, 0, 0, 0]
                assert payload_files() == []
                await accept(core, [B])
            assert len(payload_files()) == 1
            stored = await tables(engine)
            assert stored == [1, 1, 2, 0]

            # The writer is gone (say, shutting down): the payload written first is removed.
            with pytest.raises(WriterClosed):
                await accept(core, [C])
            assert len(payload_files()) == 1
            assert await tables(engine) == stored

    run(body)


def test_accept_whose_body_cannot_be_made_durable_stores_nothing(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staged body is flushed by the writer right before the COMMIT of its rows: if
    that flush fails, the sender gets an error, and neither the rows nor the file stay.
    A message accepted in the same batch before the failure keeps both."""
    payloads = FilesystemPayloadStore(tmp_path / "payloads")  # fsync on: a real barrier

    def payload_files() -> list[Path]:
        return [p for p in payloads.root.rglob("*") if p.is_file()]

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine, payloads=payloads) as core:
            kept = await accept(core, [B])

            def broken(fd: int) -> None:
                raise OSError(5, "Input/output error")

            monkeypatch.setattr(durable, "sync_filesystem", broken)
            with pytest.raises(OSError, match="Input/output"):
                await accept(core, [C])
            monkeypatch.undo()
            assert await count(engine, messages) == 1
            assert await count(engine, recipients, recipients.c.address == C) == 0
            assert [p.name for p in payload_files()] == [kept.message_id]
            assert await payloads.get(kept.message_id)

    run(body)


def test_inline_bodies_live_in_the_database_and_bigger_ones_in_files(
    db_url: str, tmp_path: Path
) -> None:
    """[storage] inline_payload_max: a body up to the limit is a row written in the same
    transaction as its message (no file), a bigger one a file; both read back alike, and
    delete and exists cover both places."""
    files = FilesystemPayloadStore(tmp_path / "payloads")
    small_pdu, small_raw = send_req([plmn(B)])
    store = InlinePayloadStore(files, max_size=len(small_raw))

    def payload_files() -> list[str]:
        return sorted(p.name for p in files.root.rglob("*") if p.is_file())

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine, payloads=store) as core:
            small = await core.accept(small_pdu, small_raw, SENDER)
            big_pdu, big_raw = send_req([plmn(C)], subject="x" * 40)
            assert len(big_raw) > store.max_size
            big = await core.accept(big_pdu, big_raw, SENDER)
            assert payload_files() == [big.message_id]
            (row,) = await fetch(engine, select(payload_blobs))
            assert (row.key, bytes(row.data)) == (small.message_id, small_raw)
            assert await store.get(small.message_id) == small_raw
            assert await store.get(big.message_id) == big_raw
            assert await store.exists(small.message_id) and await store.exists(big.message_id)
            # What a handset fetches comes from the row: the retrieve-conf carries the body.
            (rcpt,) = small.recipients
            token_row = await fetch(engine, select(recipients).where(recipients.c.id == rcpt[0]))
            conf = mms.decode(await core.retrieve_conf(await core.recipient(token_row[0].token)))
            assert conf.parts == mms.decode(small_raw).parts
            assert await store.delete(small.message_id) is True
            assert await count(engine, payload_blobs) == 0
            assert not await store.exists(small.message_id)
            with pytest.raises(PayloadNotFound):
                await store.get(small.message_id)
            assert await store.delete(big.message_id) is True and payload_files() == []
            assert await store.delete(big.message_id) is False

    run(body)


def test_a_failed_accept_rolls_its_inline_body_back_with_its_message(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = InlinePayloadStore(InMemoryPayloadStore(), max_size=1_000_000)

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine, payloads=store) as core:
            kept = await accept(core, [B])

            def broken(*args: Any) -> None:
                raise RuntimeError("the message row cannot be written")

            monkeypatch.setattr(repo, "insert_message", broken)  # after the body's INSERT
            with pytest.raises(RuntimeError, match="cannot be written"):
                await accept(core, [C])
            monkeypatch.undo()
            assert [r.key for r in await fetch(engine, select(payload_blobs))] == [kept.message_id]
            assert await count(engine, messages) == 1

    run(body)


def test_inline_payload_max_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="inline_payload_max"):
        InlinePayloadStore(InMemoryPayloadStore(), max_size=-1)


def test_accept_overlong_input_is_refused_or_clipped_alike_on_both_engines(db_url: str) -> None:
    """Input longer than its column must get a permanent, protocol-correct answer on both
    engines: PostgreSQL refuses an over-long VARCHAR where SQLite stores it, and the
    database error used to surface as Error-transient-failure (the handset retried forever).
    """

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            # An unroutable recipient is kept, clipped, as a rejected row; B still gets it.
            junk = "x" * 150 + "@example.com"  # local part over 64: not an address at all
            accepted = await accept(core, [B, "+1" + "9" * 200, junk])
            rows = await fetch(
                engine,
                select(recipients)
                .where(recipients.c.message_id == accepted.message_id)
                .order_by(recipients.c.id),
            )
            assert [(r.address, r.route, r.state) for r in rows] == [
                (B, "local", repo.PENDING),
                (plmn("+1" + "9" * 200)[:128], "invalid", repo.REJECTED),
                (junk[:128], "invalid", repo.REJECTED),
            ]

            overlong: dict[str, Callable[[MmsPdu], None]] = {
                "transaction_id": lambda p: setattr(p, "transaction_id", "T" * 101),
                "message_class": lambda p: p.headers.update({"X-Mms-Message-Class": "c" * 33}),
                "content_type": lambda p: setattr(p, "content_type", "text/" + "y" * 200),
            }
            for name, spoil in overlong.items():
                pdu, raw = send_req([plmn(C)])
                spoil(pdu)
                with pytest.raises(SendRefused) as refused:
                    await core.accept(pdu, raw, SENDER)
                assert refused.value.status == "Error-permanent-message-format-corrupt"
                assert name in refused.value.text
            assert await count(engine, messages) == 1
            assert await count(engine, recipients) == 3
            assert isinstance(core.payloads, InMemoryPayloadStore)
            assert core.payloads.keys() == [accepted.message_id]

    run(body)


# ----------------------------------------------------------------------------- 4. notify + outbox


def test_notify_attempts_follow_backoff_and_stop_at_cap(db_url: str) -> None:
    """One outbox row and one push per attempt, spaced by the back-off, none after the cap."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            backend = RecordingBackend()
            assert isinstance(backend, NotificationBackend)
            sched = Scheduler(core, backend)
            accepted = await accept(core, [B])
            ((rid, _),) = accepted.recipients
            t0 = (await message_row(engine, accepted.message_id)).created_at

            assert await sched.run_once(now=t0 - 1) is False  # not due yet
            assert backend.sent == []

            # Attempt n at t_n; the next one is planned renotify_delay(n) later.
            t = t0
            for attempt in (1, 2, 3):
                assert await sched.run_once(now=t) is True
                assert len(backend.sent) == attempt
                row = await recipient_row(engine, rid)
                assert row.attempts == attempt
                assert row.state == repo.NOTIFIED
                if attempt < POLICY.notify_max_attempts:
                    assert row.next_attempt_at == t + POLICY.renotify_delay(attempt)
                    # One second early: nothing happens.
                    assert await sched.run_once(now=row.next_attempt_at - 1) is False
                    assert len(backend.sent) == attempt
                    t = row.next_attempt_at
                else:
                    assert row.next_attempt_at is None
            assert [POLICY.renotify_delay(n) for n in (1, 2)] == [300.0, 600.0]

            pushes = await pushes_for(engine, rid)
            assert [(p.kind, p.state, p.attempts, p.claimed_by) for p in pushes] == [
                ("notification", repo.SENT, 1, "node-a")
            ] * 3
            assert [p.due_at for p in pushes] == [t0, t0 + 300, t0 + 900]

            # Capped: even much later (before expiry) no fourth notification; by then the
            # finished pushes have left the outbox (keep_pushes).
            assert await sched.run_once(now=t0 + 5 * 86400) is False
            assert len(backend.sent) == 3
            assert await pushes_for(engine, rid) == []
            assert [p.destination for p in backend.sent] == [B] * 3
            assert [p.reference for p in backend.sent] == [f"notification:{p.id}" for p in pushes]

            token = (await recipient_row(engine, rid)).token
            for push, stored in zip(backend.sent, pushes, strict=True):
                ind = pushed_pdu(push)
                assert mms.encode(ind) == stored.pdu  # the handset gets the outbox PDU
                assert ind.message_type == "m-notification-ind"
                assert ind.headers["X-Mms-Content-Location"] == f"{POLICY.public_url}/{token}"
                assert ind.headers["From"] == plmn(A)
                assert ind.headers["X-Mms-Message-Size"] > 0

            evs = await fetch(
                engine,
                select(events.c.detail)
                .where(events.c.recipient_id == rid, events.c.event == "notification-queued")
                .order_by(events.c.id),
            )
            assert [e.detail for e in evs] == ["attempt 1", "attempt 2", "attempt 3"]
            (notified,) = await fetch(
                engine,
                select(func.count()).where(
                    events.c.recipient_id == rid, events.c.event == "notified"
                ),
            )
            assert notified[0] == 1  # pending -> notified once, not per attempt

    run(body)


def test_transient_push_failure_is_retried_later(db_url: str) -> None:
    """A gateway hiccup requeues the same push with back-off; the recipient is not notified."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            backend = RecordingBackend([SendResult(ok=False, permanent=False, detail="throttled")])
            sched = Scheduler(core, backend)
            accepted = await accept(core, [B])
            ((rid, _),) = accepted.recipients
            t0 = (await message_row(engine, accepted.message_id)).created_at

            assert await sched.run_once(now=t0) is True
            (push,) = await pushes_for(engine, rid)
            assert (push.state, push.attempts, push.last_error) == (repo.QUEUED, 1, "throttled")
            assert push.claimed_until is None
            assert push.due_at >= t0 + POLICY.push_delay(1)
            row = await recipient_row(engine, rid)
            assert (row.state, row.notified_at, row.attempts) == (repo.PENDING, None, 1)

            assert await sched.run_once(now=t0 + 1) is False  # the retry is not due yet
            assert len(backend.sent) == 1

            assert await sched.run_once(now=push.due_at) is True
            assert len(backend.sent) == 2
            assert backend.sent[0].reference == backend.sent[1].reference
            (push,) = await pushes_for(engine, rid)  # the same row again, not a new attempt
            assert (push.state, push.attempts, push.last_error) == (repo.SENT, 2, None)
            row = await recipient_row(engine, rid)
            assert row.state == repo.NOTIFIED and row.notified_at is not None
            assert row.attempts == 1

    run(body)


def test_a_fetch_stops_renotification_but_is_not_a_delivery(db_url: str) -> None:
    """B fetches after its first notification (its m-notifyresp-ind lost): its second one,
    already queued, is dropped and no further one is planned, while C, who did not fetch,
    is notified again; one event records the fetch. Retrieved, and the report, wait for
    the handset's own m-notifyresp-ind, and retrieved_at keeps the time of the fetch."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            backend = RecordingBackend()
            sched = Scheduler(core, backend)
            accepted = await accept(core, [B, C], report=True)
            (rid_b, _), _c = accepted.recipients
            t0 = (await message_row(engine, accepted.message_id)).created_at
            assert await sched.run_once(now=t0) is True  # first notifications, sent
            t1 = t0 + POLICY.renotify_delay(1)
            assert await core.notify_due(t1) == 2  # second ones, queued but not sent yet

            token_b = (await recipient_row(engine, rid_b)).token
            stale = await core.recipient(token_b)
            assert await core.fetched(stale, "1.2") is True
            assert await core.fetched(stale, "1.2") is False  # the database says: done
            assert await core.fetched(await core.recipient(token_b), "1.2") is False
            row_b = await recipient_row(engine, rid_b)
            assert (row_b.state, row_b.next_attempt_at) == (repo.NOTIFIED, None)
            assert row_b.retrieved_at is not None
            pushes = await pushes_for(engine, rid_b)
            assert [(p.state, p.last_error) for p in pushes] == [
                (repo.SENT, None),
                (repo.DROPPED, "recipient fetched the message"),
            ]

            await sched.run_once(now=t1)
            await sched.run_once(now=t0 + 100 * POLICY.notify_backoff)
            assert Counter(p.destination for p in backend.sent) == {B: 1, C: 3}
            evs = await fetch(
                engine,
                select(events).where(events.c.event == "fetched").order_by(events.c.id),
            )
            assert [(e.recipient_id, e.state, e.detail) for e in evs] == [(rid_b, None, "MMS 1.2")]
            assert await count(engine, outbox, outbox.c.kind == "delivery-ind") == 0

            await core.notify_response(await core.recipient(token_b), "Retrieved", True)
            confirmed = await recipient_row(engine, rid_b)
            assert confirmed.state == repo.RETRIEVED
            assert confirmed.retrieved_at == row_b.retrieved_at
            (report,) = await fetch(engine, select(outbox).where(outbox.c.kind == "delivery-ind"))
            assert mms.decode(report.pdu).headers["X-Mms-Status"] == "Retrieved"

    run(body)


def test_a_recipient_found_by_its_token_carries_its_handsets_version(db_url: str) -> None:
    """The fetch's lookup also says which MMS version the recipient's handset last used
    (for the version of its m-retrieve-conf), None for a handset never heard from."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            accepted = await accept(core, [B, C])
            await core.remember_device(B, "Phone/1", None, "1.3")
            tokens = [(await recipient_row(engine, rid)).token for rid, _ in accepted.recipients]
            rows = [await core.recipient(token) for token in tokens]
            assert [(r.address, r.s_mms_version, r.m_mms_version) for r in rows] == [
                (B, "1.3", "1.2"),
                (C, None, "1.2"),
            ]

    run(body)


def test_push_failure_permanent_or_out_of_attempts_fails(db_url: str) -> None:
    """A push that can never succeed is marked failed and never sent again; a permanent
    refusal also closes the recipient as unreachable (it is not re-notified)."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            transient = SendResult(ok=False, permanent=False, detail="timeout")
            backend = RecordingBackend(
                [SendResult(ok=False, permanent=True, detail="unknown subscriber")]
                + [transient] * POLICY.push_max_attempts
            )
            sched = Scheduler(core, backend)
            first = await accept(core, [B])
            ((rid, _),) = first.recipients
            t0 = (await message_row(engine, first.message_id)).created_at

            await sched.run_once(now=t0)
            (push,) = await pushes_for(engine, rid)
            assert (push.state, push.last_error) == (repo.FAILED, "unknown subscriber")
            closed = await recipient_row(engine, rid)
            assert (closed.state, closed.next_attempt_at) == (repo.UNREACHABLE, None)
            assert await sched.run_once(now=t0 + 200) is False
            assert await sched.run_once(now=t0 + 100 * POLICY.notify_backoff) is False
            assert len(backend.sent) == 1

            # Transient failures up to push_max_attempts, then failed too.
            second = await accept(core, [C])
            ((rid2, _),) = second.recipients
            t = (await message_row(engine, second.message_id)).created_at
            for attempt in range(1, POLICY.push_max_attempts + 1):
                await sched.run_once(now=t)
                (push,) = await pushes_for(engine, rid2)
                assert push.attempts == attempt
                t = push.due_at
            assert push.state == repo.FAILED
            assert len(backend.sent) == 1 + POLICY.push_max_attempts
            await sched.run_once(now=t + 100)
            assert len(backend.sent) == 1 + POLICY.push_max_attempts
            assert (await recipient_row(engine, rid2)).state == repo.PENDING

    run(body)


def test_push_of_dead_node_is_taken_over_after_lease(db_url: str) -> None:
    """A node killed between claim and send only delays the push: another node sends it."""

    async def body() -> None:
        async with (
            open_db(db_url) as engine,
            running_core(engine, node_id="node-a") as node_a,
            running_core(engine, node_id="node-b") as node_b,
        ):
            accepted = await accept(node_a, [B])
            ((rid, _),) = accepted.recipients
            t0 = (await message_row(engine, accepted.message_id)).created_at
            assert await node_a.notify_due(t0) == 1

            def claim(conn: Connection) -> tuple[list[Any], list[repo.Event]]:
                return repo.claim_outbox(conn, t0, 10, "node-a", LEASE_SECONDS), []

            (claimed,) = await node_a.write(claim)  # ...and node-a dies here
            assert (claimed.state, claimed.claimed_by) == (repo.SENDING, "node-a")
            assert claimed.claimed_until == t0 + LEASE_SECONDS
            assert (claimed.attempts, claimed.destination, claimed.recipient_id) == (1, B, rid)
            assert claimed.m_created_at == t0  # the message's acceptance time, for the metric
            assert claimed.message_id == accepted.message_id

            backend_b = RecordingBackend()
            sched_b = Scheduler(node_b, backend_b)
            assert await sched_b.run_once(now=t0 + LEASE_SECONDS - 1) is False  # lease holds
            assert backend_b.sent == []
            assert await sched_b.run_once(now=t0 + LEASE_SECONDS + 1) is True
            assert [p.reference for p in backend_b.sent] == [f"notification:{claimed.id}"]
            (push,) = await pushes_for(engine, rid)
            assert (push.state, push.claimed_by, push.attempts) == (repo.SENT, "node-b", 2)
            assert (await recipient_row(engine, rid)).state == repo.NOTIFIED

            # node-a coming back late cannot overwrite node-b's outcome.
            def late(conn: Connection) -> tuple[bool, list[repo.Event]]:
                owned = repo.finish_push(
                    conn, claimed.id, "node-a", state=repo.FAILED, now=t0 + 70, error="late"
                )
                return owned, []

            assert await node_a.write(late) is False
            (push,) = await pushes_for(engine, rid)
            assert (push.state, push.claimed_by, push.last_error) == (repo.SENT, "node-b", None)

    run(body)


def test_without_a_backend_pushes_are_dropped_and_the_recipient_stays_pending(
    db_url: str,
) -> None:
    """notify.backend "none": a push is recorded dropped (its event, its own count), not
    as a notification: the recipient stays pending and open for a fetch, is not notified
    again (every push would be dropped), and no notification latency is observed. The
    scheduler still claims and records each push: bench/mm1_bench.py --no-sms measures
    exactly those statements."""

    def notifications(kind: str, result: str) -> float:
        return sample("mmsc_notifications_total", kind=kind, result=result)

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            sched = Scheduler(core, NoneBackend())
            accepted = await accept(core, [B], report=True)
            ((rid, _),) = accepted.recipients
            t0 = (await message_row(engine, accepted.message_id)).created_at
            kinds = ("notification", "delivery-ind")
            before = {(k, r): notifications(k, r) for k in kinds for r in ("sent", "dropped")}
            latencies = sample("mmsc_notification_latency_seconds_count")

            assert await sched.run_once(now=t0) is True
            (push,) = await pushes_for(engine, rid)
            assert (push.state, push.attempts, push.last_error, push.sent_at) == (
                repo.DROPPED,
                1,
                NO_BACKEND,
                None,
            )
            row = await recipient_row(engine, rid)
            assert (row.state, row.notified_at, row.next_attempt_at) == (repo.PENDING, None, None)
            evs = await message_events(engine, accepted.message_id)
            assert [(e.event, e.recipient_id, e.detail) for e in evs][-2:] == [
                ("notification-queued", rid, "attempt 1"),
                ("push-dropped", rid, f"notification to {B}: {NO_BACKEND}"),
            ]
            assert await sched.run_once(now=t0 + 10 * POLICY.notify_backoff_max) is False
            assert len(await pushes_for(engine, rid)) == 1  # never queued again

            # Told out of band, the handset fetches and confirms; its sender's report is
            # dropped too, and counted as a delivery-ind.
            token = row.token
            assert await core.fetched(await core.recipient(token), "1.2") is True
            await core.notify_response(await core.recipient(token), "Retrieved", True)
            assert await sched.run_once(now=time.time()) is True
            assert (await recipient_row(engine, rid)).state == repo.RETRIEVED
            (report,) = await fetch(engine, select(outbox).where(outbox.c.kind == "delivery-ind"))
            assert (report.state, report.last_error) == (repo.DROPPED, NO_BACKEND)

            counted = {k: notifications(*k) - v for k, v in before.items()}
            assert counted == {
                ("notification", "sent"): 0,
                ("notification", "dropped"): 1,
                ("delivery-ind", "sent"): 0,
                ("delivery-ind", "dropped"): 1,
            }
            assert sample("mmsc_notification_latency_seconds_count") == latencies
            kinds_written = [e.event for e in await message_events(engine, accepted.message_id)]
            assert "notified" not in kinds_written
            assert kinds_written.count("push-dropped") == 2

    run(body)


def test_a_push_taken_over_during_its_send_is_counted_by_the_node_that_records_it(
    db_url: str,
) -> None:
    """The gateway took so long that the lease ran out and another node claimed the push
    (and sends it, and counts it): this node's late outcome is not recorded, so it is
    not counted either, and it notifies nobody."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            accepted = await accept(core, [B])
            ((rid, _),) = accepted.recipients
            t0 = (await message_row(engine, accepted.message_id)).created_at

            def take_over(conn: Connection) -> tuple[None, list[repo.Event]]:
                conn.execute(update(outbox).values(claimed_by="node-b"))
                return None, []

            class SlowGateway(RecordingBackend):
                async def send(self, push: PushRequest) -> SendResult:
                    await core.write(take_over)  # meanwhile, node-b claimed the push
                    return await super().send(push)

            backend = SlowGateway()
            sent = sample("mmsc_notifications_total", kind="notification", result="sent")
            assert await Scheduler(core, backend).run_once(now=t0) is True
            assert len(backend.sent) == 1
            assert sample("mmsc_notifications_total", kind="notification", result="sent") == sent
            (push,) = await pushes_for(engine, rid)
            assert (push.state, push.claimed_by) == (repo.SENDING, "node-b")  # node-b's now
            assert (await recipient_row(engine, rid)).state == repo.PENDING
            evs = [e.event for e in await message_events(engine, accepted.message_id)]
            assert not [e for e in evs if e.startswith("push-") or e == "notified"], evs

    run(body)


# ----------------------------------------------------------------------------- 5. expiry


def test_expiry_closes_open_recipients_and_reports_when_asked(db_url: str) -> None:
    """Expired recipients stop; the originator hears about it only if it asked for reports."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            wanted = await accept(core, [B, C], report=True, expiry=3600, tid="R")
            silent = await accept(core, [D], report=False, expiry=3600, tid="S")
            (rid_b, _), (rid_c, _) = wanted.recipients
            ((rid_d, _),) = silent.recipients
            msg = await message_row(engine, wanted.message_id)
            assert msg.expires_at == msg.created_at + 3600
            deadline = max(
                msg.expires_at, (await message_row(engine, silent.message_id)).expires_at
            )

            # B fetches its copy first: it gets a "Retrieved" report, never "Expired".
            row_b = await core.recipient((await recipient_row(engine, rid_b)).token)
            assert await core.mark_retrieved(row_b, cause="test") is True
            assert await core.mark_retrieved(row_b, cause="test") is False  # once only

            assert await core.expire_due(msg.expires_at - 1) == 0
            assert await core.expire_due(deadline) == 2
            assert await core.expire_due(deadline + 1) == 0  # nothing left to expire
            states = {
                rid: (await recipient_row(engine, rid)).state for rid in (rid_b, rid_c, rid_d)
            }
            assert states == {rid_b: repo.RETRIEVED, rid_c: repo.EXPIRED, rid_d: repo.EXPIRED}
            assert (await recipient_row(engine, rid_c)).next_attempt_at is None
            assert await core.notify_due(deadline) == 0  # expired: never notified again

            reports = await fetch(
                engine,
                select(outbox).where(outbox.c.kind == "delivery-ind").order_by(outbox.c.id),
            )
            assert [(r.recipient_id, r.destination, r.message_id) for r in reports] == [
                (rid_b, A, wanted.message_id),
                (rid_c, A, wanted.message_id),
            ]
            decoded = [mms.decode(r.pdu) for r in reports]
            assert [d.message_type for d in decoded] == ["m-delivery-ind"] * 2
            assert [d.headers["X-Mms-Status"] for d in decoded] == ["Retrieved", "Expired"]
            assert decoded[1].headers["Message-ID"] == wanted.message_id
            assert decoded[1].headers["To"] == [plmn(C)]

            evs = await fetch(
                engine, select(events.c.recipient_id).where(events.c.event == "expired")
            )
            assert sorted(e.recipient_id for e in evs) == sorted([rid_c, rid_d])

            # The scheduler carries both reports to the originator's handset.
            backend = RecordingBackend()
            await Scheduler(core, backend).run_once(now=deadline + 2)
            assert sorted(
                (p.destination, pushed_pdu(p).headers["X-Mms-Status"]) for p in backend.sent
            ) == [(A, "Expired"), (A, "Retrieved")]

    run(body)


# ----------------------------------------------------------------- 6. two nodes, one PostgreSQL


def numbers(n: int, base: int = 20000) -> list[str]:
    return [f"+1555{base + i:07d}" for i in range(n)]


async def accept_many(core: Mmsc, total: int, per_message: int = 10) -> list[int]:
    """``total`` due recipients in messages of ``per_message``; their recipient ids."""
    batches = [numbers(total)[i : i + per_message] for i in range(0, total, per_message)]
    done = await asyncio.gather(*(accept(core, to, tid=f"M{i}") for i, to in enumerate(batches)))
    return [rid for a in done for rid, _ in a.recipients]


async def drain(step: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Call ``step`` until it finds nothing more; the total it did."""
    total = 0
    while n := await step():
        total += n
    return total


@pytest.mark.parametrize("engines", ["shared-engine", "two-engines"])
def test_two_nodes_notify_each_recipient_once(db_url: str, engines: str) -> None:
    """DESIGN.md §4: two nodes on one database never queue the same attempt twice.

    On SQLite two engines on one file stand for an old and a new server overlapping
    during a restart: BEGIN IMMEDIATE makes the claims exclusive there too."""
    total = 300

    async def body() -> None:
        async with open_db(db_url) as engine_a:
            engine_b = engine_a if engines == "shared-engine" else db.create_engine(db_url)
            try:
                async with (
                    running_core(engine_a, node_id="node-a") as node_a,
                    running_core(engine_b, node_id="node-b") as node_b,
                ):
                    rids = await accept_many(node_a, total)
                    assert len(set(rids)) == total
                    now = max(
                        r.next_attempt_at
                        for r in await fetch(engine_a, select(recipients.c.next_attempt_at))
                    )
                    # Small, uneven batches so the two nodes interleave many times.
                    done = await asyncio.gather(
                        drain(lambda: node_a.notify_due(now, limit=17)),
                        drain(lambda: node_b.notify_due(now, limit=23)),
                        drain(lambda: node_a.notify_due(now, limit=29)),
                        drain(lambda: node_b.notify_due(now, limit=31)),
                    )
                    assert sum(done) == total
                    if db_url.startswith("postgresql"):
                        assert min(done) > 0  # all four really took part (SQLite: one writer)
                    per_recipient = Counter(
                        r.recipient_id
                        for r in await fetch(
                            engine_a,
                            select(outbox.c.recipient_id).where(outbox.c.kind == "notification"),
                        )
                    )
                    assert set(per_recipient) == set(rids)
                    assert max(per_recipient.values()) == 1
                    rows = await fetch(engine_a, select(recipients))
                    assert {(r.attempts, r.next_attempt_at) for r in rows} == {
                        (1, now + POLICY.renotify_delay(1))
                    }

                    # Both nodes' schedulers then drain the outbox concurrently: one SMS each.
                    backend_a, backend_b = RecordingBackend(), RecordingBackend()
                    sched_a = Scheduler(node_a, backend_a, batch=20)
                    sched_b = Scheduler(node_b, backend_b, batch=20)
                    sent = await asyncio.gather(
                        drain(lambda: sched_a.send_pushes(now)),
                        drain(lambda: sched_b.send_pushes(now)),
                    )
                    assert sum(sent) == total
                    if db_url.startswith("postgresql"):
                        assert min(sent) > 0  # both sent some (SQLite: one writer)
                    destinations = Counter(p.destination for p in backend_a.sent + backend_b.sent)
                    assert destinations == Counter(numbers(total))
                    assert await count(engine_a, outbox, outbox.c.state == repo.SENT) == total
                    assert (
                        await count(engine_a, recipients, recipients.c.state == repo.NOTIFIED)
                        == total
                    )
                    assert await count(engine_a, events, events.c.event == "notified") == total
            finally:
                if engine_b is not engine_a:
                    await engine_b.dispose()

    run(body)


@pytest.mark.parametrize("engines", ["shared-engine", "two-engines"])
def test_two_nodes_never_claim_the_same_push(db_url: str, engines: str) -> None:
    """Outbox leases are exclusive: concurrent claims from two nodes never overlap."""
    total = 300

    async def body() -> None:
        async with open_db(db_url) as engine_a:
            engine_b = engine_a if engines == "shared-engine" else db.create_engine(db_url)
            try:
                async with (
                    running_core(engine_a, node_id="node-a") as node_a,
                    running_core(engine_b, node_id="node-b") as node_b,
                ):
                    await accept_many(node_a, total)
                    now = time.time() + 1
                    assert await drain(lambda: node_a.notify_due(now)) == total
                    claimed: dict[str, list[int]] = {"node-a": [], "node-b": []}

                    def claimer(core: Mmsc, limit: int) -> Callable[[], Coroutine[Any, Any, int]]:
                        def unit(conn: Connection) -> tuple[list[Any], list[Any]]:
                            rows = repo.claim_outbox(conn, now, limit, core.node_id, 60.0)
                            return rows, []

                        async def step() -> int:
                            rows = await core.write(unit)
                            claimed[core.node_id] += [r.id for r in rows]
                            assert all(r.claimed_by == core.node_id for r in rows)
                            return len(rows)

                        return step

                    await asyncio.gather(
                        drain(claimer(node_a, 7)),
                        drain(claimer(node_b, 11)),
                        drain(claimer(node_a, 13)),
                        drain(claimer(node_b, 5)),
                    )
                    a, b = claimed["node-a"], claimed["node-b"]
                    assert len(a) == len(set(a)) and len(b) == len(set(b))
                    assert not set(a) & set(b)
                    assert len(a) + len(b) == total
                    if db_url.startswith("postgresql"):
                        assert a and b  # both nodes really took part (SQLite: one writer)
                    rows = await fetch(engine_a, select(outbox))
                    assert {r.id: r.claimed_by for r in rows} == {
                        **dict.fromkeys(a, "node-a"),
                        **dict.fromkeys(b, "node-b"),
                    }
                    assert {(r.state, r.attempts) for r in rows} == {(repo.SENDING, 1)}
            finally:
                if engine_b is not engine_a:
                    await engine_b.dispose()

    run(body)


# ----------------------------------------------------------------------------- 7. queue depths


def test_queue_depths_counts_open_recipients_and_waiting_pushes(db_url: str) -> None:
    """mmsc_queue_depth is what operators alert on: each state must be counted right."""

    async def depths(engine: AsyncEngine) -> dict[str, int]:
        async with engine.connect() as conn:
            depths: dict[str, int] = await conn.run_sync(repo.queue_depths)
            return depths

    def expect(pending: int, notified: int, deferred: int, out: int) -> dict[str, int]:
        return {"pending": pending, "notified": notified, "deferred": deferred, "outbox": out}

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            assert await depths(engine) == expect(0, 0, 0, 0)
            accepted = await accept(core, [B, C, D, "erin@example.com"])
            rid_b, rid_c, rid_d, _rejected = (rid for rid, _ in accepted.recipients)
            t0 = (await message_row(engine, accepted.message_id)).created_at
            assert await depths(engine) == expect(3, 0, 0, 0)  # the rejected one is not open

            assert await core.notify_due(t0) == 3
            assert await depths(engine) == expect(3, 0, 0, 3)

            # One push fails for good (its recipient becomes unreachable: no longer open),
            # one is claimed by a node (sending still counts as waiting), one is sent.
            backend = RecordingBackend([SendResult(ok=False, permanent=True, detail="no")])
            sched = Scheduler(core, backend, batch=1)
            assert await sched.send_pushes(t0) == 1
            assert await depths(engine) == expect(2, 0, 0, 2)  # failed: no longer waiting

            def claim(conn: Connection) -> tuple[list[Any], list[repo.Event]]:
                return repo.claim_outbox(conn, t0, 1, "node-x", 60.0), []

            assert len(await core.write(claim)) == 1
            assert await depths(engine) == expect(2, 0, 0, 2)
            assert await sched.send_pushes(t0) == 1
            assert await depths(engine) == expect(1, 1, 0, 1)
            assert await sched.send_pushes(t0) == 0  # node-x's lease holds

            rows = [
                await core.recipient((await recipient_row(engine, rid)).token)
                for rid in (rid_b, rid_c, rid_d)
            ]
            assert sorted(r.state for r in rows) == [repo.NOTIFIED, repo.PENDING, repo.UNREACHABLE]
            (pending,) = [r for r in rows if r.state == repo.PENDING]
            (notified,) = [r for r in rows if r.state == repo.NOTIFIED]
            await core.notify_response(notified, "Deferred", report_allowed=False)
            assert await depths(engine) == expect(1, 0, 1, 1)
            assert await core.mark_retrieved(pending, cause="test") is True
            assert await depths(engine) == expect(0, 0, 1, 1)
            for r in rows:
                await core.mark_retrieved(r, cause="test")
            assert await depths(engine) == expect(0, 0, 0, 1)

            # The scheduler publishes the same numbers as the mmsc_queue_depth gauge.
            await sched.update_depths()
            gauge = {
                state: REGISTRY.get_sample_value("mmsc_queue_depth", {"state": state})
                for state in ("pending", "notified", "deferred", "outbox")
            }
            assert gauge == {"pending": 0.0, "notified": 0.0, "deferred": 0.0, "outbox": 1.0}

    run(body)


def test_depths_interval_grows_with_the_cost_of_a_count() -> None:
    """A count that is cheap runs every sweep; one that took long is spaced so that it
    keeps to its share of the time (a million open recipients: 70 ms on SQLite)."""
    assert depths_interval(1.0, 0.001) == 1.0
    assert depths_interval(1.0, 0.070) == pytest.approx(0.070 / DEPTHS_MAX_SHARE)
    assert depths_interval(1.0, 0.070) * DEPTHS_MAX_SHARE <= 0.070 + 1e-9


def test_scheduler_pass_counts_depths_only_when_their_interval_has_passed(db_url: str) -> None:
    """The pass loop's gauges follow ``depths_interval``: not before it has passed since
    the last count, and at once after."""

    def gauge(state: str) -> float | None:
        return REGISTRY.get_sample_value("mmsc_queue_depth", {"state": state})

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            sched = Scheduler(core, RecordingBackend([]), batch=10)
            await sched.update_depths()
            assert sched.depths_interval >= sched.sweep_interval
            assert gauge("pending") == 0.0
            await accept(core, [B, C])  # two open recipients the gauge has not seen
            now = time.time()
            sched._last_depths = now
            sched._last_sweep = now
            sched.depths_interval = 100.0  # as after a count that took 2 s
            await sched._pass(now + 50, explicit=False)
            assert gauge("pending") == 0.0  # not counted again yet
            assert gauge("outbox") == 0.0
            await sched._pass(now + 101, explicit=False)
            assert gauge("pending") == 2.0  # counted now
            assert gauge("outbox") == 2.0  # the first pass queued their pushes
            assert sched.depths_interval < 100.0  # this count was cheap again

    run(body)


def test_expiry_drops_notifications_not_yet_sent(db_url: str) -> None:
    """A notification still queued when its recipient expires is never sent."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            accepted = await accept(core, [B])
            ((rid, _),) = accepted.recipients
            message = await message_row(engine, accepted.message_id)
            assert await core.notify_due(message.created_at) == 1  # queued, not sent
            assert await core.expire_due(message.expires_at + 1) == 1
            (push,) = await pushes_for(engine, rid)
            assert (push.state, push.last_error) == (repo.DROPPED, "recipient expired")
            backend = RecordingBackend()
            await Scheduler(core, backend).run_once(now=message.expires_at + 2)
            assert backend.sent == []

    run(body)


@pytest.mark.parametrize("cause", ["fetched", "expired", "cancelled"])
def test_every_queued_push_that_is_dropped_is_an_event(db_url: str, cause: str) -> None:
    """The SMSC is down (the backend is not ready: nothing is claimed), so the notification
    push waits in the outbox; its recipient fetches, expires or is cancelled by the VASP.
    The push is dropped in that same unit, and so is a push-dropped event with the reason:
    the trace (GET /api/messages/{id}) shows every push resolved, and mmsc_events_total
    counts it."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            backend = RecordingBackend()
            backend.ready = False  # type: ignore[misc]  # no bind up
            sched = Scheduler(core, backend)
            pdu, raw = send_req([plmn(B)], expiry=3600)
            accepted = await core.accept(pdu, raw, SENDER, interface="mm7", vasp="acme")
            ((rid, _),) = accepted.recipients
            message = await message_row(engine, accepted.message_id)
            assert await sched.run_once(now=message.created_at) is True
            (push,) = await pushes_for(engine, rid)
            assert push.state == repo.QUEUED and backend.sent == []
            counted = sample("mmsc_events_total", event="push-dropped")

            if cause == "fetched":
                token = (await recipient_row(engine, rid)).token
                assert await core.fetched(await core.recipient(token), "1.2") is True
                reason = "recipient fetched the message"
            elif cause == "expired":
                assert await core.expire_due(message.expires_at + 1) == 1
                reason = "recipient expired"
            else:
                answer = await mm7_ops.cancel(core, accepted.message_id, "acme")
                assert answer.status == mm7_ops.OK
                reason = "cancelled by the VASP"

            (push,) = await pushes_for(engine, rid)
            assert (push.state, push.last_error) == (repo.DROPPED, reason)
            trace = await core.trace(accepted.message_id)
            assert trace is not None
            assert [
                (e["recipient_id"], e["state"], e["detail"])
                for e in trace["events"]
                if e["event"] == "push-dropped"
            ] == [(rid, None, f"notification to {B}: {reason}")]
            assert sample("mmsc_events_total", event="push-dropped") == counted + 1

            backend.ready = True  # type: ignore[misc]  # the SMSC is back: nothing to send
            await sched.run_once(now=message.created_at + 1)
            assert backend.sent == []

    run(body)


def test_expired_messages_lose_their_payload_but_keep_their_trace(db_url: str) -> None:
    """The payload store is bounded by the expiry window; rows and events stay for the trace."""

    async def body() -> None:
        payloads = InMemoryPayloadStore()
        policy = dataclasses.replace(POLICY, keep_after_expiry=3600.0)
        async with (
            open_db(db_url) as engine,
            running_core(engine, payloads=payloads, policy=policy) as core,
        ):
            accepted = await accept(core, [B])
            message = await message_row(engine, accepted.message_id)
            assert payloads.keys() == [accepted.message_id]
            # Expired, but within the grace period: the body is kept.
            assert await core.purge_expired(message.expires_at + 10) == 0
            assert payloads.keys() == [accepted.message_id]
            assert await core.purge_expired(message.expires_at + 3601) == 1
            assert payloads.keys() == []
            assert (await message_row(engine, accepted.message_id)).state == "expired"
            assert await core.purge_expired(message.expires_at + 7200) == 0  # once only
            trace = await core.trace(accepted.message_id)
            assert trace is not None
            assert "payload-removed" in [e["event"] for e in trace["events"]]
            # A message a VASP cancelled loses its body at expiry too.
            cancelled = await accept(core, [C])

            def cancel(conn: Any) -> tuple[None, list[repo.Event]]:
                repo.set_message_state(conn, cancelled.message_id, "cancelled")
                return None, []

            await core.write(cancel)
            expiry = (await message_row(engine, cancelled.message_id)).expires_at
            assert await core.purge_expired(expiry + 3601) == 1
            assert payloads.keys() == []
            assert (await message_row(engine, cancelled.message_id)).state == "expired"

    run(body)


def test_expired_inline_bodies_are_deleted_from_the_database(db_url: str) -> None:
    async def body() -> None:
        store = InlinePayloadStore(InMemoryPayloadStore(), max_size=1_000_000)
        async with open_db(db_url) as engine, running_core(engine, payloads=store) as core:
            accepted = await accept(core, [B])
            message = await message_row(engine, accepted.message_id)
            assert await count(engine, payload_blobs) == 1
            assert await core.purge_expired(message.expires_at + 1) == 1
            assert await count(engine, payload_blobs) == 0
            assert (await message_row(engine, accepted.message_id)).state == "expired"

    run(body)


def test_records_of_long_expired_messages_are_removed(db_url: str) -> None:
    """keep_records after the body went, every row of the message goes too; a message still
    within its window, or one whose body is still kept, stays whole."""

    async def body() -> None:
        policy = dataclasses.replace(POLICY, keep_after_expiry=0.0, keep_records=1000.0)
        async with open_db(db_url) as engine, running_core(engine, policy=policy) as core:
            old = await accept(core, [B, C], report=True)
            await core.notify_due(time.time())
            young = await accept(core, [B], expiry=POLICY.default_expiry - 500)
            expires = (await message_row(engine, old.message_id)).expires_at
            await core.expire_due(expires + 1)  # delivery reports, expiry events
            assert await core.purge_expired(expires + 1) >= 1  # bodies gone, rows kept
            assert await count(engine, events, events.c.message_id == old.message_id) > 0

            # keep_records (1000 s) after its expiry for the message that expired 500 s
            # earlier, not yet for the other.
            await core.purge_expired(expires + 999)
            assert await count(engine, messages, messages.c.id == young.message_id) == 0
            assert await count(engine, events, events.c.message_id == young.message_id) == 0
            assert await count(engine, messages, messages.c.id == old.message_id) == 1

            await core.purge_expired(expires + 1001)
            for table in (events, outbox, recipients):
                assert await count(engine, table, table.c.message_id == old.message_id) == 0
            assert await count(engine, messages, messages.c.id == old.message_id) == 0

    run(body)


def test_records_are_kept_forever_with_a_negative_keep_records(db_url: str) -> None:
    async def body() -> None:
        policy = dataclasses.replace(POLICY, keep_after_expiry=0.0, keep_records=-1.0)
        async with open_db(db_url) as engine, running_core(engine, policy=policy) as core:
            old = await accept(core, [B])
            expires = (await message_row(engine, old.message_id)).expires_at
            await core.purge_expired(expires + 1)
            await core.purge_expired(expires + 10 * 365 * 86400)
            assert (await message_row(engine, old.message_id)).state == "expired"
            assert await count(engine, events, events.c.message_id == old.message_id) > 0

    run(body)


def test_finished_pushes_are_pruned_after_a_day(db_url: str) -> None:
    """The outbox does not grow without bound; queued pushes and events are never pruned."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            accepted = await accept(core, [B, C])
            t0 = (await message_row(engine, accepted.message_id)).created_at
            assert await core.notify_due(t0) == 2
            backend = RecordingBackend()
            sched = Scheduler(core, backend, batch=1)
            assert await sched.send_pushes(t0) == 1  # one sent, one still queued
            before = await count(engine, events)
            await core.purge_expired(t0 + 3600)  # the sweep; within the day: nothing goes
            assert await count(engine, outbox) == 2
            await core.purge_expired(t0 + POLICY.keep_pushes + 60)
            (left,) = await fetch(engine, select(outbox))
            assert left.state == repo.QUEUED
            assert await count(engine, events) >= before

    run(body)


def test_a_failing_barrier_fails_its_unit_and_commits_nothing_of_it(db_url: str) -> None:
    """A unit's barrier (its payload's flush) runs before the COMMIT: if it fails, that
    unit's rows must not be committed, and the rest of the batch still is."""
    order: list[str] = []

    def ok_barrier() -> None:
        order.append("barrier")

    def bad_barrier() -> None:
        raise OSError(5, "Input/output error")

    async def body() -> None:
        async with open_db(db_url) as engine:
            writer = GroupCommitWriter(engine)
            await writer.start()
            try:
                results = await asyncio.gather(
                    writer.submit(_subscriber_unit(C, "c"), ok_barrier),
                    writer.submit(_subscriber_unit(D, "d"), bad_barrier),
                    writer.submit(_subscriber_unit(B, "b")),
                    return_exceptions=True,
                )
            finally:
                await writer.close()
            assert results[0] == "c" and results[2] == "b"
            assert isinstance(results[1], OSError)
            assert "barrier" in order
            rows = await fetch(engine, select(subscribers.c.address))
            assert sorted(r.address for r in rows) == sorted([B, C])

    run(body)


class GatedBackend(RecordingBackend):
    """Every send waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0
        self.changed = asyncio.Event()

    async def send(self, push: PushRequest) -> SendResult:
        self.waiting += 1
        self.changed.set()
        await self.gate.wait()
        result = await super().send(push)
        self.changed.set()
        return result


def test_push_loop_claims_more_while_earlier_pushes_are_still_sending(db_url: str) -> None:
    """The running scheduler does not wait for a batch's sends and records before it
    claims the next batch (one loop doing both capped notifications at a batch per four
    commits), and it stops claiming at ``max_in_flight``: the rest waits in the outbox."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            backend = GatedBackend()
            sched = Scheduler(core, backend, batch=4, send_concurrency=100, poll_interval=0.05)
            sched.pushes.max_in_flight = 10
            for i in range(15):
                await accept(core, [f"+1555600{i:04d}"])
            await sched.start()
            try:
                while backend.waiting < 10:  # 4 + 4 + 2 claims, none of them finished
                    backend.changed.clear()
                    await asyncio.wait_for(backend.changed.wait(), 10)
                claimed = await fetch(
                    engine, select(func.count()).where(outbox.c.claimed_until.is_not(None))
                )
                assert claimed[0][0] == 10
                assert len(backend.sent) == 0
                backend.gate.set()
                while len(backend.sent) < 15:
                    backend.changed.clear()
                    await asyncio.wait_for(backend.changed.wait(), 10)
            finally:
                await sched.close()
            assert sorted(p.destination for p in backend.sent) == [
                f"+1555600{i:04d}" for i in range(15)
            ]
            states = await fetch(engine, select(outbox.c.state))
            assert [s.state for s in states] == [repo.SENT] * 15

    run(body)


@pytest.mark.parametrize("returning", [True, False], ids=["update-returning", "three-statements"])
def test_both_claim_paths_take_the_same_rows(db_url: str, returning: bool) -> None:
    """The one-statement claim (UPDATE ... RETURNING) and the fallback for databases
    without it take the oldest due rows of the kinds asked for, once."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            accepted = [await accept(core, [address]) for address in (B, C, D)]
            created = {
                a.message_id: (await message_row(engine, a.message_id)).created_at for a in accepted
            }
            assert len(set(created.values())) == 3
            t0 = time.time() + 1
            assert await core.notify_due(t0) == 3

            def claim(limit: int, kinds: Sequence[str] | None) -> Any:
                def unit(conn: Connection) -> tuple[list[Any], list[repo.Event]]:
                    saved = conn.dialect.update_returning
                    conn.dialect.update_returning = returning
                    try:
                        return repo.claim_outbox(conn, t0, limit, "n1", 60.0, kinds=kinds), []
                    finally:
                        conn.dialect.update_returning = saved

                return core.write(unit)

            assert await claim(5, ("mm7-deliver",)) == []
            first = await claim(2, ("notification", "delivery-ind"))
            assert [r.destination for r in first] == [B, C]  # oldest first, in id order
            assert [(r.state, r.claimed_by, r.attempts) for r in first] == [
                (repo.SENDING, "n1", 1)
            ] * 2
            rest = await claim(5, None)
            assert [r.destination for r in rest] == [D]
            for row in [*first, *rest]:  # each with its own message's acceptance time
                assert row.m_created_at == created[row.message_id]
            assert await claim(5, None) == []  # claimed rows are not taken again in the lease

    run(body)


@pytest.mark.parametrize("returning", [True, False], ids=["update-returning", "select-update"])
def test_both_drop_paths_drop_a_queued_notification_once(db_url: str, returning: bool) -> None:
    """Dropping a recipient's queued notification, with UPDATE ... RETURNING or the
    fallback for databases without it, drops only that recipient's and gives one event
    per push dropped: none a second time, none for another recipient's push."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            accepted = await accept(core, [B, C])
            (rid_b, _), (rid_c, _) = accepted.recipients
            assert await core.notify_due(time.time() + 1) == 2

            def drop(conn: Connection) -> tuple[list[repo.Event], list[repo.Event]]:
                saved = conn.dialect.update_returning
                conn.dialect.update_returning = returning
                try:
                    found = [
                        repo.drop_queued_notification(conn, accepted.message_id, rid_b, 5.0, "why")
                        for _ in range(2)
                    ]
                    return found[0] + found[1], []
                finally:
                    conn.dialect.update_returning = saved

            dropped = await core.write(drop)
            assert [(e.event, e.recipient_id, e.at, e.detail) for e in dropped] == [
                ("push-dropped", rid_b, 5.0, f"notification to {B}: why")
            ]
            states = [(p.state, p.last_error) for p in await pushes_for(engine, rid_b)]
            assert states == [(repo.DROPPED, "why")]
            assert [p.state for p in await pushes_for(engine, rid_c)] == [repo.QUEUED]

    run(body)


def test_sender_handset_facts_are_written_when_they_change(db_url: str) -> None:
    """The sender's User-Agent and profile are learned with its message, but an unchanged
    handset does not rewrite (and, on PostgreSQL, lock) its subscriber row per message."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:

            async def send(user_agent: str) -> None:
                pdu, raw = send_req([B])
                await core.accept(pdu, raw, SENDER, device=(user_agent, "http://uap/p.rdf"))

            async def facts() -> tuple[str, float]:
                (row,) = await fetch(engine, select(subscribers).where(subscribers.c.address == A))
                return row.user_agent, row.last_seen

            await send("Phone/1")
            first = await facts()
            assert first[0] == "Phone/1"
            await send("Phone/1")
            assert await facts() == first  # not written again
            await send("Phone/2")
            changed = await facts()
            assert changed[0] == "Phone/2" and changed[1] >= first[1]

    run(body)


def test_postgresql_writer_commits_a_second_batch_while_the_first_waits(pg_url: str) -> None:
    """On PostgreSQL a batch mostly waits for the server; with two in flight, a batch held
    up by a lock does not hold up the next one (and still commits once the lock goes)."""

    def blocked(conn: Connection) -> str:
        conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        conn.execute(insert(subscribers).values(address=C, last_seen=1.0))
        return "blocked one"

    async def body() -> None:
        async with open_db(pg_url) as engine:
            holder = await engine.connect()
            await holder.execute(text("SELECT pg_advisory_lock(4242)"))
            writer = GroupCommitWriter(engine, concurrency=2)
            await writer.start()
            try:
                first = asyncio.ensure_future(writer.submit(blocked))
                while True:  # until the first batch waits on the lock, in the database
                    waiting = await holder.execute(
                        text(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND NOT granted"
                        )
                    )
                    if waiting.scalar_one():
                        break
                    await asyncio.sleep(0.01)
                second = writer.submit(_subscriber_unit(D, "second"))
                assert await asyncio.wait_for(second, 10) == "second"  # a hang is a failure
                assert not first.done()
                assert await count(engine, subscribers) == 1  # the second one, committed
                await holder.execute(text("SELECT pg_advisory_unlock(4242)"))
                assert await first == "blocked one"
            finally:
                await holder.execute(text("SELECT pg_advisory_unlock_all()"))
                await holder.close()
                await writer.close()
            assert await count(engine, subscribers) == 2

    run(body)


def test_writer_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        GroupCommitWriter(cast(Any, None), concurrency=0)


def test_recording_a_batch_of_outcomes_keeps_other_nodes_and_states_intact(db_url: str) -> None:
    """finish_pushes records only the pushes still this node's, and mark_notified moves
    only recipients still pending (a fetched one stays fetched)."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            ids = [(await accept(core, [address])).recipients[0][0] for address in (B, C, D)]
            t0 = time.time() + 1
            assert await core.notify_due(t0) == 3

            def claim(conn: Connection) -> tuple[list[Any], list[repo.Event]]:
                return repo.claim_outbox(conn, t0, 10, "node-a", 60.0), []

            pushes = await core.write(claim)
            assert len(pushes) == 3

            def take_over(conn: Connection) -> tuple[None, list[repo.Event]]:
                # node-b took the third push over after node-a's lease ran out
                conn.execute(
                    update(outbox).where(outbox.c.id == pushes[2].id).values(claimed_by="node-b")
                )
                repo.set_recipient_state(conn, ids[1], repo.RETRIEVED, t0)  # C fetched already
                return None, []

            await core.write(take_over)

            def record(conn: Connection) -> tuple[tuple[set[int], set[int]], list[repo.Event]]:
                outcomes = [
                    repo.PushOutcome(pushes[0].id, repo.SENT, None, None, t0 + 1),
                    repo.PushOutcome(pushes[1].id, repo.QUEUED, "throttled", t0 + 60, t0 + 1),
                    repo.PushOutcome(pushes[2].id, repo.FAILED, "late", None, t0 + 1),
                ]
                owned = repo.finish_pushes(conn, "node-a", outcomes)
                moved = repo.mark_notified(conn, ids, t0 + 1)
                return (owned, moved), []

            owned, moved = await core.write(record)
            assert owned == {pushes[0].id, pushes[1].id}
            assert moved == {ids[0], ids[2]}  # C was retrieved: it stays so
            rows = {r.id: r for r in await fetch(engine, select(outbox).order_by(outbox.c.id))}
            first, second, third = (rows[p.id] for p in pushes)
            assert (first.state, first.sent_at, first.claimed_until) == (repo.SENT, t0 + 1, None)
            assert (second.state, second.last_error, second.due_at) == (
                repo.QUEUED,
                "throttled",
                t0 + 60,
            )
            assert second.sent_at is None
            assert (third.state, third.claimed_by, third.last_error) == (
                repo.SENDING,
                "node-b",
                None,
            )
            states = {r.id: r.state for r in await fetch(engine, select(recipients))}
            assert [states[i] for i in ids] == [repo.NOTIFIED, repo.RETRIEVED, repo.NOTIFIED]

    run(body)


def test_a_writer_waiting_for_its_turn_flushes_its_payloads_first(tmp_path: Path) -> None:
    """Several workers on one SQLite file take turns to write. A writer that has to wait
    runs its batch's barriers (the payloads' flush) meanwhile, not while holding the
    turn; a failing barrier fails its unit without taking the turn at all."""
    import fcntl

    url = f"sqlite+aiosqlite:///{tmp_path / 'mmsc.db'}"
    order: list[str] = []

    async def body() -> None:
        async with open_db(url) as engine:
            writer = GroupCommitWriter(engine)
            await writer.start()
            turn = os.open(f"{tmp_path / 'mmsc.db'}.writer-turn", os.O_RDWR)
            try:
                fcntl.flock(turn, fcntl.LOCK_EX)  # another worker is writing
                flushed = asyncio.Event()
                loop = asyncio.get_running_loop()

                def barrier() -> None:
                    order.append("flushed while waiting")
                    loop.call_soon_threadsafe(flushed.set)

                unit = asyncio.ensure_future(writer.submit(_subscriber_unit(B, "b"), barrier))
                await asyncio.wait_for(flushed.wait(), 10)
                assert not unit.done()  # it still waits for the turn
                order.append("turn given")
                fcntl.flock(turn, fcntl.LOCK_UN)
                assert await asyncio.wait_for(unit, 10) == "b"

                fcntl.flock(turn, fcntl.LOCK_EX)

                def broken() -> None:
                    raise OSError(5, "Input/output error")

                failing = writer.submit(_subscriber_unit(C, "c"), broken)
                with pytest.raises(OSError, match="Input/output"):
                    await asyncio.wait_for(failing, 10)
                fcntl.flock(turn, fcntl.LOCK_UN)
                assert await asyncio.wait_for(writer.submit(_subscriber_unit(D, "d")), 10) == "d"
            finally:
                os.close(turn)
                await writer.close()
            rows = await fetch(engine, select(subscribers.c.address))
            assert sorted(r.address for r in rows) == sorted([B, D])

    run(body)
    assert order == ["flushed while waiting", "turn given"]


def test_a_lease_is_renewed_only_while_no_other_node_took_the_row(db_url: str) -> None:
    """A sender that waited long for a slow peer renews its lease before sending; once
    another node claimed the row (its lease had run out), the first cannot renew it, so
    the row is not sent by both."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            await accept(core, [B])
            t0 = time.time() + 1
            assert await core.notify_due(t0) == 1

            def claim(owner: str, at: float) -> Any:
                def unit(conn: Connection) -> tuple[list[Any], list[repo.Event]]:
                    return repo.claim_outbox(conn, at, 10, owner, 60.0), []

                return core.write(unit)

            def renew(owner: str, row: Any, until: float) -> Any:
                def unit(conn: Connection) -> tuple[bool, list[repo.Event]]:
                    return repo.renew_claim(conn, row.id, owner, until), []

                return core.write(unit)

            (first,) = await claim("node-a", t0)
            assert await renew("node-a", first, t0 + 90) is True
            (renewed,) = await fetch(engine, select(outbox))
            assert renewed.claimed_until == t0 + 90
            assert await claim("node-b", t0 + 80) == []  # the renewed lease holds
            (again,) = await claim("node-b", t0 + 91)  # it ran out: node-b takes the row
            assert await renew("node-a", first, t0 + 200) is False
            assert await renew("node-b", again, t0 + 200) is True

    run(body)


def test_mm7_sender_renews_a_lease_half_used_by_waiting(db_url: str) -> None:
    """An MM7 request that waited for its VASP's turn renews its lease before the request
    (so it cannot run out in flight); a row another node has taken over is left to it."""
    from mmsc.mm7_outbound import LEASE_SECONDS, Mm7Outbound

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            await accept(core, [B])
            now = time.time()
            assert await core.notify_due(now) == 1

            def claim(conn: Connection) -> tuple[list[Any], list[repo.Event]]:
                # more than half of the MM7 lease is already gone
                lease = LEASE_SECONDS / 2 - 1
                return repo.claim_outbox(conn, now, 10, core.node_id, lease), []

            (row,) = await core.write(claim)
            sender = Mm7Outbound(core, {})
            assert await sender.requests.keep_claim(row) is True
            (stored,) = await fetch(engine, select(outbox))
            assert stored.claimed_until > row.claimed_until + LEASE_SECONDS / 4  # renewed

            def take_over(conn: Connection) -> tuple[None, list[repo.Event]]:
                conn.execute(update(outbox).values(claimed_by="another-node"))
                return None, []

            await core.write(take_over)
            assert await sender.requests.keep_claim(row) is False  # the other node sends it

    run(body)


def test_a_deliver_req_the_vasp_took_makes_its_recipient_retrieved_in_the_same_commit(
    db_url: str,
) -> None:
    """The VASP's success, the recipient becoming Retrieved and the sender's delivery
    report are one commit: the process dying right after the commit that records the
    answer (before anything else runs) leaves the recipient Retrieved and the report
    queued, not the recipient open until expiry and its sender told "Expired"."""

    class Died(Exception):
        pass

    async def body() -> None:
        policy = dataclasses.replace(POLICY, vasp_shortcodes={"12345": "acme"})
        async with open_db(db_url) as engine, running_core(engine, policy=policy) as core:
            accepted = await accept(core, ["12345"], report=True)
            ((rid, _),) = accepted.recipients
            now = time.time() + 1

            def claim(conn: Connection) -> tuple[list[Any], list[repo.Event]]:
                return repo.claim_outbox(conn, now, 10, core.node_id, 120.0, kinds=MM7_KINDS), []

            (row,) = await core.write(claim)
            assert (row.kind, row.recipient_id) == ("mm7-deliver", rid)
            write = core.write

            async def write_then_die(unit: Any, barrier: Any = None) -> Any:
                await write(unit, barrier)
                raise Died  # right after this commit

            core.write = write_then_die  # type: ignore[method-assign]
            with pytest.raises(Died):
                await Mm7Outbound(core, {})._finish(
                    row, ok=True, permanent=False, detail="1000 Success"
                )
            core.write = write  # type: ignore[method-assign]

            recipient = await recipient_row(engine, rid)
            assert (recipient.state, recipient.next_attempt_at) == (repo.RETRIEVED, None)
            (request,) = await fetch(engine, select(outbox).where(outbox.c.id == row.id))
            assert request.state == repo.SENT
            (report,) = await fetch(engine, select(outbox).where(outbox.c.kind == "delivery-ind"))
            assert report.destination == A
            assert mms.decode(report.pdu).headers["X-Mms-Status"] == "Retrieved"
            evs = await message_events(engine, accepted.message_id)
            assert [(e.event, e.detail) for e in evs][-3:] == [
                ("mm7-deliver-sent", "1000 Success"),
                ("retrieved", "delivered to the VASP"),
                ("delivery-report-queued", "Retrieved"),
            ]

    run(body)


def test_a_push_taken_over_while_it_waited_for_its_turn_is_not_sent(db_url: str) -> None:
    """A push that waited so long for a busy gateway that another node claimed it (its
    lease ran out) is left to that node, not sent by both; one that still holds its
    claim renews the lease and goes out."""
    from mmsc.scheduler import LEASE_SECONDS

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            await accept(core, [B])
            await accept(core, [C])
            now = time.time()
            assert await core.notify_due(now) == 2
            backend = RecordingBackend()
            sched = Scheduler(core, backend)

            def claim(conn: Connection) -> tuple[list[Any], list[repo.Event]]:
                lease = LEASE_SECONDS / 2 - 1  # more than half of it spent waiting
                return repo.claim_outbox(conn, now, 10, core.node_id, lease), []

            kept, lost = await core.write(claim)

            def take_over(conn: Connection) -> tuple[None, list[repo.Event]]:
                conn.execute(
                    update(outbox).where(outbox.c.id == lost.id).values(claimed_by="node-z")
                )
                return None, []

            await core.write(take_over)
            await sched._send_one(kept)
            await sched._send_one(lost)
            assert [p.destination for p in backend.sent] == [kept.destination]
            rows = {r.id: r for r in await fetch(engine, select(outbox))}
            assert rows[kept.id].state == repo.SENT
            assert (rows[lost.id].state, rows[lost.id].claimed_by) == (repo.SENDING, "node-z")

    run(body)


def test_the_writer_leaves_checkpoints_to_its_checkpointer(tmp_path: Path) -> None:
    """The writer's commits never checkpoint the log (that made the batch waiting for
    them slow: the accept p99), yet what they commit reaches the database file: the
    checkpointer thread moves it there, PASSIVE, while commits go on."""
    import shutil
    import sqlite3

    path = tmp_path / "mmsc.db"
    url = f"sqlite+aiosqlite:///{path}"
    addresses = [f"+1555{i:07d}" for i in range(300)]

    async def body() -> None:
        async with open_db(url) as engine:
            writer = GroupCommitWriter(engine)
            await writer.start()
            try:
                assert writer._sync_engine is not None
                with writer._sync_engine.connect() as conn:
                    row = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").one()
                    assert row[0] == 0
                for address in addresses:  # one commit each: many log frames
                    assert await writer.submit(_subscriber_unit(address, address)) == address
                assert writer._checkpointer is not None
                # Its last checkpoint, with every connection still open (closing the
                # last one would checkpoint by itself).
                writer._checkpointer.close()
                # The database file alone, without its log, holds every committed row.
                shutil.copyfile(path, alone)
            finally:
                await writer.close()

    alone = tmp_path / "alone.db"
    run(body)
    with sqlite3.connect(alone) as copy:
        found = {r[0] for r in copy.execute("SELECT address FROM subscribers")}
    assert set(addresses) <= found


# --------------------------------------------------- the writer syncs the log itself


def test_sync_rounds_share_only_a_round_that_started_after_the_ticket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that was already running when a caller's writes returned may have missed
    them: that caller needs the next round. A finished round that started later covers it."""
    rounds = durable.SyncRounds(os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY))
    calls: list[int] = []
    during: list[int] = []

    def fake_syncfs(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            during.append(rounds.ticket())  # writes that return while round 1 runs

    monkeypatch.setattr(durable, "sync_filesystem", fake_syncfs)
    before = rounds.ticket()
    rounds.sync_after(before)
    assert len(calls) == 1
    rounds.sync_after(before)  # round 1 started after `before`: nothing more to do
    assert len(calls) == 1
    rounds.sync_after(during[0])  # round 1 was running already: a round of its own
    assert len(calls) == 2
    rounds.sync()  # a new ticket: every write so far
    assert len(calls) == 3
    os.close(rounds.fd)


def test_sync_rounds_report_a_failed_round_to_whoever_it_may_have_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """syncfs reports a writeback error once: every caller whose writes came before the
    failed round is told (they may be lost), later writers are not."""
    rounds = durable.SyncRounds(os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY))
    failing = [True]

    def fake_syncfs(fd: int) -> None:
        if failing[0]:
            failing[0] = False
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(durable, "sync_filesystem", fake_syncfs)
    old = rounds.ticket()
    with pytest.raises(OSError):
        rounds.sync_after(old)
    with pytest.raises(OSError):  # a later round succeeds, but old writes may be gone
        rounds.sync_after(old)
    rounds.sync()  # written after the failure: fine
    os.close(rounds.fd)


def test_rounds_for_shares_one_per_filesystem(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert durable.rounds_for(tmp_path / "a") is durable.rounds_for(tmp_path / "b")


@pytest.mark.skipif(not durable.HAS_SYNCFS, reason="needs syncfs(2)")
def test_writer_answers_only_after_a_sync_that_covers_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With synchronous=FULL the writer commits unsynced and answers after a syncfs of
    the database's filesystem that started once the COMMIT was done: at the start of
    that round the row is already in the log (visible to another connection)."""
    import sqlite3

    path = tmp_path / "mmsc.db"
    seen_at_round_start: list[bool] = []
    real = durable.sync_filesystem

    def watching_syncfs(fd: int) -> None:
        with sqlite3.connect(path) as other:
            found = other.execute(
                "SELECT count(*) FROM subscribers WHERE address = ?", (B,)
            ).fetchone()
        seen_at_round_start.append(found[0] == 1)
        real(fd)

    async def body() -> None:
        async with open_db(f"sqlite+aiosqlite:///{path}") as engine:
            writer = GroupCommitWriter(engine)
            await writer.start()
            try:
                assert writer._sync_engine is not None
                with writer._sync_engine.connect() as conn:  # the writer's level: OFF
                    assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 0
                async with engine.connect() as conn:  # everyone else's: FULL
                    assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2
                monkeypatch.setattr(durable, "sync_filesystem", watching_syncfs)
                assert await writer.submit(_subscriber_unit(B, "done")) == "done"
                assert True in seen_at_round_start
            finally:
                await writer.close()

    run(body)


async def _writer_sync_level(engine: Any, **writer_options: Any) -> int:
    """The ``PRAGMA synchronous`` level of a writer's own connections; the writer
    also commits one unit, to show that it works at that level."""
    writer = GroupCommitWriter(engine, **writer_options)
    await writer.start()
    try:
        assert writer._sync_engine is not None
        with writer._sync_engine.connect() as conn:
            level = int(conn.exec_driver_sql("PRAGMA synchronous").scalar())
        assert await writer.submit(_subscriber_unit(B, "done")) == "done"
        return level
    finally:
        await writer.close()


def test_writer_leaves_the_log_sync_to_sqlite_below_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """synchronous=NORMAL promises no durability per commit: no syncfs is paid for it."""
    calls: list[int] = []
    monkeypatch.setattr(durable, "sync_filesystem", calls.append)

    async def body() -> None:
        engine = db.create_engine(
            f"sqlite+aiosqlite:///{tmp_path / 'mmsc.db'}", sqlite_synchronous="NORMAL"
        )
        try:
            await db.upgrade(engine)
            assert await _writer_sync_level(engine) == 1
        finally:
            await engine.dispose()
        assert calls == []

    run(body)


def test_unsynced_writer_connections_return_to_full_before_closing(tmp_path: Path) -> None:
    """The last connection to close checkpoints the log into the database file and
    deletes it, syncing as its level says: never at the writer's OFF."""
    from sqlalchemy import event

    async def body() -> None:
        async with open_db(f"sqlite+aiosqlite:///{tmp_path / 'mmsc.db'}") as engine:
            twin = db.sync_twin(engine, synchronous="OFF")
            assert twin is not None
            at_close: list[int] = []

            @event.listens_for(twin, "close")
            def _read_level(dbapi_connection: Any, _record: Any) -> None:
                at_close.append(dbapi_connection.execute("PRAGMA synchronous").fetchone()[0])

            with twin.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 0
            twin.dispose()
            assert at_close == [2]

    run(body)


def test_writer_can_leave_the_log_sync_to_each_commit(tmp_path: Path) -> None:
    """``[storage] payload_sync = "file"`` keeps syncfs off the disk: COMMIT fsyncs."""

    async def body() -> None:
        async with open_db(f"sqlite+aiosqlite:///{tmp_path / 'mmsc.db'}") as engine:
            assert await _writer_sync_level(engine, log_sync=False) == 2

    run(body)


def test_receipts_find_their_push_under_every_spelling_of_the_smsc_id(db_url: str) -> None:
    """SMSCs write one id as "0A1B2C3D" in submit_sm_resp and "a1b2c3d" or its decimal
    169552957 in the receipt. Case and leading zeros never matter; the other base is a
    guess, tried only when nothing matches as written."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            m1, m2 = (await accept(core, [B])).message_id, (await accept(core, [C])).message_id

            def remember(conn: Any) -> tuple[None, list[repo.Event]]:
                rows = [("0A1B2C3D", 1, m1, None, 1.0), ("0000012345", 2, m2, None, 1.0)]
                rows += [("1234", 3, m1, None, 1.0), ("4660", 4, m2, None, 1.0)]
                repo.remember_smsc_id_rows(conn, rows)
                return None, []

            await core.write(remember)
            recorder = ReceiptRecorder(core, retry_delays=())
            for ident, expected in [
                ("a1b2c3d", m1),
                ("A1B2C3D", m1),
                ("169552957", m1),  # decimal of 0xA1B2C3D: the guess, nothing else matched
                ("12345", m2),
                ("012345", m2),
                ("4660", m2),  # as written, although the guess (hexadecimal "1234") names m1
                ("1234", m1),  # as written
            ]:
                events_before = await count(engine, events, events.c.event == "push-receipt")
                await recorder("bind", Receipt(ident, "DELIVRD"))
                rows = await fetch(
                    engine,
                    select(events.c.message_id)
                    .where(events.c.event == "push-receipt")
                    .order_by(events.c.id.desc())
                    .limit(1),
                )
                assert await count(engine, events, events.c.event == "push-receipt") == (
                    events_before + 1
                ), ident
                assert rows[0].message_id == expected, ident
            assert recorder.unmatched == 0
            await recorder("bind", Receipt("ffff0000", "DELIVRD"))
            assert recorder.unmatched == 1

    run(body)


def test_every_outbox_kind_fits_its_column() -> None:
    from mmsc.mm7_outbound import MM7_KINDS
    from mmsc.scheduler import PUSH_KINDS

    assert max(len(kind) for kind in (*PUSH_KINDS, *MM7_KINDS)) <= outbox.c.kind.type.length


def test_a_vasp_message_is_confirmed_and_expired_on_every_engine(db_url: str) -> None:
    """The MM7 delivery report's outbox kind ("mm7-delivery-report") is stored on both
    engines: PostgreSQL once refused it (String(16)) and the failing row stopped the
    expiry sweep; a failing sweep no longer stops the notification pass either."""

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:
            pdu, raw = send_req([plmn(B), plmn(C)], report=True, expiry=3600)
            accepted = await core.accept(pdu, raw, SENDER, interface="mm7", vasp="acme")
            (rid_b, _), _ = accepted.recipients
            row_b = await core.recipient((await recipient_row(engine, rid_b)).token)
            assert await core.mark_retrieved(row_b, cause="test") is True
            deadline = (await message_row(engine, accepted.message_id)).expires_at
            assert await core.expire_due(deadline) == 1
            kinds = await fetch(engine, select(outbox.c.kind).order_by(outbox.c.id))
            assert [k.kind for k in kinds] == ["mm7-delivery-report"] * 2

            later = await accept(core, [D])
            scheduler = Scheduler(core, RecordingBackend())

            async def broken(now: float, limit: int) -> int:
                raise RuntimeError("a row the sweep cannot close")

            core.expire_due = broken  # type: ignore[method-assign]
            await scheduler.run_once(time.time())
            ((rid_d, _),) = later.recipients
            assert (await recipient_row(engine, rid_d)).state == repo.NOTIFIED

    run(body)


def test_a_failed_log_sync_after_commit_keeps_what_may_be_committed(tmp_path: Path) -> None:
    """The syncfs after a batch's COMMIT fails (EIO): its requests fail as uncertain,
    their units are not run again (an accept run twice failed on its own rows and then
    deleted the body they name), and every message row keeps its body."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'mmsc.db'}"
    payloads = FilesystemPayloadStore(tmp_path / "payloads", fsync=True)

    async def body() -> None:
        async with open_db(url) as engine, running_core(engine, payloads=payloads) as core:
            rounds = core.writer._log_rounds
            assert rounds is not None  # SQLite FULL: the writer syncs the log itself
            failures = [OSError(errno.EIO, "Input/output error")]

            class FailingOnce:
                """The writer's view of the sync rounds (the payload store keeps its own
                view of the same rounds, untouched): its first log sync fails."""

                def ticket(self) -> int:
                    return rounds.ticket()

                def sync_after(self, ticket: int) -> None:
                    if failures:
                        raise failures.pop()
                    rounds.sync_after(ticket)

            core.writer._log_rounds = FailingOnce()  # type: ignore[assignment]
            outcomes = await asyncio.gather(
                *(accept(core, [B], tid=f"U{i}") for i in range(3)), return_exceptions=True
            )
            assert outcomes and all(isinstance(o, CommitUncertain) for o in outcomes), outcomes
            rows = await fetch(engine, select(messages.c.id, messages.c.payload_key))
            assert len(rows) == 3  # committed, as SQLite had been told
            for row in rows:
                assert await payloads.get(row.payload_key)  # their bodies kept
            assert await count(engine, events, events.c.event == "accepted") == 3  # once each
            await accept(core, [C])  # the writer goes on

    run(body)


def test_the_sqlite_files_are_private(tmp_path: Path) -> None:
    """The database holds fetch tokens, addresses, subjects (and inline bodies): its
    file, its log and its directory are the owner's alone, whatever the umask."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'mmsc.db'}"

    async def body() -> None:
        async with open_db(url) as engine, running_core(engine) as core:
            await accept(core, [B])
            for name in ("mmsc.db", "mmsc.db-wal", "mmsc.db-shm"):
                assert (tmp_path / "var" / name).stat().st_mode & 0o777 == 0o600, name
            assert (tmp_path / "var").stat().st_mode & 0o777 == 0o700

    old = os.umask(0o022)
    try:
        run(body)
    finally:
        os.umask(old)


def test_bodies_no_message_names_are_reconciled_away(db_url: str, tmp_path: Path) -> None:
    """What a crash between a body's write and its commit (or a purge's commit and its
    deletes) leaves is removed once it is an hour old; every body a live message names,
    its adapted copies included, stays."""
    payloads = FilesystemPayloadStore(tmp_path / "payloads", fsync=False)

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine, payloads=payloads) as core:
            live = (await accept(core, [B])).message_id
            gone = (await accept(core, [C])).message_id

            def expire(conn: Any) -> tuple[None, list[repo.Event]]:
                repo.set_message_state(conn, gone, "expired")  # purged, its delete lost
                return None, []

            await core.write(expire)
            orphan = new_id()
            for key in (f"{live}.v1", f"{live}-old", orphan, f"{orphan}.v1", "young"):
                await payloads.put(key, b"x")
            hour_ago = time.time() - 3700
            for key in (live, f"{live}.v1", f"{live}-old", gone, orphan, f"{orphan}.v1"):
                os.utime(payloads.path_for(key), (hour_ago, hour_ago))
            leftover = payloads.path_for(orphan).with_name("x.tmp")
            leftover.write_bytes(b"half")
            os.utime(leftover, (hour_ago, hour_ago))

            assert await core.reconcile_payloads() == 4
            kept = sorted(p.name for p in payloads.root.rglob("*") if p.is_file())
            assert kept == sorted([live, f"{live}.v1", "young"])
            assert await core.reconcile_payloads() == 0

    run(body)


def test_bodies_in_the_database_no_message_names_are_reconciled_away(db_url: str) -> None:
    store = InlinePayloadStore(InMemoryPayloadStore(), max_size=1_000_000)

    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine, payloads=store) as core:
            live = (await accept(core, [B])).message_id
            gone = (await accept(core, [C])).message_id

            def expire(conn: Any) -> tuple[None, list[repo.Event]]:
                repo.set_message_state(conn, gone, "expired")
                return None, []

            await core.write(expire)
            assert await count(engine, payload_blobs) == 2
            assert await core.reconcile_payloads() == 1
            assert [r.key for r in await fetch(engine, select(payload_blobs.c.key))] == [live]

    run(body)


def test_expired_profiles_are_pruned(db_url: str) -> None:
    async def body() -> None:
        async with open_db(db_url) as engine, running_core(engine) as core:

            def store(conn: Any) -> tuple[None, list[repo.Event]]:
                repo.put_uaprof(conn, "http://a.example/old.xml", None, 1.0, 1000.0)
                repo.put_uaprof(conn, "http://a.example/new.xml", None, 1.0, 200_000.0)
                return None, []

            await core.write(store)
            assert await core.prune_profiles(1000.0 + 86400 - 1) == 0  # a day's grace
            assert await core.prune_profiles(1000.0 + 86400 + 1) == 1
            rows = await fetch(engine, select(uaprof_profiles.c.url))
            assert [r.url for r in rows] == ["http://a.example/new.xml"]

    run(body)
