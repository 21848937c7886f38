"""The MM7 codec (protocol/mm7*.py): the shared corpus, the encoder's structure rules of
TS 23.140 for every operation and every schema namespace, round trips, and the
decoder's leniency. Hardening and fuzzing: test_mm7_hardening.py; MIME, content and
value types: test_mm7_content.py.

The corpus holds three formats (``../shared/corpus/mm7/MANIFEST.tsv``): full HTTP
messages (``.http``: start line, headers, blank line, body), bare SOAP envelopes
(``.xml``, ``.soap``) and a multipart body without headers (``.multipart``).
"""

from __future__ import annotations

import base64
import csv
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from protocol import mm7
from protocol.errors import DecodeError, EncodeError
from protocol.mm7 import (
    Address,
    CancelReq,
    CancelRsp,
    Content,
    DeliverReq,
    DeliverRsp,
    DeliveryReportReq,
    DeliveryReportRsp,
    Fault,
    Mm7DecodeError,
    Operation,
    ReadReplyReq,
    ReadReplyRsp,
    ReplaceReq,
    ReplaceRsp,
    ReplyCharging,
    RSErrorRsp,
    SubmitReq,
    SubmitRsp,
    UACapabilities,
    VASPErrorRsp,
)
from tests.conftest import CORPUS

MM7_CORPUS = CORPUS / "mm7"
_START_LINE = re.compile(rb"^(POST|GET|PUT) \S+ HTTP/1\.[01]|^HTTP/1\.[01] \d{3}")


@dataclass(frozen=True)
class Sample:
    file: str
    message: str
    check: str  # the manifest's mm7_check column

    @property
    def path(self) -> Path:
        return MM7_CORPUS / self.file


