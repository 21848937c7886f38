"""WAP Push for MMS notifications: the WSP push PDU and its WDP-over-SMS framing.

WSP connectionless push (WAP-230-WSP §8.2.4.1): TID, PDU type 0x06,
HeadersLen, Content-Type, headers, data. We always write the content type as
the short token 0xBE and X-Wap-Application-Id as 0xAF 0x84 (mms.ua): some
handsets' push dispatchers ignore a textual content type (feature-matrix §4.1).

WDP over GSM SMS (WAP-259-WDP Annex A, 3GPP TS 23.040 §9.2.3.24): a UDH with
the 16-bit application port IE (0x05: 2948 from 9200) and, only when the
datagram does not fit one SMS, the concatenation IE (0x00 with an 8-bit
reference, 0x08 with a 16-bit one) in every segment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import mms
from protocol.errors import DecodeError, EncodeError
from protocol.values import Raw
from protocol.wsp import read_content_type, read_part_headers, read_uintvar
from protocol.wsp_tables import PUSH_APPLICATION_IDS

PDU_TYPE_PUSH = 0x06
PDU_TYPE_CONFIRMED_PUSH = 0x07
MMS_CONTENT_TYPE = "application/vnd.wap.mms-message"
MMS_APP_ID = "x-wap-application:mms.ua"
WAP_PUSH_PORT = 2948  # WDP destination port for connectionless WSP push
WAP_PUSH_SOURCE_PORT = 9200  # WSP connectionless session port
SMS_USER_DATA = 140  # octets of TP-UD in one 8-bit SMS (3GPP TS 23.040 §9.2.3.24)
MAX_SEGMENTS = 255
# The largest datagram (WSP push PDU) that needs no concatenation: 140 octets of user
# data less the UDH with the 16-bit port IE (UDHL + 6 octets).
SINGLE_SMS_DATAGRAM = SMS_USER_DATA - 7
# Message types a handset expects in an MMS push (OMA-MMS-ENC §6: sent by the MMSC to the client).
PUSHED_TYPES = frozenset(("m-notification-ind", "m-delivery-ind", "m-read-orig-ind"))


@dataclass(slots=True)
class WspPush:
    tid: int
    content_type: str
    headers: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""
    pdu_type: int = PDU_TYPE_PUSH
    content_type_params: dict[str, Any] = field(default_factory=dict)

    @property
    def application_id(self) -> str | None:
        value = self.headers.get("X-Wap-Application-Id")
        if isinstance(value, Raw):  # App-assigned-code as a Long-integer
            value = int.from_bytes(value.data, "big")
        if isinstance(value, int):
            return PUSH_APPLICATION_IDS.get(value, f"x-wap-application:{value}")
        return None if value is None else str(value)


def encode_push(body: bytes, tid: int = 0) -> bytes:
    """The WSP push PDU of an MMS PDU: ``TID 06 03 BE AF 84`` then the body."""
    if not 0 <= tid <= 0xFF:
        raise EncodeError(f"push TID {tid} is not an octet")
    return bytes((tid, PDU_TYPE_PUSH, 0x03, 0xBE, 0xAF, 0x84)) + body


def decode_push(data: bytes) -> WspPush:
    """Decode a WSP (confirmed) push PDU; lenient about how the headers are written."""
    data = bytes(data)
    end = len(data)
    try:
        if end < 3:
            raise DecodeError(0, "too short for a WSP push PDU")
        tid, pdu_type = data[0], data[1]
        if pdu_type not in (PDU_TYPE_PUSH, PDU_TYPE_CONFIRMED_PUSH):
            raise DecodeError(1, f"WSP PDU type 0x{pdu_type:02X} is not Push (0x06)")
        hlen, pos = read_uintvar(data, 2, end)
        hend = pos + hlen
        if hend > end:
            raise DecodeError(2, f"HeadersLen {hlen} exceeds the {end - pos} octets left")
        if hlen == 0 and pos < end and 32 <= data[pos] < 0x80:
            # AOSP's test push: HeadersLen 0 yet a textual content type follows; Android
            # reads it anyway, so we do too.
            ct, params, body_start = read_content_type(data, pos, end)
            return WspPush(tid, ct, {}, data[body_start:], pdu_type, params)
        if hlen == 0:
            raise DecodeError(pos, "push without a content type")
        ct, params, p = read_content_type(data, pos, hend)
        headers = read_part_headers(data, p, hend) if p < hend else {}
        return WspPush(tid, ct, headers, data[hend:], pdu_type, params)
    except DecodeError:
        raise
    except (IndexError, ValueError) as exc:
        raise DecodeError(0, f"malformed push: {exc}") from None


def decode_mms_push(data: bytes) -> tuple[WspPush, mms.MmsPdu]:
    """A push that a handset's MMS client would accept, and the MMS PDU inside it."""
    push = decode_push(data)
    if push.content_type.lower() != MMS_CONTENT_TYPE:
        raise DecodeError(2, f"push content type {push.content_type!r} is not an MMS message")
    app_id = push.application_id
    if app_id is not None and app_id.lower() != MMS_APP_ID:
        raise DecodeError(2, f"X-Wap-Application-Id {app_id!r} is not mms.ua")
    body_offset = len(data) - len(push.body)
    try:
        pdu = mms.decode(push.body)
    except DecodeError as exc:
        raise DecodeError(body_offset + exc.offset, exc.reason) from None
    if pdu.message_type not in PUSHED_TYPES:
        raise DecodeError(body_offset, f"{pdu.message_type} is not pushed to a handset")
    return push, pdu


