"""MM7 requests to MMS PDUs and back (3GPP TS 23.140 §8.7 <-> OMA-MMS-ENC §6).

A VASP's SubmitReq is stored the same way as a handset's m-send-req (the raw
m-send-req encoding in the payload store, the envelope in the database), so
retrieval, reports and expiry need no MM7 special case. This module maps the
SOAP elements onto the MMS header fields they correspond to (TS 23.140
Table 8 lists the MM7_submit.REQ information elements; OMA-MMS-ENC §6.1 the
m-send-req fields).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from protocol import mms
from protocol.mm7 import Address as Mm7Address
from protocol.mm7 import Content, content_parts
from protocol.mms import MmsPdu
from protocol.wsp import Part

# MM7 MessageClass / Priority / ContentClass values and their MMS spellings.
MESSAGE_CLASSES = {
    "personal": "Personal",
    "informational": "Informational",
    "advertisement": "Advertisement",
    "auto": "Auto",
}
PRIORITIES = {"low": "Low", "normal": "Normal", "high": "High"}
MMS_13_FIELDS = (
    "X-Mms-Applic-ID",
    "X-Mms-Reply-Applic-ID",
    "X-Mms-Aux-Applic-Info",
    "X-Mms-Content-Class",
    "X-Mms-DRM-Content",
    "X-Mms-Adaptation-Allowed",
)
CONTENT_CLASSES = {
    "text": "text",
    "image-basic": "image-basic",
    "image-rich": "image-rich",
    "video-basic": "video-basic",
    "video-rich": "video-rich",
    "megapixel": "megapixel",
    "content-basic": "content-basic",
    "content-rich": "content-rich",
}


def mms_address(address: Mm7Address) -> str:
    """An MM7 address as an MMS address string our address parser understands."""
    if address.kind == "Number":
        return f"{address.value}/TYPE=PLMN"
    return address.value  # ShortCode digits, or an RFC 2822 address


def _when(value: datetime | timedelta | None) -> dict[str, int] | None:
    """ExpiryDate / EarliestDeliveryTime: absolute or relative (TS 23.140 §8.7.1)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return {"relative": max(int(value.total_seconds()), 0)}
    return {"absolute": calendar.timegm(value.utctimetuple())}


def delivery_time(value: datetime | timedelta | None, now: float) -> float | None:
    """EarliestDeliveryTime as a time (a relative one counts from ``now``), or None."""
    when = _when(value)
    if when is None:
        return None
    return float(when["absolute"]) if "absolute" in when else now + when["relative"]


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("Yes" if value else "No")


def content_pdu_fields(content: Content | None) -> tuple[str, dict[str, Any], list[Any]]:
    """(content type, its parameters, parts) of an m-send-req carrying ``content``."""
    if content is None:
        return "application/vnd.wap.multipart.mixed", {}, []
    parts = content_parts(content)
    ctype = content.content_type.lower()
    if ctype == "multipart/related":
        return "application/vnd.wap.multipart.related", related_params(content.params, parts), parts
    return "application/vnd.wap.multipart.mixed", {}, parts


def related_params(params: Mapping[str, Any], parts: list[Part]) -> dict[str, Any]:
    """``start`` and ``type`` of a multipart/related body in the form handsets compare.

    VASPs write ``start=smil``, ``start="cid:smil"`` or ``start="<smil>"``; a handset
    finds the presentation by comparing ``start`` with each part's Content-ID byte for
    byte, and our parts carry ``<smil>``. So ``start`` is written as the Content-ID it
    names, and dropped when it names no part (the root is then the first part,
    RFC 2387 §3.2). ``type`` is required and is the root's type (RFC 2387 §3.1): when
    ``start`` names a part, that part's type whatever the VASP wrote (Sinch writes
    type="text/xml" over a SMIL root); otherwise the VASP's own, else the first part's.
    """
    out: dict[str, Any] = {}
    named = None
    start = str(params.get("start") or "").strip()
    if start:
        bare = start[4:] if start[:4].lower() == "cid:" else start
        wanted = "<" + bare.strip().strip("<>") + ">"
        named = next((p for p in parts if p.content_id == wanted), None)
        if named is not None:
            out["start"] = wanted
    kind: str | None = named.content_type if named is not None else None
    if kind is None:
        kind = params.get("type") or (parts[0].content_type if parts else None)
    if kind:
        out["type"] = kind
    return out


