"""SQL for the message life cycle: every function takes a connection inside a transaction.

The functions are synchronous: the group-commit writer runs a whole batch of
them in one go (in its own thread on SQLite, through ``run_sync`` on
PostgreSQL), which costs a tenth of awaiting each statement through an async
driver (bench/README.md, MM1 accept benchmark). The hot INSERTs are constant
statements so SQLAlchemy compiles them once.

Claims use ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so that
several nodes sharing one database each take different rows and no
recipient is notified twice for one attempt; the claimed rows are moved out
of the due set in the same transaction. On SQLite the writer's transactions
begin IMMEDIATE, which makes the same statements exclusive (storage/db.py).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import (
    Float,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Row

from storage.fastsql import FastStatement
from storage.models import (
    events,
    messages,
    metadata,
    outbox,
    recipients,
    smsc_messages,
    subscribers,
    uaprof_profiles,
)

# Recipient states. Terminal ones never change again.
PENDING = "pending"
NOTIFIED = "notified"
DEFERRED = "deferred"
RETRIEVED = "retrieved"
REJECTED = "rejected"
UNRECOGNISED = "unrecognised"
EXPIRED = "expired"
FORWARDED = "forwarded"
CANCELLED = "cancelled"
UNREACHABLE = "unreachable"  # the SMS side refused the notification for good
OPEN_STATES = (PENDING, NOTIFIED, DEFERRED)
TERMINAL_STATES = (
    RETRIEVED,
    REJECTED,
    UNRECOGNISED,
    EXPIRED,
    FORWARDED,
    CANCELLED,
    UNREACHABLE,
)

# Outbox states.
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
DROPPED = "dropped"  # not sent, on purpose: fetched, expired, cancelled, or no backend


# The rows written per message are plain (not frozen) dataclasses: a frozen one's
# __init__ sets each field through object.__setattr__, four times slower (2 µs per
# Event here, ~5 of them per message). Nothing changes them after they are made.
@dataclass(slots=True)
class NewMessage:
    id: str
    transaction_id: str | None
    originator: str
    origin_interface: str
    vasp: str | None
    mms_version: str
    message_class: str
    priority: str | None
    subject: str | None
    content_type: str
    size: int
    payload_key: str
    headers: dict[str, Any]
    delivery_report: bool
    read_report: bool
    sender_visible: bool
    created_at: float
    expires_at: float
    earliest_delivery_at: float | None
    state: str = "accepted"


@dataclass(slots=True)
class NewRecipient:
    token: str
    address: str
    kind: str
    route: str
    state: str
    next_attempt_at: float | None


@dataclass(slots=True)
class Event:
    message_id: str
    event: str
    at: float
    recipient_id: int | None = None
    state: str | None = None
    detail: str | None = None


@functools.lru_cache(maxsize=512)
def _update_by_key(
    table_name: str,
    key: str,
    where: tuple[tuple[str, tuple[str, ...]], ...],
    columns: tuple[str, ...],
) -> FastStatement:
    """An UPDATE ... WHERE key = :k [AND col IN (...)] SET col = :v_col, built once per shape.

    Building a statement per call costs about 240 µs here, executing a cached one
    through SQLAlchemy about 60 µs, on the DBAPI cursor (storage/fastsql.py) a few
    µs: the hot updates all go through this. The allowed values of the WHERE are
    part of the shape, so they are bound as constants of the statement.
    """
    table = metadata.tables[table_name]
    stmt = update(table).where(table.c[key] == bindparam("k"))
    for column, allowed in where:
        col = table.c[column]
        binds = [
            bindparam(f"w_{column}_{i}", value, type_=col.type) for i, value in enumerate(allowed)
        ]
        stmt = stmt.where(col.in_(binds) if len(binds) > 1 else col == binds[0])
    return FastStatement(
        stmt.values({c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns})
    )


def _update(
    conn: Connection,
    table_name: str,
    key: str,
    key_value: Any,
    values: dict[str, Any],
    where: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> int:
    stmt = _update_by_key(table_name, key, where, tuple(values))
    params = {f"v_{c}": v for c, v in values.items()}
    params["k"] = key_value
    for column, allowed in where:
        for i, value in enumerate(allowed):
            params[f"w_{column}_{i}"] = value
    return stmt.rowcount(conn, params)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _row(obj: Any) -> dict[str, Any]:
    """A dataclass as statement parameters: shallow, unlike dataclasses.asdict, which
    deep-copies every value (the message's headers JSON included) and showed up at ~4%
    of the server's CPU under load."""
    return {name: getattr(obj, name) for name in _field_names(type(obj))}


_INSERT_EVENT = FastStatement(insert(events), _field_names(Event))
_INSERT_MESSAGE = FastStatement(insert(messages), _field_names(NewMessage))
_INSERT_RECIPIENT = FastStatement(
    insert(recipients).returning(recipients.c.id),
    (*_field_names(NewRecipient), "message_id", "attempts", "updated_at", "expires_at"),
)
_PUSH_COLUMNS = (
    "kind",
    "destination",
    "pdu",
    "state",
    "attempts",
    "due_at",
    "created_at",
    "message_id",
    "recipient_id",
    "claimed_by",
    "claimed_until",
    "last_error",
    "sent_at",
)
_INSERT_PUSH = FastStatement(insert(outbox).returning(outbox.c.id), _PUSH_COLUMNS)


def add_events(conn: Connection, rows: Iterable[Event]) -> None:
    _INSERT_EVENT.executemany_objects(conn, rows)


def insert_message(
    conn: Connection, message: NewMessage, rcpts: Sequence[NewRecipient]
) -> list[int]:
    """The message row and its recipient rows; returns the recipient ids in order."""
    _INSERT_MESSAGE.execute_object(conn, message).close()
    ids: list[int] = []
    now = message.created_at
    for r in rcpts:  # one statement each: RETURNING of executemany is not portable
        row = _row(r)
        row.update(message_id=message.id, attempts=0, updated_at=now, expires_at=message.expires_at)
        ids.append(int(_INSERT_RECIPIENT.scalar(conn, row)))
    return ids


_GET_MESSAGE = select(messages).where(messages.c.id == bindparam("message_id"))


def get_message(conn: Connection, message_id: str) -> Row[Any] | None:
    return conn.execute(_GET_MESSAGE, {"message_id": message_id}).first()


# The message columns that recipient-centred queries carry (prefixed ``m_``): not the
# JSON headers, whose decoding per row would cost more than the rest of the row.
_MESSAGE_COLUMNS = [
    messages.c[name].label(f"m_{name}")
    for name in (
        "originator",
        "origin_interface",
        "sender_visible",
        "subject",
        "message_class",
        "size",
        "payload_key",
        "delivery_report",
        "mms_version",
        "created_at",
        "expires_at",
        "vasp",
    )
]


def _with_message() -> Any:
    m = messages
    return select(recipients, *_MESSAGE_COLUMNS).join(m, m.c.id == recipients.c.message_id)


# A fetch also needs the MMS version the recipient's handset last sent us (see
# mmsc.mm1.retrieve_version): one outer join on the subscriber's key, not a lookup more.
_BY_TOKEN = (
    _with_message()
    .add_columns(subscribers.c.mms_version.label("s_mms_version"))
    .outerjoin(subscribers, subscribers.c.address == recipients.c.address)
    .where(recipients.c.token == bindparam("token"))
)
_BY_ID = _with_message().where(recipients.c.id == bindparam("rid"))


def get_recipient_by_token(conn: Connection, token: str) -> Row[Any] | None:
    """The recipient row (with its message's columns prefixed ``m_``, and ``s_mms_version``,
    the version of its handset or None) for a fetch URL token."""
    return conn.execute(_BY_TOKEN, {"token": token}).first()


def get_recipient_by_id(conn: Connection, recipient_id: int) -> Row[Any] | None:
    """The recipient row with its message's columns prefixed ``m_``."""
    return conn.execute(_BY_ID, {"rid": recipient_id}).first()


def find_recipient(conn: Connection, message_id: str, address: str | None) -> Row[Any] | None:
    q = select(recipients).where(recipients.c.message_id == message_id)
    if address is not None:
        q = q.where(recipients.c.address == address)
    return (conn.execute(q.order_by(recipients.c.id).limit(1))).first()


def list_recipients(conn: Connection, message_id: str) -> list[Row[Any]]:
    q = select(recipients).where(recipients.c.message_id == message_id).order_by(recipients.c.id)
    return list((conn.execute(q)).all())


def list_events(conn: Connection, message_id: str) -> list[Row[Any]]:
    q = select(events).where(events.c.message_id == message_id).order_by(events.c.id)
    return list((conn.execute(q)).all())


def set_recipient_state(
    conn: Connection,
    recipient_id: int,
    state: str,
    now: float,
    *,
    only_from: Sequence[str] = OPEN_STATES,
    **values: Any,
) -> bool:
    """Move a recipient to ``state`` if it is in one of ``only_from``; True if it moved."""
    values = {"state": state, "updated_at": now, **values}
    return bool(
        _update(conn, "recipients", "id", recipient_id, values, (("state", tuple(only_from)),))
    )


def update_recipient(conn: Connection, recipient_id: int, **values: Any) -> None:
    _update(conn, "recipients", "id", recipient_id, values)


_MARK_FETCHED = FastStatement(
    update(recipients)
    .where(
        recipients.c.id == bindparam("rid"),
        recipients.c.retrieved_at.is_(None),
        recipients.c.state.in_([bindparam(f"open_{i}") for i in range(len(OPEN_STATES))]),
    )
    .values(retrieved_at=bindparam("now"), next_attempt_at=null(), updated_at=bindparam("now"))
)
_QUEUED_NOTIFICATION = (
    outbox.c.message_id == bindparam("message_id"),  # indexed; the recipient is not
    outbox.c.recipient_id == bindparam("rid"),
    outbox.c.kind == bindparam("kind"),
    outbox.c.state == bindparam("queued"),
)
_DROP_QUEUED_NOTIFICATION = (
    update(outbox)
    .where(*_QUEUED_NOTIFICATION)
    .values(state=bindparam("dropped"), last_error=bindparam("reason"))
)
_DROP_RETURNING = FastStatement(_DROP_QUEUED_NOTIFICATION.returning(outbox.c.destination))
_FIND_QUEUED_NOTIFICATION = FastStatement(select(outbox.c.destination).where(*_QUEUED_NOTIFICATION))
_DROP_FOUND = FastStatement(_DROP_QUEUED_NOTIFICATION)


def mark_fetched(conn: Connection, message_id: str, recipient_id: int, now: float) -> bool:
    """The first successful fetch of an open recipient: ``retrieved_at`` is set and no
    further notification is planned (the caller drops one still queued:
    drop_queued_notification). The state stays: only the handset's own confirmation
    makes it Retrieved. False when the recipient was fetched before (or is closed), so
    that only the first fetch is recorded."""
    values: dict[str, Any] = {"rid": recipient_id, "now": now}
    values.update({f"open_{i}": state for i, state in enumerate(OPEN_STATES)})
    return bool(_MARK_FETCHED.rowcount(conn, values))


def drop_queued_notification(
    conn: Connection, message_id: str, recipient_id: int, now: float, reason: str
) -> list[Event]:
    """The recipient's notification pushes not yet sent will not be sent (it fetched,
    expired or was cancelled): a ``push-dropped`` event per push, with ``reason``, for
    the caller to add in the same unit, so that every push of a trace ends in an event.

    One claimed meanwhile (being sent) is left alone: its outcome is its event."""
    values = {
        "message_id": message_id,
        "rid": recipient_id,
        "kind": "notification",
        "queued": QUEUED,
        "dropped": DROPPED,
        "reason": reason,
    }
    if conn.dialect.update_returning:
        destinations = _DROP_RETURNING.first_column(conn, values)
    else:  # one writer at a time (SQLite before 3.35): nothing moves in between
        destinations = _FIND_QUEUED_NOTIFICATION.first_column(conn, values)
        if destinations:
            _DROP_FOUND.rowcount(conn, values)
    return [
        Event(message_id, "push-dropped", now, recipient_id, None, f"notification to {d}: {reason}")
        for d in destinations
    ]


def _skip_locked(conn: Connection, query: Any, *of: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, of=of or None)
    return query


def due_recipients(conn: Connection, now: float, limit: int) -> list[Any]:
    """Open recipients whose (re-)notification is due, locked for this transaction.

    Each row also carries what the recipient's handset last told us (``s_user_agent``,
    ``s_uaprof_url``, None when unknown), for the size its notification announces: one
    join here instead of a lookup per notification. Run on the DBAPI cursor (every
    scheduler pass asks this): the rows are named tuples of the driver's values, so
    SQLite's booleans are 0 and 1."""
    values: dict[str, Any] = {"now": now, "limit": limit, "offset": 0}
    values.update({f"open_{i}": state for i, state in enumerate(OPEN_STATES)})
    cursor = _DUE_RECIPIENTS.execute(conn, values)
    make = _row_type(tuple(d[0] for d in cursor.description))._make
    rows = [make(r) for r in cursor.fetchall()]
    cursor.close()
    return rows


def _due_recipients_statement() -> FastStatement:
    m = messages
    s = subscribers
    q = (
        select(
            recipients,
            *_MESSAGE_COLUMNS,
            s.c.user_agent.label("s_user_agent"),
            s.c.uaprof_url.label("s_uaprof_url"),
        )
        .join(m, m.c.id == recipients.c.message_id)
        .outerjoin(s, s.c.address == recipients.c.address)
        .where(
            or_(*(recipients.c.state == bindparam(f"open_{i}") for i in range(len(OPEN_STATES)))),
            recipients.c.next_attempt_at
            <= bindparam("now"),  # with the state: ix_recipients_open_due
            m.c.expires_at > bindparam("now"),
        )
        .order_by(recipients.c.next_attempt_at)
        # (an explicit OFFSET: SQLite renders one with a LIMIT that is a parameter)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .with_for_update(skip_locked=True, of=recipients)  # PostgreSQL only
    )
    return FastStatement(q)


_DUE_RECIPIENTS = _due_recipients_statement()


@functools.lru_cache(maxsize=16)
def _row_type(names: tuple[str, ...]) -> Any:
    """A named tuple class for rows with these column names (attribute access like a Row)."""
    return collections.namedtuple("_Row", names)


def expired_recipients(conn: Connection, now: float, limit: int) -> list[Row[Any]]:
    """Open recipients of messages past their expiry, locked for this transaction."""
    m = messages
    q = (
        select(recipients, *_MESSAGE_COLUMNS)
        .join(m, m.c.id == recipients.c.message_id)
        # the recipient's own copy of the expiry: ix_recipients_open_expiry
        .where(recipients.c.state.in_(OPEN_STATES), recipients.c.expires_at <= now)
        .order_by(recipients.c.expires_at)
        .limit(limit)
    )
    return list((conn.execute(_skip_locked(conn, q, recipients))).all())


def enqueue_push(
    conn: Connection,
    *,
    kind: str,
    destination: str,
    pdu: bytes,
    now: float,
    message_id: str | None,
    recipient_id: int | None,
) -> int:
    row = _push_row(kind, destination, pdu, now, message_id, recipient_id)
    return int(_INSERT_PUSH.scalar(conn, row))


def _push_row(
    kind: str,
    destination: str,
    pdu: bytes,
    now: float,
    message_id: str | None,
    recipient_id: int | None,
) -> dict[str, Any]:
    """A new outbox row, due now (the columns of _PUSH_COLUMNS)."""
    return {
        "kind": kind,
        "destination": destination,
        "pdu": pdu,
        "state": QUEUED,
        "attempts": 0,
        "due_at": now,
        "created_at": now,
        "message_id": message_id,
        "recipient_id": recipient_id,
        "claimed_by": None,
        "claimed_until": None,
        "last_error": None,
        "sent_at": None,
    }


_INSERT_PUSHES = FastStatement(insert(outbox), _PUSH_COLUMNS)
_PLAN_ATTEMPT = FastStatement(
    update(recipients)
    .where(recipients.c.id == bindparam("k"))
    .values(
        attempts=bindparam("v_attempts"),
        next_attempt_at=bindparam("v_next"),
        updated_at=bindparam("v_now"),
    )
)


def queue_notifications(
    conn: Connection,
    items: Sequence[tuple[Any, int, float | None, bytes]],
    now: float,
    kind: str = "notification",
) -> None:
    """For each (due recipient row, attempt number, next attempt or None, PDU): plan the
    recipient's next attempt and queue the push, in two statements for the whole batch
    (each a round trip on PostgreSQL)."""
    if not items:
        return
    _PLAN_ATTEMPT.executemany(
        conn,
        [
            {"k": row.id, "v_attempts": attempts, "v_next": nxt, "v_now": now}
            for row, attempts, nxt, _pdu in items
        ],
    )
    _INSERT_PUSHES.executemany(
        conn,
        [
            _push_row(kind, row.address, pdu, now, row.message_id, row.id)
            for row, _attempts, _nxt, pdu in items
        ],
    )


def claim_outbox(
    conn: Connection,
    now: float,
    limit: int,
    owner: str,
    lease: float,
    kinds: Sequence[str] | None = None,
) -> list[Row[Any]]:
    """Take due pushes (and ones whose sender died: lease over) for ``owner``; only
    ``kinds`` when given (SMS pushes and MM7 requests go out through different senders).

    Where the database has UPDATE ... RETURNING (SQLite 3.35+, PostgreSQL) this is one
    statement run on the DBAPI cursor (the push loop claims many times a second);
    otherwise three Core statements.

    A claim (queued -> sending) writes no event: it is a lease, not a step of the
    message, and is undone by itself when the sender dies. The outcome the sender
    records (push-sent, -retry, -failed, -dropped) is the event."""
    if conn.dialect.update_returning:
        sqlite = conn.dialect.name == "sqlite"
        claim = _claim_statement(tuple(kinds) if kinds is not None else None, not sqlite)
        values: dict[str, Any] = {
            "now": now,
            "limit": limit,
            "owner": owner,
            "until": now + lease,
            "queued": QUEUED,
            "sending": SENDING,
            "offset": 0,
        }
        if kinds is not None:
            values.update({f"kind_{i}": kind for i, kind in enumerate(kinds)})
        cursor = claim.execute(conn, values)
        rows = cursor.fetchall()
        if sqlite and rows:
            # SQLite scans the whole table for a correlated subquery in RETURNING (3.40:
            # no index use): the acceptance times come from one point lookup per message.
            message_ids = list({r[_MESSAGE_ID_AT] for r in rows if r[_MESSAGE_ID_AT] is not None})
            created: dict[str, float] = {}
            if message_ids:
                marks = ",".join("?" * len(message_ids))
                cursor.execute(
                    f"SELECT id, created_at FROM messages WHERE id IN ({marks})", message_ids
                )
                created = dict(cursor.fetchall())
            rows = [(*r, created.get(r[_MESSAGE_ID_AT])) for r in rows]
        cursor.close()
        claimed = [_ClaimedPush._make(r) for r in rows]
        claimed.sort(key=_push_id)
        return claimed
    due = or_(
        and_(outbox.c.state == QUEUED, outbox.c.due_at <= now),
        and_(outbox.c.state == SENDING, outbox.c.claimed_until < now),
    )
    q = select(outbox.c.id).where(due)
    if kinds is not None:
        q = q.where(outbox.c.kind.in_(list(kinds)))
    q = q.order_by(outbox.c.due_at, outbox.c.id).limit(limit)
    ids = [r.id for r in (conn.execute(_skip_locked(conn, q))).all()]
    if not ids:
        return []
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(ids))
        .values(
            state=SENDING,
            claimed_by=owner,
            claimed_until=now + lease,
            attempts=outbox.c.attempts + 1,
        )
    )
    # With the message's time of acceptance, for the notification latency metric.
    rows = conn.execute(
        select(outbox, messages.c.created_at.label("m_created_at"))
        .outerjoin(messages, messages.c.id == outbox.c.message_id)
        .where(outbox.c.id.in_(ids))
        .order_by(outbox.c.id)
    )
    return list(rows.all())


