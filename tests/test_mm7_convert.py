"""MM7 requests to the m-send-req the core stores, and a ReplaceReq applied to it
(mmsc.mm7_convert): the fields retrieval and the core act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mmsc.mm7_convert import delivery_time, encode_submit, replaced_pdu, submit_to_pdu
from protocol import mm7, mms
from protocol.wsp import Part

NS = "REL-6-MM7-1-4"


def content(text: bytes = b"hi") -> mm7.Content:
    return mm7.content_from_parts(
        "multipart/mixed", {}, [Part("text/plain", {"charset": "utf-8"}, {}, text)]
    )


def submit(**fields: Any) -> mm7.SubmitReq:
    return mm7.SubmitReq(
        transaction_id="t",
        namespace=NS,
        to=[mm7.Address("Number", "+15550000002")],
        content=content(),
        **fields,
    )


def stored(req: mm7.SubmitReq) -> mms.MmsPdu:
    """The m-send-req as retrieval reads it back from the payload store."""
    return mms.decode(encode_submit(submit_to_pdu(req, "1234/TYPE=PLMN")))


def test_allow_adaptations_false_is_stored_as_adaptation_allowed_no() -> None:
    """Content@allowAdaptations="false" (TS 23.140 §8.7.1) survives the stored encoding:
    X-Mms-Adaptation-Allowed is an OMA-MMS-ENC 1.3 field, so the PDU is 1.3."""
    pdu = stored(submit(adaptations=False))
    assert pdu.mms_version == "1.3"
    assert pdu.headers["X-Mms-Adaptation-Allowed"] == "No"
    for allowed in (None, True):
        pdu = stored(submit(adaptations=allowed))
        assert "X-Mms-Adaptation-Allowed" not in pdu.headers and pdu.mms_version == "1.2"


def test_replace_applies_its_fields_and_keeps_the_rest() -> None:
    original = stored(submit(subject="S", read_reply=False, adaptations=False))
    req = mm7.ReplaceReq(
        transaction_id="r",
        namespace=NS,
        message_id="m",
        read_reply=True,
        drm_content=True,
        distribution_indicator=False,
    )
    pdu = mms.decode(mms.encode(replaced_pdu(original, req), check_mandatory=False))
    assert pdu.headers["Subject"] == "S"
    assert pdu.headers["X-Mms-Read-Report"] == "Yes"
    assert pdu.headers["X-Mms-DRM-Content"] == "Yes"
    assert pdu.headers["X-Mms-Distribution-Indicator"] == "No"
    assert pdu.headers["X-Mms-Adaptation-Allowed"] == "No"  # no new Content: unchanged
    assert [bytes(p.data) for p in pdu.parts or []] == [b"hi"]
    # New content without allowAdaptations may be adapted again; with "false" it may not.
    again = mm7.ReplaceReq(transaction_id="r", namespace=NS, message_id="m", content=content(b"2"))
    assert "X-Mms-Adaptation-Allowed" not in replaced_pdu(original, again).headers
    again.adaptations = False
    assert replaced_pdu(original, again).headers["X-Mms-Adaptation-Allowed"] == "No"


def test_replace_of_a_1_2_message_with_a_1_3_field_makes_it_1_3() -> None:
    original = stored(submit())
    assert original.mms_version == "1.2"
    req = mm7.ReplaceReq(transaction_id="r", namespace=NS, message_id="m", drm_content=True)
    pdu = replaced_pdu(original, req)
    assert pdu.mms_version == "1.3"
    decoded = mms.decode(mms.encode(pdu, check_mandatory=False))
    assert decoded.headers["X-Mms-DRM-Content"] == "Yes"


def test_delivery_time() -> None:
    assert delivery_time(None, 100.0) is None
    assert delivery_time(timedelta(minutes=1), 100.0) == 160.0
    assert delivery_time(datetime(2030, 1, 1, tzinfo=UTC), 100.0) == 1893456000.0
