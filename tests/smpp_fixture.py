"""SMPP 3.4 submit_sm PDUs for tests, declared with construct (SMPP v3.4 §4.4.1).

A test fixture, not the MMSC's SMPP client: it builds the exact octets an ESME
sends so that tshark can decode them SMPP -> GSM SMS UD -> WSP -> MMSE. The
layout is fixed (header, C-Octet Strings, one-octet flags, sm_length-prefixed
short_message), which a declarative construct definition states directly.
"""

from __future__ import annotations

from typing import Any

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Const,
    Container,
    CString,
    GreedyBytes,
    Int8ub,
    Int32ub,
    Prefixed,
    Struct,
)

SUBMIT_SM = 0x00000004
TON_INTERNATIONAL = 0x01
NPI_ISDN = 0x01
UDHI = 0b01  # esm_class GSM network specific features: UDH indicator (esm_class 0x40)
DATA_CODING_8BIT = 0x04  # Octet unspecified (8-bit binary), as WAP push uses
MAX_SHORT_MESSAGE = 254  # sm_length is one octet; SMPP 3.4 caps short_message at 254

# esm_class (SMPP 3.4 §5.2.12): bits 7-6 GSM features, 5-2 message type, 1-0 messaging mode.
EsmClass = BitStruct(
    "gsm_features" / BitsInteger(2),
    "message_type" / BitsInteger(4),
    "messaging_mode" / BitsInteger(2),
)

SubmitSmBody = Struct(
    "service_type" / CString("ascii"),
    "source_addr_ton" / Int8ub,
    "source_addr_npi" / Int8ub,
    "source_addr" / CString("ascii"),
    "dest_addr_ton" / Int8ub,
    "dest_addr_npi" / Int8ub,
    "destination_addr" / CString("ascii"),
    "esm_class" / EsmClass,
    "protocol_id" / Int8ub,
    "priority_flag" / Int8ub,
    "schedule_delivery_time" / CString("ascii"),
    "validity_period" / CString("ascii"),
    "registered_delivery" / Int8ub,
    "replace_if_present_flag" / Int8ub,
    "data_coding" / Int8ub,
    "sm_default_msg_id" / Int8ub,
    "short_message" / Prefixed(Int8ub, GreedyBytes),  # sm_length, then the octets
)

# command_length counts itself, hence includelength.
SubmitSm = Prefixed(
    Int32ub,
    Struct(
        "command_id" / Const(SUBMIT_SM, Int32ub),
        "command_status" / Const(0, Int32ub),
        "sequence_number" / Int32ub,
        "body" / SubmitSmBody,
    ),
    includelength=True,
)

# The 16-octet header alone, to walk PDUs that sit back to back in one stream.
Header = Struct("command_length" / Int32ub, "rest" / Bytes(12))


def submit_sm(
    short_message: bytes,
    *,
    sequence_number: int,
    source_addr: str,
    destination_addr: str,
    udhi: bool = True,
    data_coding: int = DATA_CODING_8BIT,
    registered_delivery: int = 0,
) -> bytes:
    """One submit_sm carrying ``short_message`` (TP-UD, with its UDH when ``udhi``)."""
    if len(short_message) > MAX_SHORT_MESSAGE:
        raise ValueError(f"short_message of {len(short_message)} octets exceeds 254")
    return SubmitSm.build(
        {
            "sequence_number": sequence_number,
            "body": {
                "service_type": "",
                "source_addr_ton": TON_INTERNATIONAL,
                "source_addr_npi": NPI_ISDN,
                "source_addr": source_addr,
                "dest_addr_ton": TON_INTERNATIONAL,
                "dest_addr_npi": NPI_ISDN,
                "destination_addr": destination_addr,
                "esm_class": {
                    "gsm_features": UDHI if udhi else 0,
                    "message_type": 0,
                    "messaging_mode": 0,
                },
                "protocol_id": 0,
                "priority_flag": 0,
                "schedule_delivery_time": "",
                "validity_period": "",
                "registered_delivery": registered_delivery,
                "replace_if_present_flag": 0,
                "data_coding": data_coding,
                "sm_default_msg_id": 0,
                "short_message": short_message,
            },
        }
    )


def split_stream(data: bytes) -> list[bytes]:
    """Cut back-to-back SMPP PDUs apart on command_length."""
    pdus, pos = [], 0
    while pos < len(data):
        length = Header.parse(data[pos:]).command_length
        if length < 16 or pos + length > len(data):
            raise ValueError(f"bad command_length {length} at offset {pos}")
        pdus.append(data[pos : pos + length])
        pos += length
    return pdus


def parse_submit_sm(pdu: bytes) -> Container[Any]:
    """The fields of one submit_sm PDU (fails on another command or trailing octets)."""
    return SubmitSm.parse(pdu)