# A claimed outbox row (every column, then the message's acceptance time) with the
# attribute access of a Row.
_ClaimedPush = _row_type((*(c.name for c in outbox.columns), "m_created_at"))


def _push_id(row: Any) -> int:
    return int(row.id)


_MESSAGE_ID_AT = [c.name for c in outbox.columns].index("message_id")


@functools.lru_cache(maxsize=8)
def _claim_statement(kinds: tuple[str, ...] | None, with_created: bool) -> FastStatement:
    """UPDATE outbox ... WHERE id IN (the oldest due rows, SKIP LOCKED on PostgreSQL)
    RETURNING the rows (and, ``with_created``, their message's acceptance time)."""
    due = or_(
        and_(outbox.c.state == bindparam("queued"), outbox.c.due_at <= bindparam("now")),
        and_(outbox.c.state == bindparam("sending"), outbox.c.claimed_until < bindparam("now")),
    )
    pick = select(outbox.c.id).where(due)
    if kinds is not None:
        pick = pick.where(
            or_(*(outbox.c.kind == bindparam(f"kind_{i}") for i in range(len(kinds))))
        )
    # FOR UPDATE SKIP LOCKED is rendered on PostgreSQL only (SQLite has one writer); an
    # explicit OFFSET, as SQLite renders one with a LIMIT that is a parameter.
    pick = (
        pick.order_by(outbox.c.due_at, outbox.c.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    pick = pick.with_for_update(skip_locked=True)
    created = select(messages.c.created_at).where(messages.c.id == outbox.c.message_id)
    stmt = (
        update(outbox)
        .where(outbox.c.id.in_(pick.scalar_subquery()))
        .values(
            state=bindparam("sending"),
            claimed_by=bindparam("owner"),
            claimed_until=bindparam("until"),
            attempts=outbox.c.attempts + literal_column("1"),  # a literal: no anonymous bind
        )
    )
    if with_created:
        return FastStatement(
            stmt.returning(*outbox.columns, created.scalar_subquery().label("m_created_at"))
        )
    return FastStatement(stmt.returning(*outbox.columns))


@dataclass(slots=True)
class PushOutcome:
    """What became of one claimed push (see :func:`finish_pushes`)."""

    push_id: int
    state: str  # SENT, FAILED, or QUEUED for a retry at ``retry_at``
    error: str | None
    retry_at: float | None
    now: float


IN_LIST_CHUNK = 128  # ids per statement of the id-list statements below


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), IN_LIST_CHUNK):
        yield ids[start : start + IN_LIST_CHUNK]


