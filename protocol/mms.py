"""MMS encapsulation (OMA-MMS-ENC 1.0-1.3): decode leniently, encode strictly.

A PDU is a header block of (field, value) pairs followed, for the PDU types
that carry one, by a body introduced by Content-Type. Decoding takes any
header order and tolerates the quirks real handsets send (feature-matrix §4);
encoding writes X-Mms-Message-Type, X-Mms-Transaction-ID and X-Mms-MMS-Version
first, Content-Type last, X-Mms-Content-Location last in a notification, and
only fields that the target version defines.

Header values are plain JSON-shaped Python values (str, int, dict, list,
None) so that the JSON form of ``mmsc pdu decode`` is the object itself;
see ``docs`` in README for the shape of each kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol.errors import DecodeError, EncodeError
from protocol.mms_tables import (
    ALWAYS_LIST,
    BODY_TYPES,
    FIELD_CODES,
    FIELDS,
    MBOX_TOTAL_KINDS,
    MESSAGE_TYPE_CODES,
    MESSAGE_TYPES,
    MM_FLAGS_OPS,
    SUPPORTED_VERSIONS,
    TOKEN_CODES,
    Version,
)
from protocol.values import Raw
from protocol.values import Repeated as _Repeated
from protocol.wsp import (
    Part,
    charset_of,
    multipart_chunks,
    read_content_type,
    read_encoded_string,
    read_integer,
    read_long_integer,
    read_multipart,
    read_parameters,
    read_text,
    read_value_length,
    skip_value,
    write_content_type,
    write_encoded_string,
    write_integer,
    write_long_integer,
    write_parameters,
    write_text,
    write_value_length,
)

CONTENT_TYPE = "Content-Type"
DEFAULT_VERSION = "1.2"  # what handsets and carriers in the field agree on (feature-matrix §2)
UNKNOWN_FIELD = "X-Mms-Unknown-"  # + two hex digits of an unassigned field code
UNKNOWN_TYPE = "unknown-"  # + 0xNN for an unassigned X-Mms-Message-Type


@dataclass(slots=True)
class MmsPdu:
    """One MMS PDU. ``headers`` holds every field except the four kept as attributes."""

    message_type: str
    transaction_id: str | None = None
    mms_version: str | None = DEFAULT_VERSION  # None: the PDU carried no version
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = None
    content_type_params: dict[str, Any] = field(default_factory=dict)
    parts: list[Part] | None = None
    body: bytes | memoryview | None = None  # a body that is not multipart

    def get(self, name: str, default: Any = None) -> Any:
        """Header by name, case-insensitively (handy for the many spellings in the wild)."""
        if name in self.headers:
            return self.headers[name]
        low = name.lower()
        for key, value in self.headers.items():
            if key.lower() == low:
                return value
        return default


def parse_version(text: str) -> Version:
    try:
        major, _, minor = text.partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        raise EncodeError(f"bad MMS version {text!r}") from None


# ----------------------------------------------------------------------------- decoding

Reader = Callable[[bytes, int, int, "dict[int, str] | None"], tuple[Any, int]]


def _r_text(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    return read_text(buf, pos, end)


def _r_encoded(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    return read_encoded_string(buf, pos, end)


def _r_long(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    return read_long_integer(buf, pos, end)


def _r_integer(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    return read_integer(buf, pos, end)


def _r_token(buf: bytes, pos: int, end: int, table: dict[int, str] | None) -> tuple[Any, int]:
    b = buf[pos]
    if b < 0x80:
        raise DecodeError(pos, f"expected a token, got 0x{b:02X}")
    return (table.get(b, b) if table else b), pos + 1  # unknown tokens kept as numbers


def _r_class(buf: bytes, pos: int, end: int, table: dict[int, str] | None) -> tuple[Any, int]:
    if buf[pos] >= 0x80:
        return _r_token(buf, pos, end, table)
    return read_text(buf, pos, end)  # Token-text class names are legal


def _r_time(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    if buf[pos] >= 32:  # lenient: a bare Long-integer where value-length was due
        raise DecodeError(pos, "time value without value-length")
    length, p = read_value_length(buf, pos, end)
    stop = p + length
    if p >= stop:
        raise DecodeError(p, "empty time value")
    token = buf[p]
    if token == 0x80:
        kind, read = "absolute", read_long_integer
    elif token == 0x81:
        kind, read = "relative", read_integer
    else:
        raise DecodeError(p, f"time token 0x{token:02X} is neither absolute nor relative")
    try:
        return {kind: read(buf, p + 1, stop)[0]}, stop
    except DecodeError:
        # AOSP reads the integer past a value-length that is too short (aosp push vector).
        value, pos = read(buf, p + 1, end)
        return {kind: value}, pos


def _r_from(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    b = buf[pos]
    if b >= 32:  # lenient: a bare address without value-length and token
        return read_encoded_string(buf, pos, end)
    length, p = read_value_length(buf, pos, end)
    stop = p + length
    if p >= stop:
        raise DecodeError(p, "empty From value")
    token = buf[p]
    if token == 0x81:
        return None, stop  # Insert-address-token: the MMSC fills in the sender
    if token != 0x80:
        raise DecodeError(p, f"From token 0x{token:02X} is neither address-present nor insert")
    try:
        return read_encoded_string(buf, p + 1, stop)[0], stop
    except DecodeError:
        # AOSP reads past a From length that is too short; so do we (aosp push vector).
        return read_encoded_string(buf, p + 1, end)


def _version_text(octet: int) -> str:
    major, minor = (octet >> 4) & 0x07, octet & 0x0F  # lenient: the high bit may be missing
    return f"{major}.0" if minor == 0x0F else f"{major}.{minor}"


_VERSION_TEXTS = {b: _version_text(b) for b in (*range(0x20), *range(0x80, 0x100))}


def _r_version(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    b = buf[pos]
    if 32 <= b < 0x80:
        text, pos = read_text(buf, pos, end)
        return text.strip(), pos
    return _VERSION_TEXTS[b], pos + 1


def _r_prev_by(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    length, p = read_value_length(buf, pos, end)
    stop = p + length
    count, p = read_integer(buf, p, stop)
    address, _ = read_encoded_string(buf, p, stop)
    return {"forward_count": count, "address": address}, stop


def _r_prev_date(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    length, p = read_value_length(buf, pos, end)
    stop = p + length
    count, p = read_integer(buf, p, stop)
    date, _ = read_long_integer(buf, p, stop)
    return {"forward_count": count, "date": date}, stop


def _r_mm_flags(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    length, p = read_value_length(buf, pos, end)
    stop = p + length
    if p >= stop:
        raise DecodeError(p, "empty MM-Flags value")
    op = MM_FLAGS_OPS.get(buf[p], buf[p])
    flag, _ = read_encoded_string(buf, p + 1, stop)
    return {"op": op, "value": flag}, stop


def _r_mbox_total(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    length, p = read_value_length(buf, pos, end)
    stop = p + length
    if p >= stop:
        raise DecodeError(p, "empty Mbox total")
    kind = MBOX_TOTAL_KINDS.get(buf[p])
    if kind is None:
        raise DecodeError(p, f"Mbox total token 0x{buf[p]:02X}")
    value, _ = read_integer(buf, p + 1, stop)
    return {kind: value}, stop


def _r_field_name(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    b = buf[pos]
    if b < 0x80:
        return read_text(buf, pos, end)
    spec = FIELDS.get(b & 0x7F)
    return (spec[0] if spec else b), pos + 1


def _r_element(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    length, p = read_value_length(buf, pos, end)
    stop = p + length
    ref, p = read_text(buf, p, stop)
    return {"reference": ref, "params": read_parameters(buf, p, stop) if p < stop else {}}, stop


def _r_generic(buf: bytes, pos: int, end: int, _t: Any) -> tuple[Any, int]:
    return skip_value(buf, pos, end)


_READERS: dict[str, Reader] = {
    "address": _r_encoded,
    "text": _r_text,
    "encoded-string": _r_encoded,
    "long-integer": _r_long,
    "integer": _r_integer,
    "token": _r_token,
    "class": _r_class,
    "time": _r_time,
    "from": _r_from,
    "version": _r_version,
    "prev-sent-by": _r_prev_by,
    "prev-sent-date": _r_prev_date,
    "mm-flags": _r_mm_flags,
    "mbox-total": _r_mbox_total,
    "field-name": _r_field_name,
    "element-descriptor": _r_element,
    "generic": _r_generic,
}
# code -> (name, reader, token table, always a list)
# Kinds decoded inline in the hot loop; everything else goes through its reader.
_K_OTHER, _K_TEXT, _K_ENC, _K_TOKEN, _K_LONG = 0, 1, 2, 3, 4
_INLINE_KINDS = {"text": _K_TEXT, "address": _K_ENC, "encoded-string": _K_ENC, "token": _K_TOKEN}
_INLINE_KINDS["long-integer"] = _K_LONG
# code -> (name, inline kind, reader, token table, always a list)
_DECODE_TABLE: dict[int, tuple[str, int, Reader, dict[int, str], bool]] = {
    code: (
        name,
        _INLINE_KINDS.get(kind, _K_OTHER),
        _READERS[kind],
        table or {},
        code in ALWAYS_LIST,
    )
    for code, (name, kind, _v, table) in FIELDS.items()
    if kind in _READERS and code not in (0x04, 0x0C, 0x0D, 0x18)
}
_INDEXED_TYPES = frozenset(("m-mbox-delete-conf", "m-delete-conf"))
# OMA-MMS-ENC 1.3 §7.3.x: in a (mbox-)delete-conf, Content-Location, Response-Status
# and Response-Text may carry the index of the message they answer. A Response-Text
# with a value-length there is read as indexed (as Wireshark does); a charset-labelled
# Response-Text is therefore ambiguous in these two PDU types and is best avoided.
_INDEXED_FIELDS = frozenset((0x03, 0x12, 0x13))


def _add(headers: dict[str, Any], name: str, value: Any, always_list: bool) -> None:
    if always_list:
        existing = headers.get(name)
        if existing is None:
            headers[name] = [value]
        else:
            existing.append(value)
    elif name in headers:
        old = headers[name]
        if isinstance(old, _Repeated):
            old.append(value)
        else:
            headers[name] = _Repeated((old, value))
    else:
        headers[name] = value


def _is_multipart(ct: str) -> bool:
    low = ct.lower()
    return low.startswith("application/vnd.wap.multipart.") or low.startswith("multipart/")


def decode(data: bytes | bytearray | memoryview) -> MmsPdu:
    """Decode one MMS PDU; raises :class:`DecodeError` and nothing else on bad input."""
    buf = data if type(data) is bytes else bytes(data)
    try:
        return _decode(buf, len(buf))
    except DecodeError:
        raise
    except (IndexError, ValueError, OverflowError, TypeError) as exc:
        raise DecodeError(0, f"malformed PDU: {exc}") from None


def _decode(buf: bytes, end: int) -> MmsPdu:
    """The header loop, with the common value kinds decoded inline.

    This is the per-message hot path (every MM1 POST, every fetch): a function
    call costs as much as the work for a short field here, so text, token,
    long-integer and From values are read without one.
    """
    headers: dict[str, Any] = {}
    mtype: str | None = None
    tid: str | None = None
    version: str | None = None
    pdu_ct: str | None = None
    ct_params: dict[str, Any] = {}
    parts: list[Part] | None = None
    body: bytes | memoryview | None = None
    pos = 0
    table = _DECODE_TABLE
    find = buf.find
    while pos < end:
        field_start = pos
        b = buf[pos]
        if b >= 0x80:
            code = b & 0x7F
            pos += 1
            if pos >= end:
                raise DecodeError(field_start, f"field 0x{b:02X} has no value")
            v = buf[pos]
            spec = table.get(code)
            if spec is not None:
                name, kind, reader, tokens, always_list = spec
                if 0 < v <= 31 and code in _INDEXED_FIELDS and mtype in _INDEXED_TYPES:
                    value, pos = _read_indexed(code, buf, pos, end)
                elif kind == _K_TOKEN and v >= 0x80:
                    value = tokens.get(v, v)  # unknown tokens kept as numbers
                    pos += 1
                elif kind == _K_TEXT or (kind == _K_ENC and v >= 32):
                    nul = find(0, pos, end)
                    if nul < 0:
                        raise DecodeError(pos, f"{name}: unterminated text string")
                    raw = buf[pos + 1 : nul] if v == 0x7F else buf[pos:nul]
                    try:
                        value = raw.decode()
                    except UnicodeDecodeError:
                        value = raw.decode("latin-1")
                    pos = nul + 1
                elif kind == _K_LONG and v <= 30 and pos + 1 + v <= end:
                    value = int.from_bytes(buf[pos + 1 : pos + 1 + v], "big")
                    pos += 1 + v
                elif code == 0x09 and v == 1 and pos + 1 < end and buf[pos + 1] == 0x81:
                    value = None  # From: Insert-address-token
                    pos += 2
                else:
                    try:
                        value, pos = reader(buf, pos, end, tokens)
                    except DecodeError:
                        # A known field with a value we cannot read: keep it raw and go on
                        # (OMA conformance MMS-1.3-con-282); a bad length still fails.
                        value, pos = skip_value(buf, pos, end)
                if always_list:
                    existing = headers.get(name)
                    if existing is None:
                        headers[name] = [value]
                    else:
                        existing.append(value)
                elif name in headers:
                    _add(headers, name, value, False)
                else:
                    headers[name] = value
            elif code == 0x0C:
                entry = MESSAGE_TYPES.get(v)
                mtype = entry[0] if entry else f"{UNKNOWN_TYPE}0x{v:02x}"
                pos += 1
            elif code == 0x18:
                tid, pos = read_text(buf, pos, end)
            elif code == 0x0D:
                if v >= 0x80:
                    version = _VERSION_TEXTS[v]
                    pos += 1
                else:
                    version, pos = _r_version(buf, pos, end, None)
            elif code == 0x04:
                pdu_ct, ct_params, pos = read_content_type(buf, pos, end)
                if mtype is None or mtype in BODY_TYPES or mtype.startswith(UNKNOWN_TYPE):
                    if _is_multipart(pdu_ct):
                        parts = read_multipart(buf, pos, end, memoryview(buf))
                    else:
                        body = memoryview(buf)[pos:end]
                    break
            else:
                value, pos = skip_value(buf, pos, end)
                _add(headers, f"{UNKNOWN_FIELD}{code:02X}", value, False)
        elif b >= 32:
            # Application-header: Token-text name and a Text-string value.
            name, pos = read_text(buf, pos, end)
            if pos < end and buf[pos] >= 0x80:
                value = buf[pos] & 0x7F
                pos += 1
            elif pos < end:
                value, pos = read_text(buf, pos, end)
            else:
                value = ""
            _add(headers, name, value, False)
        else:
            raise DecodeError(field_start, f"octet 0x{b:02X} cannot start a header field")
    if mtype is None:
        raise DecodeError(0, "no X-Mms-Message-Type field")
    for key, value in headers.items():
        if type(value) is _Repeated:
            headers[key] = list(value)
    return MmsPdu(mtype, tid, version, headers, pdu_ct, ct_params, parts, body)


def _read_indexed(code: int, buf: bytes, pos: int, end: int) -> tuple[Any, int]:
    """OMA-MMS-ENC 1.3 §7.3.x: delete-conf values may carry the index they answer."""
    length, p = read_value_length(buf, pos, end)
    stop = p + length
    index, p = read_integer(buf, p, stop)
    value: Any
    if code == 0x03:
        value, _ = read_text(buf, p, stop)
    elif code == 0x12:
        value, _ = _r_token(buf, p, stop, FIELDS[0x12][3])
    else:
        value, _ = read_encoded_string(buf, p, stop)
    return {"index": index, "value": value}, stop


# ----------------------------------------------------------------------------- encoding

# OMA-MMS-ENC-1.3 §6-§7 mandatory fields beyond type/transaction id/version; for
# m-notification-ind the list is AOSP's checkMandatoryHeader (feature-matrix §4.2).
MANDATORY: dict[str, tuple[str, ...]] = {
    "m-send-req": ("From", CONTENT_TYPE),
    "m-send-conf": ("X-Mms-Response-Status",),
    "m-notification-ind": (
        "X-Mms-Message-Class",
        "X-Mms-Message-Size",
        "X-Mms-Expiry",
        "X-Mms-Content-Location",
    ),
    "m-notifyresp-ind": ("X-Mms-Status",),
    "m-retrieve-conf": ("Date", CONTENT_TYPE),
    "m-delivery-ind": ("Message-ID", "To", "Date", "X-Mms-Status"),
    "m-read-rec-ind": ("Message-ID", "To", "From", "X-Mms-Read-Status"),
    "m-read-orig-ind": ("Message-ID", "To", "From", "Date", "X-Mms-Read-Status"),
    "m-forward-req": ("From", "X-Mms-Content-Location"),
    "m-forward-conf": ("X-Mms-Response-Status",),
    "m-mbox-store-req": ("X-Mms-Content-Location",),
    "m-mbox-store-conf": ("X-Mms-Store-Status",),
    "m-mbox-view-conf": ("X-Mms-Response-Status",),
    "m-mbox-upload-req": (CONTENT_TYPE,),
    "m-mbox-upload-conf": ("X-Mms-Response-Status",),
    "m-mbox-delete-req": ("X-Mms-Content-Location",),
    "m-mbox-delete-conf": ("X-Mms-Response-Status",),
    "m-delete-req": ("X-Mms-Content-Location",),
    "m-delete-conf": ("X-Mms-Response-Status",),
    "m-cancel-req": ("X-Mms-Cancel-ID",),
    "m-cancel-conf": ("X-Mms-Cancel-Status",),
}
# Types without X-Mms-Transaction-ID (OMA-MMS-ENC-1.3 Tables 5-24).
NO_TRANSACTION_ID = frozenset(
    ("m-retrieve-conf", "m-delivery-ind", "m-read-rec-ind", "m-read-orig-ind", "m-mbox-descr")
)


def _w_token(out: bytearray, code: int, value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0x80 <= value <= 0xFF:
            raise EncodeError(f"{FIELDS[code][0]}: token 0x{value:X} out of range")
        out.append(value)
        return
    token = TOKEN_CODES[code].get(str(value).lower())
    if token is None:
        raise EncodeError(f"{FIELDS[code][0]}: unknown value {value!r}")
    out.append(token)


def _w_time(out: bytearray, value: Any) -> None:
    if not isinstance(value, dict) or len(value) != 1:
        raise EncodeError(f"time value must be {{'absolute': n}} or {{'relative': n}}: {value!r}")
    body = bytearray()
    if "absolute" in value:
        body.append(0x80)
        write_long_integer(body, int(value["absolute"]))
    elif "relative" in value:
        body.append(0x81)
        # Long-integer even for small deltas: AOSP's parser reads a Long-integer here.
        write_long_integer(body, int(value["relative"]))
    else:
        raise EncodeError(f"time value must be absolute or relative: {value!r}")
    write_value_length(out, len(body))
    out += body


def _w_from(out: bytearray, value: Any) -> None:
    if value is None:
        out += b"\x01\x81"  # Insert-address-token
        return
    body = bytearray(b"\x80")
    write_encoded_string(body, str(value), charset_of(value))
    write_value_length(out, len(body))
    out += body


def _w_prefixed(out: bytearray, body: bytearray) -> None:
    """A Value-length and the value: the shape of every structured field."""
    write_value_length(out, len(body))
    out += body


_STRING_KINDS = frozenset(("address", "encoded-string", "text"))


def _w_value(out: bytearray, code: int, kind: str, value: Any) -> None:
    if isinstance(value, Raw):
        write_value_length(out, len(value.data))
        out += value.data
        return
    if isinstance(value, dict) and "index" in value and code in _INDEXED_FIELDS:
        body = bytearray()
        write_integer(body, int(value["index"]))
        _w_value(body, code, FIELDS[code][1], value["value"])
        _w_prefixed(out, body)
        return
    if kind in _STRING_KINDS and not isinstance(value, str):
        raise EncodeError(f"{FIELDS[code][0]}: expected a string, got {value!r}")
    if kind in ("address", "encoded-string"):
        write_encoded_string(out, value, charset_of(value))
    elif kind == "text":
        write_text(out, value)
    elif kind == "long-integer":
        write_long_integer(out, int(value))
    elif kind == "integer":
        write_integer(out, int(value))
    elif kind == "token":
        _w_token(out, code, value)
    elif kind == "class":
        if isinstance(value, str) and value.lower() not in TOKEN_CODES[code]:
            write_text(out, value)
        else:
            _w_token(out, code, value)
    elif kind == "time":
        _w_time(out, value)
    elif kind == "from":
        _w_from(out, value)
    elif kind == "prev-sent-by":
        body = bytearray()
        write_integer(body, int(value["forward_count"]))
        write_encoded_string(body, str(value["address"]))
        _w_prefixed(out, body)
    elif kind == "prev-sent-date":
        body = bytearray()
        write_integer(body, int(value["forward_count"]))
        write_long_integer(body, int(value["date"]))
        _w_prefixed(out, body)
    elif kind == "mm-flags":
        ops = {v.lower(): k for k, v in MM_FLAGS_OPS.items()}
        op = ops.get(str(value.get("op", "")).lower())
        if op is None:
            raise EncodeError(f"MM-Flags op must be Add, Remove or Filter: {value!r}")
        body = bytearray((op,))
        write_encoded_string(body, str(value["value"]))
        _w_prefixed(out, body)
    elif kind == "mbox-total":
        if not isinstance(value, dict) or len(value) != 1:
            raise EncodeError(f"Mbox total must be {{'messages': n}} or {{'bytes': n}}: {value!r}")
        ((which, amount),) = value.items()
        token = {"messages": 0x80, "bytes": 0x81}.get(which)
        if token is None:
            raise EncodeError(f"Mbox total kind {which!r}")
        body = bytearray((token,))
        write_integer(body, int(amount))
        _w_prefixed(out, body)
    elif kind == "field-name":
        fcode = FIELD_CODES.get(str(value).lower())
        if fcode is None:
            raise EncodeError(f"X-Mms-Attributes: unknown field {value!r}")
        out.append(fcode | 0x80)
    elif kind == "element-descriptor":
        body = bytearray()
        write_text(body, str(value["reference"]))
        write_parameters(body, value.get("params") or {})
        _w_prefixed(out, body)
    elif kind == "generic":
        if isinstance(value, int):
            out.append(value | 0x80)
        else:
            write_text(out, str(value))
    else:  # pragma: no cover - the table lists every kind
        raise EncodeError(f"no writer for {kind}")


def encode(pdu: MmsPdu, *, version: str | None = None, check_mandatory: bool = True) -> bytes:
    """Encode ``pdu`` for ``version`` (default: the PDU's own), strictly ordered.

    Fields that the target version does not define are left out, so one stored
    message can be served to a 1.0 and a 1.3 handset alike. Raises
    :class:`EncodeError` (and nothing else) for a PDU that cannot be encoded.
    """
    try:
        return _encode(pdu, version, check_mandatory)
    except EncodeError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {pdu.message_type!r}: {exc}") from None


def _encode(pdu: MmsPdu, version: str | None, check_mandatory: bool) -> bytes:
    target_text = version or pdu.mms_version or DEFAULT_VERSION
    target = parse_version(target_text)
    if target not in SUPPORTED_VERSIONS:
        raise EncodeError(f"MMS version {target_text} is not one of 1.0-1.3")
    mcode = MESSAGE_TYPE_CODES.get(pdu.message_type)
    if mcode is None:
        if pdu.message_type.startswith(UNKNOWN_TYPE):
            mcode = int(pdu.message_type[len(UNKNOWN_TYPE) :], 16)
        else:
            raise EncodeError(f"unknown message type {pdu.message_type!r}")
    elif MESSAGE_TYPES[mcode][1] > target:
        raise EncodeError(f"{pdu.message_type} does not exist in MMS {target_text}")
    if check_mandatory:
        _check_mandatory(pdu)

    out = bytearray((0x8C, mcode))
    if pdu.transaction_id is not None:
        out.append(0x98)
        write_text(out, pdu.transaction_id)
    out.append(0x8D)
    out.append(0x80 | (target[0] << 4) | target[1])

    last: list[tuple[int, Any]] = []
    for name, value in pdu.headers.items():
        code = FIELD_CODES.get(name.lower())
        if code is None and name.startswith(UNKNOWN_FIELD):
            _write_unknown(out, int(name[len(UNKNOWN_FIELD) :], 16), value)
            continue
        if code is None:
            _write_application_header(out, name, value)
            continue
        if code in (0x0C, 0x18, 0x0D, 0x04):
            raise EncodeError(f"{name} is set through its own attribute, not headers")
        spec = FIELDS[code]
        if spec[2] > target:
            continue  # not defined in the target version: never emit it
        if code == 0x03 and pdu.message_type == "m-notification-ind":
            last.append((code, value))  # Content-Location last (feature-matrix §4.2)
            continue
        _write_field(out, code, value)
    for code, value in last:
        _write_field(out, code, value)

    if pdu.content_type is None:
        if pdu.parts is not None or pdu.body is not None:
            raise EncodeError("a body needs a content type")
        return bytes(out)
    out.append(0x84)
    write_content_type(out, pdu.content_type, pdu.content_type_params)
    if pdu.parts is not None:
        chunks: list[bytes | bytearray | memoryview] = [out]
        chunks.extend(multipart_chunks(pdu.parts))
        return b"".join(chunks)
    if pdu.body is not None:
        return b"".join((out, pdu.body))
    return bytes(out)


def _write_field(out: bytearray, code: int, value: Any) -> None:
    name, kind = FIELDS[code][0], FIELDS[code][1]
    for v in value if isinstance(value, list) else [value]:
        out.append(code | 0x80)
        try:
            _w_value(out, code, kind, v)
        except EncodeError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{name}: cannot encode {v!r} as {kind}: {exc}") from None


def _check_mandatory(pdu: MmsPdu) -> None:
    if pdu.transaction_id is None and pdu.message_type not in NO_TRANSACTION_ID:
        raise EncodeError(f"{pdu.message_type} needs X-Mms-Transaction-ID")
    names = {k.lower() for k in pdu.headers}
    for name in MANDATORY.get(pdu.message_type, ()):
        if name == CONTENT_TYPE:
            if pdu.content_type is None:
                raise EncodeError(f"{pdu.message_type} needs Content-Type")
        elif name.lower() not in names:
            raise EncodeError(f"{pdu.message_type} needs {name}")
    if pdu.message_type == "m-send-req" and not names & {"to", "cc", "bcc"}:
        raise EncodeError("m-send-req needs at least one of To, Cc, Bcc")


def _write_unknown(out: bytearray, code: int, value: Any) -> None:
    for v in value if isinstance(value, list) else [value]:
        out.append(code | 0x80)
        if isinstance(v, Raw):
            write_value_length(out, len(v.data))
            out += v.data
        elif isinstance(v, int):
            out.append(v | 0x80)
        else:
            write_text(out, str(v))


def _write_application_header(out: bytearray, name: str, value: Any) -> None:
    if not name or not name.isascii() or not name[0].isalpha():
        raise EncodeError(f"application header name {name!r} is not a token")
    for v in value if isinstance(value, list) else [value]:
        write_text(out, name)
        write_text(out, str(v))


def encode_notification(
    transaction_id: str,
    version: str,
    *,
    sender: str | None,
    subject: str | None,
    message_class: str,
    size: int,
    expiry_seconds: int,
    delivery_report: bool,
    content_location: str,
) -> bytes:
    """An m-notification-ind, byte for byte what :func:`encode` makes of the same fields
    (in this order: From, Subject, X-Mms-Message-Class, -Size, -Expiry relative,
    -Delivery-Report Yes when asked, Content-Location last), without its per-field
    dispatch: one is encoded for every notification sent, on the event loop, and the
    generic path cost about 20 µs of it (OMA-MMS-ENC-1.3 §6.2, Table 5).
    ``sender`` None leaves From out (sender visibility Hide)."""
    try:
        target = parse_version(version)
        if target not in SUPPORTED_VERSIONS:
            raise EncodeError(f"MMS version {version} is not one of 1.0-1.3")
        out = bytearray(b"\x8c\x82\x98")
        write_text(out, transaction_id)
        out.append(0x8D)
        out.append(0x80 | (target[0] << 4) | target[1])
        if sender is not None:
            out.append(0x89)
            _w_from(out, sender)
        if subject is not None:
            out.append(0x96)
            write_encoded_string(out, subject, charset_of(subject))
        out.append(0x8A)
        token = TOKEN_CODES[0x0A].get(message_class.lower())
        if token is None:
            write_text(out, message_class)
        else:
            out.append(token)
        out.append(0x8E)
        write_long_integer(out, size)
        out.append(0x88)
        _w_time(out, {"relative": expiry_seconds})
        if delivery_report:
            out += b"\x86\x80"
        out.append(0x83)
        write_text(out, content_location)
        return bytes(out)
    except EncodeError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise EncodeError(f"cannot encode m-notification-ind: {exc}") from None
