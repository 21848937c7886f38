"""Every vector of the shared MMS corpus: conformant ones decode, negative ones fail cleanly.

Expected values per file come from reading the bytes against OMA-MMS-ENC by
hand (and agree with tshark's reading in ../shared/corpus/mms/tshark_check.tsv).
"""

from __future__ import annotations

import pytest

from protocol import mms, wap_push
from protocol.errors import DecodeError
from tests.conftest import CORPUS, mms_manifest

VECTORS = mms_manifest()
POSITIVE_MMS = [v for v in VECTORS if v.kind == "mms" and not v.negative]
POSITIVE_PUSH = [v for v in VECTORS if v.kind == "push" and not v.negative]
NEGATIVE = [v for v in VECTORS if v.negative]


def test_manifest_is_complete() -> None:
    listed = {v.file for v in VECTORS}
    on_disk = {p.name for p in (CORPUS / "mms").iterdir()} - {"MANIFEST.tsv", "tshark_check.tsv"}
    assert listed == on_disk
    assert len(POSITIVE_MMS) >= 40 and len(POSITIVE_PUSH) >= 6 and len(NEGATIVE) >= 5


@pytest.mark.parametrize("vector", POSITIVE_MMS, ids=lambda v: v.file)
def test_conformant_mms_vector_decodes(vector) -> None:
    pdu = mms.decode(vector.path.read_bytes())
    expected_type = vector.pdu_type.split()[0]
    assert pdu.message_type == expected_type
    assert pdu.mms_version in ("1.0", "1.1", "1.2", "1.3")
    if pdu.parts is not None:
        assert pdu.parts, "a multipart body has at least one part"
        for part in pdu.parts:
            assert part.content_type


@pytest.mark.parametrize("vector", POSITIVE_MMS, ids=lambda v: v.file)
def test_corpus_roundtrip_is_stable(vector) -> None:
    """decode -> encode -> decode gives the same PDU (headers, parameters and part bytes)."""
    first = mms.decode(vector.path.read_bytes())
    again = mms.decode(mms.encode(first, check_mandatory=False))
    assert again.message_type == first.message_type
    assert again.transaction_id == first.transaction_id
    assert again.headers == first.headers
    assert again.content_type == first.content_type
    assert again.content_type_params == first.content_type_params
    if first.parts is None:
        assert again.parts is None
    else:
        assert [(p.content_type, p.params, p.headers, bytes(p.data)) for p in again.parts] == [
            (p.content_type, p.params, p.headers, bytes(p.data)) for p in first.parts
        ]


@pytest.mark.parametrize("vector", POSITIVE_PUSH, ids=lambda v: v.file)
def test_conformant_push_decodes(vector) -> None:
    push, pdu = wap_push.decode_mms_push(vector.path.read_bytes())
    assert push.content_type == wap_push.MMS_CONTENT_TYPE
    assert pdu.message_type == "m-notification-ind"
    assert pdu.get("X-Mms-Content-Location", "").startswith("http://")
    assert isinstance(pdu.get("X-Mms-Message-Size"), int)


@pytest.mark.parametrize("vector", NEGATIVE, ids=lambda v: v.file)
def test_negative_vector_raises_decode_error(vector) -> None:
    data = vector.path.read_bytes()
    with pytest.raises(DecodeError) as info:
        if vector.kind == "push":
            wap_push.decode_mms_push(data)
        else:
            mms.decode(data)
    assert 0 <= info.value.offset <= len(data)
    assert info.value.reason


def test_sonim_send_req_details() -> None:
    """A real Android handset's m-send-req: 770 KB JPEG, quoted Content-ID, start=<smil>."""
    pdu = mms.decode((CORPUS / "mms" / "vectorcore__m-send-req-sonim.bin").read_bytes())
    assert pdu.transaction_id == "T19d6aeff2a3"
    assert pdu.mms_version == "1.2"
    assert pdu.headers["From"] == "3342012834/TYPE=PLMN"
    assert pdu.headers["To"] == ["3342012832/TYPE=PLMN"]
    assert pdu.content_type == "application/vnd.wap.multipart.related"
    assert pdu.content_type_params == {"start": "<smil>", "type": "application/smil"}
    smil, jpeg = pdu.parts
    assert smil.content_type == "application/smil"
    assert smil.params == {"name": "smil.xml", "charset": "utf-8"}
    assert smil.content_id == "<smil>"
    assert bytes(smil.data).startswith(b"<smil")
    assert jpeg.content_type == "image/jpeg"
    assert jpeg.content_id == "<IMG_2025-02-21_22-41-06>"
    assert jpeg.content_location == "IMG_2025-02-21_22-41-06.jpeg"
    assert len(jpeg.data) == 769560
    assert bytes(jpeg.data[:3]) == b"\xff\xd8\xff"