def _id_params(count: int) -> list[Any]:
    """``count`` bind parameters for an id list, named as _id_values names their values."""
    return [bindparam(f"id_{i}") for i in range(count)]


def _id_values(ids: Sequence[int]) -> dict[str, Any]:
    return {f"id_{i}": v for i, v in enumerate(ids)}


@functools.lru_cache(maxsize=IN_LIST_CHUNK)
def _owned_pushes(count: int) -> FastStatement:
    """Which of ``count`` outbox ids are still the owner's. One compiled statement per
    list length (a Core statement with an expanding IN list is compiled again at every
    execution: 200-300 µs per batch of outcomes, on the event loop)."""
    return FastStatement(
        select(outbox.c.id)
        .where(
            outbox.c.id.in_(_id_params(count)),
            outbox.c.claimed_by == bindparam("owner"),
            outbox.c.state == bindparam("sending"),
        )
        .with_for_update()  # PostgreSQL: no other node takes them over until this commits
    )


_FINISH_PUSH = FastStatement(
    update(outbox)
    .where(outbox.c.id == bindparam("k"))
    .values(
        state=bindparam("v_state"),
        last_error=bindparam("v_error"),
        claimed_until=null(),
        sent_at=func.coalesce(bindparam("v_sent_at", type_=Float), outbox.c.sent_at),
        due_at=func.coalesce(bindparam("v_due_at", type_=Float), outbox.c.due_at),
    )
)


