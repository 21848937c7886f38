"""OMA-MMS-ENC assigned numbers: PDU types, header fields and their value tokens.

Versions are (major, minor) tuples: the version that first defined a PDU type
or field, so the encoder can refuse to emit what a target version lacks.
"""

from __future__ import annotations

Version = tuple[int, int]
V10: Version = (1, 0)
V11: Version = (1, 1)
V12: Version = (1, 2)
V13: Version = (1, 3)
SUPPORTED_VERSIONS: tuple[Version, ...] = (V10, V11, V12, V13)

# OMA-MMS-ENC-1.3 §7.3.30 X-Mms-Message-Type field.
MESSAGE_TYPES: dict[int, tuple[str, Version]] = {
    0x80: ("m-send-req", V10),
    0x81: ("m-send-conf", V10),
    0x82: ("m-notification-ind", V10),
    0x83: ("m-notifyresp-ind", V10),
    0x84: ("m-retrieve-conf", V10),
    0x85: ("m-acknowledge-ind", V10),
    0x86: ("m-delivery-ind", V10),
    0x87: ("m-read-rec-ind", V11),
    0x88: ("m-read-orig-ind", V11),
    0x89: ("m-forward-req", V11),
    0x8A: ("m-forward-conf", V11),
    0x8B: ("m-mbox-store-req", V12),
    0x8C: ("m-mbox-store-conf", V12),
    0x8D: ("m-mbox-view-req", V12),
    0x8E: ("m-mbox-view-conf", V12),
    0x8F: ("m-mbox-upload-req", V12),
    0x90: ("m-mbox-upload-conf", V12),
    0x91: ("m-mbox-delete-req", V12),
    0x92: ("m-mbox-delete-conf", V12),
    0x93: ("m-mbox-descr", V12),
    0x94: ("m-delete-req", V13),
    0x95: ("m-delete-conf", V13),
    0x96: ("m-cancel-req", V13),
    0x97: ("m-cancel-conf", V13),
}
MESSAGE_TYPE_CODES: dict[str, int] = {name: code for code, (name, _) in MESSAGE_TYPES.items()}

# PDU types whose Content-Type header introduces a body (OMA-MMS-ENC-1.3 §6-§7).
BODY_TYPES = frozenset(
    ("m-send-req", "m-retrieve-conf", "m-mbox-upload-req", "m-mbox-view-conf", "m-mbox-descr")
)

YES_NO = {0x80: "Yes", 0x81: "No"}  # §7.3.6 and friends; 0x80 is Yes, never the reverse