def manifest() -> list[Sample]:
    with open(MM7_CORPUS / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    return [Sample(r[0], r[3], r[4]) for r in rows[1:] if r]


@dataclass(frozen=True)
class HttpMessage:
    headers: dict[str, str]  # names lower-cased, folded lines joined
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def soap_action(self) -> str | None:
        return self.headers.get("soapaction")


def split_http(raw: bytes) -> HttpMessage:
    """Headers and body of an HTTP message as a server would see them."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, _, body = raw.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()[1:]  # drop the start line
    headers: dict[str, str] = {}
    last = ""
    for line in lines:
        if line[:1] in (" ", "\t") and last:
            headers[last] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        last = name.strip().lower()
        headers[last] = value.strip()
    return HttpMessage(headers, body)


def read_sample(path: Path) -> HttpMessage:
    """Any corpus file as (headers, body): bare SOAP is text/xml; a bare multipart body
    comes without a Content-Type parameter, as its manifest entry says."""
    raw = path.read_bytes()
    if _START_LINE.match(raw):
        return split_http(raw)
    if raw.startswith(b"--"):
        return HttpMessage({"content-type": "multipart/related"}, raw)
    return HttpMessage({"content-type": "text/xml"}, raw)


# ----------------------------------------------------------------------------- operations

T0 = datetime(2024, 5, 6, 7, 8, 9, 250000, tzinfo=UTC)
T1 = datetime(2024, 5, 7, 1, 2, 3, tzinfo=timezone(timedelta(hours=2)))
REL6_FIELDS = (
    "charged_party_id",
    "delivery_condition",
    "applic_id",
    "reply_applic_id",
    "aux_applic_info",
    "content_class",
    "drm_content",
    "ua_capabilities",
    "mm_status_extension",
)


def sample_content() -> Content:
    smil = b'<smil><body><par><img src="cid:img"/><text src="cid:txt"/></par></body></smil>'
    body = (
        b"--inner\r\nContent-Type: application/smil; charset=utf-8\r\n"
        b"Content-ID: <smil>\r\nContent-Location: smil.xml\r\n\r\n" + smil + b"\r\n"
        b"--inner\r\nContent-Type: image/gif\r\nContent-ID: <img>\r\n"
        b"Content-Location: a.gif\r\n\r\nGIF89a\x00\x01\xff\r\n"
        b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-ID: <txt>\r\n\r\n"
        + "Grüße".encode()
        + b"\r\n--inner--\r\n"
    )
    params = {"boundary": "inner", "type": "application/smil", "start": "<smil>"}
    return Content("multipart/related", params, body, "content-1")


def full_operation(name: str, namespace: str) -> Operation:
    """``name`` with every field of its schema set, as the namespace's release defines."""
    version = mm7.MM7_VERSIONS.get(namespace, "6.8.0")
    common = {"transaction_id": f"tid-{name}", "namespace": namespace, "mm7_version": version}
    number = Address("Number", "+15551230000")
    short = Address("ShortCode", "1234", address_coding="obfuscated")
    mail = Address("RFC2822Address", "vasp@example.com", display_only=True)
    status = {"status_code": 1000, "status_text": "Success", "details": "all fine"}
    applic = {"applic_id": "app", "reply_applic_id": "reply-app", "aux_applic_info": "aux"}
    ops: dict[str, Operation] = {
        "SubmitReq": SubmitReq(
            **common,
            vasp_id="acme",
            vas_id="news",
            sender_address=short,
            to=[number, mail],
            cc=[Address("Number", "+15551230001")],
            bcc=[Address("Number", "+15551230002")],
            service_code="svc-1",
            linked_id="link-1",
            message_class="Informational",
            time_stamp=T0,
            reply_charging=ReplyCharging(1024, timedelta(days=2)),
            earliest_delivery_time=T1,
            expiry_date=timedelta(days=1, hours=2, minutes=3, seconds=4),
            delivery_report=True,
            read_reply=False,
            priority="High",
            subject='Grüße <&> "quoted"',
            charged_party="Sender",
            charged_party_id="+15550000000",
            distribution_indicator=False,
            delivery_condition=[1, 2],
            **applic,
            content_class="image-rich",
            drm_content=False,
            adaptations=True,
            content=sample_content(),
        ),
        "SubmitRsp": SubmitRsp(**common, **status, message_id="msg-1"),
        "DeliverReq": DeliverReq(
            **common,
            mms_relay_server_id="mmsc.example",
            linked_id="link-2",
            sender=number,
            to=[short],
            cc=[mail],
            time_stamp=T0,
            reply_charging_id="rc-1",
            priority="Low",
            subject="MO",
            **applic,
            ua_capabilities=UACapabilities("http://ua.example/p.xml", T1),
            adaptations=False,
            content=Content("text/plain", {"charset": "utf-8"}, b"hello", "mo-text"),
        ),
        "DeliverRsp": DeliverRsp(**common, **status, service_code="svc-2"),
        "CancelReq": CancelReq(
            **common,
            vasp_id="acme",
            vas_id="news",
            sender_address=short,
            message_id="msg-1",
            **applic,
        ),
        "CancelRsp": CancelRsp(**common, **status),
        "ReplaceReq": ReplaceReq(
            **common,
            vasp_id="acme",
            vas_id="news",
            message_id="msg-1",
            service_code="svc-3",
            time_stamp=T0,
            read_reply=True,
            earliest_delivery_time=timedelta(minutes=30),
            distribution_indicator=True,
            content_class="text",
            drm_content=True,
            **applic,
            adaptations=True,
            content=sample_content(),
        ),
        "ReplaceRsp": ReplaceRsp(**common, **status),
        "DeliveryReportReq": DeliveryReportReq(
            **common,
            mms_relay_server_id="mmsc.example",
            message_id="msg-1",
            recipient=number,
            sender=short,
            date=T0,
            mm_status="Retrieved",
            mm_status_extension="RejectionByMMSRecipient",
            status_text="fetched",
            **applic,
            ua_capabilities=UACapabilities("http://ua.example/p.xml", None),
        ),
        "DeliveryReportRsp": DeliveryReportRsp(**common, **status),
        "ReadReplyReq": ReadReplyReq(
            **common,
            mms_relay_server_id="mmsc.example",
            message_id="msg-1",
            recipient=number,
            sender=short,
            time_stamp=T1,
            mm_status="Read",
            status_text="read",
            **applic,
        ),
        "ReadReplyRsp": ReadReplyRsp(**common, **status),
        "RSErrorRsp": RSErrorRsp(**common, status_code=2007, status_text="corrupt"),
        "VASPErrorRsp": VASPErrorRsp(**common, status_code=4006, status_text="busy"),
        "Fault": Fault(
            **common,
            faultcode="Client",
            faultstring="Client error",
            faultactor="http://mmsc.example/mm7",
            detail=RSErrorRsp(**common, status_code=2007, status_text="corrupt", details="x"),
        ),
    }
    return ops[name]


OPERATION_NAMES = (
    "SubmitReq",
    "SubmitRsp",
    "DeliverReq",
    "DeliverRsp",
    "CancelReq",
    "CancelRsp",
    "ReplaceReq",
    "ReplaceRsp",
    "DeliveryReportReq",
    "DeliveryReportRsp",
    "ReadReplyReq",
    "ReadReplyRsp",
    "RSErrorRsp",
    "VASPErrorRsp",
    "Fault",
)


def as_rel5(op: Operation) -> Operation:
    """What ``op`` becomes through a REL-5 namespace: the REL-6 elements and the
    addressCoding attribute are not written."""
    changes: dict[str, Any] = {}
    for name in REL6_FIELDS:
        if hasattr(op, name):
            changes[name] = [] if name == "delivery_condition" else None
    for name in ("sender_address", "sender", "recipient"):
        address = getattr(op, name, None)
        if address is not None:
            changes[name] = replace(address, address_coding=None)
    for name in ("to", "cc", "bcc"):
        if hasattr(op, name):
            changes[name] = [replace(a, address_coding=None) for a in getattr(op, name)]
    return replace(op, **changes)


# ============================================================================= the corpus

NS6 = "REL-6-MM7-1-4"
NS5 = "REL-5-MM7-1-0"


def decode_sample(name: str) -> Operation:
    msg = read_sample(MM7_CORPUS / name)
    return mm7.decode(msg.body, msg.content_type, soap_action=msg.soap_action)


@dataclass(frozen=True)
class Refused:
    """A sample broken in its source: refused with this status, ids still read."""

    status: int
    transaction_id: str | None
    namespace: str | None


# How each corpus file fares. The Sinch DeliverReq samples write `soap-env::Header`
# with an undeclared prefix: not XML, so no lenient path reads them safely; the
# refusal still carries the TransactionID and namespace for the Fault. Every other
# quirk the manifest lists is one real peers have, and is read.
OUTCOMES: dict[str, type | Refused] = {
    "sinch__deliver_req.xml": Refused(2007, "1000001", NS6),
    "sinch__deliver_req.http": Refused(2007, "1000001", NS6),
    "sinch__deliver_rsp.xml": DeliverRsp,
    "sinch__deliver_rsp.http": DeliverRsp,  # blank line before <?xml: forgiven
    "sinch__delivery_report_req.xml": DeliveryReportReq,
    "sinch__delivery_report_req.http": DeliveryReportReq,  # "multipart" without boundary
    "sinch__delivery_report_rsp.xml": DeliveryReportRsp,
    "sinch__delivery_report_rsp.http": DeliveryReportRsp,
    "sinch__submit_req.xml": SubmitReq,
    "sinch__submit_req.http": SubmitReq,  # SubmitReq in no namespace
    "sinch__submit_rsp.xml": SubmitRsp,
    "sinch__submit_rsp.http": SubmitRsp,
    "sinch__submit_fault_rserrorrsp.xml": Fault,  # qualified faultcode/faultstring/detail
    "vectorcore__submit_req.multipart": SubmitReq,  # unqualified children, no start=
    "vectorcore__deliver_rsp.soap": DeliverRsp,
    "vectorcore__delivery_report_rsp.soap": DeliveryReportRsp,
    "vectorcore__read_reply_rsp.soap": ReadReplyRsp,
}


def test_every_corpus_file_is_in_the_manifest_and_has_an_expected_outcome() -> None:
    listed = {s.file for s in manifest()}
    on_disk = {p.name for p in MM7_CORPUS.iterdir() if p.name != "MANIFEST.tsv"}
    assert listed == on_disk
    assert set(OUTCOMES) == listed


@pytest.mark.parametrize("sample", manifest(), ids=lambda s: s.file)
def test_corpus_sample_decodes_or_is_refused_as_expected(sample: Sample) -> None:
    expected = OUTCOMES[sample.file]
    if isinstance(expected, Refused):
        with pytest.raises(Mm7DecodeError) as info:
            decode_sample(sample.file)
        assert info.value.status_code == expected.status
        assert info.value.transaction_id == expected.transaction_id
        assert info.value.namespace == expected.namespace
        assert "not well-formed" in info.value.reason
        return
    op = decode_sample(sample.file)
    assert type(op) is expected
    assert sample.message.split()[0].startswith(mm7.operation_name(op).replace("Fault", "SOAP"))


def test_sinch_submit_req_http_nested_multipart_with_smil() -> None:
    op = decode_sample("sinch__submit_req.http")
    assert isinstance(op, SubmitReq)
    assert op.transaction_id == "555e29f8879be"
    assert op.namespace == NS6  # from the TransactionID: the SubmitReq has no namespace
    assert op.mm7_version == "6.8.0"
    assert op.vasp_id == "spUsdstW2u6GbvnMOsdseXrBa7NNLwTdKL"
    assert op.vas_id == "61295"
    assert op.sender_address == Address("ShortCode", "111122")
    assert op.to == [Address("Number", "16179593069")]
    assert op.cc == [] and op.bcc == []
    assert op.delivery_report is True  # written before SenderIdentification: order is free
    assert op.subject == "My first MM7 Message"
    assert op.expiry_date == datetime(2015, 5, 24, 18, 54, 48, tzinfo=UTC)
    assert op.time_stamp == datetime(2015, 5, 21, 18, 54, 48, tzinfo=UTC)
    assert op.adaptations is False
    assert op.content_href is None
    content = op.content
    assert content is not None
    assert content.content_id == "generic_content_id"
    assert content.content_type == "multipart/related"
    assert content.params == {"start": "<mms.smil>", "boundary": "subBoundary", "type": "text/xml"}
    # the nested multipart is kept byte for byte, as it stands in the request
    raw = (MM7_CORPUS / "sinch__submit_req.http").read_bytes()
    assert content.body.startswith(b"--subBoundary\r\nContent-Type: text/plain")
    assert content.body.endswith(b"--subBoundary--\r\n")
    assert content.body in raw
    parts = mm7.content_parts(content)
    assert [p.content_type for p in parts] == ["text/plain", "application/smil"]
    assert [p.content_id for p in parts] == ["<132c4ca56a209475>", "<mms.smil>"]
    assert parts[0].params == {"charset": "utf-8"}
    assert parts[0].payload() == b"MM7 Test Text"
    assert parts[1].payload().startswith(b'<?xml version="1.0" encoding="UTF-8"?><smil>')
    assert parts[1].payload().endswith(b"</smil>")


def test_sinch_submit_req_xml_soap_part_only_keeps_the_unresolved_reference() -> None:
    op = decode_sample("sinch__submit_req.xml")
    assert isinstance(op, SubmitReq)
    assert (op.transaction_id, op.namespace, op.mm7_version) == ("1000001", NS6, "6.8.0")
    assert op.vasp_id == "skfdjslkjfdslkfj434das" and op.vas_id == "126273"
    assert op.sender_address == Address("ShortCode", "111122")
    assert op.to == [Address("Number", "16172383232")]
    assert op.content is None and op.content_href == "cid:generic"
    assert op.adaptations is False
    # The same envelope as the only part of a multipart/related: no attachment either,
    # so the reference is kept the same way (the MMSC answers it with 2004).
    xml = (MM7_CORPUS / "sinch__submit_req.xml").read_bytes()
    body = multipart([("Content-Type: text/xml", xml)])
    alone = mm7.decode(body, 'multipart/related; boundary=b1; type="text/xml"')
    assert isinstance(alone, SubmitReq)
    assert alone.content is None and alone.content_href == "cid:generic"


def test_vectorcore_submit_req_multipart_unqualified_children_and_no_start() -> None:
    op = decode_sample("vectorcore__submit_req.multipart")
    assert isinstance(op, SubmitReq)
    assert (op.transaction_id, op.namespace, op.mm7_version) == ("txn-fixture", NS5, "5.3.0")
    assert (op.vasp_id, op.vas_id) == ("vasp-001", "service-001")
    assert op.sender_address == Address("ShortCode", "12345")
    assert op.to == [Address("Number", "+12025550101")]
    assert op.subject == "Hello"
    assert op.content == Content("text/plain", {}, b"hello from fixture", "message-content")
    parts = mm7.content_parts(op.content)
    assert len(parts) == 1 and parts[0].content_type == "text/plain"
    assert parts[0].headers == {"Content-ID": "<message-content>"}
    # the same body with its boundary declared, as a VASP sends it over HTTP
    body = (MM7_CORPUS / "vectorcore__submit_req.multipart").read_bytes()
    assert mm7.decode(body, 'multipart/related; boundary="soap-boundary"') == op


def test_sinch_delivery_report_req_xml_and_http() -> None:
    for name in ("sinch__delivery_report_req.xml", "sinch__delivery_report_req.http"):
        op = decode_sample(name)
        assert isinstance(op, DeliveryReportReq)
        assert (op.transaction_id, op.namespace, op.mm7_version) == ("10000001", NS6, "6.8.0")
        assert op.message_id == "369500617770864640"
        assert op.recipient == Address("Number", "16175550123")
        assert op.sender == Address("Number", "111122")
        assert op.date == datetime(2015, 3, 16, 14, 3, 51, 749000, tzinfo=UTC)
        assert op.mm_status == "Retrieved" and op.status_text == "Success"
        assert op.ua_capabilities == UACapabilities("Samsung Galaxy", None)


@pytest.mark.parametrize(
    ("name", "tid", "namespace", "version", "text"),
    [
        ("sinch__deliver_rsp.xml", "1000001", NS6, "6.8.0", "Successfully received MMS"),
        ("sinch__deliver_rsp.http", "1000001", NS6, "6.8.0", "Successfully received MMS"),
        ("sinch__delivery_report_rsp.xml", "1000001", NS6, "6.8.0", "Successfully Received MMS."),
        ("sinch__delivery_report_rsp.http", "1000001", NS6, "6.8.0", "Successfully Received MMS."),
        ("vectorcore__deliver_rsp.soap", "txn-deliver", NS5, "5.3.0", "Success"),
        ("vectorcore__delivery_report_rsp.soap", "txn-report", NS5, "5.3.0", "Success"),
        ("vectorcore__read_reply_rsp.soap", "txn-read", NS5, "5.3.0", "Success"),
    ],
)
def test_corpus_responses(name: str, tid: str, namespace: str, version: str, text: str) -> None:
    op = decode_sample(name)
    assert isinstance(op, DeliverRsp | DeliveryReportRsp | ReadReplyRsp)
    assert (op.transaction_id, op.namespace, op.mm7_version) == (tid, namespace, version)
    assert (op.status_code, op.status_text, op.details) == (1000, text, None)


def test_sinch_submit_rsp() -> None:
    for name in ("sinch__submit_rsp.xml", "sinch__submit_rsp.http"):
        op = decode_sample(name)
        assert isinstance(op, SubmitRsp)
        assert (op.transaction_id, op.namespace, op.mm7_version) == ("1000001", NS6, "6.8.0")
        assert op.status_code == 1000
        assert op.status_text == "Successfully parsed and validated request"
        assert op.message_id == "369500617770864640"


def test_sinch_fault_with_rserrorrsp() -> None:
    op = decode_sample("sinch__submit_fault_rserrorrsp.xml")
    assert isinstance(op, Fault)
    assert (op.transaction_id, op.namespace, op.mm7_version) == ("1000001", NS6, "6.8.0")
    assert (op.faultcode, op.faultstring, op.faultactor) == ("Client", "Client error", None)
    assert op.detail == RSErrorRsp(
        transaction_id="1000001",
        namespace=NS6,
        mm7_version="6.8.0",
        status_code=2007,
        status_text="Unable to parse request",
        details="Message format corrupt",
    )


# ============================================================================= encoder structure

ENV = "{http://schemas.xmlsoap.org/soap/envelope/}"
# The element order of each operation as TS 23.140 §8.7 / the MM7 schemas give it,
# written out here independently of protocol/mm7_tables.py.
ORDER: dict[str, list[str]] = {
    "SubmitReq": [
        "MM7Version", "SenderIdentification", "Recipients", "ServiceCode", "LinkedID",
        "MessageClass", "TimeStamp", "ReplyCharging", "EarliestDeliveryTime", "ExpiryDate",
        "DeliveryReport", "ReadReply", "Priority", "Subject", "ChargedParty", "ChargedPartyID",
        "DistributionIndicator", "DeliveryCondition", "ApplicID", "ReplyApplicID",
        "AuxApplicInfo", "ContentClass", "DRMContent", "Content",
    ],
    "SubmitRsp": ["MM7Version", "Status", "MessageID"],
    "DeliverReq": [
        "MM7Version", "MMSRelayServerID", "LinkedID", "Sender", "Recipients", "TimeStamp",
        "ReplyChargingID", "Priority", "Subject", "ApplicID", "ReplyApplicID", "AuxApplicInfo",
        "UACapabilities", "Content",
    ],
    "DeliverRsp": ["MM7Version", "Status", "ServiceCode"],
    "CancelReq": [
        "MM7Version", "SenderIdentification", "MessageID", "ApplicID", "ReplyApplicID",
        "AuxApplicInfo",
    ],
    "CancelRsp": ["MM7Version", "Status"],
    "ReplaceReq": [
        "MM7Version", "SenderIdentification", "MessageID", "ServiceCode", "TimeStamp",
        "ReadReply", "EarliestDeliveryTime", "DistributionIndicator", "ContentClass",
        "DRMContent", "ApplicID", "ReplyApplicID", "AuxApplicInfo", "Content",
    ],
    "ReplaceRsp": ["MM7Version", "Status"],
    "DeliveryReportReq": [
        "MM7Version", "MMSRelayServerID", "MessageID", "Recipient", "Sender", "Date",
        "MMStatus", "MMStatusExtension", "StatusText", "ApplicID", "ReplyApplicID",
        "AuxApplicInfo", "UACapabilities",
    ],
    "DeliveryReportRsp": ["MM7Version", "Status"],
    "ReadReplyReq": [
        "MM7Version", "MMSRelayServerID", "MessageID", "Recipient", "Sender", "TimeStamp",
        "MMStatus", "StatusText", "ApplicID", "ReplyApplicID", "AuxApplicInfo",
    ],
    "ReadReplyRsp": ["MM7Version", "Status"],
    "RSErrorRsp": ["MM7Version", "Status"],
    "VASPErrorRsp": ["MM7Version", "Status"],
}  # fmt: skip
MANDATORY: dict[str, set[str]] = {
    "SubmitReq": {"MM7Version", "SenderIdentification", "Recipients"},
    "DeliverReq": {"MM7Version", "Sender"},
    "CancelReq": {"MM7Version", "SenderIdentification", "MessageID"},
    "ReplaceReq": {"MM7Version", "SenderIdentification", "MessageID"},
    "DeliveryReportReq": {"MM7Version", "MessageID", "Recipient", "Sender", "Date", "MMStatus"},
    "ReadReplyReq": {"MM7Version", "MessageID", "Recipient", "Sender", "TimeStamp", "MMStatus"},
}
REL6_ELEMENTS = {
    "ChargedPartyID", "DeliveryCondition", "ApplicID", "ReplyApplicID", "AuxApplicInfo",
    "ContentClass", "DRMContent", "UACapabilities", "MMStatusExtension",
}  # fmt: skip
ALL_NAMESPACES = list(mm7.NAMESPACES)


def soap_of(body: bytes, content_type: str) -> tuple[ET.Element, list[Any] | None]:
    """The envelope (parsed by the standard library) and the MIME parts, if multipart."""
    if content_type.startswith("text/xml"):
        return ET.fromstring(body), None
    msg = message_from_bytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body, policy=policy.HTTP
    )
    assert msg.is_multipart()
    parts = list(msg.iter_parts())
    start = msg.get_param("start")
    assert isinstance(start, str)
    root_parts = [p for p in parts if p["Content-ID"] == start]
    assert len(root_parts) == 1, "start= names exactly one part"
    assert root_parts[0].get_content_type() == "text/xml"
    payload = root_parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return ET.fromstring(payload), parts


