"""The store-and-forward core: accept, notify, retrieve, report. Interface-neutral.

The MM1 HTTP handlers (mmsc/mm1.py) and the scheduler (mmsc/scheduler.py)
call into this; every durable change goes through the group-commit writer,
and every state change writes an event row that is also logged and counted.
Answers to a sender are given only after the writer reports the commit.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from mmsc import config as settings
from mmsc import metrics
from mmsc.addresses import Address, AddressError, NumberPlan, parse_address
from mmsc.config import ConfigError
from mmsc.ids import new_id, random_id
from mmsc.log_output import LINES
from protocol import mms, wap_push
from protocol.mms import MmsPdu
from protocol.mms_json import value_to_json
from protocol.mms_tables import SUPPORTED_VERSIONS
from storage import repository as repo
from storage.db import sync_twin
from storage.inline import InlinePayloadStore
from storage.models import messages, recipients
from storage.payloads import PayloadStore
from storage.writer import CommitUncertain, GroupCommitWriter

log = logging.getLogger("mmsc.core")

# Recipient states whose copy can no longer be fetched or forwarded (mmsc.mm1).
UNFORWARDABLE = frozenset((repo.CANCELLED, repo.REJECTED, repo.EXPIRED, repo.UNRECOGNISED))

# The MMS versions we encode, oldest first (OMA-MMS-ENC 1.0-1.3).
MMS_VERSIONS: tuple[str, ...] = tuple(f"{major}.{minor}" for major, minor in SUPPORTED_VERSIONS)
event_log = logging.getLogger("mmsc.events")

DAY = 86400.0

# The sender's fields kept with a message (messages.headers) ...
ENVELOPE_FIELDS = (
    "To",
    "Cc",
    "Subject",
    "X-Mms-Message-Class",
    "X-Mms-Priority",
    "X-Mms-Delivery-Report",
    "X-Mms-Read-Report",
    "X-Mms-Reply-Charging",
    "X-Mms-Content-Class",
    "X-Mms-DRM-Content",
)
# ... and those an m-retrieve-conf carries over from the stored m-send-req (the
# encoder leaves out what the handset's version does not define: Applic fields are 1.3).
RETRIEVE_FIELDS = (
    *(f for f in ENVELOPE_FIELDS if f != "X-Mms-Reply-Charging"),
    "X-Mms-Previously-Sent-By",
    "X-Mms-Previously-Sent-Date",
    "X-Mms-Distribution-Indicator",  # TS 23.140 §8.7.1 DistributionIndicator
    "X-Mms-Applic-ID",
    "X-Mms-Reply-Applic-ID",
    "X-Mms-Aux-Applic-Info",
)


# (address, a loader of the handset facts stored for it) -> the most its handset takes.
AnnounceLimit = Callable[[str, Callable[[], tuple[str | None, str | None]]], "int | None"]
DEVICE_REFRESH = 3600.0  # seconds between writes of unchanged handset facts
OVERRIDE_TTL = 30.0  # seconds a per-subscriber adaptation override is remembered
ADDRESS_CACHE_SIZE = 4096  # parsed canonical addresses kept (see Mmsc._address)
PDU_CACHE_BYTES = 64 * 1024 * 1024  # encoded m-retrieve-conf kept for repeated retrievals


@dataclass(frozen=True)
class Policy:
    """The knobs of the store-and-forward behaviour, read from [mm1] and [scheduler]."""

    public_url: str = "http://127.0.0.1:8002/mms"
    default_expiry: float = 7 * DAY
    max_expiry: float = 30 * DAY
    min_expiry: float = 60.0
    keep_after_expiry: float = 0.0
    keep_pushes: float = DAY  # finished outbox rows; the events keep their story
    keep_records: float = 90 * DAY  # rows and events after the body is gone; < 0: forever
    notify_backoff: float = 300.0
    notify_backoff_max: float = 6 * 3600.0
    notify_max_attempts: int = 6
    push_retry: float = 5.0
    push_retry_max: float = 600.0
    push_max_attempts: int = 50
    notification_version: str = "1.2"
    notify_subject: str = "auto"  # "auto": only when the push still fits one SMS
    plan: NumberPlan = field(default_factory=NumberPlan)
    vasp_shortcodes: dict[str, str] = field(default_factory=dict)  # short code -> VASP name

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Policy:
        mm1 = settings.table(config, "mm1")
        storage = settings.table(config, "storage")
        sched = settings.table(config, "scheduler")
        notify = settings.table(config, "notify")
        plan = NumberPlan.from_config(config)
        version = settings.text(mm1, "mm1", "notification_version", "1.2")
        if version not in MMS_VERSIONS:
            raise ConfigError(
                f"mm1.notification_version: {version!r}; expected one of " + ", ".join(MMS_VERSIONS)
            )

        def seconds(section: Mapping[str, Any], where: str, key: str, default: float) -> float:
            return settings.number(section, where, key, default, positive=True)

        def count(section: Mapping[str, Any], where: str, key: str, default: int) -> int:
            return settings.integer(section, where, key, default, low=1)

        return cls(
            public_url=settings.text(mm1, "mm1", "public_url", cls.public_url).rstrip("/"),
            default_expiry=seconds(mm1, "mm1", "default_expiry", cls.default_expiry),
            max_expiry=seconds(mm1, "mm1", "max_expiry", cls.max_expiry),
            min_expiry=seconds(mm1, "mm1", "min_expiry", cls.min_expiry),
            keep_after_expiry=settings.number(
                storage, "storage", "keep_after_expiry", cls.keep_after_expiry
            ),
            keep_pushes=settings.number(storage, "storage", "keep_pushes", cls.keep_pushes),
            keep_records=settings.number(  # negative: records are kept forever
                storage, "storage", "keep_records", cls.keep_records, low=None
            ),
            notify_backoff=seconds(sched, "scheduler", "notify_backoff", cls.notify_backoff),
            notify_backoff_max=seconds(
                sched, "scheduler", "notify_backoff_max", cls.notify_backoff_max
            ),
            notify_max_attempts=count(
                sched, "scheduler", "notify_max_attempts", cls.notify_max_attempts
            ),
            push_retry=seconds(notify, "notify", "retry_initial", cls.push_retry),
            push_retry_max=seconds(notify, "notify", "retry_max", cls.push_retry_max),
            push_max_attempts=count(notify, "notify", "max_attempts", cls.push_max_attempts),
            notification_version=version,
            notify_subject=_subject_mode(notify.get("include_subject", "auto")),
            plan=plan,
            vasp_shortcodes=_vasp_shortcodes(config),
        )

    def renotify_delay(self, attempts: int) -> float:
        """Exponential back-off after the ``attempts``-th notification (1-based)."""
        return float(min(self.notify_backoff * 2 ** max(attempts - 1, 0), self.notify_backoff_max))

    def push_delay(self, attempts: int) -> float:
        return float(min(self.push_retry * 2 ** max(attempts - 1, 0), self.push_retry_max))


class SendRefused(Exception):
    """An m-send-req we answer with an error status instead of accepting it."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass
class Accepted:
    message_id: str
    recipients: list[tuple[int, str]]  # (recipient id, canonical address)


def _expiry(pdu: MmsPdu, now: float, policy: Policy) -> float:
    value = pdu.headers.get("X-Mms-Expiry")
    expires = now + policy.default_expiry
    if isinstance(value, dict):
        if isinstance(value.get("relative"), int):
            expires = now + value["relative"]
        elif isinstance(value.get("absolute"), int):
            expires = float(value["absolute"])
    return min(max(expires, now + policy.min_expiry), now + policy.max_expiry)


def _recipients(pdu: MmsPdu, plan: NumberPlan) -> list[tuple[str, Address | None, str]]:
    """(kind, parsed address or None when unparseable, raw text) for To, Cc and Bcc."""
    out: list[tuple[str, Address | None, str]] = []
    for kind, name in (("to", "To"), ("cc", "Cc"), ("bcc", "Bcc")):
        values = pdu.headers.get(name) or []
        for raw in values if isinstance(values, list) else [values]:
            text = str(raw)
            try:
                out.append((kind, parse_address(text, plan), text))
            except AddressError:
                out.append((kind, None, text))
    return out


def _vasp_shortcodes(config: dict[str, Any]) -> dict[str, str]:
    """Short code -> VASP name from [[mm7.vasp]] (MO messages to them go out as DeliverReq)."""
    tables = config.get("mm7", {}).get("vasp", [])
    if isinstance(tables, dict):
        tables = [tables]
    out: dict[str, str] = {}
    for table in tables if isinstance(tables, list) else []:
        if isinstance(table, dict) and table.get("name"):
            for code in table.get("shortcodes", []) or []:
                out[str(code)] = str(table["name"])
    return out


def _route(address: Address | None, vasps: dict[str, str] | None = None) -> str:
    if address is None:
        return "invalid"
    if address.kind == "shortcode" and vasps and address.value in vasps:
        return "vasp"
    if address.kind in ("msisdn", "shortcode"):
        return "local"
    return "unsupported"  # e-mail (MM3) and IP handsets: not delivered by this MMSC yet


_ADDRESS_MAX: int = recipients.c.address.type.length  # type: ignore[attr-defined]


# The length limits of the envelope columns _overlong checks, read once.
_ENVELOPE_LIMITS: dict[str, int] = {
    name: length
    for name in ("transaction_id", "originator", "message_class", "priority", "content_type")
    if (length := getattr(messages.c[name].type, "length", None)) is not None
}


def _overlong(pdu: MmsPdu, sender: Address) -> str | None:
    """The first envelope value too long for its column: PostgreSQL refuses such a row
    (a permanent problem, not a transient one) where SQLite would store it."""
    values = {
        "transaction_id": pdu.transaction_id,
        "originator": str(sender),
        "message_class": str(pdu.headers.get("X-Mms-Message-Class", "Personal")),
        "priority": _str_or_none(pdu.headers.get("X-Mms-Priority")),
        "content_type": pdu.content_type,
    }
    for name, value in values.items():
        limit = _ENVELOPE_LIMITS.get(name)
        if value is not None and limit is not None and len(value) > limit:
            return name
    return None


_event_counters: dict[str, Any] = {}  # event -> its mmsc_events_total child


def _log_events(rows: Sequence[repo.Event]) -> None:
    """Count each event and log it as a line of its own: the events of one commit as
    one record of several lines (mmsc.log_output.SecondCachedFormatter gives every line
    the record's prefix), since a record per event was ~5% of the event loop's time."""
    for e in rows:
        counter = _event_counters.get(e.event)
        if counter is None:  # labels() looks the child up under a lock, per call
            counter = _event_counters[e.event] = metrics.events_total.labels(e.event)
        counter.inc()
    if rows and event_log.isEnabledFor(logging.INFO):
        event_log.info(
            "%s",
            "\n".join(
                f"message={e.message_id} "
                f"recipient={e.recipient_id if e.recipient_id is not None else '-'} "
                f"event={e.event} state={e.state or '-'} "
                # A detail can carry outside text (a part's name, a VASP's fault
                # string): its control characters must not start a line of their own.
                f"{e.detail.translate(_ESCAPED) if e.detail else ''}"
                for e in rows
            ),
            extra=_EVENT_LINES,
        )


_ESCAPED = {code: f"\\x{code:02x}" for code in range(32)} | {10: "\\n", 13: "\\r", 9: " "}
_EVENT_LINES = {LINES: True}  # one log line per event, each with the record's prefix