def finish_pushes(conn: Connection, owner: str, outcomes: Sequence[PushOutcome]) -> set[int]:
    """Record the outcomes of claimed pushes; the ids that were still ``owner``'s (the
    others were taken over by another node meanwhile and keep that node's outcome).

    A fixed number of statements for the whole batch, whatever its size: on PostgreSQL
    each statement is a round trip, and three per push made recording the slowest part
    of sending."""
    if not outcomes:
        return set()
    owned: set[int] = set()
    for ids in _chunks([o.push_id for o in outcomes]):
        values = {**_id_values(ids), "owner": owner, "sending": SENDING}
        owned.update(_owned_pushes(len(ids)).first_column(conn, values))
    rows = [
        {
            "k": o.push_id,
            "v_state": o.state,
            "v_error": o.error,
            "v_sent_at": o.now if o.state == SENT else None,
            "v_due_at": o.retry_at,
        }
        for o in outcomes
        if o.push_id in owned
    ]
    _FINISH_PUSH.executemany(conn, rows)
    return owned


def mark_notified(conn: Connection, recipient_ids: Sequence[int], now: float) -> set[int]:
    """Pending recipients whose notification the gateway took become Notified; the ids
    that moved (a recipient notified before, or closed meanwhile, stays as it is; one
    that fetched without confirming is still open and becomes Notified)."""
    if not recipient_ids:
        return set()
    if conn.dialect.update_returning:
        moved: set[int] = set()
        for ids in _chunks(list(recipient_ids)):
            values = {**_id_values(ids), "pending": PENDING, "v_state": NOTIFIED, "v_now": now}
            moved.update(_mark_notified(len(ids)).first_column(conn, values))
        return moved
    stmt = (
        update(recipients)
        .where(recipients.c.id.in_(list(recipient_ids)), recipients.c.state == PENDING)
        .values(state=NOTIFIED, notified_at=now, updated_at=now)
    )
    moved = {
        row.id
        for row in conn.execute(
            select(recipients.c.id).where(
                recipients.c.id.in_(list(recipient_ids)), recipients.c.state == PENDING
            )
        )
    }
    conn.execute(stmt)
    return moved