def local(el: ET.Element) -> str:
    return el.tag.rpartition("}")[2]


def ns_of(el: ET.Element) -> str:
    return el.tag[1:].partition("}")[0] if el.tag.startswith("{") else ""


@pytest.mark.parametrize("prefix", ["mm7", None])
@pytest.mark.parametrize("namespace", ALL_NAMESPACES)
@pytest.mark.parametrize("name", OPERATION_NAMES)
def test_encoder_structure(name: str, namespace: str, prefix: str | None) -> None:
    op = full_operation(name, namespace)
    body, content_type = mm7.encode(op, prefix=prefix)
    uri = mm7.NAMESPACES[namespace]
    root, parts = soap_of(body, content_type)
    rel5 = namespace.startswith("REL-5")

    assert root.tag == ENV + "Envelope"
    header, soap_body = list(root)
    assert header.tag == ENV + "Header" and soap_body.tag == ENV + "Body"
    (tid,) = list(header)
    assert tid.tag == f"{{{uri}}}TransactionID"
    assert tid.get(ENV + "mustUnderstand") == "1"
    assert tid.text == op.transaction_id
    (element,) = list(soap_body)

    if name == "Fault":
        assert element.tag == ENV + "Fault"
        # SOAP 1.1 §4.4: the Fault's children are unqualified
        assert [c.tag for c in element] == ["faultcode", "faultstring", "faultactor", "detail"]
        code, detail = element.find("faultcode"), element.find("detail")
        assert code is not None and code.text == "env:Client" and detail is not None
        (element,) = list(detail)
        name = "RSErrorRsp"
    assert element.tag == f"{{{uri}}}{name}"
    for descendant in element.iter():
        assert ns_of(descendant) == uri, f"{descendant.tag} is not in the MM7 namespace"

    children = [local(c) for c in element]
    expected = [e for e in ORDER[name] if not (rel5 and e in REL6_ELEMENTS)]
    assert children == expected  # every element set, in schema order
    assert MANDATORY.get(name, {"MM7Version", "Status"}) <= set(children)
    version = element.find(f"{{{uri}}}MM7Version")
    assert version is not None and version.text == mm7.MM7_VERSIONS[namespace]

    content = element.find(f"{{{uri}}}Content")
    if content is None:
        assert parts is None and content_type == "text/xml; charset=utf-8"
        return
    assert content_type.startswith("multipart/related;")
    assert 'type="text/xml"' in content_type and 'start="<' in content_type
    href = content.get("href")
    assert href is not None and href.startswith("cid:")
    assert parts is not None
    named = [p for p in parts if p["Content-ID"] == f"<{href[4:]}>"]
    assert len(named) == 1, f"{href} resolves to one MIME part"
    assert isinstance(op, SubmitReq | DeliverReq | ReplaceReq) and op.content is not None
    assert named[0].get_content_type() == op.content.content_type


