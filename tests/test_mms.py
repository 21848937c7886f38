"""MMS encapsulation rules of OMA-MMS-ENC that the encoder must keep and the decoder forgive."""

from __future__ import annotations

import pytest

from protocol import mms
from protocol.errors import DecodeError, EncodeError
from protocol.values import Raw
from protocol.wsp import Part


def notification(**headers) -> mms.MmsPdu:
    base = {
        "X-Mms-Content-Location": "http://mmsc/m/1",
        "From": "+15551230000/TYPE=PLMN",
        "X-Mms-Message-Class": "Personal",
        "X-Mms-Message-Size": 1234,
        "X-Mms-Expiry": {"relative": 604800},
    }
    base.update(headers)
    return mms.MmsPdu("m-notification-ind", "T1", "1.2", base)


def test_notification_bytes_written_from_the_spec() -> None:
    """OMA-MMS-ENC-1.2 §6.2 / §7: the octets of a minimal notification, by hand."""
    expected = (
        b"\x8c\x82"  # X-Mms-Message-Type: m-notification-ind
        b"\x98T1\x00"  # X-Mms-Transaction-ID
        b"\x8d\x92"  # X-Mms-MMS-Version 1.2
        b"\x89\x18\x80+15551230000/TYPE=PLMN\x00"  # From: length, address-present
        b"\x8a\x80"  # X-Mms-Message-Class: Personal
        b"\x8e\x02\x04\xd2"  # X-Mms-Message-Size: long-integer 1234
        b"\x88\x05\x81\x03\x09\x3a\x80"  # X-Mms-Expiry: relative 604800
        b"\x83http://mmsc/m/1\x00"  # X-Mms-Content-Location, last
    )
    assert mms.encode(notification()) == expected


def test_content_location_is_last_in_notification_and_content_type_last() -> None:
    encoded = mms.encode(notification(Subject="Hi"))
    assert encoded.endswith(b"\x83http://mmsc/m/1\x00")
    send = mms.MmsPdu(
        "m-send-req",
        "T2",
        "1.2",
        {"From": None, "To": ["+1/TYPE=PLMN"]},
        "application/vnd.wap.multipart.mixed",
        {},
        [Part("text/plain", {"charset": "utf-8"}, {}, b"hi")],
    )
    encoded = mms.encode(send)
    assert encoded.startswith(b"\x8c\x80\x98T2\x00\x8d\x92")
    assert encoded.index(b"\x84\xa3") > encoded.index(b"\x97")  # Content-Type after To


def test_yes_is_0x80_no_is_0x81() -> None:
    yes = mms.encode(notification(**{"X-Mms-Delivery-Report": "Yes"}))
    no = mms.encode(notification(**{"X-Mms-Delivery-Report": "No"}))
    assert b"\x86\x80" in yes and b"\x86\x81" in no


@pytest.mark.parametrize("missing", ["X-Mms-Message-Class", "X-Mms-Message-Size", "X-Mms-Expiry"])
def test_notification_needs_aosp_mandatory_fields(missing: str) -> None:
    pdu = notification()
    del pdu.headers[missing]
    with pytest.raises(EncodeError, match=missing):
        mms.encode(pdu)
    assert mms.encode(pdu, check_mandatory=False)  # an explicit opt-out exists


def test_transaction_id_required() -> None:
    pdu = notification()
    pdu.transaction_id = None
    with pytest.raises(EncodeError, match="Transaction-ID"):
        mms.encode(pdu)


def test_target_version_drops_newer_fields_and_refuses_newer_types() -> None:
    pdu = notification(**{"X-Mms-Content-Class": "image-basic", "X-Mms-Reply-Charging": "Accepted"})
    v13 = mms.decode(mms.encode(pdu, version="1.3"))
    assert v13.headers["X-Mms-Content-Class"] == "image-basic"
    v10 = mms.decode(mms.encode(pdu, version="1.0"))
    assert v10.mms_version == "1.0"
    assert "X-Mms-Content-Class" not in v10.headers
    assert "X-Mms-Reply-Charging" not in v10.headers  # a 1.1 field
    cancel = mms.MmsPdu("m-cancel-req", "T", "1.3", {"X-Mms-Cancel-ID": "x"})
    with pytest.raises(EncodeError, match="does not exist"):
        mms.encode(cancel, version="1.2")
    with pytest.raises(EncodeError):
        mms.encode(cancel, version="1.4")