@functools.lru_cache(maxsize=IN_LIST_CHUNK)
def _mark_notified(count: int) -> FastStatement:
    """UPDATE ... RETURNING for ``count`` recipient ids (see _owned_pushes for why)."""
    return FastStatement(
        update(recipients)
        .where(recipients.c.id.in_(_id_params(count)), recipients.c.state == bindparam("pending"))
        .values(
            state=bindparam("v_state"),
            notified_at=bindparam("v_now"),
            updated_at=bindparam("v_now"),
        )
        .returning(recipients.c.id)
    )


def stop_renotifying(conn: Connection, recipient_ids: Sequence[int], now: float) -> None:
    """Plan no further notification for these recipients: their push was dropped, not
    sent (no backend: mmsc.notify.none), and so would every later one be. They keep their
    state, open for a fetch until they expire."""
    for ids in _chunks(list(recipient_ids)):
        _stop_renotifying(len(ids)).rowcount(conn, {**_id_values(ids), "v_now": now})


@functools.lru_cache(maxsize=IN_LIST_CHUNK)
def _stop_renotifying(count: int) -> FastStatement:
    """UPDATE for ``count`` recipient ids (see _owned_pushes for why)."""
    return FastStatement(
        update(recipients)
        .where(recipients.c.id.in_(_id_params(count)), recipients.c.next_attempt_at.is_not(None))
        .values(next_attempt_at=null(), updated_at=bindparam("v_now"))
    )


