"""The MM7 operations as dataclasses (3GPP TS 23.140 §8.7), one per SOAP Body element.

Fields follow the schema elements in schema order (``mm7_tables`` has the order and
which elements are mandatory); an optional element is ``None`` (or an empty list)
when absent. Elements outside the schema are not kept. Every operation carries:

- ``transaction_id``: the SOAP Header TransactionID (§8.7: the answer repeats it);
- ``namespace``: the schema it is in, a key of ``NAMESPACES`` ("REL-5-MM7-1-2"); for a
  peer that uses a namespace outside that table it is the key of the 3GPP URI
  ("REL-6-MM7-1-5") or, for a foreign URI, the URI itself, so that an answer can be
  written in the caller's own namespace;
- ``mm7_version``: MM7Version; ``None`` on an outgoing message picks the value that
  goes with the namespace (``MM7_VERSIONS``).

Times are timezone-aware ``datetime`` (a time without zone is read as UTC); the
relative-or-absolute times (ExpiryDate, EarliestDeliveryTime, replyDeadline) are a
``datetime`` or a ``timedelta`` (ISO 8601 duration, "P1DT2H").

``content_href`` keeps a Content reference that named no attachment because the
body had none (a bare SOAP envelope, as in documentation samples); when ``content``
is resolved it is ``None``. Writing a message with ``content`` makes its href from
``content.content_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protocol.mm7_content import Content
from protocol.mm7_tables import DEFAULT_NAMESPACE

RelativeTime = datetime | timedelta


@dataclass(slots=True)
class Address:
    """One address: ``kind`` is "Number", "ShortCode" or "RFC2822Address" (addressType)."""

    kind: str
    value: str
    display_only: bool = False
    address_coding: str | None = None  # "encrypted" or "obfuscated" (REL-6)


@dataclass(slots=True)
class ReplyCharging:
    """ReplyCharging: the VASP pays for a reply up to ``size`` octets until ``deadline``."""

    size: int | None = None
    deadline: RelativeTime | None = None


@dataclass(slots=True)
class UACapabilities:
    """UACapabilities (REL-6): the recipient's UAProf URL and when it was seen."""

    ua_prof: str | None = None
    time_stamp: datetime | None = None


# ----------------------------------------------------------------------------- requests


@dataclass(slots=True, kw_only=True)
class _Envelope:
    """What every MM7 message carries: the SOAP Header's TransactionID, the namespace it
    came in (answers go out in the caller's, TS 23.140 §8.7) and its MM7Version."""

    transaction_id: str
    namespace: str = DEFAULT_NAMESPACE
    mm7_version: str | None = None


@dataclass(slots=True, kw_only=True)
class _FromVasp(_Envelope):
    """A request a VASP sends: its SenderIdentification."""

    vasp_id: str | None = None
    vas_id: str | None = None
    sender_address: Address | None = None


@dataclass(slots=True, kw_only=True)
class _FromRelay(_Envelope):
    """A request the MMS Relay/Server sends: its MMSRelayServerID."""

    mms_relay_server_id: str | None = None


@dataclass(slots=True, kw_only=True)
class SubmitReq(_FromVasp):
    """MM7_submit.REQ: a VASP submits a message."""

    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    service_code: str | None = None
    linked_id: str | None = None
    message_class: str | None = None
    time_stamp: datetime | None = None
    reply_charging: ReplyCharging | None = None
    earliest_delivery_time: RelativeTime | None = None
    expiry_date: RelativeTime | None = None
    delivery_report: bool | None = None
    read_reply: bool | None = None
    priority: str | None = None
    subject: str | None = None
    charged_party: str | None = None
    charged_party_id: str | None = None
    distribution_indicator: bool | None = None
    delivery_condition: list[int] = field(default_factory=list)
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None
    content_class: str | None = None
    drm_content: bool | None = None
    adaptations: bool | None = None  # Content@allowAdaptations
    content: Content | None = None
    content_href: str | None = None


@dataclass(slots=True, kw_only=True)
class DeliverReq(_FromRelay):
    """MM7_deliver.REQ: the MMS Relay/Server delivers a message to a VASP."""

    linked_id: str | None = None
    sender: Address
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    time_stamp: datetime | None = None
    reply_charging_id: str | None = None
    priority: str | None = None
    subject: str | None = None
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None
    ua_capabilities: UACapabilities | None = None
    adaptations: bool | None = None
    content: Content | None = None
    content_href: str | None = None


