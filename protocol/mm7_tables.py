"""MM7 constants from 3GPP TS 23.140: schema namespaces, MM7Version values, status codes,
enumerations and the element order of every operation (§8.7 and its XML schemas).

The official XSDs (``<namespace>.xsd``) could not be obtained (see
``../shared/schemas/mm7/README.md``), so the element sequences below are written
from the §8.7 message tables and the schema structure as it appears in the field.
They are the single place the encoder takes element names, order and mandatory
elements from, and the decoder its mandatory elements; the tests spell the
expected orders out again independently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

SOAP_ENV: Final = "http://schemas.xmlsoap.org/soap/envelope/"  # SOAP 1.1, as §8.7 requires
SOAP12_ENV: Final = "http://www.w3.org/2003/05/soap-envelope"  # tolerated on input only
NAMESPACE_BASE: Final = "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/"

_KEYS: Final = (
    "REL-5-MM7-1-0",
    "REL-5-MM7-1-1",
    "REL-5-MM7-1-2",
    "REL-5-MM7-1-3",
    "REL-6-MM7-1-0",
    "REL-6-MM7-1-1",
    "REL-6-MM7-1-2",
    "REL-6-MM7-1-3",
    "REL-6-MM7-1-4",
)
NAMESPACES: Final[dict[str, str]] = {key: NAMESPACE_BASE + key for key in _KEYS}

# MM7Version that goes with each schema. TS 23.140 defines no such table (NowSMS,
# "MM7 Schemas and MMS Version Number Confusion, revisited", 2009): the value is the
# spec version a schema came with, as peers in the field send it.
# - REL-5-*: "5.3.0" for all four. The REL-5 schemas are used with 5.3.0 throughout the
#   field (Mbuni's and VectorCore's default, instantcom-mm7 and VASP SDKs with 1-2 and
#   1-3), and the NowSMS note quotes "REL-5-MM7-1-2 - 5.3.0 (version is actually 5.5.0,
#   but schema requires 5.3.0)".
# - REL-6-MM7-1-0 "6.3.0" (China Mobile VASP traffic), REL-6-MM7-1-2 "6.5.0" (a VASP
#   client library), REL-6-MM7-1-4 "6.8.0" (Sinch/Mblox, the shared corpus).
# - REL-6-MM7-1-1 "6.4.0" and REL-6-MM7-1-3 "6.7.0" are the spec versions between those
#   that the schemas came with; no field sample was found to confirm them.
# Decoding accepts any MM7Version; these values only fill an outgoing message whose
# mm7_version is not set.
MM7_VERSIONS: Final[dict[str, str]] = {
    "REL-5-MM7-1-0": "5.3.0",
    "REL-5-MM7-1-1": "5.3.0",
    "REL-5-MM7-1-2": "5.3.0",
    "REL-5-MM7-1-3": "5.3.0",
    "REL-6-MM7-1-0": "6.3.0",
    "REL-6-MM7-1-1": "6.4.0",
    "REL-6-MM7-1-2": "6.5.0",
    "REL-6-MM7-1-3": "6.7.0",
    "REL-6-MM7-1-4": "6.8.0",
}
# The newest schema: a superset of the others, and what current VASP platforms
# (Sinch/Mblox, the corpus) speak. Per-VASP configuration picks an older one.
DEFAULT_NAMESPACE: Final = "REL-6-MM7-1-4"

# Any 3GPP MM7 schema URI, also ones newer than this table (REL-6-MM7-1-5, REL-7-...).
NAMESPACE_KEY_RE: Final = re.compile(r"REL-(\d{1,2})-MM7-(\d{1,2})-(\d{1,2})")
NAMESPACE_URI_RE: Final = re.compile(
    r"^https?://www\.3gpp\.org/ftp/Specs/archive/23_series/23\.140/schema/"
    r"(REL-\d{1,2}-MM7-\d{1,2}-\d{1,2})(?:\.xsd)?/?$",
    re.IGNORECASE,
)

# Request status codes (the §8.7 status code table): 1xxx success, 2xxx client errors,
# 3xxx server errors, 4xxx service errors. 2008, 2009, 3004 and 4008 came with REL-6
# (application addressing) and are harmless to answer in REL-5 namespaces.
STATUS: Final[dict[int, str]] = {
    1000: "Success",
    1100: "Partial success",
    2000: "Client error",
    2001: "Operation restricted",
    2002: "Address Error",
    2003: "Address Not Found",
    2004: "Multimedia content refused",
    2005: "Message ID Not found",
    2006: "LinkedID not found",
    2007: "Message format corrupt",
    2008: "Application ID not found",
    2009: "Reply Application ID not found",
    3000: "Server Error",
    3001: "Not Possible",
    3002: "Message rejected",
    3003: "Multiple addresses not supported",
    3004: "Application Addressing not supported",
    4000: "General service error",
    4001: "Improper identification",
    4002: "Unsupported version",
    4003: "Unsupported operation",
    4004: "Validation error",
    4005: "Service error",
    4006: "Service unavailable",
    4007: "Service denied",
    4008: "Application denied",
}
MESSAGE_FORMAT_CORRUPT: Final = 2007
CONTENT_REFUSED: Final = 2004
SERVER_ERROR: Final = 3000
UNSUPPORTED_OPERATION: Final = 4003
VALIDATION_ERROR: Final = 4004

# ----------------------------------------------------------------------------- enumerations

ADDRESS_KINDS: Final = ("RFC2822Address", "Number", "ShortCode")  # addressType choice
ADDRESS_CODINGS: Final = frozenset(("encrypted", "obfuscated"))  # addressCoding (REL-6)
MESSAGE_CLASSES: Final = frozenset(("Personal", "Informational", "Advertisement", "Auto"))
PRIORITIES: Final = frozenset(("Normal", "High", "Low"))
CHARGED_PARTIES: Final = frozenset(("Sender", "Recipient", "Both", "Neither", "ThirdParty"))
CONTENT_CLASSES: Final = frozenset(
    (
        "text",
        "image-basic",
        "image-rich",
        "video-basic",
        "video-rich",
        "megapixel",
        "content-basic",
        "content-rich",
    )
)
# MMStatus of MM7_delivery_report.REQ; DeliveryConditionNotMet came with REL-6.
DELIVERY_STATUSES: Final = frozenset(
    ("Expired", "Retrieved", "Rejected", "Indeterminate", "Forwarded", "DeliveryConditionNotMet")
)
READ_STATUSES: Final = frozenset(("Read", "Deleted", "Indeterminate"))  # MM7_read_reply.REQ

# ----------------------------------------------------------------------------- element order


@dataclass(frozen=True, slots=True)
class Element:
    """One child of an operation element, in schema order.

    ``kind`` says how the value is read and written (see ``mm7_soap``); ``attr`` is the
    dataclass field it fills (groups such as SenderIdentification fill several, named
    by their kind). ``rel6`` elements exist only in the REL-6 schemas: they are left
    out when encoding for a REL-5 namespace, and accepted on input in any namespace.
    """

    name: str
    kind: str
    attr: str = ""
    mandatory: bool = False
    rel6: bool = False


def _e(name: str, kind: str, attr: str = "", *, m: bool = False, r6: bool = False) -> Element:
    return Element(name, kind, attr, m, r6)


_VERSION = _e("MM7Version", "text", "mm7_version", m=True)
_STATUS = _e("Status", "status", m=True)
_APPLIC = (
    _e("ApplicID", "text", "applic_id", r6=True),
    _e("ReplyApplicID", "text", "reply_applic_id", r6=True),
    _e("AuxApplicInfo", "text", "aux_applic_info", r6=True),
)

# MM7_submit.REQ
SUBMIT_REQ: Final = (
    _VERSION,
    _e("SenderIdentification", "sender_id", m=True),
    _e("Recipients", "recipients", m=True),
    _e("ServiceCode", "text", "service_code"),
    _e("LinkedID", "text", "linked_id"),
    _e("MessageClass", "text", "message_class"),
    _e("TimeStamp", "datetime", "time_stamp"),
    _e("ReplyCharging", "reply_charging", "reply_charging"),
    _e("EarliestDeliveryTime", "reltime", "earliest_delivery_time"),
    _e("ExpiryDate", "reltime", "expiry_date"),
    _e("DeliveryReport", "bool", "delivery_report"),
    _e("ReadReply", "bool", "read_reply"),
    _e("Priority", "text", "priority"),
    _e("Subject", "text", "subject"),
    _e("ChargedParty", "text", "charged_party"),
    _e("ChargedPartyID", "text", "charged_party_id", r6=True),
    _e("DistributionIndicator", "bool", "distribution_indicator"),
    _e("DeliveryCondition", "delivery_condition", "delivery_condition", r6=True),
    *_APPLIC,
    _e("ContentClass", "text", "content_class", r6=True),
    _e("DRMContent", "bool", "drm_content", r6=True),
    _e("Content", "content"),
)
# MM7_submit.RES
SUBMIT_RSP: Final = (_VERSION, _STATUS, _e("MessageID", "text", "message_id"))
# MM7_deliver.REQ
DELIVER_REQ: Final = (
    _VERSION,
    _e("MMSRelayServerID", "text", "mms_relay_server_id"),
    _e("LinkedID", "text", "linked_id"),
    _e("Sender", "address", "sender", m=True),
    _e("Recipients", "recipients"),
    _e("TimeStamp", "datetime", "time_stamp"),
    _e("ReplyChargingID", "text", "reply_charging_id"),
    _e("Priority", "text", "priority"),
    _e("Subject", "text", "subject"),
    *_APPLIC,
    _e("UACapabilities", "ua_capabilities", "ua_capabilities", r6=True),
    _e("Content", "content"),
)
# MM7_deliver.RES
DELIVER_RSP: Final = (_VERSION, _STATUS, _e("ServiceCode", "text", "service_code"))
# MM7_cancel.REQ
CANCEL_REQ: Final = (
    _VERSION,
    _e("SenderIdentification", "sender_id", m=True),
    _e("MessageID", "text", "message_id", m=True),
    *_APPLIC,
)
# MM7_replace.REQ
REPLACE_REQ: Final = (
    _VERSION,
    _e("SenderIdentification", "sender_id", m=True),
    _e("MessageID", "text", "message_id", m=True),
    _e("ServiceCode", "text", "service_code"),
    _e("TimeStamp", "datetime", "time_stamp"),
    _e("ReadReply", "bool", "read_reply"),
    _e("EarliestDeliveryTime", "reltime", "earliest_delivery_time"),
    _e("DistributionIndicator", "bool", "distribution_indicator"),
    _e("ContentClass", "text", "content_class", r6=True),
    _e("DRMContent", "bool", "drm_content", r6=True),
    *_APPLIC,
    _e("Content", "content"),
)
# MM7_delivery_report.REQ
DELIVERY_REPORT_REQ: Final = (
    _VERSION,
    _e("MMSRelayServerID", "text", "mms_relay_server_id"),
    _e("MessageID", "text", "message_id", m=True),
    _e("Recipient", "address", "recipient", m=True),
    _e("Sender", "address", "sender", m=True),
    _e("Date", "datetime", "date", m=True),
    _e("MMStatus", "text", "mm_status", m=True),
    _e("MMStatusExtension", "text", "mm_status_extension", r6=True),
    _e("StatusText", "text", "status_text"),
    *_APPLIC,
    _e("UACapabilities", "ua_capabilities", "ua_capabilities", r6=True),
)
# MM7_read_reply.REQ
READ_REPLY_REQ: Final = (
    _VERSION,
    _e("MMSRelayServerID", "text", "mms_relay_server_id"),
    _e("MessageID", "text", "message_id", m=True),
    _e("Recipient", "address", "recipient", m=True),
    _e("Sender", "address", "sender", m=True),
    _e("TimeStamp", "datetime", "time_stamp", m=True),
    _e("MMStatus", "text", "mm_status", m=True),
    _e("StatusText", "text", "status_text"),
    *_APPLIC,
)
# Every other response, and the error responses (RSErrorRsp from the
# MMS Relay/Server, VASPErrorRsp from the VASP), carry only the version and the status.
STATUS_ONLY: Final = (_VERSION, _STATUS)