class Mmsc:
    """Owns the database writer and the payload store; everything durable goes through it."""

    def __init__(
        self,
        engine: AsyncEngine,
        payloads: PayloadStore,
        policy: Policy,
        *,
        node_id: str | None = None,
        writer_concurrency: int = 2,
        log_sync: bool = True,
    ) -> None:
        self.engine = engine
        self.payloads = payloads
        if isinstance(payloads, InlinePayloadStore):
            payloads.bind(
                self.read, self.write, self.read_in_thread
            )  # its bodies are rows, read and written here
        self.policy = policy
        self._addresses: dict[str, Address] = {}  # see _address
        self.node_id = node_id or random_id(12)
        self.writer = GroupCommitWriter(engine, concurrency=writer_concurrency, log_sync=log_sync)
        self.writer.on_batch = metrics.observe_commit
        self._read_engine = sync_twin(engine, busy_timeout=0.0)  # SQLite only, see read()
        self._reader: Connection | None = None
        self.wakeup_callbacks: list[Any] = []
        # The most a recipient's handset takes (mmsc.adapt.targets), to announce in its
        # notification instead of the stored size; None: announce the stored size.
        self.announce_limit: AnnounceLimit | None = None
        self._device_facts: dict[str, tuple[tuple[str | None, ...], float]] = {}
        self._overrides: dict[str, tuple[float, dict[str, Any] | None]] = {}
        # Encoded m-retrieve-conf after its opening headers, by (payload key, message,
        # version): see retrieve_conf.
        self._conf_cache: dict[tuple[str, str, str], bytes] = {}
        self._conf_cache_bytes = 0

    async def start(self) -> None:
        await self.writer.start()

    async def close(self) -> None:
        await self.writer.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._read_engine is not None:
            self._read_engine.dispose()

    async def read(self, fn: Any, *args: Any) -> Any:
        """Run a synchronous repository lookup on a pooled connection (no write lock).

        On SQLite the lookup runs right here on the event loop, on a plain pysqlite
        connection: a WAL reader never waits for the writer, and a point lookup costs
        tens of µs, where aiosqlite's worker thread costs three or four thread
        hand-offs per statement, each waiting for the busy loop to give back the GIL
        (bench/README.md, cached retrievals). That connection does not wait on a busy
        database either (timeout 0): the rare SQLITE_BUSY of a reader (WAL recovery,
        another process's checkpoint) falls back to the thread. Scans go through
        :meth:`read_in_thread`.
        """
        if self._read_engine is not None:
            if self._reader is None:
                self._reader = self._read_engine.connect()  # kept: no pool round per lookup
            try:
                return fn(self._reader, *args)
            except OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            finally:
                self._reader.rollback()  # ends the read transaction and its snapshot
        return await self.read_in_thread(fn, *args)

    async def read_in_thread(self, fn: Any, *args: Any) -> Any:
        """Run a synchronous repository read off the event loop (scans, counts)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn, *args)

    async def write(self, unit: Any, barrier: Any = None) -> Any:
        """Run a unit in the group-commit writer; it returns (result, events).
        ``barrier`` runs before the COMMIT (storage/writer.py)."""
        result, rows = await self.writer.submit(unit, barrier)
        _log_events(rows)
        return result

    def _wake(self) -> None:
        for callback in self.wakeup_callbacks:
            callback()

    # ----------------------------------------------------------------- accept

    async def accept(
        self,
        pdu: MmsPdu,
        raw: bytes,
        sender: Address,
        *,
        interface: str = "mm1",
        vasp: str | None = None,
        device: tuple[str | None, str | None] | None = None,
        also: Callable[[Connection, str, float], list[repo.Event]] | None = None,
    ) -> Accepted:
        """Store an m-send-req durably; raises SendRefused for what must not be accepted.

        ``also`` runs in the same transaction (given the new message id and the
        time), for callers whose own change must commit with the message or not at
        all (forward).
        """
        now = time.time()
        rcpts = _recipients(pdu, self.policy.plan)
        if not rcpts:
            raise SendRefused("Error-permanent-message-format-corrupt", "no recipient")
        vasps = self.policy.vasp_shortcodes
        if not any(_route(a, vasps) in ("local", "vasp") for _k, a, _t in rcpts):
            raise SendRefused(
                "Error-permanent-sending-address-unresolved", "no recipient can be reached"
            )
        if not pdu.content_type:
            # Mandatory in m-send-req (OMA-MMS-ENC 1.2 §6.1.1), and the m-retrieve-conf
            # made from it would lack it too: handsets drop that one (feature-matrix §4.3).
            raise SendRefused("Error-permanent-message-format-corrupt", "no Content-Type")
        if (field_name := _overlong(pdu, sender)) is not None:
            raise SendRefused("Error-permanent-message-format-corrupt", f"{field_name} too long")
        message_id = new_id(now)
        payload_key = message_id
        # The body is durable before (or with) the row that names it: a small one is
        # written by the unit itself (storage/inline.py), staged files are flushed by the
        # writer right before its COMMIT, other stores put first.
        store_inline = self.payloads.inline_unit(payload_key, raw)
        staged = None
        if store_inline is None:
            staged = self.payloads.stage(payload_key, raw)
            if staged is None:
                await self.payloads.put(payload_key, raw)
        envelope = {k: v for k, v in pdu.headers.items() if k in ENVELOPE_FIELDS}
        earliest = pdu.headers.get("X-Mms-Delivery-Time")
        earliest_at: float | None = None
        if isinstance(earliest, dict):
            if isinstance(earliest.get("relative"), int):
                earliest_at = now + earliest["relative"]
            elif isinstance(earliest.get("absolute"), int):
                earliest_at = float(earliest["absolute"])
        message = repo.NewMessage(
            id=message_id,
            transaction_id=pdu.transaction_id,
            originator=str(sender),
            origin_interface=interface,
            vasp=vasp,
            mms_version=pdu.mms_version or "1.2",
            message_class=str(pdu.headers.get("X-Mms-Message-Class", "Personal")),
            priority=_str_or_none(pdu.headers.get("X-Mms-Priority")),
            subject=_str_or_none(pdu.headers.get("Subject")),
            content_type=pdu.content_type or "application/vnd.wap.multipart.mixed",
            size=len(raw),
            payload_key=payload_key,
            headers=value_to_json(envelope),
            delivery_report=pdu.headers.get("X-Mms-Delivery-Report") == "Yes",
            read_report=pdu.headers.get("X-Mms-Read-Report") == "Yes",
            sender_visible=pdu.headers.get("X-Mms-Sender-Visibility") != "Hide",
            created_at=now,
            expires_at=_expiry(pdu, now, self.policy),
            earliest_delivery_at=earliest_at,
        )
        due = max(now, earliest_at or now)
        # Written when it changed (or DEVICE_REFRESH passed), not with every message: an
        # upsert of the sender's row per message was a statement per accept, and on
        # PostgreSQL a row lock that every message of a busy sender queued for.
        learn_device = device is not None and self._facts_changed(
            str(sender), (device[0], device[1], pdu.mms_version), now
        )
        new_rcpts: list[repo.NewRecipient] = []
        seen: set[str] = set()
        for kind, address, text in rcpts:
            key = str(address) if address is not None else text
            if key in seen:
                continue  # the same address twice gets one copy
            seen.add(key)
            route = _route(address, vasps)
            local = route == "local"
            new_rcpts.append(
                repo.NewRecipient(
                    token=new_id(now),
                    address=key[:_ADDRESS_MAX],  # only an unroutable one can be longer
                    kind=kind,
                    route=route,
                    state=repo.PENDING if route in ("local", "vasp") else repo.REJECTED,
                    next_attempt_at=due if local else None,
                )
            )

        def unit(conn: Connection) -> tuple[list[int], list[repo.Event]]:
            if store_inline is not None:
                store_inline(conn)
            ids = repo.insert_message(conn, message, new_rcpts)
            rows = [repo.Event(message_id, "accepted", now, state="accepted", detail=interface)]
            rows += [
                repo.Event(message_id, "recipient-added", now, rid, r.state, f"{r.kind} {r.route}")
                for rid, r in zip(ids, new_rcpts, strict=True)
            ]
            for rid, r in zip(ids, new_rcpts, strict=True):
                if r.route == "vasp":  # an MO message to a VASP's short code: MM7 DeliverReq
                    rows.append(
                        self._queue_mm7(
                            conn, "mm7-deliver", vasps[r.address], message_id, rid, now, {}
                        )
                    )
            repo.add_events(conn, rows)
            if learn_device:  # the sender's handset, learned in the same commit
                assert device is not None
                repo.remember_subscriber(
                    conn,
                    str(sender),
                    now,
                    user_agent=device[0],
                    uaprof_url=device[1],
                    mms_version=pdu.mms_version,
                )
            if also is not None:
                extra = also(conn, message_id, now)
                repo.add_events(conn, extra)
                rows = rows + extra
            return ids, rows

        try:
            ids = await self.write(unit, staged.make_durable if staged is not None else None)
        except CommitUncertain:
            raise  # the rows may exist: their body stays (answered as a transient failure)
        except Exception:
            if staged is not None:
                staged.discard()  # not written by a later flush
            if store_inline is None:  # (an inline body was rolled back with its rows)
                await self.payloads.delete(payload_key)  # no row names it: nothing half-stored
            raise
        metrics.messages_received.labels(interface).inc()
        self._wake()
        return Accepted(message_id, [(i, r.address) for i, r in zip(ids, new_rcpts, strict=True)])

    def _address(self, canonical: str) -> Address:
        """A stored (canonical) address parsed again, remembered: every notification and
        report names its originator, and parsing it was 2% of the event loop's time."""
        address = self._addresses.get(canonical)
        if address is None:
            if len(self._addresses) >= ADDRESS_CACHE_SIZE:
                self._addresses.clear()
            address = self._addresses[canonical] = parse_address(canonical, self.policy.plan)
        return address

    # -------------------------------------------------------------- notifying

    def content_location(self, token: str) -> str:
        return f"{self.policy.public_url}/{token}"

    def notification_pdu(self, row: Any, now: float, conn: Connection | None = None) -> bytes:
        """The m-notification-ind for one recipient (AOSP's mandatory fields, Location last).

        With ``include_subject = "auto"`` the Subject is left out when it alone would
        make the push need a second SMS (feature-matrix §4.1: aim for one SMS).
        """
        mode = self.policy.notify_subject
        size = self._announced_size(row, conn)
        encoded = self._notification(row, now, size, with_subject=mode != "never")
        room = wap_push.SINGLE_SMS_DATAGRAM
        if mode == "auto" and len(wap_push.encode_push(encoded)) > room:
            shorter = self._notification(row, now, size, with_subject=False)
            if len(wap_push.encode_push(shorter)) <= room:
                return shorter
        return encoded

    def _announced_size(self, row: Any, conn: Connection | None) -> int:
        """The stored size, or less: at most what the recipient's handset takes, when we
        know that handset (from this process's memory, else the subscribers table)."""
        size = int(row.m_size)
        if self.announce_limit is None:
            return size

        def stored_facts() -> tuple[str | None, str | None]:
            if hasattr(row, "s_user_agent"):  # joined by repo.due_recipients
                return (row.s_user_agent, row.s_uaprof_url)
            facts = repo.get_subscriber(conn, row.address) if conn is not None else None
            return (None, None) if facts is None else (facts.user_agent, facts.uaprof_url)

        limit = self.announce_limit(row.address, stored_facts)
        return limit if limit is not None and size > limit else size

    def _notification(self, row: Any, now: float, size: int, *, with_subject: bool) -> bytes:
        return mms.encode_notification(
            row.token,
            self.policy.notification_version,
            sender=self._address(row.m_originator).to_mms() if row.m_sender_visible else None,
            subject=row.m_subject if with_subject and row.m_subject else None,
            message_class=row.m_message_class,
            size=size,
            expiry_seconds=max(int(row.m_expires_at - now), 1),
            delivery_report=bool(row.m_delivery_report),
            content_location=self.content_location(row.token),
        )

    async def notify_due(self, now: float, limit: int = 200) -> int:
        """Queue a notification push for every recipient due, and plan the next attempt."""
        policy = self.policy

        def unit(conn: Connection) -> tuple[int, list[repo.Event]]:
            rows = repo.due_recipients(conn, now, limit)
            out: list[repo.Event] = []
            queued: list[tuple[Any, int, float | None, bytes]] = []
            for row in rows:
                attempts = row.attempts + 1
                nxt = (
                    now + policy.renotify_delay(attempts)
                    if attempts < policy.notify_max_attempts
                    else None  # attempt cap reached: wait for retrieval or expiry
                )
                queued.append((row, attempts, nxt, self.notification_pdu(row, now, conn)))
                out.append(
                    repo.Event(
                        row.message_id,
                        "notification-queued",
                        now,
                        row.id,
                        None,
                        f"attempt {attempts}",
                    )
                )
            repo.queue_notifications(conn, queued, now)
            repo.add_events(conn, out)
            return len(rows), out

        count: int = await self.write(unit)
        return count

    async def expire_due(self, now: float, limit: int = 200) -> int:
        def unit(conn: Connection) -> tuple[int, list[repo.Event]]:
            rows = repo.expired_recipients(conn, now, limit)
            out: list[repo.Event] = []
            for row in rows:
                repo.set_recipient_state(conn, row.id, repo.EXPIRED, now, next_attempt_at=None)
                out.append(repo.Event(row.message_id, "expired", now, row.id, repo.EXPIRED))
                out += repo.drop_queued_notification(
                    conn, row.message_id, row.id, now, "recipient expired"
                )
                out += self._delivery_report(conn, row, "Expired", now)
            repo.add_events(conn, out)
            return len(rows), out

        count: int = await self.write(unit)
        return count

    async def purge_expired(self, now: float, limit: int = 200) -> int:
        """Messages past expiry (plus ``keep_after_expiry``) lose their body: nobody can
        fetch them any more, and the payload store must not grow without bound. The rows
        and events stay, for the trace, ``keep_records`` longer; then they go too, so
        the database does not grow without bound either."""
        before = now - self.policy.keep_after_expiry

        def unit(conn: Connection) -> tuple[list[str], list[repo.Event]]:
            repo.prune_pushes(conn, now - self.policy.keep_pushes)
            if self.policy.keep_records >= 0:
                removed = repo.remove_messages(conn, before - self.policy.keep_records, limit)
                if removed:
                    log.info("removed the records of %d messages expired long ago", removed)
            rows = repo.messages_to_purge(conn, before, limit)
            out = []
            keys = []
            for row in rows:
                repo.set_message_state(conn, row.id, "expired")
                out.append(repo.Event(row.id, "payload-removed", now, None, "expired", None))
                keys.append(row.payload_key)
                # Adapted variants (mmsc.adapt.service) were recorded as "adapted" events.
                keys += [
                    e.detail
                    for e in repo.list_events(conn, row.id)
                    if e.event == "adapted" and e.detail
                ]
            repo.add_events(conn, out)
            return keys, out

        keys: list[str] = await self.write(unit)
        for key in keys:  # after the commit: a crash here leaves a file, never a dangling row
            await self.payloads.delete(key)
        return len(keys)

    async def prune_profiles(self, now: float) -> int:
        """Drop cached UAProf profiles a day past their expiry; how many."""

        def unit(conn: Connection) -> tuple[int, list[repo.Event]]:
            return repo.prune_uaprof(conn, now - 86400), []

        pruned: int = await self.write(unit)
        return pruned

    async def reconcile_payloads(self, older_than: float = 3600.0, chunk: int = 500) -> int:
        """Remove stored bodies that no message names any more; how many.

        Left over by a crash between a body's write and its message's commit (the
        barriers of several batches run ahead of their COMMITs), between the purge's
        commit and its deletes, by a replace or adaptation whose record failed. Only
        bodies ``older_than`` seconds are looked at, so one whose commit is under way
        is never taken for garbage. A key names its message: ``<message id>`` for the
        original, ``<message id>-<random>`` after a replace, ``<key>.<variant>`` for an
        adapted copy; it is live while that message has not expired and still stores
        exactly that original (storage.payloads, mmsc.mm7_ops, mmsc.adapt.service)."""
        keys = await self.payloads.stale_keys(older_than)
        removed = 0
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            bases = {key: key.split(".", 1)[0] for key in part}  # a variant's original
            owners = {key: base.split("-", 1)[0] for key, base in bases.items()}
            live = await self.read_in_thread(repo.live_payload_keys, sorted(set(owners.values())))
            for key in part:
                if live.get(owners[key]) != bases[key]:
                    removed += await self.payloads.delete(key)
        if removed:
            log.warning(
                "removed %d stored bodies no message names (of %d checked)", removed, len(keys)
            )
        return removed

    def unreachable(
        self, conn: Connection, recipient_id: int, now: float, detail: str
    ) -> list[repo.Event]:
        """The gateway refused a recipient's notification for good: close it and report."""
        return self.undelivered(conn, recipient_id, now, "Unreachable", detail)

    def undelivered(
        self,
        conn: Connection,
        recipient_id: int,
        now: float,
        status: Literal["Unreachable", "Rejected"],
        detail: str,
    ) -> list[repo.Event]:
        """Close an open recipient that cannot get the message, in state ``status``
        ("Unreachable", or "Rejected" when a VASP refused its DeliverReq for good), and
        queue the sender's delivery report with that X-Mms-Status (OMA-MMS-ENC §6.8) now
        rather than Expired at expiry. Runs in the caller's unit."""
        row = repo.get_recipient_by_id(conn, recipient_id)
        if row is None:
            return []
        state = {"Unreachable": repo.UNREACHABLE, "Rejected": repo.REJECTED}[status]
        if not repo.set_recipient_state(conn, recipient_id, state, now, next_attempt_at=None):
            return []
        out = [repo.Event(row.message_id, state, now, recipient_id, state, detail)]
        return out + self._delivery_report(conn, row, status, now)

    def _queue_mm7(
        self,
        conn: Connection,
        kind: str,
        vasp: str,
        message_id: str,
        recipient_id: int,
        now: float,
        info: dict[str, Any],
    ) -> repo.Event:
        """Queue an MM7 request to a VASP (sent by mmsc.mm7_outbound); ``info`` is what the
        request needs beyond the message and recipient rows, kept as JSON in the outbox."""
        repo.enqueue_push(
            conn,
            kind=kind,
            destination=vasp,
            pdu=json.dumps(info).encode(),
            now=now,
            message_id=message_id,
            recipient_id=recipient_id,
        )
        return repo.Event(message_id, f"{kind}-queued", now, recipient_id, None, vasp)

    def _queue_report(
        self,
        conn: Connection,
        to: Address,
        pdu: MmsPdu,
        recipient_id: int,
        now: float,
        status: str,
    ) -> repo.Event:
        """Queue a report PDU (m-delivery-ind, m-read-orig-ind) as a push to the originator."""
        message_id = str(pdu.headers["Message-ID"])
        repo.enqueue_push(
            conn,
            kind=pdu.message_type.removeprefix("m-"),
            destination=str(to),
            pdu=mms.encode(pdu),
            now=now,
            message_id=message_id,
            recipient_id=recipient_id,
        )
        event = (
            "delivery-report-queued"
            if pdu.message_type == "m-delivery-ind"
            else ("read-report-queued")
        )
        return repo.Event(message_id, event, now, recipient_id, None, status)

    def _delivery_report(
        self, conn: Connection, row: Any, status: str, now: float, allowed: bool = True
    ) -> list[repo.Event]:
        """Queue an m-delivery-ind to the originator when it asked for one (OMA-MMS-ENC §6.8),
        or a DeliveryReportReq to the VASP that submitted the message (TS 23.140 §5.7)."""
        if not (row.m_delivery_report and allowed):
            return []
        if row.m_origin_interface == "mm7" and row.m_vasp:
            info = {"recipient": row.address, "status": status, "date": now}
            return [
                self._queue_mm7(
                    conn, "mm7-delivery-report", row.m_vasp, row.message_id, row.id, now, info
                )
            ]
        if row.m_origin_interface != "mm1":
            return []
        originator = self._address(row.m_originator)
        if originator.kind != "msisdn":
            return []
        pdu = MmsPdu(
            "m-delivery-ind",
            None,
            self.policy.notification_version,
            {
                "Message-ID": row.message_id,
                "To": [self._address(row.address).to_mms()],
                "Date": int(now),
                "X-Mms-Status": status,
            },
        )
        return [self._queue_report(conn, originator, pdu, row.id, now, status)]

    # -------------------------------------------------------------- retrieval

    async def recipient(self, token: str) -> Any:
        return await self.read(repo.get_recipient_by_token, token)

    async def retrieve_conf(
        self, row: Any, version: str | None = None, payload_key: str | None = None
    ) -> bytes:
        """The m-retrieve-conf for a recipient: stored envelope + stored body (or the
        adapted variant of the body named by ``payload_key``).

        A message to many recipients, or a popular variant, is fetched over and over,
        and re-encoding it (its parts, and every address of a long To list) cost most
        of a retrieval. Only the Transaction-ID differs between its recipients, and
        OMA-MMS-ENC §7 puts it among the three headers that open every PDU, in a fixed
        order: so the encoding after those three is cached (up to
        ``PDU_CACHE_BYTES``) and each fetch encodes only its own opening headers.
        Payloads never change under a key (a replace writes a new key), so the cache
        needs no invalidation beyond eviction.
        """
        version = version or row.m_mms_version or "1.2"
        key = (payload_key or row.m_payload_key, row.message_id, version)
        head = mms.encode(MmsPdu("m-retrieve-conf", row.token, version, {}), check_mandatory=False)
        tail = self._conf_cache.pop(key, None)
        if tail is None:
            full = await self._encode_retrieve_conf(row, version, key[0])
            if not full.startswith(head):  # cannot happen with our encoder; never splice then
                raise AssertionError("m-retrieve-conf does not open with its own headers")
            tail = full[len(head) :]
            self._conf_cache_bytes += len(tail)
            while self._conf_cache_bytes > PDU_CACHE_BYTES and self._conf_cache:
                _old, old_tail = next(iter(self._conf_cache.items()))
                del self._conf_cache[_old]
                self._conf_cache_bytes -= len(old_tail)
        self._conf_cache[key] = tail  # most recent last
        return head + tail

    async def _encode_retrieve_conf(self, row: Any, version: str, payload_key: str) -> bytes:
        original = mms.decode(await self.payloads.get(payload_key))
        headers: dict[str, Any] = {"Message-ID": row.message_id, "Date": int(row.m_created_at)}
        if row.m_sender_visible:
            headers["From"] = self._address(row.m_originator).to_mms()
        for name in RETRIEVE_FIELDS:
            if name in original.headers:
                headers[name] = original.headers[name]
        headers["X-Mms-Retrieve-Status"] = "Ok"
        pdu = MmsPdu(
            "m-retrieve-conf",
            row.token,
            version,
            headers,
            original.content_type,
            original.content_type_params,
            original.parts,
            original.body,
        )
        return mms.encode(pdu, check_mandatory=False)

    async def mark_retrieved(
        self, row: Any, *, report_allowed: bool = True, cause: str, interface: str = "mm1"
    ) -> bool:
        now = time.time()

        def unit(conn: Connection) -> tuple[bool, list[repo.Event]]:
            out = self.retrieved(conn, row, now, cause=cause, report_allowed=report_allowed)
            repo.add_events(conn, out)
            return bool(out), out

        moved: bool = await self.write(unit)
        if moved:
            self.delivered(row, now, interface)
        return moved

    def retrieved(
        self, conn: Connection, row: Any, now: float, *, cause: str, report_allowed: bool = True
    ) -> list[repo.Event]:
        """Make an open recipient Retrieved and queue the sender's delivery report, in the
        caller's unit: the two are one commit, so a crash cannot leave a delivered
        recipient open (and its sender told "Expired" later). The events, for the caller
        to add; none when the recipient was no longer open. After the commit the caller
        calls :meth:`delivered`."""
        # retrieved_at keeps the time of the first fetch when there was one (fetched).
        fetched_at = row.retrieved_at or now
        moved = repo.set_recipient_state(
            conn, row.id, repo.RETRIEVED, now, retrieved_at=fetched_at, next_attempt_at=None
        )
        if not moved:
            return []
        out = [repo.Event(row.message_id, "retrieved", now, row.id, repo.RETRIEVED, cause)]
        return out + self._delivery_report(conn, row, "Retrieved", now, report_allowed)

    def delivered(self, row: Any, now: float, interface: str) -> None:
        """After the commit that made ``row`` Retrieved (:meth:`retrieved`): count the
        delivery, and wake the scheduler for the report that commit queued."""
        metrics.messages_delivered.labels(interface).inc()
        metrics.delivery_latency.observe(max(now - row.m_created_at, 0.0))
        self._wake()

    async def fetched(self, row: Any, version: str) -> bool:
        """A handset got its message (an m-retrieve-conf with Retrieve-Status Ok): stop
        notifying it again and record the fetch as a ``fetched`` event; True if this was
        the first fetch.

        Re-notification stops here, not only at m-notifyresp-ind: on a flaky bearer that
        PDU is often lost, and the handset would be pushed the same notification up to
        ``notify_max_attempts`` more times for a message it already has. The fetch is
        not a delivery, though: the recipient becomes Retrieved, and the sender gets its
        report, only when the handset confirms with m-notifyresp-ind or
        m-acknowledge-ind (OMA-MMS-ENC §6.2, §6.4), since a fetch may still fail on the
        handset's side. Only the first fetch writes (``retrieved_at`` is set by it), so
        a later one costs nothing beyond the lookup it already made.
        """
        if row.retrieved_at is not None or row.state not in repo.OPEN_STATES:
            return False
        now = time.time()

        def unit(conn: Connection) -> tuple[bool, list[repo.Event]]:
            if not repo.mark_fetched(conn, row.message_id, row.id, now):
                return False, []  # another node (or request) recorded it first
            out = [repo.Event(row.message_id, "fetched", now, row.id, None, f"MMS {version}")]
            out += repo.drop_queued_notification(
                conn, row.message_id, row.id, now, "recipient fetched the message"
            )
            repo.add_events(conn, out)
            return True, out

        first: bool = await self.write(unit)
        return first

    async def notify_response(self, row: Any, status: str, report_allowed: bool) -> None:
        """m-notifyresp-ind (OMA-MMS-ENC §6.2): Retrieved, Rejected, Deferred, Unrecognised."""
        now = time.time()
        if status == "Retrieved":
            await self.mark_retrieved(row, report_allowed=report_allowed, cause="notifyresp")
            return
        state = {
            "Rejected": repo.REJECTED,
            "Deferred": repo.DEFERRED,
            "Unrecognised": repo.UNRECOGNISED,
        }.get(status)
        if state is None:
            log.info("notifyresp with status %r for %s ignored", status, row.message_id)
            return

        def unit(conn: Connection) -> tuple[None, list[repo.Event]]:
            # Deferred: the user fetches later; stop re-notifying but keep it open.
            only_from = (
                (repo.PENDING, repo.NOTIFIED) if state == repo.DEFERRED else repo.OPEN_STATES
            )
            moved = repo.set_recipient_state(
                conn, row.id, state, now, only_from=only_from, next_attempt_at=None
            )
            if not moved:
                return None, []
            out = [repo.Event(row.message_id, status.lower(), now, row.id, state, "notifyresp")]
            out += self._delivery_report(conn, row, status, now, report_allowed)
            repo.add_events(conn, out)
            return None, out

        await self.write(unit)
        self._wake()

    async def acknowledge(self, row: Any, report_allowed: bool) -> None:
        """m-acknowledge-ind after a retrieval (OMA-MMS-ENC §6.4)."""
        now = time.time()
        moved = await self.mark_retrieved(row, report_allowed=report_allowed, cause="acknowledge")
        if not moved:

            def unit(conn: Connection) -> tuple[None, list[repo.Event]]:
                out = [repo.Event(row.message_id, "acknowledged", now, row.id, None, None)]
                repo.add_events(conn, out)
                return None, out

            await self.write(unit)

    async def read_report(self, reader: Address, pdu: MmsPdu) -> bool:
        """m-read-rec-ind from a recipient -> m-read-orig-ind to the originator (§6.7)."""
        message_id = pdu.headers.get("Message-ID")
        if not isinstance(message_id, str):
            return False
        now = time.time()

        def unit(conn: Connection) -> tuple[bool, list[repo.Event]]:
            message = repo.get_message(conn, message_id)
            if message is None:
                return False, []
            rcpt = repo.find_recipient(conn, message_id, str(reader))
            if rcpt is None:
                return False, []
            status = str(pdu.headers.get("X-Mms-Read-Status", "Read"))
            repo.update_recipient(conn, rcpt.id, read_status=status, updated_at=now)
            out = [repo.Event(message_id, "read-report", now, rcpt.id, None, status)]
            if message.read_report and message.origin_interface == "mm7" and message.vasp:
                info = {"recipient": str(reader), "status": status, "date": now}
                out.append(
                    self._queue_mm7(
                        conn, "mm7-read-reply", message.vasp, message_id, rcpt.id, now, info
                    )
                )
            originator = self._address(message.originator)
            if (
                message.read_report
                and originator.kind == "msisdn"
                and (message.origin_interface == "mm1")
            ):
                orig = MmsPdu(
                    "m-read-orig-ind",
                    None,
                    self.policy.notification_version,
                    {
                        "Message-ID": message_id,
                        "To": [originator.to_mms()],
                        "From": reader.to_mms(),
                        "Date": int(now),
                        "X-Mms-Read-Status": status,
                    },
                )
                out.append(self._queue_report(conn, originator, orig, rcpt.id, now, status))
            repo.add_events(conn, out)
            return True, out

        ok: bool = await self.write(unit)
        if ok:
            self._wake()
        return ok

    async def remember_device(
        self, address: str, user_agent: str | None, profile: str | None, version: str | None
    ) -> None:
        """Learned facts about a subscriber's handset (for adaptation and notification sizes).

        Written when they change and at most every ``DEVICE_REFRESH`` seconds otherwise
        (to keep last_seen honest): a retrieval must not cost a durable commit when
        the handset says what it said last time."""
        now = time.time()
        if not self._facts_changed(address, (user_agent, profile, version), now):
            return

        def unit(conn: Connection) -> tuple[None, list[repo.Event]]:
            repo.remember_subscriber(
                conn, address, now, user_agent=user_agent, uaprof_url=profile, mms_version=version
            )
            return None, []

        await self.write(unit)

    def _facts_changed(self, address: str, facts: tuple[str | None, ...], now: float) -> bool:
        """Whether a handset's facts must be written: they differ from what this process
        wrote last, or that was ``DEVICE_REFRESH`` seconds ago (remembered as written)."""
        last = self._device_facts.get(address)
        if last is not None and last[0] == facts and now - last[1] < DEVICE_REFRESH:
            return False
        if len(self._device_facts) >= 200_000:
            self._device_facts.pop(next(iter(self._device_facts)))
        self._device_facts[address] = (facts, now)
        return True

    # ---------------------------------------------------------------- forward

    async def forward(self, forwarder: Address, pdu: MmsPdu, token: str | None) -> Accepted:
        """m-forward-req (OMA-MMS-ENC §6.5): a recipient sends a message it was notified of
        on to new recipients without fetching it first. The original recipient becomes
        Forwarded (and its sender gets that as a delivery report); the new message carries
        X-Mms-Previously-Sent-By/-Date."""
        row = await self.recipient(token) if token else None
        if row is None or row.m_expires_at < time.time() or row.state in UNFORWARDABLE:
            # A copy the VASP cancelled, or the recipient rejected, is not theirs to send
            # on, as it is not theirs to fetch (mmsc.mm1 refuses the same states).
            raise SendRefused("Error-permanent-message-not-found", "no such message")
        if row.address != str(forwarder):
            raise SendRefused("Error-permanent-service-denied", "not a recipient of that message")
        original = mms.decode(await self.payloads.get(row.m_payload_key))
        if original.headers.get("X-Mms-Distribution-Indicator") == "No":
            # The originator (a VASP's DistributionIndicator, or a handset) forbade
            # redistribution: OMA-MMS-ENC 1.2 §6.5, TS 23.140 §8.7.1.
            raise SendRefused(
                "Error-permanent-service-denied", "the originator does not allow forwarding"
            )
        count = len(original.headers.get("X-Mms-Previously-Sent-By", []))
        headers: dict[str, Any] = {
            k: v
            for k, v in pdu.headers.items()
            if k
            in (
                "To",
                "Cc",
                "Bcc",
                "X-Mms-Expiry",
                "X-Mms-Delivery-Time",
                "X-Mms-Delivery-Report",
                "X-Mms-Read-Report",
            )
        }
        for name in ("Subject", "X-Mms-Message-Class", "X-Mms-Priority"):
            if name in original.headers:
                headers[name] = original.headers[name]
        previous_by = list(original.headers.get("X-Mms-Previously-Sent-By", []))
        previous_date = list(original.headers.get("X-Mms-Previously-Sent-Date", []))
        if row.m_sender_visible:
            previous_by.append(
                {"forward_count": count, "address": self._address(row.m_originator).to_mms()}
            )
            previous_date.append({"forward_count": count, "date": int(row.m_created_at)})
        if previous_by:
            headers["X-Mms-Previously-Sent-By"] = previous_by
            headers["X-Mms-Previously-Sent-Date"] = previous_date
        headers["From"] = forwarder.to_mms()
        forwarded = MmsPdu(
            "m-send-req",
            pdu.transaction_id or new_id(),
            pdu.mms_version or "1.2",
            headers,
            original.content_type,
            original.content_type_params,
            original.parts,
            original.body,
        )
        allowed = pdu.headers.get("X-Mms-Report-Allowed", "Yes") != "No"

        def mark_forwarded(conn: Connection, forwarded_id: str, now: float) -> list[repo.Event]:
            # In the new message's own transaction: forwarded and accepted commit together.
            moved = repo.set_recipient_state(
                conn, row.id, repo.FORWARDED, now, next_attempt_at=None
            )
            state = repo.FORWARDED if moved else None
            out = [repo.Event(row.message_id, "forwarded", now, row.id, state, forwarded_id)]
            if moved:
                out += self._delivery_report(conn, row, "Forwarded", now, allowed)
            return out

        return await self.accept(forwarded, mms.encode(forwarded), forwarder, also=mark_forwarded)

    # ------------------------------------------------------------------ trace

    async def trace(self, message_id: str) -> dict[str, Any] | None:
        """Where is my MMS: the message, each recipient and every event, for the admin API."""

        def load(conn: Connection) -> tuple[Any, list[Any], list[Any]]:
            message = repo.get_message(conn, message_id)
            if message is None:
                return None, [], []
            return (
                message,
                repo.list_recipients(conn, message_id),
                repo.list_events(conn, message_id),
            )

        # A thread, not the loop: a message to thousands of recipients has tens of
        # thousands of events, and the loop serves handsets meanwhile.
        message, rcpts, evs = await self.read_in_thread(load)
        if message is None:
            return None
        msg = dict(message._mapping)
        return {
            "message": msg,
            "recipients": [{k: v for k, v in r._mapping.items() if k != "token"} for r in rcpts],
            "events": [dict(e._mapping) for e in evs],
        }

    async def subscriber(self, address: str) -> dict[str, Any] | None:
        """What we learned about a subscriber's handset, for the admin API."""
        canonical = str(self._address(address))
        row = await self.read(repo.get_subscriber, canonical)
        return None if row is None else dict(row._mapping)

    async def set_capabilities(self, address: str, table: dict[str, Any] | None) -> str:
        """Store an operator's adaptation override for a subscriber (None removes it);
        returns the canonical address."""
        canonical = str(self._address(address))
        now = time.time()

        def unit(conn: Connection) -> tuple[None, list[repo.Event]]:
            repo.set_subscriber_capabilities(conn, canonical, table, now)
            return None, []

        await self.write(unit)
        self._overrides.pop(canonical, None)
        return canonical

    async def capabilities_override(self, address: str) -> dict[str, Any] | None:
        """The override stored for a canonical address, if any. Remembered for
        ``OVERRIDE_TTL`` seconds: retrievals are frequent and overrides rare (a change
        made on another node shows up within that time; on this node at once)."""
        now = time.monotonic()
        cached = self._overrides.get(address)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self.read(repo.get_subscriber, address)
        value = None if row is None else row.capabilities
        result = value if isinstance(value, dict) and value else None
        if len(self._overrides) >= 100_000:
            self._overrides.clear()
        self._overrides[address] = (now + OVERRIDE_TTL, result)
        return result


def _subject_mode(value: Any) -> str:
    """[notify] include_subject: true/"always", false/"never", or "auto"."""
    if value is True or str(value).lower() in ("always", "true", "yes"):
        return "always"
    if value is False or str(value).lower() in ("never", "false", "no"):
        return "never"
    if str(value).lower() == "auto":
        return "auto"
    raise ConfigError(
        f'notify.include_subject: expected "auto", "always" or "never", got {value!r}'
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
