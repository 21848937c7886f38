"""Fuzz targets: one function of the fuzzer's bytes per decoder.

The decoders' contract (DESIGN.md §4, "bad input gets a clear, protocol-correct
error") is that bad input raises ``protocol.errors.DecodeError`` and nothing else.
A target swallows DecodeError and lets everything else out, which is what the
fuzzer reports. ``mm7.decode`` turns an unexpected exception into status 3000,
which mm7_errors reserves for bugs of ours: that is raised as InternalError.
``mm7_values`` raises plain ValueError by design (mm7_soap maps it to 4004), so
only its subclasses count there.

The targets are plain functions, so the test suite runs them over their seeds
without atheris (tests/test_fuzz_targets.py) and they cannot rot between runs.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mmsc import addresses
from protocol import mm7, mm7_mime, mm7_values, mms, smpp, smpp_receipt, uaprof, wap_push, wsp
from protocol.errors import DecodeError
from protocol.mm7_errors import Mm7DecodeError

INTERNAL_ERROR = 3000  # TS 23.140 "Server error"; ours only when a bug surfaced


class InternalError(Exception):
    """mm7.decode answered 3000: an exception of ours escaped inside the decoder."""


def _quiet(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except DecodeError:
        return None


def _split_header(data: bytes) -> tuple[str, bytes]:
    """The fuzzer's bytes as ``header NUL body`` (no NUL: all body, empty header)."""
    head, sep, body = data.partition(b"\x00")
    return (head.decode("latin-1"), body) if sep else ("", data)


def target_mms(data: bytes) -> None:
    _quiet(mms.decode, data)


def target_wsp(data: bytes) -> None:
    for part in _quiet(wsp.decode_multipart, data) or ():
        _ = part.content_id, part.content_location


def target_wap_push(data: bytes) -> None:
    push = _quiet(wap_push.decode_push, data)
    if push is not None:
        _ = push.application_id
    _quiet(wap_push.decode_mms_push, data)
    _quiet(wap_push.parse_user_data, data)
    _quiet(wap_push.parse_sms_deliver, data, with_smsc=True)
    _quiet(wap_push.parse_sms_deliver, data, with_smsc=False)


def target_smpp(data: bytes) -> None:
    pdu = _quiet(smpp.decode, data)
    if pdu is not None:
        receipt = _quiet(smpp_receipt.parse_receipt, pdu)  # what the client does with one
        if receipt is not None:
            receipt.id_candidates()
            receipt.converted_candidates()
    smpp_receipt.parse_receipt_text(data.decode("latin-1"))


def target_mm7(data: bytes) -> None:
    """``Content-Type NUL body``; a SOAPAction after a SOH in the header part."""
    content_type, body = _split_header(data)
    content_type, sep, action = content_type.partition("\x01")
    try:
        mm7.decode(body, content_type, soap_action=action if sep else None)
    except Mm7DecodeError as exc:
        if exc.status_code == INTERNAL_ERROR:
            raise InternalError(exc.reason) from exc.__cause__


TRANSFER_ENCODINGS = ("base64", "quoted-printable", "7bit", "binary", None, " Base64 ")


def target_mm7_mime(data: bytes) -> None:
    content_type, body = _split_header(data)
    _ctype, params = mm7_mime.parse_content_type(content_type)
    encoding = TRANSFER_ENCODINGS[len(content_type) % len(TRANSFER_ENCODINGS)]
    _quiet(mm7_mime.decode_transfer, body, encoding)
    boundary = params.get("boundary") or mm7_mime.sniff_boundary(body)
    if boundary is None:
        return
    for part in _quiet(mm7_mime.split_multipart, body, boundary) or ():
        _ = part.content_type(), part.content_id, part.content_location
        _quiet(mm7_mime.decode_transfer, part.body, part.headers.get("content-transfer-encoding"))