@dataclass(slots=True, kw_only=True)
class CancelReq(_FromVasp):
    """MM7_cancel.REQ: a VASP cancels a message it submitted."""

    message_id: str
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None


@dataclass(slots=True, kw_only=True)
class ReplaceReq(_FromVasp):
    """MM7_replace.REQ: a VASP replaces a message not yet retrieved."""

    message_id: str
    service_code: str | None = None
    time_stamp: datetime | None = None
    read_reply: bool | None = None
    earliest_delivery_time: RelativeTime | None = None
    distribution_indicator: bool | None = None
    content_class: str | None = None
    drm_content: bool | None = None
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None
    adaptations: bool | None = None
    content: Content | None = None
    content_href: str | None = None


@dataclass(slots=True, kw_only=True)
class DeliveryReportReq(_FromRelay):
    """MM7_delivery_report.REQ: the fate of a submitted message at a recipient."""

    message_id: str
    recipient: Address
    sender: Address
    date: datetime
    mm_status: str  # Expired, Retrieved, Rejected, Indeterminate, Forwarded, ...
    mm_status_extension: str | None = None
    status_text: str | None = None
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None
    ua_capabilities: UACapabilities | None = None


@dataclass(slots=True, kw_only=True)
class ReadReplyReq(_FromRelay):
    """MM7_read_reply.REQ: a recipient read (or deleted) a submitted message."""

    message_id: str
    recipient: Address
    sender: Address
    time_stamp: datetime
    mm_status: str  # Read, Deleted, Indeterminate
    status_text: str | None = None
    applic_id: str | None = None
    reply_applic_id: str | None = None
    aux_applic_info: str | None = None


# ----------------------------------------------------------------------------- responses


@dataclass(slots=True, kw_only=True)
class _Status(_Envelope):
    """Every answer's Status: StatusCode, StatusText and Details (TS 23.140 §8.7)."""

    status_code: int
    status_text: str = ""  # empty: the name of status_code is written
    details: str | None = None


@dataclass(slots=True, kw_only=True)
class SubmitRsp(_Status):
    message_id: str | None = None


@dataclass(slots=True, kw_only=True)
class DeliverRsp(_Status):
    service_code: str | None = None


class CancelRsp(_Status):
    __slots__ = ()


class ReplaceRsp(_Status):
    __slots__ = ()


class DeliveryReportRsp(_Status):
    __slots__ = ()


class ReadReplyRsp(_Status):
    __slots__ = ()


class RSErrorRsp(_Status):
    """The MMS Relay/Server's error answer (RS = MMS Relay/Server), normally inside a SOAP Fault."""

    __slots__ = ()


class VASPErrorRsp(_Status):
    """The VASP's error answer, normally inside a SOAP Fault."""

    __slots__ = ()


@dataclass(slots=True, kw_only=True)
class Fault:
    """A SOAP 1.1 Fault (SOAP 1.1 §4.4); ``faultcode`` without prefix: "Client", "Server".

    ``transaction_id`` is the Header's; ``None`` (or "") when the request's could not
    be read, and then no Header is written. ``mm7_version`` is the detail's
    MM7Version (written from here when the detail has none). A detail that cannot
    be read leaves ``detail`` ``None``: the Fault is still an answer.
    """

    transaction_id: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    mm7_version: str | None = None
    faultcode: str = "Server"
    faultstring: str = ""
    faultactor: str | None = None
    detail: RSErrorRsp | VASPErrorRsp | None = None


Operation = (
    SubmitReq
    | SubmitRsp
    | DeliverReq
    | DeliverRsp
    | CancelReq
    | CancelRsp
    | ReplaceReq
    | ReplaceRsp
    | DeliveryReportReq
    | DeliveryReportRsp
    | ReadReplyReq
    | ReadReplyRsp
    | RSErrorRsp
    | VASPErrorRsp
    | Fault
)

OPERATION_TYPES: tuple[type[Operation], ...] = (
    SubmitReq,
    SubmitRsp,
    DeliverReq,
    DeliverRsp,
    CancelReq,
    CancelRsp,
    ReplaceReq,
    ReplaceRsp,
    DeliveryReportReq,
    DeliveryReportRsp,
    ReadReplyReq,
    ReadReplyRsp,
    RSErrorRsp,
    VASPErrorRsp,
    Fault,
)


def operation_name(op: Operation) -> str:
    """The SOAP Body element name of ``op``: "SubmitReq", ..., "Fault"."""
    return type(op).__name__
