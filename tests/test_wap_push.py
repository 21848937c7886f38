"""WSP push PDU and WDP-over-SMS framing (WAP-230-WSP §8.2.4, WAP-259-WDP, 3GPP TS 23.040)."""

from __future__ import annotations

import pytest

from protocol import mms, wap_push
from protocol.errors import DecodeError, EncodeError


def typical_notification(location: str = "http://mmsc.example/m/A1b2C3") -> bytes:
    pdu = mms.MmsPdu(
        "m-notification-ind",
        "A1b2C3",
        "1.2",
        {
            "From": "+447700900123/TYPE=PLMN",
            "Subject": "Holiday pictures",
            "X-Mms-Message-Class": "Personal",
            "X-Mms-Message-Size": 254000,
            "X-Mms-Expiry": {"relative": 604800},
            "X-Mms-Content-Location": location,
        },
    )
    return mms.encode(pdu)


def test_push_pdu_header_bytes() -> None:
    """TID, Push (0x06), HeadersLen 3, content type 0xBE, X-Wap-Application-Id 0xAF 0x84."""
    body = typical_notification()
    push = wap_push.encode_push(body, tid=0x39)
    assert push[:6] == bytes.fromhex("390603beaf84")
    assert push[6:] == body
    decoded, pdu = wap_push.decode_mms_push(push)
    assert decoded.tid == 0x39
    assert decoded.application_id == "x-wap-application:mms.ua"
    assert pdu.headers["X-Mms-Content-Location"] == "http://mmsc.example/m/A1b2C3"


def test_typical_notification_fits_one_sms() -> None:
    segments = wap_push.notification_segments(typical_notification(), tid=1, reference=7)
    assert len(segments) == 1
    (seg,) = segments
    # UDH: length 6, port IE 05 04 0B84 23F0 (2948 from 9200); no concatenation IE.
    assert seg.udh == bytes.fromhex("0605040b8423f0")
    assert len(seg.user_data) <= wap_push.SMS_USER_DATA


@pytest.mark.parametrize("ref16", [False, True])
def test_long_notification_is_concatenated(ref16: bool) -> None:
    body = typical_notification("http://mmsc.example/" + "x" * 220)
    reference = 0x1234 if ref16 else 0x42
    segments = wap_push.notification_segments(body, tid=2, reference=reference, ref16=ref16)
    assert len(segments) == 3
    for i, seg in enumerate(segments, start=1):
        assert len(seg.user_data) <= 140
        udh, _payload = wap_push.parse_user_data(seg.user_data)
        assert (udh.dst_port, udh.src_port) == (2948, 9200)
        assert (udh.reference, udh.total, udh.seq) == (reference, 3, i)
        if ref16:
            assert seg.udh[:7] == bytes.fromhex("0c08041234") + bytes((3, i))
        else:
            assert seg.udh[:6] == bytes.fromhex("0b0003420" + "3") + bytes((i,))
    assert all(len(s.user_data) == 140 for s in segments[:-1])  # full segments but the last
    _header, datagram = wap_push.reassemble([s.user_data for s in reversed(segments)])
    assert datagram == wap_push.encode_push(body, tid=2)
    assert wap_push.decode_mms_push(datagram)[1].headers["X-Mms-Message-Size"] == 254000


def test_segment_limits() -> None:
    with pytest.raises(EncodeError, match="255"):
        wap_push.segment_datagram(bytes(128 * 256), 1)
    with pytest.raises(EncodeError):
        wap_push.segment_datagram(bytes(500), 256)  # 8-bit reference out of range
    with pytest.raises(EncodeError):
        wap_push.encode_push(b"", tid=256)


def test_reassembly_rejects_inconsistent_segments() -> None:
    segs = wap_push.segment_datagram(bytes(300), 5)
    with pytest.raises(DecodeError, match="of 3"):
        wap_push.reassemble([s.user_data for s in segs[:2]])
    other = wap_push.segment_datagram(bytes(300), 6)
    with pytest.raises(DecodeError, match="different"):
        wap_push.reassemble([segs[0].user_data, other[1].user_data, segs[2].user_data])
    with pytest.raises(DecodeError):
        wap_push.parse_user_data(b"\x0a\x05\x04")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x01\x05\x03\xbe\xaf\x84", "not Push"),
        (b"\x01\x06\x10\xbe", "HeadersLen"),
        (bytes.fromhex("010603beaf83") + b"\x8c\x82", "mms.ua"),
        (bytes.fromhex("010601b0") + b"\x8c\x82", "not an MMS message"),
    ],
)
def test_push_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        wap_push.decode_mms_push(raw)


def test_textual_push_headers_are_accepted() -> None:
    """A push written with a textual content type and application id (UK operator style)."""
    body = typical_notification()
    headers = b"application/vnd.wap.mms-message\x00\xafx-wap-application:mms.ua\x00"
    raw = bytes((7, 6, len(headers))) + headers + body
    push, pdu = wap_push.decode_mms_push(raw)
    assert push.content_type == "application/vnd.wap.mms-message"
    assert pdu.message_type == "m-notification-ind"


def test_long_integer_application_id_is_read_not_crashed_on() -> None:
    """Found by the fuzzer: X-Wap-Application-Id as a Long-integer (value-length form)."""
    headers = b"\xbe\xaf\x02\x8d\xdb"
    raw = bytes((0, 6, len(headers))) + headers + b"\x8c\x82\x98T\x00\x8d\x92"
    with pytest.raises(DecodeError, match="36315"):
        wap_push.decode_mms_push(raw)
    headers = b"\xbe\xaf\x01\x04"  # mms.ua as a one-octet Long-integer
    raw = bytes((0, 6, len(headers))) + headers + typical_notification()
    assert wap_push.decode_mms_push(raw)[0].application_id == wap_push.MMS_APP_ID