def target_mm7_values(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    parsers: tuple[Callable[[str], object], ...] = (
        mm7_values.parse_datetime,
        mm7_values.parse_duration,
        mm7_values.parse_relative,
        mm7_values.parse_int,
        mm7_values.parse_bool,
    )
    for parse in parsers:
        try:
            parse(text)
        except ValueError as exc:
            if type(exc) is not ValueError and not isinstance(exc, DecodeError):
                raise


def target_uaprof(data: bytes) -> None:
    caps = _quiet(uaprof.parse_profile, data)
    if caps is not None:
        caps.accepts("image/jpeg")
    uaprof.parse_resolution(data.decode("utf-8", "replace"))


PLANS = (
    addresses.NumberPlan(),
    addresses.NumberPlan(country_code="49", strip_prefixes=("#31#", "49")),
    addresses.NumberPlan(country_code="1", national_prefix="1", international_prefix="011"),
)


def target_addresses(data: bytes) -> None:
    """Every address of a PDU and every MSISDN header goes through these (mmsc/, not
    compiled, so instrumented where it is installed)."""
    text = data.decode("utf-8", "replace")
    for plan in PLANS:
        with contextlib.suppress(addresses.AddressError):
            addresses.parse_address(text, plan)
        addresses.resolve_sender(
            {"X-MSISDN": text, "x-msisdn": text[::-1]},
            text,
            msisdn_headers=["X-MSISDN"],
            trust_pdu_sender=True,
            plan=plan,
        )


TARGETS: dict[str, Callable[[bytes], None]] = {
    "mms": target_mms,
    "wsp": target_wsp,
    "wap_push": target_wap_push,
    "smpp": target_smpp,
    "mm7": target_mm7,
    "mm7_mime": target_mm7_mime,
    "mm7_values": target_mm7_values,
    "uaprof": target_uaprof,
    "addresses": target_addresses,
}


# ------------------------------------------------------------------------------ seeds

VALUE_SEEDS = (
    "2026-12-06T04:09:23Z",
    "2026-12-06T04:09:23.5+01:00",
    "P1Y2M3DT4H5M6.5S",
    "-PT1H",
    "+12",
    "true",
    "0",
)
ADDRESS_SEEDS = (
    "+491511234567/TYPE=PLMN",
    "01511234567",
    "#31#01511234567",
    "Alice <alice@example.com>",
    "tel:+1-202-555-0100;phone-context=x",
    "192.0.2.1/TYPE=IPv4",
    "[2001:db8::1]/TYPE=IPv6",
    "1234",
)


def seeds(name: str, corpus: Path) -> Iterator[bytes]:
    """Starting inputs for ``name``: the shared corpus's real samples, reshaped for the
    target (a PDU inside a push, a SOAP body behind its Content-Type)."""
    if name == "mms":
        yield from _files(corpus / "mms", ".mms", ".bin")
    elif name == "wap_push":
        yield from _files(corpus / "mms", ".wsp", ".tpdu")
        for pdu in _files(corpus / "mms", ".mms", ".bin"):
            # connectionless push: TID, PDU type, headers length, CT, application id
            yield bytes((1, 6, 3, 0xBE, 0xAF, 0x84)) + pdu
    elif name == "wsp":
        for data in _files(corpus / "mms", ".mms", ".bin"):
            pdu = _quiet(mms.decode, data)
            if pdu is not None and pdu.parts:
                yield wsp.encode_multipart(pdu.parts)
    elif name == "smpp":
        for data in _files(corpus / "smpp", ".smpp"):
            yield from _smpp_pdus(data)
        yield b"id:12345 sub:001 dlvrd:001 submit date:2612060409 done date:2612060410 stat:DELIVRD"
    elif name in ("mm7", "mm7_mime"):
        yield from (b"text/xml\x00" + data for data in _files(corpus / "mm7", ".xml"))
        yield from (_http_seed(data) for data in _files(corpus / "mm7", ".http"))
    elif name == "mm7_values":
        yield from (value.encode() for value in VALUE_SEEDS)
    elif name == "addresses":
        yield from (value.encode() for value in ADDRESS_SEEDS)
    elif name == "uaprof":
        yield from _files(corpus / "uaprof", ".rdf", ".xml")
    else:
        raise KeyError(name)


def _files(directory: Path, *suffixes: str) -> Iterator[bytes]:
    """The contents of the files in ``directory`` with one of ``suffixes`` (in any case),
    in name order."""
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in suffixes:
            yield path.read_bytes()


def _smpp_pdus(data: bytes) -> Iterator[bytes]:
    pos = 0
    while pos + 4 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        if length < 16 or pos + length > len(data):
            return
        yield data[pos : pos + length]
        pos += length


def _http_seed(message: bytes) -> bytes:
    """``Content-Type NUL body`` of a captured HTTP request or response."""
    normal = message.replace(b"\r\n", b"\n")
    head, _, body = normal.partition(b"\n\n")
    content_type = b""
    for line in head.split(b"\n")[1:]:
        field, _, value = line.partition(b":")
        if field.strip().lower() == b"content-type":
            content_type = value.strip()
    return content_type + b"\x00" + body.replace(b"\n", b"\r\n")