# ----------------------------------------------------------------------------- WDP over SMS


@dataclass(slots=True, frozen=True)
class SmsSegment:
    """One SMS of a WDP datagram: the UDH (with its length octet) and the payload."""

    udh: bytes
    payload: bytes

    @property
    def user_data(self) -> bytes:
        return self.udh + self.payload


def _port_ie(dst: int, src: int) -> bytes:
    return bytes((0x05, 0x04)) + dst.to_bytes(2, "big") + src.to_bytes(2, "big")


def segment_datagram(
    datagram: bytes,
    reference: int,
    *,
    dst_port: int = WAP_PUSH_PORT,
    src_port: int = WAP_PUSH_SOURCE_PORT,
    ref16: bool = False,
    user_data_octets: int = SMS_USER_DATA,
) -> list[SmsSegment]:
    """Split a datagram into SMS user data; one segment, with no concat IE, when it fits."""
    port = _port_ie(dst_port, src_port)
    single_room = user_data_octets - 1 - len(port)
    if len(datagram) <= single_room:
        return [SmsSegment(bytes((len(port),)) + port, bytes(datagram))]
    concat_len = 6 if ref16 else 5
    room = user_data_octets - 1 - len(port) - concat_len
    total = -(-len(datagram) // room)
    if total > MAX_SEGMENTS:
        raise EncodeError(f"datagram of {len(datagram)} octets needs {total} SMS (max 255)")
    if ref16:
        if not 0 <= reference <= 0xFFFF:
            raise EncodeError("16-bit concatenation reference out of range")
    elif not 0 <= reference <= 0xFF:
        raise EncodeError("8-bit concatenation reference out of range")
    segments = []
    for i in range(total):
        if ref16:
            concat = bytes((0x08, 0x04)) + reference.to_bytes(2, "big") + bytes((total, i + 1))
        else:
            concat = bytes((0x00, 0x03, reference, total, i + 1))
        ies = concat + port
        segments.append(
            SmsSegment(bytes((len(ies),)) + ies, bytes(datagram[i * room : (i + 1) * room]))
        )
    return segments


@dataclass(slots=True)
class UserDataHeader:
    dst_port: int | None = None
    src_port: int | None = None
    reference: int | None = None
    total: int = 1
    seq: int = 1
    other: list[tuple[int, bytes]] = field(default_factory=list)


def parse_user_data(user_data: bytes) -> tuple[UserDataHeader, bytes]:
    """Split TP-UD with UDHI set into its header elements and the payload."""
    if not user_data:
        raise DecodeError(0, "empty user data")
    udhl = user_data[0]
    if 1 + udhl > len(user_data):
        raise DecodeError(0, f"UDH length {udhl} exceeds the user data")
    udh = UserDataHeader()
    pos, end = 1, 1 + udhl
    while pos < end:
        if pos + 2 > end:
            raise DecodeError(pos, "truncated information element")
        iei, ielen = user_data[pos], user_data[pos + 1]
        value = user_data[pos + 2 : pos + 2 + ielen]
        if pos + 2 + ielen > end:
            raise DecodeError(pos, f"information element 0x{iei:02X} exceeds the UDH")
        if iei == 0x05 and ielen == 4:
            udh.dst_port = int.from_bytes(value[:2], "big")
            udh.src_port = int.from_bytes(value[2:], "big")
        elif iei == 0x04 and ielen == 2:
            udh.dst_port, udh.src_port = value[0], value[1]
        elif iei == 0x00 and ielen == 3:
            udh.reference, udh.total, udh.seq = value[0], value[1], value[2]
        elif iei == 0x08 and ielen == 4:
            udh.reference = int.from_bytes(value[:2], "big")
            udh.total, udh.seq = value[2], value[3]
        else:
            udh.other.append((iei, bytes(value)))
        pos += 2 + ielen
    return udh, bytes(user_data[end:])


def reassemble(user_data_list: list[bytes]) -> tuple[UserDataHeader, bytes]:
    """Put the segments of one datagram back together, in any arrival order."""
    if not user_data_list:
        raise DecodeError(0, "no segments")
    parsed = [parse_user_data(ud) for ud in user_data_list]
    first = parsed[0][0]
    if first.reference is None:
        if len(parsed) != 1:
            raise DecodeError(0, "several segments without a concatenation IE")
        return parsed[0]
    by_seq: dict[int, bytes] = {}
    for udh, payload in parsed:
        if udh.reference != first.reference or udh.total != first.total:
            raise DecodeError(0, "segments of different messages")
        if not 1 <= udh.seq <= udh.total:
            raise DecodeError(0, f"segment number {udh.seq} of {udh.total}")
        by_seq[udh.seq] = payload
    if len(by_seq) != first.total:
        raise DecodeError(0, f"have {len(by_seq)} of {first.total} segments")
    return first, b"".join(by_seq[i] for i in range(1, first.total + 1))


def notification_segments(
    notification: bytes, *, tid: int, reference: int, ref16: bool = False
) -> list[SmsSegment]:
    """An encoded m-notification-ind, wrapped in a WSP push and cut into SMS."""
    return segment_datagram(encode_push(notification, tid), reference, ref16=ref16)


# ----------------------------------------------------------------------------- SMS TPDU (tests)


def parse_sms_deliver(tpdu: bytes, *, with_smsc: bool = True) -> tuple[str, bool, bytes]:
    """Originator, UDHI flag and 8-bit user data of an SMS-DELIVER (3GPP TS 23.040 §9.2.2.1).

    Only the 8-bit data coding that WAP push uses is supported: enough to read
    captured pushes back in tests.
    """
    try:
        pos = 1 + tpdu[0] if with_smsc else 0
        first = tpdu[pos]
        if first & 0x03 != 0x00:
            raise DecodeError(pos, "not an SMS-DELIVER")
        udhi = bool(first & 0x40)
        oa_digits = tpdu[pos + 1]
        oa_len = (oa_digits + 1) // 2
        oa_raw = tpdu[pos + 3 : pos + 3 + oa_len]
        originator = "".join(f"{b & 0x0F:x}{b >> 4:x}" for b in oa_raw)[:oa_digits]
        pos += 3 + oa_len
        dcs = tpdu[pos + 1]
        pos += 2 + 7  # PID, DCS, SCTS
        udl = tpdu[pos]
        if dcs & 0x0C != 0x04:
            raise DecodeError(pos, f"data coding 0x{dcs:02X} is not 8-bit")
        ud = tpdu[pos + 1 : pos + 1 + udl]
        if len(ud) != udl:
            raise DecodeError(pos, "truncated user data")
        return originator, udhi, bytes(ud)
    except IndexError:
        raise DecodeError(len(tpdu), "truncated SMS-DELIVER") from None


__all__ = [
    "MMS_APP_ID",
    "MMS_CONTENT_TYPE",
    "SmsSegment",
    "UserDataHeader",
    "WspPush",
    "decode_mms_push",
    "decode_push",
    "encode_push",
    "notification_segments",
    "parse_sms_deliver",
    "parse_user_data",
    "reassemble",
    "segment_datagram",
]
