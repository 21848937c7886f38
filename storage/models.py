"""The database schema, as SQLAlchemy Core tables.

Core rather than the ORM: the accept path inserts three kinds of rows per
message and the measured cost per commit through the async ORM is about 1.6x
that of Core (../shared/research/performance.md, c3 vs c4).

Times are float seconds since the epoch (UTC) in every table: the scheduler
does arithmetic on them and both engines store a double exactly.

Each row's life:
- ``messages``: one per accepted MM; its body lives in the payload store.
- ``recipients``: one per (message, address), with its own state machine
  (pending -> notified -> retrieved/rejected/expired ...); ``next_attempt_at``
  makes it the durable queue of notifications still to send.
- ``outbox``: pushes to send through the notification backend (notifications,
  delivery and read reports), claimed with a lease so a crash only delays.
- ``events``: every state change of a message or recipient, with its cause.
- ``subscribers``: what we learned about a handset (User-Agent, UAProf, version).
- ``uaprof_profiles``: UAProf documents we fetched (or found dead), with their TTL.
- ``smsc_messages``: the id an SMSC gave each submit_sm of a push, so that its
  delivery receipt (which names only that id) finds the message again.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# A BIGINT primary key that SQLite still treats as its ROWID alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

messages = Table(
    "messages",
    metadata,
    Column("id", String(40), primary_key=True),  # our Message-ID, random
    Column("transaction_id", String(100)),  # the sender's X-Mms-Transaction-ID
    Column("originator", String(128), nullable=False),  # canonical address
    Column("origin_interface", String(8), nullable=False),  # "mm1" | "mm7"
    Column("vasp", String(64)),
    Column("mms_version", String(8), nullable=False),
    Column("message_class", String(32), nullable=False),
    Column("priority", String(16)),
    Column("subject", Text),
    Column("content_type", String(200), nullable=False),
    Column("size", Integer, nullable=False),  # X-Mms-Message-Size announced
    Column("payload_key", String(64), nullable=False),
    Column("headers", JSON, nullable=False),  # envelope fields for m-retrieve-conf
    Column("delivery_report", Boolean, nullable=False),
    Column("read_report", Boolean, nullable=False),
    Column("sender_visible", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("earliest_delivery_at", Float),
    Column("state", String(16), nullable=False),  # accepted | done | expired | cancelled
    Index("ix_messages_state_expiry", "state", "expires_at"),  # purge and record sweeps
)

recipients = Table(
    "recipients",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "message_id",
        String(40),
        ForeignKey("messages.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("token", String(40), nullable=False, unique=True),  # Content-Location secret
    Column("address", String(128), nullable=False),
    Column("kind", String(3), nullable=False),  # to | cc | bcc
    Column("route", String(16), nullable=False),  # local | vasp | none
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float),  # due for (re-)notification; NULL: none planned
    Column("notified_at", Float),
    Column("retrieved_at", Float),  # first fetch, else the confirmation (Mmsc.fetched)
    Column("read_status", String(32)),
    Column("updated_at", Float, nullable=False),
    # The message's expiry, copied here so the expiry sweep can find the open recipients
    # past it through one index (messages never change their expiry).
    Column("expires_at", Float),
    # The scheduler's questions, "open and due" and "open and expired": an index on
    # state alone made every pass read every recipient waiting to be fetched.
    Index("ix_recipients_open_due", "state", "next_attempt_at"),
    Index("ix_recipients_open_expiry", "state", "expires_at"),
    Index("ix_recipients_address", "address"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # notification | delivery-ind | read-orig-ind | mm7-deliver | mm7-delivery-report | …
    Column("kind", String(32), nullable=False),
    Column("destination", String(128), nullable=False),
    Column("message_id", String(40), index=True),
    Column("recipient_id", BigInteger),
    Column("pdu", LargeBinary, nullable=False),  # the MMS PDU the push carries
    Column("state", String(12), nullable=False),  # queued | sending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", Float, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_until", Float),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Index("ix_outbox_due", "state", "due_at"),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(40), nullable=False, index=True),
    Column("recipient_id", BigInteger),
    Column("at", Float, nullable=False),
    Column("event", String(40), nullable=False),
    Column("state", String(16)),  # the state entered, when the event changes one
    Column("detail", Text),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("address", String(128), primary_key=True),
    Column("user_agent", Text),
    Column("uaprof_url", Text),
    Column("mms_version", String(8)),
    Column("last_seen", Float, nullable=False),
    Column("capabilities", JSON),  # operator's override for adaptation (admin API), or NULL
)

smsc_messages = Table(
    "smsc_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("smsc_id", String(65), nullable=False, index=True),  # submit_sm_resp message_id
    Column("outbox_id", BigInteger, nullable=False),
    Column("message_id", String(40)),
    Column("recipient_id", BigInteger),
    Column("created_at", Float, nullable=False),
)

uaprof_profiles = Table(
    "uaprof_profiles",
    metadata,
    Column("url", String(1000), primary_key=True),
    Column("fetched_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),  # fetch again after this
    Column("capabilities", JSON),  # NULL: the URL was dead or not a profile (negative entry)
)

# Message bodies kept in the database itself ([storage] inline_payload_max): written in
# the same transaction as the message row, so a small body costs one sequential write
# to the WAL instead of a file's creation, rename and directory updates, and needs no
# shared filesystem between nodes (storage/inline.py).
payload_blobs = Table(
    "payload_blobs",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)