RESPONSE_STATUS = {
    0x80: "Ok",
    0x81: "Error-unspecified",
    0x82: "Error-service-denied",
    0x83: "Error-message-format-corrupt",
    0x84: "Error-sending-address-unresolved",
    0x85: "Error-message-not-found",
    0x86: "Error-network-problem",
    0x87: "Error-content-not-accepted",
    0x88: "Error-unsupported-message",
    0xC0: "Error-transient-failure",
    0xC1: "Error-transient-sending-address-unresolved",
    0xC2: "Error-transient-message-not-found",
    0xC3: "Error-transient-network-problem",
    0xC4: "Error-transient-partial-success",
    0xE0: "Error-permanent-failure",
    0xE1: "Error-permanent-service-denied",
    0xE2: "Error-permanent-message-format-corrupt",
    0xE3: "Error-permanent-sending-address-unresolved",
    0xE4: "Error-permanent-message-not-found",
    0xE5: "Error-permanent-content-not-accepted",
    0xE6: "Error-permanent-reply-charging-limitations-not-met",
    0xE7: "Error-permanent-reply-charging-request-not-accepted",
    0xE8: "Error-permanent-reply-charging-forwarding-denied",
    0xE9: "Error-permanent-reply-charging-not-supported",
    0xEA: "Error-permanent-address-hiding-not-supported",
    0xEB: "Error-permanent-lack-of-prepaid",
}
RETRIEVE_STATUS = {
    0x80: "Ok",
    0xC0: "Error-transient-failure",
    0xC1: "Error-transient-message-not-found",
    0xC2: "Error-transient-network-problem",
    0xE0: "Error-permanent-failure",
    0xE1: "Error-permanent-service-denied",
    0xE2: "Error-permanent-message-not-found",
    0xE3: "Error-permanent-content-unsupported",
}
STATUS = {
    0x80: "Expired",
    0x81: "Retrieved",
    0x82: "Rejected",
    0x83: "Deferred",
    0x84: "Unrecognised",
    0x85: "Indeterminate",
    0x86: "Forwarded",
    0x87: "Unreachable",
}
STORE_STATUS = {
    0x80: "Success",
    0xC0: "Error-transient-failure",
    0xC1: "Error-transient-network-problem",
    0xE0: "Error-permanent-failure",
    0xE1: "Error-permanent-service-denied",
    0xE2: "Error-permanent-message-format-corrupt",
    0xE3: "Error-permanent-message-not-found",
    0xE4: "Error-permanent-mmbox-full",
}
MESSAGE_CLASS = {0x80: "Personal", 0x81: "Advertisement", 0x82: "Informational", 0x83: "Auto"}
PRIORITY = {0x80: "Low", 0x81: "Normal", 0x82: "High"}
SENDER_VISIBILITY = {0x80: "Hide", 0x81: "Show"}
READ_STATUS = {0x80: "Read", 0x81: "Deleted without being read"}
REPLY_CHARGING = {
    0x80: "Requested",
    0x81: "Requested text only",
    0x82: "Accepted",
    0x83: "Accepted text only",
}
MM_STATE = {0x80: "Draft", 0x81: "Sent", 0x82: "New", 0x83: "Retrieved", 0x84: "Forwarded"}
CONTENT_CLASS = {
    0x80: "text",
    0x81: "image-basic",
    0x82: "image-rich",
    0x83: "video-basic",
    0x84: "video-rich",
    0x85: "megapixel",
    0x86: "content-basic",
    0x87: "content-rich",
}
RETRIEVAL_MODE = {0x80: "Manual"}
CANCEL_STATUS = {0x80: "Cancel Request Successfully received", 0x81: "Cancel Request corrupted"}
MM_FLAGS_OPS = {0x80: "Add", 0x81: "Remove", 0x82: "Filter"}
MBOX_TOTAL_KINDS = {0x80: "messages", 0x81: "bytes"}

