"""Cross-check our encoder against Wireshark's tshark, a decoder nobody on the team wrote.

Every MMS PDU type is built as a realistic MmsPdu, encoded with
``protocol.mms.encode`` and decoded by tshark (through the shared wrapper);
each header tshark shows must be the one we put in. The same is done for an
m-notification-ind pushed over SMS: WSP push, WDP ports, concatenation, in
SMPP submit_sm PDUs. Expected values are derived from the PDU we built and
rendered the way tshark displays them (tests/tshark.py); where tshark 4.0 has
a known limitation the comparison says so in a comment.

tshark is slow to start, so all runs happen once per module, concurrently, in
the ``decoded`` fixture; the tests only compare.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from protocol import mms, wap_push
from protocol.mms import MmsPdu
from protocol.mms_tables import FIELD_CODES, FIELDS, MESSAGE_TYPE_CODES, MESSAGE_TYPES, TOKEN_CODES
from protocol.wsp import Part
from tests import smpp_fixture
from tests.tshark import Decoded, Node, abs_time, ascii_view, decode, rel_time, require_tshark

pytestmark = pytest.mark.tshark

# ----------------------------------------------------------------------------- sample values

DATE = 1_700_000_000  # Nov 14, 2023 22:13:20 UTC
DATE_EARLY_DAY = 1_704_423_605  # Jan  5, 2024 03:00:05 UTC: tshark pads the day with a space
DAY = 86_400
PLMN_A = "+4915112345678/TYPE=PLMN"
PLMN_B = "+4917698765432/TYPE=PLMN"
PLMN_C = "+33612345678/TYPE=PLMN"
MAIL_A = "alice@example.org"
MAIL_B = "bob@example.net"
SUBJECT = "Grüße aus Köln ☀"
SUBJECT_QUOTED = "Ärger über Öl"  # starts with a non-ASCII octet: needs the Text-string Quote
MMSC = "http://mmsc.example.net/mms/"
MESSAGE_ID = "20231114221320-0001@mmsc.example.net"

SMIL = (
    b'<smil><head><layout><root-layout width="320" height="240"/>'
    b'<region id="Image" top="0" height="75%"/><region id="Text" top="75%" height="25%"/>'
    b'</layout></head><body><par dur="5000ms"><img src="photo.jpg" region="Image"/>'
    b'<text src="text.txt" region="Text"/></par></body></smil>'
)
TEXT_BODY = "Hallo aus Köln – bis später!".encode()
# A minimal JFIF file: SOI, APP0 "JFIF", EOI. tshark's image dissectors are off in the wrapper.
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + bytes(64) + b"\xff\xd9"

# PDUs the MMSC sends in an HTTP response (the rest are POSTed by the client).
RESPONSE_TYPES = frozenset(
    (
        "m-send-conf",
        "m-retrieve-conf",
        "m-forward-conf",
        "m-mbox-store-conf",
        "m-mbox-view-conf",
        "m-mbox-upload-conf",
        "m-mbox-delete-conf",
        "m-delete-conf",
    )
)
# tshark 4.0's mmse dissector knows the PDU types of MMS 1.0-1.2 only: it shows
# 0x94-0x97 as "Unknown" (and the wrapper warns), but still reads their headers.
TSHARK_UNKNOWN_TYPES = frozenset(
    name for name, version in MESSAGE_TYPES.values() if version >= (1, 3)
)
# tshark names the MMS 1.2 headers it does not decode from its own table.
TSHARK_LAST_NAMED_HEADER = 0x33  # X-Mms-Limit; MMS 1.3 headers are "Unknown field (0x..)"


def version_for(message_type: str) -> str:
    """MMS 1.3 for the types it introduced, else the 1.2 handsets use."""
    return "1.3" if MESSAGE_TYPES[MESSAGE_TYPE_CODES[message_type]][1] >= (1, 3) else "1.2"


def related_parts() -> list[Part]:
    """SMIL, UTF-8 text and a JPEG, as a handset composes a picture message."""
    return [
        Part(
            "application/smil",
            {"charset": "utf-8", "name": "smil.xml"},
            {"Content-ID": "<smil>", "Content-Location": "smil.xml"},
            SMIL,
        ),
        Part(
            "text/plain",
            {"charset": "utf-8", "name": "text.txt"},
            {"Content-ID": "<text0>", "Content-Location": "text.txt"},
            TEXT_BODY,
        ),
        Part(
            "image/jpeg",
            {"name": "photo.jpg"},
            {"Content-ID": "<image0>", "Content-Location": "photo.jpg"},
            JPEG,
        ),
    ]


RELATED = "application/vnd.wap.multipart.related"
RELATED_PARAMS = {"start": "<smil>", "type": "application/smil"}


def pdu(message_type: str, tid: str | None, headers: dict[str, Any], **body: Any) -> MmsPdu:
    """An MmsPdu at the version its type needs."""
    return MmsPdu(message_type, tid, version_for(message_type), headers, **body)


# ----------------------------------------------------------------------------- one PDU per type


def send_req() -> MmsPdu:
    return pdu(
        "m-send-req",
        "T7f3a9c01",
        {
            "Date": DATE,
            "From": PLMN_A,
            "To": [PLMN_B, MAIL_A],
            "Cc": [PLMN_C],
            "Bcc": [MAIL_B],
            "Subject": SUBJECT,
            "X-Mms-Message-Class": "Personal",
            "X-Mms-Expiry": {"relative": 7 * DAY},
            "X-Mms-Delivery-Time": {"absolute": DATE + 3600},
            "X-Mms-Priority": "High",
            "X-Mms-Sender-Visibility": "Show",
            "X-Mms-Delivery-Report": "Yes",
            "X-Mms-Read-Report": "No",
            "X-Mms-Reply-Charging": "Requested",
            "X-Mms-Reply-Charging-Deadline": {"relative": DAY},
            "X-Mms-Reply-Charging-Size": 20480,
            "X-Mms-Store": "Yes",
            "X-Mms-MM-State": "Sent",
            "X-Mms-MM-Flags": {"op": "Add", "value": "Important"},
        },
        content_type=RELATED,
        content_type_params=dict(RELATED_PARAMS),
        parts=related_parts(),
    )


def send_conf() -> MmsPdu:
    return pdu(
        "m-send-conf",
        "T7f3a9c01",
        {
            "X-Mms-Response-Status": "Ok",
            "X-Mms-Response-Text": "Message accepted",
            "Message-ID": MESSAGE_ID,
            "X-Mms-Content-Location": MMSC + "mbox/0001",
            "X-Mms-Store-Status": "Success",
            "X-Mms-Store-Status-Text": "Gespeichert – OK",
        },
    )


def notification_ind() -> MmsPdu:
    return pdu(
        "m-notification-ind",
        "Tn0001",
        {
            "From": PLMN_A,
            "Subject": SUBJECT,
            "X-Mms-Message-Class": "Personal",
            "X-Mms-Message-Size": 48213,
            "X-Mms-Expiry": {"absolute": DATE + 7 * DAY},
            "X-Mms-Content-Location": MMSC + "retrieve/0001",
            "X-Mms-Delivery-Report": "Yes",
            "X-Mms-Priority": "Normal",
            "X-Mms-Reply-Charging": "Accepted",
            "X-Mms-Reply-Charging-Deadline": {"absolute": DATE + 2 * DAY},
            "X-Mms-Reply-Charging-Size": 10240,
            "X-Mms-Reply-Charging-ID": "RC-77",
            "X-Mms-Stored": "No",
            "X-Mms-Distribution-Indicator": "Yes",
        },
    )


def notifyresp_ind() -> MmsPdu:
    return pdu(
        "m-notifyresp-ind",
        "Tn0001",
        {"X-Mms-Status": "Deferred", "X-Mms-Report-Allowed": "No"},
    )


def retrieve_conf() -> MmsPdu:
    # No transaction id: the version must then directly follow the message type.
    return pdu(
        "m-retrieve-conf",
        None,
        {
            "Message-ID": MESSAGE_ID,
            "Date": DATE_EARLY_DAY,
            "From": PLMN_A,
            "To": [PLMN_B, MAIL_A],
            "Cc": [MAIL_B],
            "Subject": SUBJECT_QUOTED,
            "X-Mms-Message-Class": "Informational",
            "X-Mms-Priority": "Low",
            "X-Mms-Delivery-Report": "No",
            "X-Mms-Read-Report": "Yes",
            "X-Mms-Retrieve-Status": "Ok",
            "X-Mms-Retrieve-Text": "OK",
            "X-Mms-Previously-Sent-By": [
                {"forward_count": 1, "address": PLMN_C},
                {"forward_count": 200, "address": MAIL_B},
            ],
            "X-Mms-Previously-Sent-Date": [
                {"forward_count": 1, "date": DATE - DAY},
                {"forward_count": 200, "date": DATE - 3600},
            ],
            "X-Mms-Reply-Charging": "Accepted text only",
            "X-Mms-MM-State": "Retrieved",
            "X-Mms-MM-Flags": {"op": "Add", "value": "Seen"},
        },
        content_type=RELATED,
        content_type_params=dict(RELATED_PARAMS),
        parts=related_parts(),
    )


def acknowledge_ind() -> MmsPdu:
    return pdu("m-acknowledge-ind", "Tn0001", {"X-Mms-Report-Allowed": "Yes"})


def delivery_ind() -> MmsPdu:
    return pdu(
        "m-delivery-ind",
        None,
        {"Message-ID": MESSAGE_ID, "To": [PLMN_B], "Date": DATE + 60, "X-Mms-Status": "Retrieved"},
    )


def read_rec_ind() -> MmsPdu:
    return pdu(
        "m-read-rec-ind",
        None,
        {
            "Message-ID": MESSAGE_ID,
            "To": [PLMN_A],
            "From": PLMN_B,
            "Date": DATE + 120,
            "X-Mms-Read-Status": "Read",
        },
    )


def read_orig_ind() -> MmsPdu:
    return pdu(
        "m-read-orig-ind",
        None,
        {
            "Message-ID": MESSAGE_ID,
            "To": [PLMN_A],
            "From": PLMN_B,
            "Date": DATE_EARLY_DAY,
            "X-Mms-Read-Status": "Deleted without being read",
        },
    )


def forward_req() -> MmsPdu:
    return pdu(
        "m-forward-req",
        "Tf0002",
        {
            "Date": DATE + 300,
            "From": None,  # Insert-address-token: the MMSC fills in the sender
            "To": [MAIL_A, PLMN_C],
            "Bcc": [PLMN_B],
            "X-Mms-Expiry": {"relative": 3 * DAY},
            "X-Mms-Delivery-Time": {"relative": 1800},
            "X-Mms-Report-Allowed": "Yes",
            "X-Mms-Delivery-Report": "Yes",
            "X-Mms-Read-Report": "Yes",
            "X-Mms-Store": "Yes",
            "X-Mms-MM-State": "Forwarded",
            "X-Mms-MM-Flags": {"op": "Remove", "value": "Draft"},
            "X-Mms-Content-Location": MMSC + "retrieve/0001",
        },
    )


def forward_conf() -> MmsPdu:
    return pdu(
        "m-forward-conf",
        "Tf0002",
        {
            "X-Mms-Response-Status": "Error-permanent-sending-address-unresolved",
            "X-Mms-Response-Text": "Unknown recipient",
            "Message-ID": MESSAGE_ID,
            "X-Mms-Store-Status": "Error-permanent-mmbox-full",
        },
    )


def mbox_store_req() -> MmsPdu:
    return pdu(
        "m-mbox-store-req",
        "Ts0003",
        {
            "X-Mms-Content-Location": MMSC + "retrieve/0001",
            "X-Mms-MM-State": "Retrieved",
            "X-Mms-MM-Flags": [
                {"op": "Add", "value": "Seen"},
                {"op": "Add", "value": "Important"},
            ],
        },
    )


def mbox_store_conf() -> MmsPdu:
    return pdu(
        "m-mbox-store-conf",
        "Ts0003",
        {
            "X-Mms-Content-Location": MMSC + "mbox/0001",
            "X-Mms-Store-Status": "Success",
            "X-Mms-Store-Status-Text": "Stored",
        },
    )


def mbox_view_req() -> MmsPdu:
    return pdu(
        "m-mbox-view-req",
        "Tv0004",
        {
            "X-Mms-MM-State": ["New", "Retrieved"],
            "X-Mms-MM-Flags": {"op": "Filter", "value": "Important"},
            "X-Mms-Start": 0,
            "X-Mms-Limit": 200,
            "X-Mms-Attributes": ["Subject", "Date", "From", "X-Mms-Message-Size"],
            "X-Mms-Totals": "Yes",
            "X-Mms-Quotas": "Yes",
        },
    )


def mbox_descr(index: int = 1) -> MmsPdu:
    return pdu(
        "m-mbox-descr",
        None,
        {
            "X-Mms-Content-Location": f"{MMSC}mbox/{index:04d}",
            "Message-ID": f"{index:04d}-{MESSAGE_ID}",
            "Date": DATE + index,
            "From": PLMN_A,
            "To": [PLMN_B, MAIL_A],
            "Subject": SUBJECT,
            "X-Mms-Message-Class": "Personal",
            "X-Mms-Priority": "Normal",
            "X-Mms-Message-Size": 48213 + index,
            "X-Mms-MM-State": "New",
            "X-Mms-MM-Flags": {"op": "Add", "value": "Seen"},
            "X-Mms-Read-Report": "Yes",
        },
    )


def mbox_view_conf() -> MmsPdu:
    """The body lists the messages as m-mbox-descr PDUs, one per multipart/mixed entry."""
    descrs = [mbox_descr(1), mbox_descr(2)]
    return pdu(
        "m-mbox-view-conf",
        "Tv0004",
        {
            "X-Mms-Response-Status": "Ok",
            "X-Mms-MM-State": "New",
            "X-Mms-Mbox-Totals": [{"messages": 12}, {"bytes": 512_000}],
            "X-Mms-Mbox-Quotas": [{"messages": 500}, {"bytes": 10_485_760}],
            "X-Mms-Message-Count": 2,
            "X-Mms-Start": 0,
        },
        content_type="application/vnd.wap.multipart.mixed",
        parts=[Part("application/vnd.wap.mms-message", {}, {}, mms.encode(d)) for d in descrs],
    )


def upload_descr(index: int = 3) -> MmsPdu:
    """The MM to upload, as an m-mbox-descr with its content (OMA-MMS-ENC 1.2 §6.11)."""
    descr = mbox_descr(index)
    descr.headers["X-Mms-MM-State"] = "Draft"
    descr.content_type = RELATED
    descr.content_type_params = dict(RELATED_PARAMS)
    descr.parts = related_parts()
    return descr


def mbox_upload_req() -> MmsPdu:
    return pdu(
        "m-mbox-upload-req",
        "Tu0005",
        {"X-Mms-MM-State": "Draft", "X-Mms-MM-Flags": {"op": "Add", "value": "Draft"}},
        content_type="application/vnd.wap.mms-message",
        body=mms.encode(upload_descr()),
    )


def mbox_upload_conf() -> MmsPdu:
    return pdu(
        "m-mbox-upload-conf",
        "Tu0005",
        {
            "X-Mms-Response-Status": "Ok",
            "X-Mms-Response-Text": "Uploaded",
            "X-Mms-Content-Location": MMSC + "mbox/0003",
        },
    )


def mbox_delete_req() -> MmsPdu:
    return pdu(
        "m-mbox-delete-req",
        "Td0006",
        {"X-Mms-Content-Location": [f"{MMSC}mbox/{i:04d}" for i in (1, 2, 3)]},
    )


def mbox_delete_conf() -> MmsPdu:
    # Message 2 of the request could not be deleted: Content-location-Del-value
    # (OMA-MMS-ENC 1.3 §7.3.10) names it with its index.
    return pdu(
        "m-mbox-delete-conf",
        "Td0006",
        {
            "X-Mms-Response-Status": "Error-permanent-message-not-found",
            "X-Mms-Content-Location": {"index": 2, "value": MMSC + "mbox/0002"},
        },
    )


def mbox_delete_conf_with_text() -> MmsPdu:
    """As above with the reason: Response-text-Del-value, indexed like the Content-Location.

    Kept apart from the m-mbox-delete-conf case so that a failure here leaves the
    other headers of that type checked.
    """
    conf = mbox_delete_conf()
    conf.headers["X-Mms-Response-Text"] = {"index": 2, "value": "Message not found"}
    return conf


def mbox_descr_standalone() -> MmsPdu:
    """An m-mbox-descr with the MM's content, as uploaded (and listed when asked for)."""
    return upload_descr(7)