@pytest.mark.parametrize("prefix", ["mm7", None])
@pytest.mark.parametrize("namespace", ALL_NAMESPACES)
@pytest.mark.parametrize("name", OPERATION_NAMES)
def test_round_trip(name: str, namespace: str, prefix: str | None) -> None:
    op = full_operation(name, namespace)
    body, content_type = mm7.encode(op, prefix=prefix)
    back = mm7.decode(body, content_type)
    expected = as_rel5(op) if namespace.startswith("REL-5") else op
    if isinstance(expected, Fault) and expected.detail is not None:
        expected = replace(expected, detail=as_rel5(expected.detail))
    assert back == expected


def test_prefix_none_declares_the_default_namespace() -> None:
    op = full_operation("SubmitRsp", NS6)
    body, _ = mm7.encode(op, prefix=None)
    text = body.decode()
    uri = mm7.NAMESPACES[NS6]
    assert f'<TransactionID xmlns="{uri}" env:mustUnderstand="1">' in text
    assert f'<SubmitRsp xmlns="{uri}"><MM7Version>6.8.0</MM7Version>' in text
    assert "mm7:" not in text


def test_prefix_mm7_qualifies_every_element() -> None:
    body, _ = mm7.encode(full_operation("SubmitRsp", NS6))
    text = body.decode()
    assert '<mm7:SubmitRsp xmlns:mm7="' in text
    assert "<mm7:Status><mm7:StatusCode>1000</mm7:StatusCode>" in text
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope')