def renew_claim(conn: Connection, push_id: int, owner: str, until: float) -> bool:
    """Extend ``owner``'s lease on a claimed row to ``until``, if no other node has taken
    the row over meanwhile. (Within one node a row is sent by one task at a time, even
    when the node claims it again: mmsc/outbox_loop.py.)"""
    stmt = (
        update(outbox)
        .where(outbox.c.id == push_id, outbox.c.claimed_by == owner, outbox.c.state == SENDING)
        .values(claimed_until=until)
    )
    return bool(conn.execute(stmt).rowcount)


def finish_push(
    conn: Connection,
    push_id: int,
    owner: str,
    *,
    state: str,
    now: float,
    error: str | None = None,
    retry_at: float | None = None,
) -> bool:
    """Record the outcome of a claimed push; False if another node took it over meanwhile."""
    values: dict[str, Any] = {"state": state, "last_error": error, "claimed_until": None}
    if state == SENT:
        values["sent_at"] = now
    if retry_at is not None:
        values["due_at"] = retry_at
    where = (("claimed_by", (owner,)), ("state", (SENDING,)))
    return bool(_update(conn, "outbox", "id", push_id, values, where))


def queue_depths(conn: Connection) -> dict[str, int]:
    """Counts for mmsc_queue_depth: open recipients by state and pushes waiting."""
    depths: dict[str, int] = dict.fromkeys((*OPEN_STATES, "outbox"), 0)
    q = (
        select(recipients.c.state, func.count())
        .where(recipients.c.state.in_(OPEN_STATES))
        .group_by(recipients.c.state)
    )
    for state, count in (conn.execute(q)).all():
        depths[state] = int(count)
    q2 = select(func.count()).select_from(outbox).where(outbox.c.state.in_((QUEUED, SENDING)))
    depths["outbox"] = int((conn.execute(q2)).scalar_one())
    return depths