def submit_to_pdu(req: Any, sender: str) -> MmsPdu:
    """The m-send-req a SubmitReq stands for; ``sender`` is the VASP's checked short code."""
    headers: dict[str, Any] = {"From": sender}
    for name, attr in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        addresses = getattr(req, attr, None) or []
        if addresses:
            headers[name] = [mms_address(a) for a in addresses]
    if getattr(req, "subject", None):
        headers["Subject"] = req.subject
    message_class = (getattr(req, "message_class", None) or "").lower()
    if message_class in MESSAGE_CLASSES:
        headers["X-Mms-Message-Class"] = MESSAGE_CLASSES[message_class]
    priority = (getattr(req, "priority", None) or "").lower()
    if priority in PRIORITIES:
        headers["X-Mms-Priority"] = PRIORITIES[priority]
    for name, attr in (
        ("X-Mms-Delivery-Report", "delivery_report"),
        ("X-Mms-Read-Report", "read_reply"),
        ("X-Mms-Distribution-Indicator", "distribution_indicator"),
        ("X-Mms-DRM-Content", "drm_content"),
    ):
        value = _yes_no(getattr(req, attr, None))
        if value is not None:
            headers[name] = value
    expiry = _when(getattr(req, "expiry_date", None))
    if expiry is not None:
        headers["X-Mms-Expiry"] = expiry
    earliest = _when(getattr(req, "earliest_delivery_time", None))
    if earliest is not None:
        headers["X-Mms-Delivery-Time"] = earliest
    content_class = (getattr(req, "content_class", None) or "").lower()
    if content_class in CONTENT_CLASSES:
        headers["X-Mms-Content-Class"] = CONTENT_CLASSES[content_class]
    for name, attr in (
        ("X-Mms-Applic-ID", "applic_id"),
        ("X-Mms-Reply-Applic-ID", "reply_applic_id"),
        ("X-Mms-Aux-Applic-Info", "aux_applic_info"),
    ):
        value = getattr(req, attr, None)
        if value:
            headers[name] = str(value)
    if getattr(req, "adaptations", None) is False:
        # Content@allowAdaptations="false" (TS 23.140 §8.7.1): kept where retrieval looks
        # for it, the m-send-req's X-Mms-Adaptation-Allowed (OMA-MMS-ENC 1.3 §6.1.1).
        headers["X-Mms-Adaptation-Allowed"] = "No"
    content_type, params, parts = content_pdu_fields(getattr(req, "content", None))
    version = _pdu_version(headers, "1.2")
    return MmsPdu(
        "m-send-req",
        req.transaction_id[:100] or "mm7",
        version,
        headers,
        content_type,
        params,
        parts,
    )


def _pdu_version(headers: Mapping[str, Any], base: str) -> str:
    """OMA-MMS-ENC 1.3 fields need a 1.3 PDU (the encoder leaves out fields newer than
    the PDU's version); otherwise ``base``, 1.2 for a submission, which every handset reads."""
    return "1.3" if any(name in headers for name in MMS_13_FIELDS) else base


def encode_submit(pdu: MmsPdu) -> bytes:
    """The raw m-send-req that goes to the payload store (what retrieval reads back)."""
    return mms.encode(pdu, check_mandatory=False)


def replaced_pdu(stored: MmsPdu, req: Any) -> MmsPdu:
    """The stored m-send-req with a ReplaceReq applied: new content, and the few
    fields a ReplaceReq may change (TS 23.140 §8.7.6); the rest stays as submitted."""
    headers = dict(stored.headers)
    for name, attr in (
        ("X-Mms-Read-Report", "read_reply"),
        ("X-Mms-Distribution-Indicator", "distribution_indicator"),
        ("X-Mms-DRM-Content", "drm_content"),
    ):
        value = _yes_no(getattr(req, attr, None))
        if value is not None:
            headers[name] = value
    earliest = _when(getattr(req, "earliest_delivery_time", None))
    if earliest is not None:
        headers["X-Mms-Delivery-Time"] = earliest
    content = getattr(req, "content", None)
    if content is None:
        content_type, params = stored.content_type, stored.content_type_params
        parts, body = stored.parts, stored.body
    else:
        # allowAdaptations belongs to the new Content: absent, adapting is allowed again.
        if getattr(req, "adaptations", None) is False:
            headers["X-Mms-Adaptation-Allowed"] = "No"
        else:
            headers.pop("X-Mms-Adaptation-Allowed", None)
        content_type, params, parts = content_pdu_fields(content)
        body = None
    return MmsPdu(
        stored.message_type,
        stored.transaction_id,
        _pdu_version(headers, stored.mms_version or "1.2"),
        headers,
        content_type,
        params,
        parts,
        body,
    )