def test_rel5_leaves_rel6_elements_out() -> None:
    op = full_operation("SubmitReq", "REL-5-MM7-1-3")
    body, content_type = mm7.encode(op)
    soap = soap_of(body, content_type)[0]
    assert "ApplicID" not in ET.tostring(soap).decode()
    assert "addressCoding" not in body.decode(errors="replace")
    body6, _ = mm7.encode(op, namespace="REL-6-MM7-1-0")
    assert b"<mm7:ApplicID>app</mm7:ApplicID>" in body6
    assert b'addressCoding="obfuscated"' in body6


def test_namespace_argument_overrides_the_operation_namespace() -> None:
    op = full_operation("CancelRsp", NS6)
    body, _ = mm7.encode(op, namespace="REL-5-MM7-1-2")
    back = mm7.decode(body, "text/xml")
    assert back.namespace == "REL-5-MM7-1-2"
    assert back.mm7_version == "6.8.0"  # the operation's own MM7Version is kept


@pytest.mark.parametrize("namespace", ALL_NAMESPACES)
def test_mm7_version_from_the_table_when_not_set(namespace: str) -> None:
    op = SubmitRsp(transaction_id="t", namespace=namespace, status_code=1000)
    back = mm7.decode(*mm7.encode(op))
    assert back.mm7_version == mm7.MM7_VERSIONS[namespace]
    assert back.status_text == "Success"  # the status name when no text is given


def test_version_and_namespace_tables() -> None:
    assert len(mm7.NAMESPACES) == 9 and set(mm7.NAMESPACES) == set(mm7.MM7_VERSIONS)
    for key, uri in mm7.NAMESPACES.items():
        assert uri == "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/" + key
        assert mm7.MM7_VERSIONS[key][0] == key[4]  # REL-5 -> 5.x.x, REL-6 -> 6.x.x
    assert mm7.MM7_VERSIONS["REL-5-MM7-1-0"] == "5.3.0"
    assert mm7.MM7_VERSIONS["REL-6-MM7-1-4"] == "6.8.0"
    assert mm7.DEFAULT_NAMESPACE in mm7.NAMESPACES


def test_status_table() -> None:
    expected = [
        1000,
        1100,
        *list(range(2000, 2010)),
        *list(range(3000, 3005)),
        *list(range(4000, 4009)),
    ]
    assert sorted(mm7.STATUS) == expected
    assert mm7.STATUS[2007] == "Message format corrupt"
    assert mm7.STATUS[4003] == "Unsupported operation"
    assert mm7.STATUS[4004] == "Validation error"


def test_operation_name() -> None:
    for name in OPERATION_NAMES:
        assert mm7.operation_name(full_operation(name, NS6)) == name