def delete_req() -> MmsPdu:
    return pdu(
        "m-delete-req",
        "Tx0007",
        {"X-Mms-Content-Location": [MMSC + "retrieve/0007", MMSC + "retrieve/0008"]},
    )


def delete_conf() -> MmsPdu:
    return pdu(
        "m-delete-conf",
        "Tx0007",
        {
            "X-Mms-Response-Status": "Error-permanent-message-not-found",
            "X-Mms-Content-Location": {"index": 1, "value": MMSC + "retrieve/0007"},
        },
    )


def cancel_req() -> MmsPdu:
    return pdu("m-cancel-req", "Tc0008", {"X-Mms-Cancel-ID": MESSAGE_ID})


def cancel_conf() -> MmsPdu:
    return pdu(
        "m-cancel-conf",
        "Tc0008",
        {"X-Mms-Cancel-Status": "Cancel Request Successfully received"},
    )


BUILDERS: dict[str, Callable[[], MmsPdu]] = {
    "m-send-req": send_req,
    "m-send-conf": send_conf,
    "m-notification-ind": notification_ind,
    "m-notifyresp-ind": notifyresp_ind,
    "m-retrieve-conf": retrieve_conf,
    "m-acknowledge-ind": acknowledge_ind,
    "m-delivery-ind": delivery_ind,
    "m-read-rec-ind": read_rec_ind,
    "m-read-orig-ind": read_orig_ind,
    "m-forward-req": forward_req,
    "m-forward-conf": forward_conf,
    "m-mbox-store-req": mbox_store_req,
    "m-mbox-store-conf": mbox_store_conf,
    "m-mbox-view-req": mbox_view_req,
    "m-mbox-view-conf": mbox_view_conf,
    "m-mbox-upload-req": mbox_upload_req,
    "m-mbox-upload-conf": mbox_upload_conf,
    "m-mbox-delete-req": mbox_delete_req,
    "m-mbox-delete-conf": mbox_delete_conf,
    "m-mbox-descr": mbox_descr_standalone,
    "m-delete-req": delete_req,
    "m-delete-conf": delete_conf,
    "m-cancel-req": cancel_req,
    "m-cancel-conf": cancel_conf,
}
ALL_TYPES = [name for name, _ in MESSAGE_TYPES.values()]
INDEXED_TEXT = "m-mbox-delete-conf+response-text"  # the extra case, by its fixture key