def remember_subscriber(
    conn: Connection,
    address: str,
    now: float,
    *,
    user_agent: str | None,
    uaprof_url: str | None,
    mms_version: str | None,
) -> None:
    """Upsert what a handset told us about itself.

    INSERT ... ON CONFLICT DO UPDATE (PostgreSQL, SQLite >= 3.24): an update-then-insert
    would race between two nodes, and this runs inside the accept's transaction, where a
    duplicate-key error would fail the message itself.
    """
    facts = {"user_agent": user_agent, "uaprof_url": uaprof_url, "mms_version": mms_version}
    values: dict[str, Any] = {k: v for k, v in facts.items() if v is not None}
    values["last_seen"] = now
    values["address"] = address
    _upsert_subscriber(conn.dialect.name, tuple(values)).execute(conn, values).close()


def set_subscriber_capabilities(
    conn: Connection, address: str, capabilities: Any, now: float
) -> None:
    """Store (or, with None, remove) an operator's adaptation override for ``address``."""
    values = {"address": address, "capabilities": capabilities, "last_seen": now}
    _upsert_subscriber(conn.dialect.name, tuple(values)).execute(conn, values).close()


@functools.lru_cache(maxsize=32)
def _upsert_subscriber(dialect: str, columns: tuple[str, ...]) -> FastStatement:
    """INSERT ... ON CONFLICT (address) DO UPDATE of ``columns`` (which include the address)."""
    from sqlalchemy.dialects import postgresql, sqlite

    stmt: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(subscribers)
    stmt = stmt.on_conflict_do_update(
        index_elements=[subscribers.c.address],
        set_={c: stmt.excluded[c] for c in columns if c != "address"},
    )
    return FastStatement(stmt, columns)


def get_subscriber(conn: Connection, address: str) -> Row[Any] | None:
    result = conn.execute(select(subscribers).where(subscribers.c.address == address))
    return result.first()


def messages_to_purge(conn: Connection, before: float, limit: int) -> list[Row[Any]]:
    """Messages whose expiry (plus grace) has passed and that still have their body,
    locked for this transaction: accepted ones, and those a VASP cancelled (their body
    is no longer served, but was kept for the trace until then)."""
    q = (
        select(messages.c.id, messages.c.payload_key)
        .where(messages.c.state.in_(("accepted", "cancelled")), messages.c.expires_at <= before)
        .order_by(messages.c.expires_at)
        .limit(limit)
    )
    return list(conn.execute(_skip_locked(conn, q, messages)).all())


def live_payload_keys(conn: Connection, message_ids: Sequence[str]) -> dict[str, str]:
    """message id -> payload key of those of ``message_ids`` that still have their body
    (not yet purged at expiry)."""
    q = select(messages.c.id, messages.c.payload_key).where(
        messages.c.id.in_(list(message_ids)), messages.c.state != "expired"
    )
    return {row.id: row.payload_key for row in conn.execute(q)}


def remove_messages(conn: Connection, before: float, limit: int) -> int:
    """Delete everything kept about messages that expired before ``before`` and lost their
    body already: the message, recipient, event and push rows. Returns how many."""
    q = (
        select(messages.c.id)
        .where(messages.c.state == "expired", messages.c.expires_at <= before)
        .order_by(messages.c.expires_at)
        .limit(limit)
    )
    ids = [row.id for row in conn.execute(_skip_locked(conn, q, messages)).all()]
    if ids:
        for table in (events, outbox, smsc_messages, recipients):
            conn.execute(delete(table).where(table.c.message_id.in_(ids)))
        conn.execute(delete(messages).where(messages.c.id.in_(ids)))
    return len(ids)