def test_fault_without_transaction_id_has_no_header() -> None:
    fault = Fault(transaction_id="", faultcode="Server", faultstring="down")
    body, content_type = mm7.encode(fault)
    root = ET.fromstring(body)
    assert [local(c) for c in root] == ["Body"]
    back = mm7.decode(body, content_type)
    assert isinstance(back, Fault) and back.transaction_id is None and back.detail is None
    assert (back.faultcode, back.faultstring) == ("Server", "down")


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (SubmitRsp(transaction_id="", status_code=1000), "TransactionID"),
        (SubmitReq(transaction_id="t"), "Recipients"),
        (
            SubmitReq(transaction_id="t", to=[Address("Number", "1")], priority="Urgent"),
            "Priority",
        ),
        (SubmitReq(transaction_id="t", to=[Address("Fax", "1")]), "address kind"),
        (SubmitReq(transaction_id="t", to=[Address("Number", "1")], subject="\x07"), r"U\+0007"),
        (
            SubmitReq(transaction_id="t", to=[Address("Number", "1")], expiry_date=timedelta(-1)),
            "negative",
        ),
        (CancelReq(transaction_id="t", message_id=""), "MessageID"),
        (
            DeliveryReportReq(
                transaction_id="t",
                message_id="m",
                recipient=Address("Number", "1"),
                sender=Address("Number", "2"),
                date=T0,
                mm_status="Read",  # a read-reply status, not a delivery status
            ),
            "MMStatus",
        ),
        (SubmitRsp(transaction_id="t", status_code=-1), "StatusCode"),
        (SubmitRsp(transaction_id="t", status_code=1000, namespace="REL-X"), "namespace"),
        (
            SubmitReq(transaction_id="t", to=[Address("Number", "1")], subject=1),  # type: ignore[arg-type]
            "Subject must be a string",
        ),
        (SubmitReq(transaction_id="t", to=[Address("Number", 1)]), "SubmitReq"),  # type: ignore[arg-type]
    ],
)
def test_encoder_refuses(op: Operation, message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        mm7.encode(op)


def test_encode_with_a_boundary_that_occurs_in_the_content_is_refused() -> None:
    op = full_operation("SubmitReq", NS6)
    with pytest.raises(EncodeError, match="boundary"):
        mm7.encode(op, boundary="inner")  # the nested multipart's own boundary


@pytest.mark.parametrize("prefix", ["env", "xmlns", "1x", "a:b", ""])
def test_encode_refuses_bad_prefixes(prefix: str) -> None:
    with pytest.raises(EncodeError, match="prefix"):
        mm7.encode(full_operation("SubmitRsp", NS6), prefix=prefix)


# ============================================================================= decoder leniency

URI6 = mm7.NAMESPACES[NS6]


def envelope(
    body: str,
    *,
    tid: str | None = '<mm7:TransactionID xmlns:mm7="{uri}" env:mustUnderstand="1">t-1'
    "</mm7:TransactionID>",
    uri: str = URI6,
) -> bytes:
    header = f"<env:Header>{tid.format(uri=uri)}</env:Header>" if tid is not None else ""
    return (
        '<?xml version="1.0"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
        f"{header}<env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


def submit(inner: str = "", *, element: str = 'SubmitReq xmlns="{uri}"', uri: str = URI6) -> str:
    open_tag = element.format(uri=uri)
    close = element.split()[0]
    recipients = "<Recipients><To><Number>15550001</Number></To></Recipients>"
    return f"<{open_tag}><MM7Version>6.8.0</MM7Version>{recipients}{inner}</{close}>"


def multipart(parts: list[tuple[str, bytes]], boundary: str = "b1") -> bytes:
    out = b""
    for headers, data in parts:
        out += f"--{boundary}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def refused(body: bytes, content_type: str = "text/xml", max_size: int = 10**7) -> Mm7DecodeError:
    with pytest.raises(Mm7DecodeError) as info:
        mm7.decode(body, content_type, max_size=max_size)
    return info.value


def test_namespace_from_the_operation_first_then_transaction_id_then_soapaction() -> None:
    uri5 = mm7.NAMESPACES["REL-5-MM7-1-2"]
    both = envelope(submit(uri=uri5), uri=URI6)
    assert mm7.decode(both, "text/xml").namespace == "REL-5-MM7-1-2"
    unqualified_op = envelope(submit(element="SubmitReq"), uri=uri5)
    assert mm7.decode(unqualified_op, "text/xml").namespace == "REL-5-MM7-1-2"
    nothing = envelope(submit(element="SubmitReq"), tid="<TransactionID>t-1</TransactionID>")
    op = mm7.decode(nothing, "text/xml", soap_action=f'"{uri5}"')
    assert op.namespace == "REL-5-MM7-1-2"
    assert mm7.decode(nothing, "text/xml").namespace == mm7.DEFAULT_NAMESPACE
    # A SOAPAction that is the bare key, as some VASP software sends it.
    assert mm7.decode(nothing, "text/xml", soap_action="REL-5-MM7-1-2").namespace == (
        "REL-5-MM7-1-2"
    )


@pytest.mark.parametrize(
    ("version", "default", "expected"),
    [
        ("6.8.0", "REL-6-MM7-1-0", "REL-6-MM7-1-0"),  # the peer's configured schema
        ("5.3.0", "REL-5-MM7-1-1", "REL-5-MM7-1-1"),
        ("5.3.0", "REL-6-MM7-1-4", "REL-5-MM7-1-3"),  # another release: the newest with it
        ("5.5.0", "REL-6-MM7-1-4", "REL-5-MM7-1-3"),
        ("6.3.0", "REL-5-MM7-1-2", "REL-6-MM7-1-0"),  # the schema that goes with 6.3.0
        ("6.99.0", "REL-5-MM7-1-2", "REL-6-MM7-1-4"),
        ("9.0.0", "REL-5-MM7-1-2", "REL-5-MM7-1-2"),  # a release we do not know
        ("", "REL-5-MM7-1-2", "REL-5-MM7-1-2"),
        ("junk", "REL-5-MM7-1-2", "REL-5-MM7-1-2"),
    ],
)
def test_a_message_in_no_namespace_takes_the_configured_one_or_its_releases(
    version: str, default: str, expected: str
) -> None:
    assert mm7.namespace_for_version(version, default) == expected
    body = envelope(
        f"<SubmitReq><MM7Version>{version}</MM7Version>"
        "<Recipients><To><Number>15550001</Number></To></Recipients></SubmitReq>",
        tid="<TransactionID>t-1</TransactionID>",
    )
    assert mm7.decode(body, "text/xml", default_namespace=default).namespace == expected


def test_decode_errors_carry_the_callers_mm7_version() -> None:
    """For the Fault to echo it (TS 23.140 §8.7: answers in the caller's version)."""
    missing = envelope(f'<CancelReq xmlns="{URI6}"><MM7Version>6.3.0</MM7Version></CancelReq>')
    assert refused(missing).mm7_version == "6.3.0"
    broken = envelope(f'<SubmitReq xmlns="{URI6}"><MM7Version> 5.3.0 </MM7Version><oops>')
    assert refused(broken).mm7_version == "5.3.0"
    assert refused(envelope(f'<FooReq xmlns="{URI6}"/>')).mm7_version is None


def test_later_3gpp_namespace_is_read_with_rel6_rules_and_answered_in_kind() -> None:
    uri = mm7.NAMESPACES[NS6].replace("REL-6-MM7-1-4", "REL-6-MM7-1-5")
    op = mm7.decode(envelope(submit("<ApplicID>a</ApplicID>", uri=uri), uri=uri), "text/xml")
    assert isinstance(op, SubmitReq)
    assert op.namespace == "REL-6-MM7-1-5" and op.applic_id == "a"
    answer = SubmitRsp(transaction_id=op.transaction_id, namespace=op.namespace, status_code=1000)
    body, _ = mm7.encode(answer)
    assert f'xmlns:mm7="{uri}"'.encode() in body
    assert b"<mm7:MM7Version>6.8.0</mm7:MM7Version>" in body  # the nearest known schema's


def test_foreign_namespace_is_kept_as_the_uri() -> None:
    op = mm7.decode(envelope(submit(uri="urn:mm7"), uri="urn:mm7"), "text/xml")
    assert op.namespace == "urn:mm7"
    body, _ = mm7.encode(SubmitRsp(transaction_id="t", namespace=op.namespace, status_code=1000))
    assert b'<mm7:SubmitRsp xmlns:mm7="urn:mm7">' in body
    assert mm7.decode(body, "text/xml").namespace == "urn:mm7"


def test_fully_qualified_with_any_prefix_and_soap12_envelope() -> None:
    body = (
        f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:x="{URI6}">'
        "<s:Header><x:TransactionID>t-9</x:TransactionID></s:Header><s:Body>"
        "<x:CancelReq><x:MM7Version>6.8.0</x:MM7Version><x:SenderIdentification>"
        "<x:VASPID>v</x:VASPID></x:SenderIdentification><x:MessageID>m-1</x:MessageID>"
        "</x:CancelReq></s:Body></s:Envelope>"
    ).encode()
    op = mm7.decode(body, "application/soap+xml")
    assert op == CancelReq(
        transaction_id="t-9", namespace=NS6, mm7_version="6.8.0", vasp_id="v", message_id="m-1"
    )


def test_unknown_operation_is_4003_with_ids() -> None:
    err = refused(envelope(f'<FooReq xmlns="{URI6}"/>'))
    assert err.status_code == 4003 and "FooReq" in err.reason
    assert (err.transaction_id, err.namespace) == ("t-1", NS6)
    assert refused(envelope(f'<extendedCancelReq xmlns="{URI6}"/>')).status_code == 4003


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (envelope(submit(), tid=None), "TransactionID"),
        (
            envelope(f'<CancelReq xmlns="{URI6}"><MM7Version>6.8.0</MM7Version></CancelReq>'),
            "MessageID",
        ),
        (
            envelope(f'<SubmitReq xmlns="{URI6}"><MM7Version>6.8.0</MM7Version></SubmitReq>'),
            "Recipients",
        ),
        (
            envelope(
                f'<SubmitReq xmlns="{URI6}"><Recipients><To/></Recipients></SubmitReq>'
            ),
            "recipient",
        ),
        (envelope(f'<SubmitRsp xmlns="{URI6}"><MM7Version>6.8.0</MM7Version></SubmitRsp>'),
         "Status"),
        (
            envelope(f'<SubmitRsp xmlns="{URI6}"><Status><StatusText>x</StatusText>'
                     "</Status></SubmitRsp>"),
            "StatusCode",
        ),
        (
            envelope(f'<DeliverReq xmlns="{URI6}"><Sender></Sender></DeliverReq>'),
            "Sender",
        ),
        (
            envelope(f'<CancelReq xmlns="{URI6}"><MessageID> </MessageID></CancelReq>'),
            "MessageID",
        ),
    ],
)  # fmt: skip
def test_missing_mandatory_elements_are_4004_with_ids(body: bytes, what: str) -> None:
    """TS 23.140 §8.7 status table: 4004 Validation error, a mandatory element missing."""
    err = refused(body)
    assert err.status_code == 4004, err
    assert what in err.reason
    assert err.namespace == NS6
    assert err.transaction_id == (None if what == "TransactionID" else "t-1")