# Field code -> (name, value kind, first version, token table for "token" kinds).
# Kinds: address (Encoded-string-value, repeatable), from, text, encoded-string,
# long-integer, integer, token, time (absolute/relative), version, prev-sent-by,
# prev-sent-date, mm-flags, mbox-total, field-name, element-descriptor,
# content-type, generic.
FIELDS: dict[int, tuple[str, str, Version, dict[int, str] | None]] = {
    0x01: ("Bcc", "address", V10, None),
    0x02: ("Cc", "address", V10, None),
    0x03: ("X-Mms-Content-Location", "text", V10, None),
    0x04: ("Content-Type", "content-type", V10, None),
    0x05: ("Date", "long-integer", V10, None),
    0x06: ("X-Mms-Delivery-Report", "token", V10, YES_NO),
    0x07: ("X-Mms-Delivery-Time", "time", V10, None),
    0x08: ("X-Mms-Expiry", "time", V10, None),
    0x09: ("From", "from", V10, None),
    0x0A: ("X-Mms-Message-Class", "class", V10, MESSAGE_CLASS),
    0x0B: ("Message-ID", "text", V10, None),
    0x0C: ("X-Mms-Message-Type", "message-type", V10, None),
    0x0D: ("X-Mms-MMS-Version", "version", V10, None),
    0x0E: ("X-Mms-Message-Size", "long-integer", V10, None),
    0x0F: ("X-Mms-Priority", "token", V10, PRIORITY),
    0x10: ("X-Mms-Read-Report", "token", V10, YES_NO),
    0x11: ("X-Mms-Report-Allowed", "token", V10, YES_NO),
    0x12: ("X-Mms-Response-Status", "token", V10, RESPONSE_STATUS),
    0x13: ("X-Mms-Response-Text", "encoded-string", V10, None),
    0x14: ("X-Mms-Sender-Visibility", "token", V10, SENDER_VISIBILITY),
    0x15: ("X-Mms-Status", "token", V10, STATUS),
    0x16: ("Subject", "encoded-string", V10, None),
    0x17: ("To", "address", V10, None),
    0x18: ("X-Mms-Transaction-ID", "text", V10, None),
    0x19: ("X-Mms-Retrieve-Status", "token", V11, RETRIEVE_STATUS),
    0x1A: ("X-Mms-Retrieve-Text", "encoded-string", V11, None),
    0x1B: ("X-Mms-Read-Status", "token", V11, READ_STATUS),
    0x1C: ("X-Mms-Reply-Charging", "token", V11, REPLY_CHARGING),
    0x1D: ("X-Mms-Reply-Charging-Deadline", "time", V11, None),
    0x1E: ("X-Mms-Reply-Charging-ID", "text", V11, None),
    0x1F: ("X-Mms-Reply-Charging-Size", "long-integer", V11, None),
    0x20: ("X-Mms-Previously-Sent-By", "prev-sent-by", V11, None),
    0x21: ("X-Mms-Previously-Sent-Date", "prev-sent-date", V11, None),
    0x22: ("X-Mms-Store", "token", V12, YES_NO),
    0x23: ("X-Mms-MM-State", "token", V12, MM_STATE),
    0x24: ("X-Mms-MM-Flags", "mm-flags", V12, None),
    0x25: ("X-Mms-Store-Status", "token", V12, STORE_STATUS),
    0x26: ("X-Mms-Store-Status-Text", "encoded-string", V12, None),
    0x27: ("X-Mms-Stored", "token", V12, YES_NO),
    0x28: ("X-Mms-Attributes", "field-name", V12, None),
    0x29: ("X-Mms-Totals", "token", V12, YES_NO),
    0x2A: ("X-Mms-Mbox-Totals", "mbox-total", V12, None),
    0x2B: ("X-Mms-Quotas", "token", V12, YES_NO),
    0x2C: ("X-Mms-Mbox-Quotas", "mbox-total", V12, None),
    0x2D: ("X-Mms-Message-Count", "integer", V12, None),
    0x2E: ("Content", "generic", V12, None),
    0x2F: ("X-Mms-Start", "integer", V12, None),
    0x30: ("Additional-headers", "generic", V12, None),
    0x31: ("X-Mms-Distribution-Indicator", "token", V12, YES_NO),
    0x32: ("X-Mms-Element-Descriptor", "element-descriptor", V12, None),
    0x33: ("X-Mms-Limit", "integer", V12, None),
    0x34: ("X-Mms-Recommended-Retrieval-Mode", "token", V13, RETRIEVAL_MODE),
    0x35: ("X-Mms-Recommended-Retrieval-Mode-Text", "encoded-string", V13, None),
    0x36: ("X-Mms-Status-Text", "encoded-string", V13, None),
    0x37: ("X-Mms-Applic-ID", "text", V13, None),
    0x38: ("X-Mms-Reply-Applic-ID", "text", V13, None),
    0x39: ("X-Mms-Aux-Applic-Info", "text", V13, None),
    0x3A: ("X-Mms-Content-Class", "token", V13, CONTENT_CLASS),
    0x3B: ("X-Mms-DRM-Content", "token", V13, YES_NO),
    0x3C: ("X-Mms-Adaptation-Allowed", "token", V13, YES_NO),
    0x3D: ("X-Mms-Replace-ID", "text", V13, None),
    0x3E: ("X-Mms-Cancel-ID", "text", V13, None),
    0x3F: ("X-Mms-Cancel-Status", "token", V13, CANCEL_STATUS),
}
FIELD_CODES: dict[str, int] = {spec[0].lower(): code for code, spec in FIELDS.items()}
# Names that older documents and other tools use for the same fields.
FIELD_CODES.update(
    {
        "x-mms-read-reply": 0x10,
        "x-mms-transaction-id": 0x18,
        "x-mms-mms-version": 0x0D,
        "content-location": 0x03,
        "x-mms-content": 0x2E,
        "x-mms-additional-headers": 0x30,
    }
)
# Fields that may occur more than once in one PDU.
REPEATABLE = frozenset(
    (0x01, 0x02, 0x17, 0x20, 0x21, 0x24, 0x28, 0x32, 0x0B, 0x03, 0x2A, 0x2C, 0x23, 0x12, 0x13)
)
ALWAYS_LIST = frozenset((0x01, 0x02, 0x17, 0x20, 0x21, 0x24, 0x28))

TOKEN_CODES: dict[int, dict[str, int]] = {
    code: {v.lower(): k for k, v in spec[3].items()}
    for code, spec in FIELDS.items()
    if spec[3] is not None
}
