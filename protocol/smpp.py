"""SMPP 3.4 PDUs: encode and decode, no sockets (SMPP v3.4 Issue 1.2, §3-§5).

Every PDU is a 16-octet header (command_length, command_id, command_status,
sequence_number; §3.2) and a body of mandatory parameters in a fixed order
followed by optional TLVs (§3.2.3, §5.3). The mandatory layouts are tables
(``BODIES``) walked by one small encoder and one decoder, which keeps the
per-PDU cost to a few microseconds and the layouts readable next to the spec;
``bench/smpp_bench.py`` measures this against a construct declaration of the
same PDU (tests/smpp_fixture.py), which costs several times more per submit.

Decoding is lenient where SMSCs are known to be sloppy and strict where a
mistake would corrupt the stream: a response with a non-zero status may omit
its body (§4.1.2, §4.4.2 say the body is not returned on error; many SMSCs
send it anyway), but a C-Octet String without its NUL or a TLV that runs past
the PDU is a DecodeError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Final

from protocol.errors import DecodeError, EncodeError

HEADER: Final = struct.Struct(">IIII")
HEADER_SIZE: Final = 16
# A PDU longer than this is a framing error, not a message: message_payload may carry
# up to 64 KiB (§5.3.2.32) and no other parameter comes close.
MAX_PDU_SIZE: Final = 70_000
INTERFACE_VERSION: Final = 0x34
RESPONSE_BIT: Final = 0x80000000

# --------------------------------------------------------------- command ids (§5.1.2.1)

GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_RECEIVER_RESP: Final = 0x80000001
BIND_TRANSMITTER: Final = 0x00000002
BIND_TRANSMITTER_RESP: Final = 0x80000002
QUERY_SM: Final = 0x00000003
QUERY_SM_RESP: Final = 0x80000003
SUBMIT_SM: Final = 0x00000004
SUBMIT_SM_RESP: Final = 0x80000004
DELIVER_SM: Final = 0x00000005
DELIVER_SM_RESP: Final = 0x80000005
UNBIND: Final = 0x00000006
UNBIND_RESP: Final = 0x80000006
REPLACE_SM: Final = 0x00000007
REPLACE_SM_RESP: Final = 0x80000007
CANCEL_SM: Final = 0x00000008
CANCEL_SM_RESP: Final = 0x80000008
BIND_TRANSCEIVER: Final = 0x00000009
BIND_TRANSCEIVER_RESP: Final = 0x80000009
OUTBIND: Final = 0x0000000B
ENQUIRE_LINK: Final = 0x00000015
ENQUIRE_LINK_RESP: Final = 0x80000015
SUBMIT_MULTI: Final = 0x00000021
SUBMIT_MULTI_RESP: Final = 0x80000021
ALERT_NOTIFICATION: Final = 0x00000102
DATA_SM: Final = 0x00000103
DATA_SM_RESP: Final = 0x80000103

COMMAND_NAMES: Final[dict[int, str]] = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_RECEIVER_RESP: "bind_receiver_resp",
    BIND_TRANSMITTER: "bind_transmitter",
    BIND_TRANSMITTER_RESP: "bind_transmitter_resp",
    QUERY_SM: "query_sm",
    QUERY_SM_RESP: "query_sm_resp",
    SUBMIT_SM: "submit_sm",
    SUBMIT_SM_RESP: "submit_sm_resp",
    DELIVER_SM: "deliver_sm",
    DELIVER_SM_RESP: "deliver_sm_resp",
    UNBIND: "unbind",
    UNBIND_RESP: "unbind_resp",
    REPLACE_SM: "replace_sm",
    REPLACE_SM_RESP: "replace_sm_resp",
    CANCEL_SM: "cancel_sm",
    CANCEL_SM_RESP: "cancel_sm_resp",
    BIND_TRANSCEIVER: "bind_transceiver",
    BIND_TRANSCEIVER_RESP: "bind_transceiver_resp",
    OUTBIND: "outbind",
    ENQUIRE_LINK: "enquire_link",
    ENQUIRE_LINK_RESP: "enquire_link_resp",
    SUBMIT_MULTI: "submit_multi",
    SUBMIT_MULTI_RESP: "submit_multi_resp",
    ALERT_NOTIFICATION: "alert_notification",
    DATA_SM: "data_sm",
    DATA_SM_RESP: "data_sm_resp",
}
COMMAND_IDS: Final[dict[str, int]] = {name: cid for cid, name in COMMAND_NAMES.items()}

# --------------------------------------------------------------- command_status (§5.1.3)

ESME_ROK: Final = 0x00
ESME_RINVMSGLEN: Final = 0x01
ESME_RINVCMDLEN: Final = 0x02
ESME_RINVCMDID: Final = 0x03
ESME_RINVBNDSTS: Final = 0x04
ESME_RALYBND: Final = 0x05
ESME_RSYSERR: Final = 0x08
ESME_RINVSRCADR: Final = 0x0A
ESME_RINVDSTADR: Final = 0x0B
ESME_RBINDFAIL: Final = 0x0D
ESME_RINVPASWD: Final = 0x0E
ESME_RINVSYSID: Final = 0x0F
ESME_RMSGQFUL: Final = 0x14
ESME_RINVESMCLASS: Final = 0x43
ESME_RSUBMITFAIL: Final = 0x45
ESME_RINVSRCTON: Final = 0x48
ESME_RINVSRCNPI: Final = 0x49
ESME_RINVDSTTON: Final = 0x50
ESME_RINVDSTNPI: Final = 0x51
ESME_RTHROTTLED: Final = 0x58
ESME_RX_T_APPN: Final = 0x64
ESME_RX_P_APPN: Final = 0x65
ESME_RINVOPTPARSTREAM: Final = 0xC0
ESME_RINVPARLEN: Final = 0xC2
ESME_RUNKNOWNERR: Final = 0xFF

COMMAND_STATUS: Final[dict[int, tuple[str, str]]] = {
    0x00: ("ESME_ROK", "No error"),
    0x01: ("ESME_RINVMSGLEN", "Message length is invalid"),
    0x02: ("ESME_RINVCMDLEN", "Command length is invalid"),
    0x03: ("ESME_RINVCMDID", "Invalid command id"),
    0x04: ("ESME_RINVBNDSTS", "Incorrect bind status for given command"),
    0x05: ("ESME_RALYBND", "ESME already in bound state"),
    0x06: ("ESME_RINVPRTFLG", "Invalid priority flag"),
    0x07: ("ESME_RINVREGDLVFLG", "Invalid registered delivery flag"),
    0x08: ("ESME_RSYSERR", "System error"),
    0x0A: ("ESME_RINVSRCADR", "Invalid source address"),
    0x0B: ("ESME_RINVDSTADR", "Invalid destination address"),
    0x0C: ("ESME_RINVMSGID", "Message id is invalid"),
    0x0D: ("ESME_RBINDFAIL", "Bind failed"),
    0x0E: ("ESME_RINVPASWD", "Invalid password"),
    0x0F: ("ESME_RINVSYSID", "Invalid system id"),
    0x11: ("ESME_RCANCELFAIL", "Cancel SM failed"),
    0x13: ("ESME_RREPLACEFAIL", "Replace SM failed"),
    0x14: ("ESME_RMSGQFUL", "Message queue full"),
    0x15: ("ESME_RINVSERTYP", "Invalid service type"),
    0x33: ("ESME_RINVNUMDESTS", "Invalid number of destinations"),
    0x34: ("ESME_RINVDLNAME", "Invalid distribution list name"),
    0x40: ("ESME_RINVDESTFLAG", "Destination flag is invalid"),
    0x42: ("ESME_RINVSUBREP", "Invalid submit with replace request"),
    0x43: ("ESME_RINVESMCLASS", "Invalid esm_class field data"),
    0x44: ("ESME_RCNTSUBDL", "Cannot submit to distribution list"),
    0x45: ("ESME_RSUBMITFAIL", "submit_sm or submit_multi failed"),
    0x48: ("ESME_RINVSRCTON", "Invalid source address TON"),
    0x49: ("ESME_RINVSRCNPI", "Invalid source address NPI"),
    0x50: ("ESME_RINVDSTTON", "Invalid destination address TON"),
    0x51: ("ESME_RINVDSTNPI", "Invalid destination address NPI"),
    0x53: ("ESME_RINVSYSTYP", "Invalid system_type field"),
    0x54: ("ESME_RINVREPFLAG", "Invalid replace_if_present flag"),
    0x55: ("ESME_RINVNUMMSGS", "Invalid number of messages"),
    0x58: ("ESME_RTHROTTLED", "Throttling error: ESME exceeded allowed message limits"),
    0x61: ("ESME_RINVSCHED", "Invalid scheduled delivery time"),
    0x62: ("ESME_RINVEXPIRY", "Invalid message validity period"),
    0x63: ("ESME_RINVDFTMSGID", "Predefined message invalid or not found"),
    0x64: ("ESME_RX_T_APPN", "ESME receiver temporary app error"),
    0x65: ("ESME_RX_P_APPN", "ESME receiver permanent app error"),
    0x66: ("ESME_RX_R_APPN", "ESME receiver reject message error"),
    0x67: ("ESME_RQUERYFAIL", "query_sm request failed"),
    0xC0: ("ESME_RINVOPTPARSTREAM", "Error in the optional part of the PDU body"),
    0xC1: ("ESME_ROPTPARNOTALLWD", "Optional parameter not allowed"),
    0xC2: ("ESME_RINVPARLEN", "Invalid parameter length"),
    0xC3: ("ESME_RMISSINGOPTPARAM", "Expected optional parameter missing"),
    0xC4: ("ESME_RINVOPTPARAMVAL", "Invalid optional parameter value"),
    0xFE: ("ESME_RDELIVERYFAILURE", "Delivery failure"),
    0xFF: ("ESME_RUNKNOWNERR", "Unknown error"),
}


def status_name(status: int) -> str:
    """``ESME_RTHROTTLED`` for 0x58; reserved and vendor codes by number (§5.1.3 leaves
    0x400-0x4FF to SMSC vendors)."""
    entry = COMMAND_STATUS.get(status)
    if entry is not None:
        return entry[0]
    if 0x400 <= status <= 0x4FF:
        return f"vendor-0x{status:08X}"
    return f"0x{status:08X}"


# ----------------------------------------------------------------------------- TLVs (§5.3.2)

TLV_TAGS: Final[dict[str, int]] = {
    "dest_addr_subunit": 0x0005,
    "dest_network_type": 0x0006,
    "dest_bearer_type": 0x0007,
    "dest_telematics_id": 0x0008,
    "source_addr_subunit": 0x000D,
    "source_network_type": 0x000E,
    "source_bearer_type": 0x000F,
    "source_telematics_id": 0x0010,
    "qos_time_to_live": 0x0017,
    "payload_type": 0x0019,
    "additional_status_info_text": 0x001D,
    "receipted_message_id": 0x001E,
    "ms_msg_wait_facilities": 0x0030,
    "privacy_indicator": 0x0201,
    "source_subaddress": 0x0202,
    "dest_subaddress": 0x0203,
    "user_message_reference": 0x0204,
    "user_response_code": 0x0205,
    "source_port": 0x020A,
    "destination_port": 0x020B,
    "sar_msg_ref_num": 0x020C,
    "language_indicator": 0x020D,
    "sar_total_segments": 0x020E,
    "sar_segment_seqnum": 0x020F,
    "sc_interface_version": 0x0210,
    "callback_num_pres_ind": 0x0302,
    "callback_num_atag": 0x0303,
    "number_of_messages": 0x0304,
    "callback_num": 0x0381,
    "dpf_result": 0x0420,
    "set_dpf": 0x0421,
    "ms_availability_status": 0x0422,
    "network_error_code": 0x0423,
    "message_payload": 0x0424,
    "delivery_failure_reason": 0x0425,
    "more_messages_to_send": 0x0426,
    "message_state": 0x0427,
    "ussd_service_op": 0x0501,
    "display_time": 0x1201,
    "sms_signal": 0x1203,
    "ms_validity": 0x1204,
    "alert_on_message_delivery": 0x130C,
    "its_reply_type": 0x1380,
    "its_session_info": 0x1383,
}
TLV_NAMES: Final[dict[int, str]] = {tag: name for name, tag in TLV_TAGS.items()}
# Integer TLVs and their width in octets; the rest are octet strings or C-Octet Strings.
TLV_INTEGERS: Final[dict[str, int]] = {
    "dest_addr_subunit": 1,
    "dest_network_type": 1,
    "dest_bearer_type": 1,
    "dest_telematics_id": 2,
    "source_addr_subunit": 1,
    "source_network_type": 1,
    "source_bearer_type": 1,
    "source_telematics_id": 1,
    "qos_time_to_live": 4,
    "payload_type": 1,
    "ms_msg_wait_facilities": 1,
    "privacy_indicator": 1,
    "user_message_reference": 2,
    "user_response_code": 1,
    "source_port": 2,
    "destination_port": 2,
    "sar_msg_ref_num": 2,
    "language_indicator": 1,
    "sar_total_segments": 1,
    "sar_segment_seqnum": 1,
    "sc_interface_version": 1,
    "callback_num_pres_ind": 1,
    "number_of_messages": 1,
    "dpf_result": 1,
    "set_dpf": 1,
    "ms_availability_status": 1,
    "delivery_failure_reason": 1,
    "more_messages_to_send": 1,
    "message_state": 1,
    "display_time": 1,
    "sms_signal": 2,
    "ms_validity": 1,
    "its_reply_type": 1,
}
TLV_CSTRINGS: Final = frozenset(("receipted_message_id", "additional_status_info_text"))

# message_state values (§5.2.28), used by receipts and query_sm_resp.
MESSAGE_STATES: Final[dict[int, str]] = {
    1: "ENROUTE",
    2: "DELIVERED",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIVERABLE",
    6: "ACCEPTED",
    7: "UNKNOWN",
    8: "REJECTED",
}

# --------------------------------------------------------------- esm_class, TON/NPI, data_coding

ESM_UDHI: Final = 0x40  # GSM network specific feature: UDH indicator (§5.2.12)
ESM_TYPE_MASK: Final = 0x3C
ESM_TYPE_DELIVERY_RECEIPT: Final = 0x04  # in deliver_sm: SMSC delivery receipt
ESM_TYPE_INTERMEDIATE: Final = 0x20  # intermediate delivery notification
DATA_CODING_OCTETS: Final = 0x04  # 8-bit binary (§5.2.19)
DATA_CODING_GSM_CLASS2_8BIT: Final = 0xF5  # GSM DCS: 8-bit data, class 1 (ME specific)
TON_UNKNOWN: Final = 0
TON_INTERNATIONAL: Final = 1
TON_NATIONAL: Final = 2
TON_ALPHANUMERIC: Final = 5
NPI_UNKNOWN: Final = 0
NPI_ISDN: Final = 1

# ----------------------------------------------------------------------------- body layouts (§4)

# A mandatory parameter: (name, kind, size). kind "c": C-Octet String of at most ``size``
# octets including the NUL; "i": unsigned integer of ``size`` octets; "sm": short_message,
# whose length is the preceding sm_length octet (not stored separately).
Field = tuple[str, str, int]

_BIND: Final[tuple[Field, ...]] = (
    ("system_id", "c", 16),
    ("password", "c", 9),
    ("system_type", "c", 13),
    ("interface_version", "i", 1),
    ("addr_ton", "i", 1),
    ("addr_npi", "i", 1),
    ("address_range", "c", 41),
)
_BIND_RESP: Final[tuple[Field, ...]] = (("system_id", "c", 16),)
_MESSAGE_ID: Final[tuple[Field, ...]] = (("message_id", "c", 65),)
_SM: Final[tuple[Field, ...]] = (
    ("service_type", "c", 6),
    ("source_addr_ton", "i", 1),
    ("source_addr_npi", "i", 1),
    ("source_addr", "c", 21),
    ("dest_addr_ton", "i", 1),
    ("dest_addr_npi", "i", 1),
    ("destination_addr", "c", 21),
    ("esm_class", "i", 1),
    ("protocol_id", "i", 1),
    ("priority_flag", "i", 1),
    ("schedule_delivery_time", "c", 17),
    ("validity_period", "c", 17),
    ("registered_delivery", "i", 1),
    ("replace_if_present_flag", "i", 1),
    ("data_coding", "i", 1),
    ("sm_default_msg_id", "i", 1),
    ("short_message", "sm", 254),
)
_DATA_SM: Final[tuple[Field, ...]] = (
    ("service_type", "c", 6),
    ("source_addr_ton", "i", 1),
    ("source_addr_npi", "i", 1),
    ("source_addr", "c", 65),
    ("dest_addr_ton", "i", 1),
    ("dest_addr_npi", "i", 1),
    ("destination_addr", "c", 65),
    ("esm_class", "i", 1),
    ("registered_delivery", "i", 1),
    ("data_coding", "i", 1),
)
_QUERY_SM: Final[tuple[Field, ...]] = (
    ("message_id", "c", 65),
    ("source_addr_ton", "i", 1),
    ("source_addr_npi", "i", 1),
    ("source_addr", "c", 21),
)
_QUERY_SM_RESP: Final[tuple[Field, ...]] = (
    ("message_id", "c", 65),
    ("final_date", "c", 17),
    ("message_state", "i", 1),
    ("error_code", "i", 1),
)

BODIES: Final[dict[int, tuple[Field, ...]]] = {
    GENERIC_NACK: (),
    BIND_RECEIVER: _BIND,
    BIND_TRANSMITTER: _BIND,
    BIND_TRANSCEIVER: _BIND,
    BIND_RECEIVER_RESP: _BIND_RESP,
    BIND_TRANSMITTER_RESP: _BIND_RESP,
    BIND_TRANSCEIVER_RESP: _BIND_RESP,
    OUTBIND: (("system_id", "c", 16), ("password", "c", 9)),
    UNBIND: (),
    UNBIND_RESP: (),
    ENQUIRE_LINK: (),
    ENQUIRE_LINK_RESP: (),
    SUBMIT_SM: _SM,
    SUBMIT_SM_RESP: _MESSAGE_ID,
    DELIVER_SM: _SM,
    DELIVER_SM_RESP: _MESSAGE_ID,
    DATA_SM: _DATA_SM,
    DATA_SM_RESP: _MESSAGE_ID,
    QUERY_SM: _QUERY_SM,
    QUERY_SM_RESP: _QUERY_SM_RESP,
}
# PDUs that may carry TLVs after the mandatory part (§4: bind responses, the *_sm family).
_TLV_ALLOWED: Final = frozenset(
    (
        BIND_RECEIVER_RESP,
        BIND_TRANSMITTER_RESP,
        BIND_TRANSCEIVER_RESP,
        SUBMIT_SM,
        DELIVER_SM,
        DATA_SM,
        DATA_SM_RESP,
    )
)


def _may_carry_tlvs(command_id: int) -> bool:
    """Requests as §4 lists them; any response, because SMPP 5.0 §4.2.5 gives
    submit_sm_resp and deliver_sm_resp TLVs (additional_status_info_text,
    network_error_code…) and SMSCs send them on 3.4 binds too: refusing those would
    lose the message_id before them."""
    return command_id in _TLV_ALLOWED or bool(command_id & RESPONSE_BIT)


@dataclass(slots=True)
class Pdu:
    """One SMPP PDU: the header, the mandatory parameters by name, the TLVs by name.

    Unknown TLVs keep their numeric tag as the key and their raw value, so a
    PDU read from an SMSC and written again loses nothing. ``body`` holds the
    raw body of a command this module has no layout for (the session answers
    it with generic_nack ESME_RINVCMDID, §3.3).
    """

    command_id: int
    sequence: int = 0
    status: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    tlvs: dict[str | int, Any] = field(default_factory=dict)
    body: bytes = b""

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command_id, f"0x{self.command_id:08X}")

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    def get(self, key: str, default: Any = None) -> Any:
        """A mandatory parameter or a TLV, whichever has ``key``."""
        if key in self.params:
            return self.params[key]
        return self.tlvs.get(key, default)


# ----------------------------------------------------------------------------- encoding


def _cstring(out: bytearray, name: str, value: Any, size: int) -> None:
    if value is None:
        data = b""
    elif isinstance(value, bytes | bytearray):
        data = bytes(value)
    else:
        try:
            # latin-1, as the decoder reads: what an SMSC sent us can be written back.
            data = str(value).encode("latin-1")
        except UnicodeEncodeError:
            raise EncodeError(f"{name}: {value!r} is not one octet per character") from None
    if len(data) >= size:
        raise EncodeError(f"{name}: {len(data)} octets, at most {size - 1} allowed")
    if b"\x00" in data:
        raise EncodeError(f"{name}: embedded NUL")
    out += data
    out.append(0)


def _tlv(out: bytearray, key: str | int, value: Any) -> None:
    if isinstance(key, int):
        tag, name = key, TLV_NAMES.get(key, f"0x{key:04X}")
    else:
        tag_or_none = TLV_TAGS.get(key)
        if tag_or_none is None:
            raise EncodeError(f"unknown TLV {key!r}")
        tag, name = tag_or_none, key
    width = TLV_INTEGERS.get(name)
    if width is not None and isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 1 << (8 * width):
            raise EncodeError(f"{name}: {value} does not fit {width} octet(s)")
        data = value.to_bytes(width, "big")
    elif name in TLV_CSTRINGS and isinstance(value, str):
        data = value.encode("latin-1", "replace") + b"\x00"
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    else:
        raise EncodeError(f"{name}: cannot encode {type(value).__name__}")
    if len(data) > 0xFFFF:
        raise EncodeError(f"{name}: {len(data)} octets do not fit a TLV")
    out += tag.to_bytes(2, "big")
    out += len(data).to_bytes(2, "big")
    out += data


def encode(pdu: Pdu) -> bytes:
    """The wire form of ``pdu``. Missing mandatory parameters are written as their
    empty value (0 or the empty C-Octet String), which is what the spec calls
    "NULL" for most of them (§4)."""
    layout = BODIES.get(pdu.command_id)
    out = bytearray(HEADER_SIZE)
    if layout is None:
        out += pdu.body
    else:
        params = pdu.params
        for name, kind, size in layout:
            value = params.get(name)
            if kind == "c":
                _cstring(out, name, value, size)
            elif kind == "i":
                number = 0 if value is None else value
                if not 0 <= number < 1 << (8 * size):
                    raise EncodeError(f"{name}: {number!r} does not fit {size} octet(s)")
                out += number.to_bytes(size, "big")
            else:  # short_message, preceded by sm_length
                data = b"" if value is None else bytes(value)
                if len(data) > size:
                    raise EncodeError(f"short_message: {len(data)} octets, at most {size}")
                out.append(len(data))
                out += data
        if pdu.tlvs:
            if not _may_carry_tlvs(pdu.command_id):
                raise EncodeError(f"{pdu.name} carries no optional parameters")
            for key, value in pdu.tlvs.items():
                _tlv(out, key, value)
    if len(out) > MAX_PDU_SIZE:
        raise EncodeError(f"{pdu.name}: {len(out)} octets is too long for one PDU")
    HEADER.pack_into(out, 0, len(out), pdu.command_id, pdu.status, pdu.sequence)
    return bytes(out)


# ----------------------------------------------------------------------------- decoding


def _read_cstring(data: bytes, pos: int, end: int, name: str, size: int) -> tuple[str, int]:
    nul = data.find(b"\x00", pos, min(end, pos + size))
    if nul < 0:
        raise DecodeError(pos, f"{name}: no NUL within {size} octets")
    # latin-1 decodes every octet: SMSCs put odd bytes in message ids and system ids.
    return data[pos:nul].decode("latin-1"), nul + 1


def _decode_tlv_value(name: str | None, value: bytes) -> Any:
    if name is None:
        return value
    width = TLV_INTEGERS.get(name)
    if width is not None:
        # Some SMSCs write a 1-octet value as 2 or 4 octets: read any width up to 4.
        # A value that is empty, longer, or too big for its field (§5.3.2 fixes the
        # width) is kept as the octets received: the rest of the PDU (a delivery
        # receipt, say) is still good, and it encodes again as it came.
        if not 1 <= len(value) <= 4:
            return value
        number = int.from_bytes(value, "big")
        return value if number >> (8 * width) else number
    if name in TLV_CSTRINGS:
        return value.rstrip(b"\x00").decode("latin-1")
    return value


def decode_tlvs(data: bytes, pos: int, end: int) -> dict[str | int, Any]:
    tlvs: dict[str | int, Any] = {}
    while pos < end:
        if pos + 4 > end:
            raise DecodeError(pos, "truncated TLV header")
        tag = (data[pos] << 8) | data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        start = pos + 4
        if start + length > end:
            raise DecodeError(pos, f"TLV 0x{tag:04X} of {length} octets runs past the PDU")
        name = TLV_NAMES.get(tag)
        tlvs[tag if name is None else name] = _decode_tlv_value(name, data[start : start + length])
        pos = start + length
    return tlvs


def decode(data: bytes) -> Pdu:
    """One complete PDU (header included) into a :class:`Pdu`; DecodeError otherwise."""
    end = len(data)
    if end < HEADER_SIZE:
        raise DecodeError(0, f"{end} octets is shorter than the SMPP header")
    length, command_id, status, sequence = HEADER.unpack_from(data, 0)
    if length != end:
        raise DecodeError(0, f"command_length {length} but {end} octets given")
    pdu = Pdu(command_id, sequence, status)
    layout = BODIES.get(command_id)
    if layout is None:
        pdu.body = bytes(data[HEADER_SIZE:])
        return pdu
    params = pdu.params
    pos = HEADER_SIZE
    for name, kind, size in layout:
        if pos >= end and command_id & RESPONSE_BIT:
            break  # a response may omit its body (status != 0, or an empty message_id)
        if kind == "c":
            params[name], pos = _read_cstring(data, pos, end, name, size)
        elif kind == "i":
            if pos + size > end:
                raise DecodeError(pos, f"{name}: truncated")
            params[name] = data[pos] if size == 1 else int.from_bytes(data[pos : pos + size], "big")
            pos += size
        else:
            if pos >= end:
                raise DecodeError(pos, "sm_length: truncated")
            sm_length = data[pos]
            pos += 1
            if pos + sm_length > end:
                raise DecodeError(pos, f"short_message: sm_length {sm_length} exceeds the PDU")
            params[name] = bytes(data[pos : pos + sm_length])
            pos += sm_length
    if pos < end:
        if not _may_carry_tlvs(command_id):
            raise DecodeError(pos, f"{end - pos} unexpected octet(s) after the {pdu.name} body")
        pdu.tlvs = decode_tlvs(data, pos, end)
    return pdu


class PduReader:
    """Cuts a TCP byte stream into PDUs.

    A command_length outside 16..MAX_PDU_SIZE means we have lost the framing:
    nothing after it can be trusted, so ``feed`` raises DecodeError and the
    caller drops the connection (§3.3: generic_nack ESME_RINVCMDLEN first).
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The complete PDUs that ``data`` finishes, as raw bytes, in order."""
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        pos = 0
        available = len(buffer)
        while available - pos >= 4:
            length = int.from_bytes(buffer[pos : pos + 4], "big")
            if length < HEADER_SIZE or length > MAX_PDU_SIZE:
                raise DecodeError(pos, f"command_length {length} is not a PDU length")
            if available - pos < length:
                break
            out.append(bytes(buffer[pos : pos + length]))
            pos += length
        if pos:
            del buffer[:pos]
        return out

    @property
    def pending(self) -> int:
        """Octets received that do not yet make a whole PDU."""
        return len(self._buffer)


def peek_header(data: bytes) -> tuple[int, int, int, int] | None:
    """The header fields of raw PDU bytes, or None when not even a header is there:
    lets a receiver answer a PDU it cannot decode with the right sequence number."""
    if len(data) < HEADER_SIZE:
        return None
    length, command_id, status, sequence = HEADER.unpack_from(data, 0)
    return length, command_id, status, sequence


__all__ = [
    "BODIES",
    "COMMAND_IDS",
    "COMMAND_NAMES",
    "COMMAND_STATUS",
    "MESSAGE_STATES",
    "TLV_TAGS",
    "Pdu",
    "PduReader",
    "decode",
    "decode_tlvs",
    "encode",
    "peek_header",
    "status_name",
]