def report(status: str, element: str = "DeliveryReportReq") -> bytes:
    return envelope(
        f'<{element} xmlns="{URI6}"><MessageID>m</MessageID>'
        "<Recipient><Number>1</Number></Recipient><Sender><ShortCode>2</ShortCode></Sender>"
        "<Date>2024-01-01T00:00:00Z</Date><TimeStamp>2024-01-01T00:00:00Z</TimeStamp>"
        f"<MMStatus>{status}</MMStatus></{element}>"
    )


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (envelope(submit("<DeliveryReport>yes</DeliveryReport>")), "DeliveryReport"),
        (envelope(submit("<DeliveryReport></DeliveryReport>")), "DeliveryReport"),
        (envelope(submit("<TimeStamp>yesterday</TimeStamp>")), "TimeStamp"),
        (envelope(submit("<ExpiryDate>P</ExpiryDate>")), "ExpiryDate"),
        (envelope(submit("<ExpiryDate>-P1D</ExpiryDate>")), "ExpiryDate"),
        (envelope(submit('<ReplyCharging replyChargingSize="big"/>')), "ReplyCharging"),
        (envelope(submit("<MessageClass>Foo</MessageClass>")), "MessageClass"),
        (envelope(submit("<Priority>Urgent</Priority>")), "Priority"),
        (envelope(submit("<ChargedParty>Nobody</ChargedParty>")), "ChargedParty"),
        (envelope(submit("<ContentClass>huge</ContentClass>")), "ContentClass"),
        (report("Gone"), "MMStatus"),
        (report("Retrieved", "ReadReplyReq"), "MMStatus"),
        (
            envelope(f'<SubmitRsp xmlns="{URI6}"><Status><StatusCode>OK</StatusCode>'
                     "</Status></SubmitRsp>"),
            "Status",
        ),
    ],
)  # fmt: skip
def test_values_of_the_wrong_format_are_2007_with_ids(body: bytes, what: str) -> None:
    """TS 23.140 §8.7 status table: 2007 Message format corrupt, an element's value is
    not of its type or not in its enumeration (never silently dropped)."""
    err = refused(body)
    assert err.status_code == 2007, err
    assert what in err.reason
    assert (err.namespace, err.transaction_id) == (NS6, "t-1")


def test_enumerations_are_read_in_any_case_and_kept_in_the_schemas_spelling() -> None:
    inner = (
        "<MessageClass>informational</MessageClass><Priority>HIGH</Priority>"
        "<ChargedParty>thirdparty</ChargedParty><ContentClass>Image-Rich</ContentClass>"
    )
    op = mm7.decode(envelope(submit(inner)), "text/xml")
    assert isinstance(op, SubmitReq)
    assert (op.message_class, op.priority, op.charged_party, op.content_class) == (
        "Informational",
        "High",
        "ThirdParty",
        "image-rich",
    )
    got = mm7.decode(report("retrieved"), "text/xml")
    assert isinstance(got, DeliveryReportReq) and got.mm_status == "Retrieved"


def test_lenient_values() -> None:
    inner = (
        "<TimeStamp>2024-05-06T07:08:09</TimeStamp>"
        "<EarliestDeliveryTime>2024-05-06T09:08:09+02:00</EarliestDeliveryTime>"
        "<ExpiryDate> PT1H30M </ExpiryDate><DeliveryReport>1</DeliveryReport>"
        "<ReadReply>FALSE</ReadReply><DistributionIndicator>0</DistributionIndicator>"
        '<ReplyCharging replyChargingSize="100" replyDeadline="P2D"/>'
        "<DeliveryCondition><DC>1</DC><DC>3</DC></DeliveryCondition>"
        '<Content href="x" allowAdaptations="True"/>'
    )
    op = mm7.decode(envelope(submit(inner)), "text/xml")
    assert isinstance(op, SubmitReq)
    assert op.time_stamp == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert op.earliest_delivery_time == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert op.expiry_date == timedelta(hours=1, minutes=30)
    assert (op.delivery_report, op.read_reply, op.distribution_indicator) == (True, False, False)
    assert op.reply_charging == ReplyCharging(100, timedelta(days=2))
    assert op.delivery_condition == [1, 3]
    assert op.adaptations is True and op.content_href == "x"


def test_address_forms_seen_in_the_field() -> None:
    inner = "<SenderIdentification><SenderAddress>10655</SenderAddress></SenderIdentification>"
    op = mm7.decode(envelope(submit(inner)), "text/xml")
    assert isinstance(op, SubmitReq)
    assert op.sender_address == Address("Number", "10655")  # bare text
    deliver = (
        f'<DeliverReq xmlns="{URI6}"><Sender><SenderAddress><Number>+1555</Number>'
        "</SenderAddress></Sender><Recipients><To><ShortCode>123</ShortCode>"
        '<RFC2822Address displayOnly="true">a@b.c</RFC2822Address></To>'
        "<Cc><Number>1</Number></Cc><Cc><Number>2</Number></Cc></Recipients></DeliverReq>"
    )
    op2 = mm7.decode(envelope(deliver), "text/xml")
    assert isinstance(op2, DeliverReq)
    assert op2.sender == Address("Number", "+1555")
    assert op2.to == [Address("ShortCode", "123"), Address("RFC2822Address", "a@b.c", True)]
    assert op2.cc == [Address("Number", "1"), Address("Number", "2")]
    assert op2.mm7_version is None  # absent MM7Version is forgiven


def test_status_written_directly_in_an_error_response() -> None:
    body = envelope(
        f'<mm7:RSErrorRsp xmlns:mm7="{URI6}"><StatusText>SUBS is ported</StatusText>'
        "<MM7Version>5.3.0</MM7Version><StatusCode>6102</StatusCode></mm7:RSErrorRsp>"
    )
    op = mm7.decode(body, "text/xml")
    assert op == RSErrorRsp(
        transaction_id="t-1",
        namespace=NS6,
        mm7_version="5.3.0",
        status_code=6102,
        status_text="SUBS is ported",
    )


def test_unknown_elements_and_headers_are_ignored() -> None:
    body = envelope(
        f'<DeliverRsp xmlns="{URI6}"><MM7Version>6.8.0</MM7Version><Status>'
        "<StatusCode>1000</StatusCode><StatusText>ok</StatusText></Status>"
        "<MessageID>not in DeliverRsp</MessageID><Extra><Deep/></Extra></DeliverRsp>",
        tid='<mm7:TransactionID xmlns:mm7="{uri}">t-1</mm7:TransactionID>'
        '<Other env:mustUnderstand="1">x</Other>',
    )
    op = mm7.decode(body, "text/xml")
    assert op == DeliverRsp(
        transaction_id="t-1", namespace=NS6, mm7_version="6.8.0", status_code=1000,
        status_text="ok",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("href", "content_id", "location"),
    [
        ("cid:img-1", "<img-1>", None),
        ("cid:<img-1>", "<img-1>", None),
        ("cid:img%401@example", "<img@1@example>", None),
        ("img-1", "<img-1>", None),
        ("<img-1>", "<img-1>", None),
        ("cid:IMG-1", "<img-1>", None),
        ("pic.jpg", None, "pic.jpg"),
        ("cid:nothing", "<other>", None),  # the only attachment
    ],
)
def test_content_href_forms(href: str, content_id: str | None, location: str | None) -> None:
    escaped = href.replace("<", "&lt;").replace(">", "&gt;")
    soap = envelope(submit(f'<Content href="{escaped}"/>'))
    headers = "Content-Type: image/jpeg"
    if content_id:
        headers += f"\r\nContent-ID: {content_id}"
    if location:
        headers += f"\r\nContent-Location: {location}"
    body = multipart([("Content-Type: text/xml", soap), (headers, b"\xff\xd8JPEG")])
    op = mm7.decode(body, 'multipart/related; boundary="b1"; type="text/xml"')
    assert isinstance(op, SubmitReq) and op.content is not None
    assert op.content.body == b"\xff\xd8JPEG" and op.content.content_type == "image/jpeg"
    assert op.content_href is None