def test_insert_address_from_and_utf8_subject() -> None:
    pdu = mms.decode(
        (CORPUS / "mms" / "pymessaging__27d0a048cd79555de05283a22372b0eb.mms").read_bytes()
    )
    assert pdu.headers["From"] is None  # Insert-address-token
    assert pdu.headers["Subject"] == "Angående art-tillhörighet"
    assert pdu.get("x-mms-read-report") == "No"


def test_unrecognised_header_and_values_are_kept() -> None:
    """OMA conformance MMS-1.3-con-281/282: unknown fields and values do not stop decoding."""
    con281 = mms.decode((CORPUS / "mms" / "mmsd__rc-mms-1-3-con-281.mms").read_bytes())
    assert con281.headers["X-MMS-Unrecognised-Header-Field"] == "Yes"
    assert len(con281.parts) == 2
    con282 = mms.decode((CORPUS / "mms" / "mmsd__rc-mms-1-3-con-282.mms").read_bytes())
    assert con282.headers["X-Mms-Message-Class"] == "NewMessageClass"


def test_utf16_text_part_charset() -> None:
    pdu = mms.decode((CORPUS / "mms" / "mmsd__rc-mms-1-3-con-214.mms").read_bytes())
    (part,) = pdu.parts
    assert part.params["charset"] == "utf-16"
    assert bytes(part.data).decode("utf-16").startswith("French ê has a roof")


def test_lenient_aosp_push() -> None:
    """AOSP's test push: HeadersLen 0, version octet without its high bit, From too short."""
    push, pdu = wap_push.decode_mms_push(
        (CORPUS / "mms" / "aosp__wappush-blocked-number.wsp").read_bytes()
    )
    assert push.tid == 1
    assert pdu.transaction_id == "MmsTransactionID"
    assert pdu.mms_version == "1.2"
    assert pdu.headers["From"] == "16178269168/TYPE=PLMN"
    assert pdu.headers["X-Mms-Expiry"] == {"relative": 259200}
    assert pdu.headers["X-Mms-Content-Location"] == "http://www.google.com/sadfdd"


def test_empty_subject_in_tmobile_push() -> None:
    push, pdu = wap_push.decode_mms_push(
        (CORPUS / "mms" / "mudita__wappush-tmobile.wsp").read_bytes()
    )
    assert push.tid == 0xC5
    assert pdu.headers["Subject"] == ""
    assert pdu.headers["X-Mms-Expiry"] == {"relative": 43198}


@pytest.mark.parametrize("pair", ["a", "b"])
def test_sms_deliver_segments_reassemble(pair: str) -> None:
    """Two real SMS-DELIVER TPDUs (16-bit concat reference) give back the WAP push."""
    user_data = []
    for i in (2, 1):  # out of order on purpose
        tpdu = (
            CORPUS / "mms" / f"pymessaging__sms-deliver-wappush-{pair}-part{i}of2.tpdu"
        ).read_bytes()
        _originator, udhi, ud = wap_push.parse_sms_deliver(tpdu)
        assert udhi
        user_data.append(ud)
    udh, datagram = wap_push.reassemble(user_data)
    assert (udh.dst_port, udh.src_port, udh.total) == (2948, 9200, 2)
    _push, pdu = wap_push.decode_mms_push(datagram)
    assert pdu.message_type == "m-notification-ind"
    assert pdu.headers["X-Mms-Message-Size"] == 29696
    if pair == "a":
        assert (
            datagram
            == (CORPUS / "mms" / "pymessaging__wappush-notification-ind-uk.wsp").read_bytes()
        )