# ----------------------------------------------------------------------------- spec octets
# Small, spec-derived encodings (WAP-230-WSP §8.4.2, OMA-MMS-ENC §7.3) for the values
# tshark shows only as raw octets, written here independently of protocol/.

UTF8_MIBENUM = 106
MM_FLAGS_TOKENS = {"add": 0x80, "remove": 0x81, "filter": 0x82}  # §7.3.32
MBOX_TOTAL_TOKENS = {"messages": 0x80, "bytes": 0x81}  # Mbox-totals-value: messages / size


def spec_uintvar(n: int) -> bytes:
    """Uintvar-integer: 7 bits an octet, high bit on all but the last."""
    groups = [n & 0x7F]
    while n := n >> 7:
        groups.append(0x80 | (n & 0x7F))
    return bytes(reversed(groups))


def spec_value_length(n: int) -> bytes:
    """Short-length, or Length-quote (31) and a uintvar."""
    return bytes((n,)) if n < 31 else b"\x1f" + spec_uintvar(n)


def spec_integer(n: int) -> bytes:
    """Integer-value: Short-integer below 128, else Long-integer."""
    if n < 0x80:
        return bytes((0x80 | n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((len(raw),)) + raw


def spec_text(text: str) -> bytes:
    """Text-string, with the Quote a first octet >= 128 requires."""
    raw = text.encode()
    return (b"\x7f" if raw[0] >= 0x80 else b"") + raw + b"\x00"


def spec_encoded_string(text: str) -> bytes:
    """ASCII as a Text-string; anything else as Value-length, UTF-8 charset, Text-string."""
    if text.isascii():
        return spec_text(text)
    body = spec_integer(UTF8_MIBENUM) + spec_text(text)
    return spec_value_length(len(body)) + body


def general_form(code: int, body: bytes) -> bytes:
    """Header code, Value-length, value: what tshark delimits without decoding."""
    return bytes((0x80 | code,)) + spec_value_length(len(body)) + body


# ----------------------------------------------------------------------------- expected items

ADDRESS_FIELDS = {"To": "mmse.to", "Cc": "mmse.cc", "Bcc": "mmse.bcc"}
TEXT_FIELDS = {
    "X-Mms-Content-Location": "mmse.content_location",
    "Message-ID": "mmse.message_id",
    "X-Mms-Reply-Charging-ID": "mmse.reply_charging_id",
}
ENCODED_FIELDS = {
    "Subject": "mmse.subject",
    "X-Mms-Response-Text": "mmse.response_text",
    "X-Mms-Retrieve-Text": "mmse.retrieve_text",
}
LONG_FIELDS = {
    "X-Mms-Message-Size": "mmse.message_size",
    "X-Mms-Reply-Charging-Size": "mmse.reply_charging_size",
}
TIME_FIELDS = {
    "X-Mms-Expiry": "mmse.expiry",
    "X-Mms-Delivery-Time": "mmse.delivery_time",
    "X-Mms-Reply-Charging-Deadline": "mmse.reply_charging_deadline",
}
TOKEN_FIELDS = {
    "X-Mms-Message-Class": "mmse.message_class.id",
    "X-Mms-Delivery-Report": "mmse.delivery_report",
    "X-Mms-Read-Report": "mmse.read_report",  # 0x90 is Read-Report from MMS 1.1 on
    "X-Mms-Report-Allowed": "mmse.report_allowed",
    "X-Mms-Priority": "mmse.priority",
    "X-Mms-Response-Status": "mmse.response_status",
    "X-Mms-Sender-Visibility": "mmse.sender_visibility",
    "X-Mms-Status": "mmse.status",
    "X-Mms-Retrieve-Status": "mmse.retrieve_status",
    "X-Mms-Read-Status": "mmse.read_status",
    "X-Mms-Reply-Charging": "mmse.reply_charging",
}


@dataclass(frozen=True, slots=True)
class Expect:
    """One header as tshark must show it."""

    field: str
    show: str
    label: str | None = None  # our token name: tshark's label must name the same value
    showname: str | None = None  # tshark's whole one-line rendering, where it is fixed
    raw: bytes | None = None  # the octets tshark must attribute to the header
    children: tuple[tuple[str, str], ...] = ()


def token_code(code: int, value: str) -> int:
    """The assigned number of a token value (tshark's label is then checked against it)."""
    return TOKEN_CODES[code][value.lower()]


def expected_headers(pdu: MmsPdu) -> list[Expect]:
    """tshark's view of every header of ``pdu``, type/transaction id/version first."""
    mcode = MESSAGE_TYPE_CODES[pdu.message_type]
    label = "Unknown" if pdu.message_type in TSHARK_UNKNOWN_TYPES else pdu.message_type
    out = [
        Expect(
            "mmse.message_type",
            f"0x{mcode:02x}",
            showname=f"X-Mms-Message-Type: {label} (0x{mcode:02x})",
        )
    ]
    if pdu.transaction_id is not None:
        out.append(Expect("mmse.transaction_id", pdu.transaction_id))
    assert pdu.mms_version is not None
    out.append(Expect("mmse.mms_version", pdu.mms_version))
    for name, value in pdu.headers.items():
        for v in value if isinstance(value, list) else [value]:
            out.append(expected_header(pdu.message_type, name, v))
    return out


def expected_header(message_type: str, name: str, value: Any) -> Expect:
    code = FIELD_CODES[name.lower()]
    head = bytes((0x80 | code,))
    if name in ADDRESS_FIELDS:
        assert value.isascii()
        return Expect(ADDRESS_FIELDS[name], value)
    if name == "From":
        if value is None:
            return Expect("mmse.from", "<insert address>", raw=head + b"\x01\x81")
        return Expect("mmse.from", value)
    if name in ("X-Mms-Content-Location", "X-Mms-Response-Text") and isinstance(value, dict):
        # OMA-MMS-ENC 1.3 §7.3.10 and the Response-text-Del-value: Value-length,
        # Status-count-value (the index in the request), then the usual value.
        text = spec_text if name == "X-Mms-Content-Location" else spec_encoded_string
        raw = general_form(code, spec_integer(value["index"]) + text(value["value"]))
        if message_type == "m-mbox-delete-conf":
            # tshark knows the indexed form here but does not decode it, and files
            # both fields under mmse.content_location (sic).
            return Expect(
                "mmse.content_location", "<Undecoded value for m-mbox-delete-conf>", raw=raw
            )
        # tshark 4.0 does not know m-delete-conf (MMS 1.3), so it reads the
        # Content-location-Del-value as a Text-string: length and index octets included.
        assert name == "X-Mms-Content-Location"
        return Expect("mmse.content_location", ascii_view(raw[1:-1]), raw=raw)
    if name in TEXT_FIELDS:
        return Expect(TEXT_FIELDS[name], value)
    if name in ENCODED_FIELDS:
        # tshark ignores the charset and reads the octets as ASCII (verifiers.md
        # pitfalls); it also keeps the Quote octet, so compare the octets themselves.
        octets = spec_encoded_string(value)
        text = value if value.isascii() else ascii_view(spec_text(value)[:-1])
        return Expect(ENCODED_FIELDS[name], text, raw=head + octets)
    if name == "Date":
        return Expect("mmse.date", abs_time(value))
    if name in LONG_FIELDS:
        return Expect(LONG_FIELDS[name], str(value))
    if name in TIME_FIELDS:
        ((kind, seconds),) = value.items()
        if kind == "absolute":
            return Expect(f"{TIME_FIELDS[name]}.abs", abs_time(seconds))
        return Expect(f"{TIME_FIELDS[name]}.rel", rel_time(seconds))
    if name in TOKEN_FIELDS:
        return Expect(TOKEN_FIELDS[name], f"0x{token_code(code, value):02x}", label=value)
    if name == "X-Mms-Previously-Sent-By":
        count, address = value["forward_count"], value["address"]
        return Expect(
            "mmse.previously_sent_by",
            address,
            children=(
                ("mmse.previously_sent_by.forward_count", str(count)),
                ("mmse.previously_sent_by.address", address),
            ),
        )
    if name == "X-Mms-Previously-Sent-Date":
        count, date = value["forward_count"], value["date"]
        return Expect(
            "mmse.previously_sent_date",
            abs_time(date),
            children=(
                ("mmse.previously_sent_date.forward_count", str(count)),
                ("mmse.previously_sent_date.date", abs_time(date)),
            ),
        )
    if code >= 0x22:
        return expected_undecoded(code, value)
    raise AssertionError(f"no tshark expectation for {name}")


def expected_undecoded(code: int, value: Any) -> Expect:
    """MMS 1.2+ headers: tshark 4.0 shows them only as a value it did not decode."""
    name, kind = FIELDS[code][0], FIELDS[code][1]
    head = 0x80 | code
    tname = name if code <= TSHARK_LAST_NAMED_HEADER else f"Unknown field (0x{head:02x})"
    octet: int | None = None
    raw: bytes | None = None
    if kind == "token":
        octet = token_code(code, value)
    elif kind == "field-name":
        octet = 0x80 | FIELD_CODES[value.lower()]
    elif kind == "integer":
        encoded = spec_integer(value)
        if len(encoded) == 1:
            octet = encoded[0]
        else:
            raw = bytes((head,)) + encoded  # a Long-integer: tshark takes its length as a length
    elif kind == "text" or (kind == "encoded-string" and value.isascii()):
        return Expect("mmse.header.string", value, showname=f"{tname}: {value} (Not decoded)")
    elif kind == "encoded-string":
        raw = bytes((head,)) + spec_encoded_string(value)
    elif kind == "mm-flags":
        op = MM_FLAGS_TOKENS[value["op"].lower()]
        raw = general_form(code, bytes((op,)) + spec_text(value["value"]))
    elif kind == "mbox-total":
        ((which, amount),) = value.items()
        raw = general_form(code, bytes((MBOX_TOTAL_TOKENS[which],)) + spec_integer(amount))
    else:
        raise AssertionError(f"no tshark expectation for {name} ({kind})")
    if octet is not None:
        return Expect(
            "mmse.header.uint",
            str(octet),
            showname=f"{tname}: <Well-known value 0x{octet:02x}> (not decoded)",
        )
    assert raw is not None
    return Expect(
        "mmse.header.bytes",
        ":".join(f"{b:02x}" for b in raw),
        showname=f"{tname}: <Value in general form> (not decoded)",
        raw=raw,
    )


def normalise_label(text: str) -> str:
    """Token names as OMA spells them vs as tshark does: 'Error-permanent-x' ~ 'Permanent: X'."""
    text = text.lower().removeprefix("error-")
    return " ".join(re.sub(r"[-:]", " ", text).split())


def token_label(showname: str) -> str:
    """'X-Mms-Priority: High (0x82)' -> 'High'."""
    return showname.split(": ", 1)[1].rsplit(" (0x", 1)[0]


def by_field(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Group by field name, keeping the wire order of repeated fields (To, Cc, ...)."""
    return sorted(items, key=lambda item: item[0])


def check_headers(layer: Node, pdu: MmsPdu) -> None:
    """tshark's MMSE headers are exactly the ones of ``pdu``, value for value."""
    actual = [n for n in layer.children if n.name.startswith("mmse.")]
    expected = expected_headers(pdu)
    # OMA-MMS-ENC §7: type, transaction id (if any) and version come first, in that order.
    lead = 3 if pdu.transaction_id is not None else 2
    assert [n.name for n in actual[:lead]] == [e.field for e in expected[:lead]]
    assert by_field([(n.name, n.show) for n in actual]) == by_field(
        [(e.field, e.show) for e in expected]
    )
    pairs = zip(
        sorted(expected, key=lambda e: e.field),
        sorted(actual, key=lambda n: n.name),
        strict=True,
    )
    for exp, node in pairs:
        if exp.showname is not None:
            assert node.showname == exp.showname
        if exp.label is not None:
            assert normalise_label(token_label(node.showname)) == normalise_label(exp.label), (
                f"{node.showname!r} does not name {exp.label!r}"
            )
        if exp.raw is not None:
            assert node.raw == exp.raw, f"{node.name}: {node.raw.hex()} != {exp.raw.hex()}"
        if exp.children:
            assert [(c.name, c.show) for c in node.children] == list(exp.children)


# ----------------------------------------------------------------------------- body


def param_nodes(content_type: Node) -> dict[str, str]:
    return {
        c.name.removeprefix("wsp.parameter."): c.show
        for c in content_type.children
        if c.name.startswith("wsp.parameter.") and c.name != "wsp.parameter.type"
    }


def expected_params(params: dict[str, Any]) -> dict[str, str]:
    """Our parameters under tshark's names; tshark prints charsets by their IANA name."""
    names = {"type": "upart.type"}
    return {
        names.get(k, k): (str(v).upper() if k == "charset" else str(v)) for k, v in params.items()
    }


def multipart_entries(node: Node) -> Iterator[Node]:
    """The wsp.multipart entries of this body, not those of a PDU nested in one."""
    for child in node.children:
        if child.name == "wsp.multipart":
            yield child
        elif not child.proto:
            yield from multipart_entries(child)


def check_body(layer: Node, pdu: MmsPdu) -> None:
    """Content-Type, its start/type parameters and every part's type, headers and size."""
    cts = [c for c in layer.children if c.name == "wsp.header.content_type"]
    if pdu.content_type is None:
        assert cts == []
        return
    assert len(cts) == 1
    assert cts[0].show == pdu.content_type
    assert param_nodes(cts[0]) == expected_params(pdu.content_type_params)
    data = layer.child("wsp.post.data")
    assert data is not None, "tshark found no body"
    if pdu.parts is None:
        assert pdu.body is not None
        assert data.size == len(pdu.body)
        return
    entries = list(multipart_entries(data))
    assert [e.show for e in entries] == [str(i) for i in range(1, len(pdu.parts) + 1)]
    for entry, part in zip(entries, pdu.parts, strict=True):
        ct = entry.child("wsp.header.content_type")
        assert ct is not None
        assert ct.show == part.content_type
        assert param_nodes(ct) == expected_params(part.params)
        headers = entry.child("wsp.headers")
        shown = [
            (h.name, h.show)
            for h in ([] if headers is None else headers.walk())
            if h.name.startswith("wsp.header.") and h.name != "wsp.header.name_value"
        ]
        wanted = []
        if part.content_id is not None:
            # Content-ID is a Quoted-string; tshark shows it between quotes.
            wanted.append(("wsp.header.content_id", f'"{part.content_id}"'))
        if part.content_location is not None:
            wanted.append(("wsp.header.content_location", part.content_location))
        assert shown == wanted
        payload = [c for c in entry.children if c.proto]
        assert len(payload) == 1, f"part {entry.show}: {[c.name for c in payload]}"
        assert payload[0].size == len(part.data)


def nested_mmse(layer: Node) -> list[Node]:
    """MMSE layers tshark found inside this one's body (m-mbox-descr PDUs)."""
    return [n for n in layer.walk() if n.proto and n.name == "mmse" and n is not layer]


# ----------------------------------------------------------------------------- SMS cases


@dataclass(frozen=True, slots=True)
class SmsCase:
    """An m-notification-ind pushed over SMS, cut as WDP prescribes."""

    name: str
    notification: MmsPdu
    push_tid: int
    reference: int
    ref16: bool
    segments: int  # how many SMS the push must take
    first_sequence: int
    source_addr: str = "491710000001"
    destination_addr: str = "4917698765432"


def sms_notification(tid: str, location: str) -> MmsPdu:
    return pdu(
        "m-notification-ind",
        tid,
        {
            "From": PLMN_A,
            "Subject": "Grüße",
            "X-Mms-Message-Class": "Personal",
            "X-Mms-Message-Size": 30720,
            "X-Mms-Expiry": {"relative": 3 * DAY},
            "X-Mms-Content-Location": location,
        },
    )


SMS_CASES = [
    SmsCase("single", sms_notification("Tsms1", MMSC + "r/a1"), 0x21, 7, False, 1, 101),
    SmsCase(
        "concat8",
        sms_notification("Tsms2", MMSC + "retrieve?id=" + "0123456789abcdef" * 6),
        0x22,
        0x5A,
        False,
        2,
        201,
    ),
    SmsCase(
        "concat16",
        sms_notification("Tsms3", MMSC + "retrieve?id=" + "fedcba9876543210" * 14),
        0x23,
        0xBEEF,
        True,
        3,
        301,
    ),
]


def push_datagram(case: SmsCase) -> bytes:
    return wap_push.encode_push(mms.encode(case.notification), case.push_tid)


def sms_segments(case: SmsCase) -> list[wap_push.SmsSegment]:
    return wap_push.notification_segments(
        mms.encode(case.notification), tid=case.push_tid, reference=case.reference, ref16=case.ref16
    )


def smpp_stream(case: SmsCase) -> bytes:
    """One submit_sm per segment, back to back as on the ESME's TCP connection."""
    return b"".join(
        smpp_fixture.submit_sm(
            segment.user_data,
            sequence_number=case.first_sequence + i,
            source_addr=case.source_addr,
            destination_addr=case.destination_addr,
        )
        for i, segment in enumerate(sms_segments(case))
    )


def udh_elements(udh: bytes) -> list[tuple[int, bytes]]:
    """(IEI, value) pairs of a UDH given with its length octet (3GPP TS 23.040 §9.2.3.24)."""
    assert udh[0] == len(udh) - 1
    out, pos = [], 1
    while pos < len(udh):
        iei, length = udh[pos], udh[pos + 1]
        out.append((iei, udh[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    assert pos == len(udh)
    return out


# ----------------------------------------------------------------------------- running tshark


def _decode_mms(key: str) -> tuple[MmsPdu, bytes, Decoded]:
    built = mbox_delete_conf_with_text() if key == INDEXED_TEXT else BUILDERS[key]()
    data = mms.encode(built)
    return built, data, decode("mms", data, response=built.message_type in RESPONSE_TYPES)


def _decode_sms(case: SmsCase) -> tuple[bytes, Decoded]:
    stream = smpp_stream(case)
    return stream, decode("smpp", stream)


@pytest.fixture(scope="module")
def decoded() -> Iterator[dict[str, Future[Any]]]:
    """Every tshark run of the module, started at once; tests wait on the one they need."""
    require_tshark()
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        keys = [*ALL_TYPES, INDEXED_TEXT]
        futures: dict[str, Future[Any]] = {k: pool.submit(_decode_mms, k) for k in keys}
        for case in SMS_CASES:
            futures[f"sms:{case.name}"] = pool.submit(_decode_sms, case)
        yield futures


def mms_result(decoded: dict[str, Future[Any]], message_type: str) -> tuple[MmsPdu, bytes, Decoded]:
    return decoded[message_type].result()


def top_mmse(result: Decoded) -> Node:
    layers = result.layers("mmse")
    assert len(layers) == 1, f"expected one MMSE layer, tshark found {len(layers)}"
    return layers[0]


# ----------------------------------------------------------------------------- MMS tests


def test_every_message_type_has_a_case() -> None:
    """The table's 24 types are all cross-checked, each with a PDU of its own type."""
    assert sorted(BUILDERS) == sorted(ALL_TYPES)
    assert len(ALL_TYPES) == 24
    for name, build in BUILDERS.items():
        assert build().message_type == name


@pytest.mark.parametrize("message_type", ALL_TYPES)
def test_tshark_decodes_cleanly(decoded: dict[str, Future[Any]], message_type: str) -> None:
    """tshark reaches MMSE, finds nothing malformed and the wrapper has no complaint."""
    _, data, result = mms_result(decoded, message_type)
    assert result.result["decoded"], "tshark did not reach the MMSE layer"
    assert not result.result["malformed"], f"malformed: {data.hex()}"
    assert result.expert == [], f"{result.expert}: {data.hex()}"
    if message_type in TSHARK_UNKNOWN_TYPES:
        code = MESSAGE_TYPE_CODES[message_type]
        assert result.warnings == [
            "tshark does not know this X-Mms-Message-Type: "
            f"X-Mms-Message-Type: Unknown (0x{code:02x})"
        ]
    else:
        assert result.warnings == []
        assert result.ok


@pytest.mark.parametrize("message_type", ALL_TYPES)
def test_headers_match_tshark(decoded: dict[str, Future[Any]], message_type: str) -> None:
    """Each header tshark reads is the one we built: type, addresses, texts, times, tokens."""
    built, data, result = mms_result(decoded, message_type)
    try:
        check_headers(top_mmse(result), built)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nPDU: {data.hex()}") from None


@pytest.mark.parametrize("message_type", sorted(mms.BODY_TYPES))
def test_body_matches_tshark(decoded: dict[str, Future[Any]], message_type: str) -> None:
    """Content-Type with start/type, part count, part types, Content-ID/-Location, sizes."""
    built, data, result = mms_result(decoded, message_type)
    layer = top_mmse(result)
    try:
        check_body(layer, built)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nPDU: {data.hex()}") from None


def test_indexed_response_text_matches_tshark(decoded: dict[str, Future[Any]]) -> None:
    """An m-mbox-delete-conf saying why message 2 stayed: tshark reads the Del form."""
    built, data, result = mms_result(decoded, INDEXED_TEXT)
    try:
        assert result.expert == [] and not result.result["malformed"], result.expert
        assert result.ok and result.warnings == []
        check_headers(top_mmse(result), built)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nPDU: {data.hex()}") from None


def test_mbox_view_conf_entries_match_tshark(decoded: dict[str, Future[Any]]) -> None:
    """The m-mbox-descr PDUs listed in an m-mbox-view-conf decode as what we built.

    (tshark hands only multipart bodies on to a sub-dissector, so the m-mbox-descr
    inside an m-mbox-upload-req is checked standalone, as the m-mbox-descr case.)
    """
    _, data, result = mms_result(decoded, "m-mbox-view-conf")
    nested = nested_mmse(top_mmse(result))
    inner = [mbox_descr(1), mbox_descr(2)]
    assert len(nested) == len(inner)
    for layer, descr in zip(nested, inner, strict=True):
        try:
            check_headers(layer, descr)
            check_body(layer, descr)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nPDU: {data.hex()}") from None


# ----------------------------------------------------------------------------- SMS tests


@pytest.mark.parametrize("case", SMS_CASES, ids=lambda c: c.name)
def test_notification_segments(case: SmsCase) -> None:
    """One SMS without a concatenation IE when it fits; else 8- or 16-bit concatenation."""
    datagram = push_datagram(case)
    segments = sms_segments(case)
    assert len(segments) == case.segments
    port_ie = (0x05, bytes.fromhex("0b8423f0"))  # 16-bit ports: 2948 from 9200
    for i, segment in enumerate(segments, start=1):
        assert len(segment.user_data) <= wap_push.SMS_USER_DATA
        ies = udh_elements(segment.udh)
        if case.segments == 1:
            assert ies == [port_ie]
        elif case.ref16:
            ref = case.reference.to_bytes(2, "big")
            assert sorted(ies) == sorted([port_ie, (0x08, ref + bytes((case.segments, i)))])
        else:
            assert sorted(ies) == sorted(
                [port_ie, (0x00, bytes((case.reference, case.segments, i)))]
            )
    # Segments are filled: only the last may be short.
    concat = 0 if case.segments == 1 else (6 if case.ref16 else 5)
    room = wap_push.SMS_USER_DATA - 1 - 6 - concat
    assert len(segments) == math.ceil(len(datagram) / room)
    assert b"".join(s.payload for s in segments) == datagram


def test_submit_sm_fixture_roundtrips() -> None:
    """The construct definition reads back what it builds (and tshark reads it below)."""
    case = SMS_CASES[1]
    pdus = smpp_fixture.split_stream(smpp_stream(case))
    assert len(pdus) == case.segments
    for i, (raw, segment) in enumerate(zip(pdus, sms_segments(case), strict=True)):
        parsed = smpp_fixture.parse_submit_sm(raw)
        assert parsed.command_id == smpp_fixture.SUBMIT_SM
        assert parsed.sequence_number == case.first_sequence + i
        assert parsed.body.esm_class.gsm_features == smpp_fixture.UDHI
        assert raw[-len(segment.user_data) - 1] == len(segment.user_data)  # sm_length
        assert parsed.body.short_message == segment.user_data
        assert parsed.body.destination_addr == case.destination_addr


@pytest.mark.parametrize("case", SMS_CASES, ids=lambda c: c.name)
def test_smpp_layer_matches_tshark(decoded: dict[str, Future[Any]], case: SmsCase) -> None:
    """tshark reads our submit_sm PDUs field for field."""
    stream, result = decoded[f"sms:{case.name}"].result()
    segments = sms_segments(case)
    n = len(segments)
    assert result.ok, f"{result.warnings} {result.expert}\nSMPP: {stream.hex()}"
    assert result.warnings == [] and result.expert == []
    assert result.fields("smpp.command_id") == ["0x00000004"] * n
    assert result.fields("smpp.sequence_number") == [str(case.first_sequence + i) for i in range(n)]
    assert result.fields("smpp.source_addr") == [case.source_addr] * n
    assert result.fields("smpp.destination_addr") == [case.destination_addr] * n
    assert result.fields("smpp.esm.submit.features") == ["0x01"] * n  # UDHI
    assert result.fields("smpp.data_coding") == ["0x04"] * n
    assert result.fields("smpp.sm_length") == [str(len(s.user_data)) for s in segments]
    assert result.fields("gsm_sms.dis_field_udh.user_data_header_length") == [
        str(s.udh[0]) for s in segments
    ]


@pytest.mark.parametrize("case", SMS_CASES, ids=lambda c: c.name)
def test_sms_reassembly_matches_tshark(decoded: dict[str, Future[Any]], case: SmsCase) -> None:
    """Ports 2948/9200 in every SMS; concatenated pushes are put back together whole."""
    _, result = decoded[f"sms:{case.name}"].result()
    n = case.segments
    assert result.fields("gsm_sms.destination_port") == [str(wap_push.WAP_PUSH_PORT)] * n
    assert result.fields("gsm_sms.originator_port") == [str(wap_push.WAP_PUSH_SOURCE_PORT)] * n
    if n == 1:
        assert result.fields("gsm_sms.ie_identifier") == ["0x05"]
        assert result.fields("gsm_sms.udh.mm.msg_id") == []
        assert result.fields("gsm_sms_ud.reassembled.length") == []
        return
    assert result.fields("gsm_sms.udh.mm.msg_id") == [str(case.reference)] * n
    assert result.fields("gsm_sms.udh.mm.msg_parts") == [str(n)] * n
    assert result.fields("gsm_sms.udh.mm.msg_part") == [str(i) for i in range(1, n + 1)]
    assert result.fields("gsm_sms_ud.reassembled.length") == [str(len(push_datagram(case)))]
    assert result.fields("gsm_sms_ud.fragment.count") == [str(n)]


@pytest.mark.parametrize("case", SMS_CASES, ids=lambda c: c.name)
def test_sms_push_matches_tshark(decoded: dict[str, Future[Any]], case: SmsCase) -> None:
    """WSP push of mms.ua with our TID, and the MMSE headers of the notification we built."""
    stream, result = decoded[f"sms:{case.name}"].result()
    assert result.fields("wsp.TID") == [f"0x{case.push_tid:02x}"]
    assert result.fields("wsp.pdu_type") == ["0x06"]
    assert result.fields("wsp.header.content_type") == [wap_push.MMS_CONTENT_TYPE]
    assert result.fields("wsp.header.x_wap_application_id") == [wap_push.MMS_APP_ID]
    try:
        check_headers(top_mmse(result), case.notification)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nSMPP: {stream.hex()}") from None