def test_unresolvable_href_among_several_parts_is_2007() -> None:
    soap = envelope(submit('<Content href="cid:nothing"/>'))
    body = multipart(
        [
            ("Content-Type: text/xml", soap),
            ("Content-Type: text/plain\r\nContent-ID: <a>", b"a"),
            ("Content-Type: text/plain\r\nContent-ID: <b>", b"b"),
        ]
    )
    err = refused(body, 'multipart/related; boundary="b1"')
    assert err.status_code == 2007 and "names no attachment" in err.reason
    assert err.transaction_id == "t-1"


@pytest.mark.parametrize("start", ['"<soap>"', "soap", '"soap"', None, '"<missing>"'])
def test_root_part_by_start_with_or_without_brackets(start: str | None) -> None:
    soap = envelope(submit('<Content href="cid:c"/>'))
    parts = [
        ("Content-Type: text/plain\r\nContent-ID: <c>", b"text"),
        ("Content-Type: text/xml; charset=utf-8\r\nContent-ID: <soap>", soap),
    ]
    if start is None or "missing" in start:
        parts.reverse()  # without a usable start the root is the first part
    ctype = 'multipart/related; boundary=b1; type="text/xml"'
    if start is not None:
        ctype += f"; start={start}"
    op = mm7.decode(multipart(parts), ctype)
    assert isinstance(op, SubmitReq) and op.content is not None
    assert op.content.body == b"text"


def test_multipart_framing_leniency() -> None:
    soap = envelope(submit('<Content href="cid:c"/>'))
    crlf = multipart([("Content-Type: text/xml", soap), ("Content-ID: <c>", b"x")])
    lf = crlf.replace(b"\r\n", b"\n")
    for body in (crlf, lf, b"\r\npreamble\r\n" + crlf + b"epilogue"):
        for ctype in ("multipart/related", 'multipart/related; boundary="b1"', ""):
            if b"preamble" in body and "boundary" not in ctype:
                continue  # a boundary is only guessed from a body that starts with it
            op = mm7.decode(body, ctype)
            assert isinstance(op, SubmitReq) and op.content is not None, ctype
            assert op.content == Content("text/plain", {}, b"x", "c")


def test_transfer_encoded_root_and_content() -> None:
    soap = envelope(submit('<Content href="cid:c"/>'))
    body = multipart(
        [
            ("Content-Type: text/xml\r\nContent-Transfer-Encoding: base64",
             base64.encodebytes(soap)),
            ("Content-ID: <c>\r\nContent-Type: text/plain; charset=utf-8\r\n"
             "Content-Transfer-Encoding: quoted-printable", b"Gr=C3=BC=C3=9Fe =\r\nzusammen"),
        ]
    )  # fmt: skip
    op = mm7.decode(body, "multipart/related; boundary=b1")
    assert isinstance(op, SubmitReq) and op.content is not None
    assert op.content.body == "Grüße zusammen".encode()
    assert op.content.params == {"charset": "utf-8"}


def test_plain_xml_with_leading_blank_lines_and_any_content_type() -> None:
    body = b"\r\n\r\n  " + envelope(submit())
    for ctype in ("text/xml", "application/xml; charset=utf-8", "", None, "text/plain"):
        assert isinstance(mm7.decode(body, ctype), SubmitReq)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"", "text/xml", 2007, "empty"),
        (b"<a>", "text/xml", 2007, "not well-formed"),
        (b"<Envelope/>", "text/xml", 2007, "Body"),
        (b"<html><body/></html>", "text/xml", 2007, "no Envelope"),
        (envelope(""), "text/xml", 2007, "Body"),
        (b"junk", "multipart/related", 2007, "boundary"),
        (b"--b1\r\nContent-Type: text/xml\r\n\r\n<a/>", "multipart/related", 2007, "closing"),
        (b"--b1--\r\n", "multipart/related; boundary=b1", 2007, "without parts"),
        (b"x" * 2000, "text/xml", 2004, "exceeds"),
    ],
)
def test_unreadable_messages(body: bytes, content_type: str, status: int, reason: str) -> None:
    err = refused(body, content_type, max_size=1000)
    assert err.status_code == status and reason in err.reason


def test_corrupt_nested_content_is_refused_at_decode() -> None:
    soap = envelope(submit('<Content href="cid:c"/>'))
    nested = b"--inner\r\nContent-Type: text/plain\r\n\r\nno closing boundary"
    body = multipart(
        [
            ("Content-Type: text/xml", soap),
            ('Content-ID: <c>\r\nContent-Type: multipart/related; boundary="inner"', nested),
        ]
    )
    err = refused(body, "multipart/related; boundary=b1")
    assert err.status_code == 2007 and err.transaction_id == "t-1"


def test_decode_error_is_a_decode_error_with_a_readable_message() -> None:
    err = refused(envelope(f'<FooReq xmlns="{URI6}"/>'))
    assert isinstance(err, DecodeError)
    assert str(err) == "4003 Unsupported operation: unsupported operation FooReq"
    assert err.status_text == "Unsupported operation"


def test_fault_with_an_unreadable_detail_is_still_a_fault() -> None:
    body = envelope(
        "<env:Fault><faultcode>Server</faultcode><faultstring>busy</faultstring><detail>"
        f'<VASPErrorRsp xmlns="{URI6}"><MM7Version>6.8.0</MM7Version></VASPErrorRsp>'
        "</detail></env:Fault>"
    )
    op = mm7.decode(body, "text/xml")
    assert isinstance(op, Fault)
    assert (op.faultcode, op.faultstring, op.detail, op.namespace) == ("Server", "busy", None, NS6)


def test_unqualified_children_switch_round_trips() -> None:
    """The per-VASP dialect switch: only the operation element is in the MM7 namespace."""
    from protocol import mm7 as codec

    req = codec.SubmitReq(
        transaction_id="uq-1",
        namespace="REL-5-MM7-1-0",
        mm7_version=None,
        vasp_id="v",
        to=[codec.Address("Number", "+15550000002")],
        subject="plain",
    )
    body, ctype = codec.encode(req, unqualified_children=True)
    assert b"<mm7:SubmitReq " in body and b"<MM7Version>5.3.0</MM7Version>" in body
    assert b"<mm7:MM7Version>" not in body
    back = codec.decode(body, ctype)
    assert isinstance(back, codec.SubmitReq)
    assert (back.transaction_id, back.subject, back.to) == ("uq-1", "plain", req.to)
    with pytest.raises(EncodeError, match="prefix"):
        codec.encode(req, prefix=None, unqualified_children=True)


def test_unqualified_children_keep_a_faults_error_response_in_the_namespace() -> None:
    """A Fault's RSErrorRsp is the operation element of its detail: qualified like any
    operation under the unqualified-children switch, only its children are not."""
    detail = RSErrorRsp(transaction_id="t", namespace=NS6, mm7_version="6.8.0", status_code=4004)
    fault = Fault(transaction_id="t", namespace=NS6, faultcode="Client", detail=detail)
    body, ctype = mm7.encode(fault, prefix="m", unqualified_children=True)
    assert b"<m:RSErrorRsp " in body and b"<MM7Version>6.8.0</MM7Version>" in body
    back = mm7.decode(body, ctype)
    assert isinstance(back, Fault) and back.detail is not None
    assert (back.namespace, back.detail.status_code) == (NS6, 4004)