def test_decode_headers_out_of_order_and_lenient_values() -> None:
    """From first, version late, no charset, Any-charset subject, insert-address From."""
    raw = (
        b"\x89\x01\x81"  # From: insert-address-token, before the message type
        b"\x8c\x80\x98abc\x00"
        b"\x96\x05\x80hey\x00"  # Subject with Any-charset (0x80)
        b"\x97+1/TYPE=PLMN\x00\x97user@example.com\x00\x97192.0.2.1/TYPE=IPv4\x00"
        b"\x8d\x91"
        b"\x84\xa3\x01\x01\x01\x83X"  # multipart.mixed, one text/plain part "X"
    )
    pdu = mms.decode(raw)
    assert pdu.message_type == "m-send-req"
    assert pdu.mms_version == "1.1"
    assert pdu.headers["From"] is None
    assert pdu.headers["Subject"] == "hey"
    assert pdu.headers["To"] == ["+1/TYPE=PLMN", "user@example.com", "192.0.2.1/TYPE=IPv4"]
    assert [bytes(p.data) for p in pdu.parts] == [b"X"]


def test_unknown_and_application_headers_survive() -> None:
    raw = b"\x8c\x81\x98t\x00\x8d\x93\x92\x80" + b"\xc5\x03\x01\x02\x03" + b"X-Vendor\x00v1\x00"
    pdu = mms.decode(raw)
    assert pdu.headers["X-Mms-Unknown-45"] == Raw(b"\x01\x02\x03")
    assert pdu.headers["X-Vendor"] == "v1"
    again = mms.encode(pdu)
    assert b"\xc5\x03\x01\x02\x03" in again and b"X-Vendor\x00v1\x00" in again


def test_repeated_and_unknown_token_values() -> None:
    raw = b"\x8c\x86\x8d\x90\x8bm1\x00\x95\x81\x95\xfe\x97a\x00\x85\x01\x05"
    pdu = mms.decode(raw)
    assert pdu.headers["X-Mms-Status"] == ["Retrieved", 0xFE]  # unknown token kept
    assert mms.decode(mms.encode(pdu)).headers == pdu.headers


def test_delete_conf_indexed_values() -> None:
    """OMA-MMS-ENC 1.3: delete-conf Content-Location/Response-Status carry an index."""
    pdu = mms.MmsPdu(
        "m-delete-conf",
        "t",
        "1.3",
        {
            "X-Mms-Response-Status": [{"index": 0, "value": "Ok"}, {"index": 1, "value": 0xE4}],
            "X-Mms-Content-Location": {"index": 1, "value": "http://m/2"},
        },
    )
    again = mms.decode(mms.encode(pdu))
    assert again.headers["X-Mms-Response-Status"] == [
        {"index": 0, "value": "Ok"},
        {"index": 1, "value": "Error-permanent-message-not-found"},
    ]
    assert again.headers["X-Mms-Content-Location"] == {"index": 1, "value": "http://m/2"}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x8c",
        b"\x98abc\x00",  # no message type at all
        b"\x8c\x80\x98abc",  # unterminated transaction id
        b"\x8c\x80\x89\x1f\x8f\xff\xff\xff\x7f\x80",  # From length larger than the buffer
        b"\x8c\x80\x84\xa3\x05\x01",  # multipart with 5 entries, data missing
        b"\x8c\x80\x01",  # control octet where a field name must be
    ],
)
def test_bad_pdus_raise_decode_error_with_offset(raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        mms.decode(raw)
    assert 0 <= info.value.offset <= len(raw)
    assert f"offset {info.value.offset}" in str(info.value)


def test_encoder_rejects_bad_values() -> None:
    with pytest.raises(EncodeError, match="Priority"):
        mms.encode(notification(**{"X-Mms-Priority": "Urgent"}))
    with pytest.raises(EncodeError):
        mms.encode(notification(**{"X-Mms-Expiry": 5}))
    with pytest.raises(EncodeError):
        mms.encode(notification(Subject="bad\x00nul"))
    with pytest.raises(EncodeError):
        mms.encode(mms.MmsPdu("m-bogus", "t"))


def test_parts_are_zero_copy_views() -> None:
    data = b"\x8c\x84\x8d\x92\x85\x04\x00\x00\x00\x01\x84\xa3\x01\x01\x04\x9e\xff\xd8\xff\xe0"
    pdu = mms.decode(data)
    assert isinstance(pdu.parts[0].data, memoryview)
    assert pdu.parts[0].payload() == b"\xff\xd8\xff\xe0"