def set_message_state(conn: Connection, message_id: str, state: str) -> None:
    _update(conn, "messages", "id", message_id, {"state": state})


def replace_content(
    conn: Connection,
    message_id: str,
    *,
    payload_key: str,
    size: int,
    content_type: str,
    subject: str | None,
    headers: Any,
    read_report: bool | None = None,
    earliest_delivery_at: float | None = None,
) -> bool:
    """Point a message at new content (MM7 ReplaceReq); False if the message is gone.

    ``read_report`` and ``earliest_delivery_at`` are what the replace says (None: as
    before): the columns the core acts on, not only the headers a handset reads. A new
    earliest delivery also moves the first notification of every recipient that has
    not been notified yet (PENDING, no attempt made)."""
    values: dict[str, Any] = {
        "payload_key": payload_key,
        "size": size,
        "content_type": content_type,
        "subject": subject,
        "headers": headers,
    }
    if read_report is not None:
        values["read_report"] = read_report
    if earliest_delivery_at is not None:
        values["earliest_delivery_at"] = earliest_delivery_at
    if not _update(conn, "messages", "id", message_id, values):
        return False
    if earliest_delivery_at is not None:
        conn.execute(
            update(recipients)
            .where(
                recipients.c.message_id == message_id,
                recipients.c.state == PENDING,
                recipients.c.attempts == 0,
                recipients.c.next_attempt_at.is_not(None),  # a VASP's short code has none
            )
            .values(next_attempt_at=earliest_delivery_at)
        )
    return True


def prune_pushes(conn: Connection, before: float) -> int:
    """Delete finished pushes created before ``before`` (their story stays in the events),
    and the SMSC ids of pushes that old: a receipt later than that finds nothing."""
    result = conn.execute(
        delete(outbox).where(
            outbox.c.state.in_((SENT, FAILED, DROPPED)), outbox.c.created_at < before
        )
    )
    conn.execute(delete(smsc_messages).where(smsc_messages.c.created_at < before))
    return int(result.rowcount or 0)


def remember_smsc_id_rows(
    conn: Connection, rows: Sequence[tuple[str, int, str | None, int | None, float]]
) -> None:
    """(SMSC id, outbox id, message id, recipient id, time) of submit_sms, in one statement."""
    values = [
        {
            "smsc_id": smsc_key(smsc_id),
            "outbox_id": outbox_id,
            "message_id": message_id,
            "recipient_id": recipient_id,
            "created_at": now,
        }
        for smsc_id, outbox_id, message_id, recipient_id, now in rows
        if smsc_id
    ]
    if values:
        conn.execute(insert(smsc_messages), values)


def smsc_key(smsc_id: str) -> str:
    """How an SMSC's message id is indexed: lower-case, without leading zeros. SMSCs
    write one id as "0A1B2C3D" in the submit_sm_resp and "a1b2c3d" in the receipt."""
    return smsc_id.strip().lower().lstrip("0")[:65] or "0"


def find_smsc_id(conn: Connection, candidates: Sequence[str]) -> Row[Any] | None:
    """The newest push submit known under any of ``candidates`` (forms of one SMSC id);
    as written too, for rows stored before ids were indexed by ``smsc_key``."""
    keys = list(dict.fromkeys([*(smsc_key(c) for c in candidates), *candidates]))
    q = (
        select(smsc_messages)
        .where(smsc_messages.c.smsc_id.in_(keys))
        .order_by(smsc_messages.c.id.desc())
        .limit(1)
    )
    return conn.execute(q).first()


def prune_uaprof(conn: Connection, before: float) -> int:
    """Delete profiles that expired before ``before`` (fetched again when next needed):
    every handset names its own URL, so the table would otherwise only grow."""
    result = conn.execute(delete(uaprof_profiles).where(uaprof_profiles.c.expires_at < before))
    return int(result.rowcount or 0)


def get_uaprof(conn: Connection, url: str) -> Row[Any] | None:
    return conn.execute(select(uaprof_profiles).where(uaprof_profiles.c.url == url)).first()


def put_uaprof(
    conn: Connection, url: str, capabilities: Any, fetched_at: float, expires_at: float
) -> None:
    """Upsert a fetched profile (``capabilities`` None: a dead URL, remembered too)."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert_fn: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert_fn(uaprof_profiles).values(
        url=url, capabilities=capabilities, fetched_at=fetched_at, expires_at=expires_at
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[uaprof_profiles.c.url],
        set_={c: stmt.excluded[c] for c in ("capabilities", "fetched_at", "expires_at")},
    )
    conn.execute(stmt)
