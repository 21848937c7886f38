"""WSP encoding primitives, content types, part headers and multipart (WAP-230-WSP §8.4-8.5).

Every reader takes ``(buf, pos, end)`` and returns ``(value, new_pos)``: plain
functions over an immutable ``bytes`` are the fastest thing CPython offers for
a per-message path (no object per field, no method lookups). Readers never
read past ``end`` and check every declared length against it, so a hostile
length can neither over-read nor allocate. Writers append to a ``bytearray``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.errors import DecodeError, EncodeError
from protocol.values import EncodedString, Raw
from protocol.wsp_tables import (
    CHARSET_CODES,
    CHARSETS,
    CONTENT_TYPE_CODES,
    CONTENT_TYPES,
    DISPOSITION_CODES,
    DISPOSITIONS,
    HEADER_CODES,
    HEADER_NAMES,
    PARAMETER_CODES,
    PARAMETERS,
)

MAX_UINTVAR_OCTETS = 5  # 32-bit values (WAP-230-WSP §8.1.2)
UNKNOWN_CONTENT_TYPE = "application/x-wsp-content-type-"  # + two hex digits


@dataclass(slots=True)
class Part:
    """One entry of a WSP multipart body. ``data`` may be a zero-copy memoryview."""

    content_type: str
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    data: bytes | memoryview = b""

    @property
    def content_id(self) -> str | None:
        return self.headers.get("Content-ID")

    @property
    def content_location(self) -> str | None:
        return self.headers.get("Content-Location")

    def payload(self) -> bytes:
        return bytes(self.data)


# ----------------------------------------------------------------------------- readers


def read_uintvar(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for _ in range(MAX_UINTVAR_OCTETS):
        if pos >= end:
            raise DecodeError(pos, "truncated uintvar")
        b = buf[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, pos
    raise DecodeError(pos, "uintvar longer than 5 octets")


def read_value_length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Value-length (§8.4.2.2); returns the length and the position of the value."""
    if pos >= end:
        raise DecodeError(pos, "truncated value-length")
    b = buf[pos]
    if b < 31:
        pos += 1
        length = b
    elif b == 31:
        length, pos = read_uintvar(buf, pos + 1, end)
    else:
        raise DecodeError(pos, f"expected a value-length, got 0x{b:02X}")
    if pos + length > end:
        raise DecodeError(pos, f"value length {length} exceeds the {end - pos} octets left")
    return length, pos


def read_text(buf: bytes, pos: int, end: int, _unused: Any = None) -> tuple[str, int]:
    """Text-string (§8.4.2.1): optional 0x7F quote, octets, NUL.

    Octets are nominally US-ASCII; handsets send UTF-8 or Latin-1, so UTF-8 is
    tried first and Latin-1 (which never fails) second.
    """
    nul = buf.find(0, pos, end)
    if nul < 0:
        raise DecodeError(pos, "unterminated text string")
    if buf[pos] == 0x7F:
        pos += 1
    raw = buf[pos:nul]
    try:
        return raw.decode(), nul + 1
    except UnicodeDecodeError:
        return raw.decode("latin-1"), nul + 1


def read_quoted_or_text(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    """Quoted-string (0x22 prefix) or plain Text-string, as Content-ID arrives in the wild."""
    if pos < end and buf[pos] == 0x22:
        pos += 1
    return read_text(buf, pos, end)


def read_long_integer(buf: bytes, pos: int, end: int, _unused: Any = None) -> tuple[int, int]:
    if pos >= end:
        raise DecodeError(pos, "truncated long-integer")
    n = buf[pos]
    if n > 30:
        raise DecodeError(pos, f"long-integer length 0x{n:02X} is not a short-length")
    pos += 1
    if pos + n > end:
        raise DecodeError(pos, "truncated long-integer")
    return int.from_bytes(buf[pos : pos + n], "big"), pos + n


def read_integer(buf: bytes, pos: int, end: int, _unused: Any = None) -> tuple[int, int]:
    """Integer-value: Short-integer or Long-integer (§8.4.2.3)."""
    if pos >= end:
        raise DecodeError(pos, "truncated integer")
    b = buf[pos]
    if b & 0x80:
        return b & 0x7F, pos + 1
    if b <= 30:
        return read_long_integer(buf, pos, end)
    raise DecodeError(pos, f"expected an integer, got 0x{b:02X}")


def read_encoded_string(buf: bytes, pos: int, end: int, _unused: Any = None) -> tuple[str, int]:
    """Encoded-string-value (§8.4.2.1 / OMA-MMS-ENC 7.2.9): text, or length+charset+text."""
    if pos >= end:
        raise DecodeError(pos, "truncated encoded string")
    if buf[pos] >= 32:
        return read_text(buf, pos, end)  # no charset: a plain str
    if buf[pos] == 0:  # an empty Text-string (real T-Mobile PL pushes send one)
        return "", pos + 1
    length, pos = read_value_length(buf, pos, end)
    stop = pos + length
    charset, p = read_charset(buf, pos, stop)
    if p < stop and buf[p] == 0x7F:
        p += 1
    raw = buf[p:stop]
    return EncodedString(decode_charset(raw, charset), charset), stop


def read_charset(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Well-known-charset; Any-charset (0x80) is 0. A textual name is tolerated."""
    if pos >= end:
        raise DecodeError(pos, "truncated charset")
    b = buf[pos]
    if b >= 32 and b < 0x80:
        name, pos = read_text(buf, pos, end)
        return CHARSET_CODES.get(name.strip().lower(), 106), pos
    return read_integer(buf, pos, end)


def decode_charset(raw: bytes, charset: int | None) -> str:
    """Decode the octets of a string in a MIBenum charset, dropping its terminator."""
    info = CHARSETS.get(charset) if charset is not None else None
    codec = info[1] if info else "utf-8"
    if codec.startswith(("utf-16", "utf-32")):
        unit = 2 if codec.startswith("utf-16") else 4
        while raw.endswith(b"\x00") and len(raw) % unit:
            raw = raw[:-1]
        if raw.endswith(b"\x00" * unit):
            raw = raw[:-unit]
    elif raw.endswith(b"\x00"):
        raw = raw[:-1]
    try:
        return raw.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


def skip_value(buf: bytes, pos: int, end: int) -> tuple[Raw | str | int, int]:
    """Read any value by WSP's generic rules (§8.4.1.2), for fields we do not know."""
    if pos >= end:
        raise DecodeError(pos, "truncated value")
    b = buf[pos]
    if b >= 0x80:
        return b & 0x7F, pos + 1
    if b >= 32:
        return read_text(buf, pos, end)
    if b == 0:  # an empty Text-string and a zero Short-length are the same octet
        return "", pos + 1
    length, p = read_value_length(buf, pos, end)
    return Raw(bytes(buf[p : p + length])), p + length


def content_type_name(code: int) -> str:
    return CONTENT_TYPES.get(code) or f"{UNKNOWN_CONTENT_TYPE}{code:02x}"


def read_content_type(buf: bytes, pos: int, end: int) -> tuple[str, dict[str, Any], int]:
    """Content-type-value (§8.4.2.24): constrained media or general form with parameters."""
    if pos >= end:
        raise DecodeError(pos, "truncated content type")
    b = buf[pos]
    if b >= 0x80:
        return content_type_name(b & 0x7F), {}, pos + 1
    if b >= 32:
        text, pos = read_text(buf, pos, end)
        return text.strip(), {}, pos
    length, p = read_value_length(buf, pos, end)
    stop = p + length
    if p >= stop:
        raise DecodeError(p, "empty content type")
    b = buf[p]
    if b >= 0x80:
        media, p = content_type_name(b & 0x7F), p + 1
    elif b <= 30:
        code, p = read_long_integer(buf, p, stop)
        media = content_type_name(code)
    else:
        media, p = read_text(buf, p, stop)
        media = media.strip()
    params = read_parameters(buf, p, stop) if p < stop else {}
    return media, params, stop


def _read_text_value(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    """Text-value: No-value | Token-text | Quoted-string."""
    if pos < end and buf[pos] == 0:
        return "", pos + 1
    return read_quoted_or_text(buf, pos, end)


def _read_typed_param(kind: str, buf: bytes, pos: int, end: int) -> tuple[Any, int]:
    if kind in ("text-string", "text-value"):
        return _read_text_value(buf, pos, end)
    if kind == "charset":
        code, pos = read_charset(buf, pos, end)
        info = CHARSETS.get(code)
        return (info[0] if info else code), pos
    if kind == "constrained-encoding":
        b = buf[pos] if pos < end else -1
        if b >= 0x80:
            return content_type_name(b & 0x7F), pos + 1
        return read_text(buf, pos, end)
    if kind in ("integer", "delta-seconds", "date"):
        return read_integer(buf, pos, end)
    if kind == "short-integer":
        if pos >= end or buf[pos] < 0x80:
            raise DecodeError(pos, "expected a short-integer parameter")
        return buf[pos] & 0x7F, pos + 1
    if kind == "no-value":
        if pos < end and buf[pos] == 0:
            pos += 1
        return "", pos
    if kind == "q-value":
        q, pos = read_uintvar(buf, pos, end)
        return (f"{(q - 1) / 100:.2f}" if q <= 100 else f"{(q - 100) / 1000:.3f}"), pos
    if kind == "version":
        b = buf[pos] if pos < end else -1
        if b >= 0x80:
            major, minor = (b >> 4) & 0x07, b & 0x0F
            return (f"{major}" if minor == 0x0F else f"{major}.{minor}"), pos + 1
        return read_text(buf, pos, end)
    if kind == "field-name":
        b = buf[pos] if pos < end else -1
        if b >= 0x80:
            return HEADER_NAMES.get(b & 0x7F, str(b & 0x7F)), pos + 1
        return read_text(buf, pos, end)
    return skip_value(buf, pos, end)  # pragma: no cover - every kind is listed


_K_TEXT, _K_CHARSET, _K_CTYPE, _K_OTHER = 0, 1, 2, 3
_PARAM_SPEC: dict[int, tuple[str, int, str]] = {
    code: (
        name,
        _K_TEXT
        if kind in ("text-string", "text-value")
        else _K_CHARSET
        if kind == "charset"
        else _K_CTYPE
        if kind == "constrained-encoding"
        else _K_OTHER,
        kind,
    )
    for code, (name, kind) in PARAMETERS.items()
}
_CHARSET_NAMES: dict[int, str] = {code: name for code, (name, _) in CHARSETS.items()}


def read_parameters(buf: bytes, pos: int, end: int) -> dict[str, Any]:
    """Parameters up to ``end``; names lower-case; unknown typed tokens kept by number.

    The common parameters (charset, name, type, start) are decoded inline: this
    loop runs for every part of every message.
    """
    params: dict[str, Any] = {}
    value: Any
    while pos < end:
        b = buf[pos]
        if b >= 0x80:
            code = b & 0x7F
            pos += 1
        elif b <= 30:
            code, pos = read_long_integer(buf, pos, end)
        else:
            name, pos = read_text(buf, pos, end)
            if pos >= end:
                params[name.lower()] = ""
                break
            v = buf[pos]
            if v >= 0x80 or v <= 30:
                value, pos = read_integer(buf, pos, end)
            else:
                value, pos = _read_text_value(buf, pos, end)
            params[name.lower()] = value
            continue
        spec = _PARAM_SPEC.get(code)
        if spec is None:
            value, pos = skip_value(buf, pos, end)
            params[f"x-wsp-param-{code:02x}"] = value
            continue
        name, kind, kind_name = spec
        if pos >= end:
            raise DecodeError(pos, f"parameter {name} has no value")
        v = buf[pos]
        if kind == _K_TEXT:
            if v == 0:
                value, pos = "", pos + 1
            else:
                if v == 0x22:
                    pos += 1
                value, pos = read_text(buf, pos, end)
        elif kind == _K_CHARSET:
            if v >= 0x80:
                cs, pos = v & 0x7F, pos + 1
            else:
                cs, pos = read_charset(buf, pos, end)
            value = _CHARSET_NAMES.get(cs, cs)
        elif kind == _K_CTYPE and v >= 0x80:
            value, pos = content_type_name(v & 0x7F), pos + 1
        else:
            value, pos = _read_typed_param(kind_name, buf, pos, end)
        params[name] = value
    return params


def _add_header(headers: dict[str, Any], name: str, value: Any) -> None:
    if name in headers:
        old = headers[name]
        if isinstance(old, list):
            old.append(value)
        else:
            headers[name] = [old, value]
    else:
        headers[name] = value


_TEXT_HEADERS = frozenset(
    (0x0A, 0x0E, 0x1C, 0x24, 0x26, 0x29, 0x30, 0x31, 0x0C, 0x0B, 0x13, 0x16, 0x35)
)
_CANONICAL_HEADER_NAMES: dict[str, str] = {name.lower(): name for name in HEADER_NAMES.values()}
_DATE_HEADERS = frozenset((0x12, 0x14, 0x17, 0x1B, 0x1D, 0x3F))


def read_part_headers(buf: bytes, pos: int, end: int) -> dict[str, Any]:
    """Headers of a multipart entry (§8.4.2.6): well-known fields and application headers."""
    headers: dict[str, Any] = {}
    value: Any
    while pos < end:
        b = buf[pos]
        if b >= 0x80:
            code = b & 0x7F
            pos += 1
            if code == 0x40:  # Content-ID: Quoted-string
                if pos < end and buf[pos] == 0x22:
                    pos += 1
                value, pos = read_text(buf, pos, end)
                name = "Content-ID"
            elif code in _TEXT_HEADERS:
                value, pos = read_text(buf, pos, end)
                name = HEADER_NAMES[code]
            else:
                name = HEADER_NAMES.get(code, f"x-wsp-header-{code:02x}")
                if code in (0x2E, 0x45):
                    value, pos = _read_disposition(buf, pos, end)
                elif code == 0x0D or code in _DATE_HEADERS:
                    value, pos = read_integer(buf, pos, end)
                elif code == 0x11:
                    ct, params, pos = read_content_type(buf, pos, end)
                    value = format_content_type(ct, params)
                else:
                    value, pos = skip_value(buf, pos, end)
        elif b >= 32:
            if b == 0x7F:  # page shift: the next octet names a code page we do not use
                pos += 2
                continue
            name, pos = read_text(buf, pos, end)
            # Header names are case-insensitive: a textual "content-id" is Content-ID.
            name = _CANONICAL_HEADER_NAMES.get(name.lower(), name)
            if pos < end and buf[pos] >= 0x80:
                value = buf[pos] & 0x7F
                pos += 1
            elif pos < end and buf[pos] < 32 and buf[pos] != 0:
                value, pos = skip_value(buf, pos, end)
            else:
                value, pos = read_quoted_or_text(buf, pos, end)
        elif b == 0:
            raise DecodeError(pos, "NUL where a header field name was expected")
        else:  # short-cut shift to another header code page
            pos += 1
            continue
        if name in headers:
            _add_header(headers, name, value)
        else:
            headers[name] = value
    return headers


def _read_disposition(buf: bytes, pos: int, end: int) -> tuple[dict[str, Any], int]:
    if pos >= end:
        raise DecodeError(pos, "truncated Content-Disposition")
    b = buf[pos]
    if b >= 0x80:  # lenient: a bare token without value-length
        return {"type": DISPOSITIONS.get(b, str(b & 0x7F)), "params": {}}, pos + 1
    if b >= 32:
        text, pos = read_text(buf, pos, end)
        return {"type": text, "params": {}}, pos
    length, p = read_value_length(buf, pos, end)
    stop = p + length
    if p >= stop:
        return {"type": "", "params": {}}, stop
    b = buf[p]
    if b >= 0x80:
        kind, p = DISPOSITIONS.get(b, str(b & 0x7F)), p + 1
    else:
        kind, p = read_text(buf, p, stop)
    return {"type": kind, "params": read_parameters(buf, p, stop)}, stop


def format_content_type(ct: str, params: dict[str, Any]) -> str:
    """RFC 2045 text form, for logs and for the rare Content-Type part header."""
    if not params:
        return ct
    return ct + "".join(f'; {k}="{v}"' for k, v in params.items())


def read_multipart(buf: bytes, pos: int, end: int, view: memoryview | None = None) -> list[Part]:
    """Multipart body (§8.5); part data are slices of ``view`` when given (zero copy)."""
    count, pos = read_uintvar(buf, pos, end)
    parts: list[Part] = []
    for _ in range(count):
        entry = pos
        if pos < end and buf[pos] < 0x80:
            hlen, pos = buf[pos], pos + 1  # one-octet uintvar: the common case, inline
        else:
            hlen, pos = read_uintvar(buf, pos, end)
        dlen, pos = read_uintvar(buf, pos, end)
        hend = pos + hlen
        dend = hend + dlen
        if dend > end:
            raise DecodeError(entry, f"multipart entry of {hlen}+{dlen} octets exceeds the body")
        b = buf[pos] if pos < hend else 0
        if b >= 0x80:
            ct, params, p = content_type_name(b & 0x7F), {}, pos + 1
        elif 0 < b < 31 and pos + 1 + b <= hend and buf[pos + 1] >= 0x80:
            # General form with a well-known media type, inline: the usual part header.
            p = pos + 1 + b
            ct = CONTENT_TYPES.get(buf[pos + 1] & 0x7F) or content_type_name(buf[pos + 1] & 0x7F)
            params = read_parameters(buf, pos + 2, p) if pos + 2 < p else {}
        else:
            ct, params, p = read_content_type(buf, pos, hend)
        headers = read_part_headers(buf, p, hend) if p < hend else {}
        data = view[hend:dend] if view is not None else buf[hend:dend]
        parts.append(Part(ct, params, headers, data))
        pos = dend
    return parts


# ----------------------------------------------------------------------------- writers


def write_uintvar(out: bytearray, value: int) -> None:
    if value < 0 or value >= 1 << 35:
        raise EncodeError(f"uintvar out of range: {value}")
    if value < 0x80:
        out.append(value)
        return
    groups = []
    while value:
        groups.append(value & 0x7F)
        value >>= 7
    for i in range(len(groups) - 1, 0, -1):
        out.append(groups[i] | 0x80)
    out.append(groups[0])


def write_value_length(out: bytearray, length: int) -> None:
    if length < 31:
        out.append(length)
    else:
        out.append(31)
        write_uintvar(out, length)


def _text_octets(text: str) -> bytes:
    raw = text.encode("utf-8")
    if b"\x00" in raw:
        raise EncodeError("text contains NUL")
    if raw and (raw[0] < 0x20 or raw[0] == 0x7F):
        # TEXT excludes control characters (WAP-230-WSP §8.4.2.1); a leading one
        # would be read back as a length or a quote.
        raise EncodeError(f"text starts with control character 0x{raw[0]:02X}")
    return raw


def write_text(out: bytearray, text: str) -> None:
    raw = _text_octets(text)
    if raw and raw[0] >= 0x80:
        out.append(0x7F)  # Quote: the first octet would otherwise read as a short-integer
    out += raw
    out.append(0)


def write_text_value(out: bytearray, text: str) -> None:
    """Text where decoders strip a leading quote: quote it when it starts with one."""
    if text.startswith('"'):
        write_quoted(out, text)
    else:
        write_text(out, text)


def write_quoted(out: bytearray, text: str) -> None:
    out.append(0x22)
    out += _text_octets(text)
    out.append(0)


def write_long_integer(out: bytearray, value: int) -> None:
    if value < 0:
        raise EncodeError(f"negative integer {value}")
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    if len(raw) > 30:
        raise EncodeError(f"integer too large: {value}")
    out.append(len(raw))
    out += raw


def write_integer(out: bytearray, value: int) -> None:
    if 0 <= value < 0x80:
        out.append(value | 0x80)
    else:
        write_long_integer(out, value)


def write_short_integer(out: bytearray, value: int) -> None:
    if not 0 <= value < 0x80:
        raise EncodeError(f"short-integer out of range: {value}")
    out.append(value | 0x80)


def charset_code(charset: int | str) -> int:
    if isinstance(charset, int):
        return charset
    code = CHARSET_CODES.get(charset.strip().lower())
    if code is None:
        raise EncodeError(f"unknown charset {charset!r}")
    return code


def charset_of(value: object) -> int | None:
    """The charset a decoded string remembers (a str subclass with ``charset``), if any.

    A plain str has none: asking getattr for it raises and catches AttributeError
    inside, which was most of the cost of encoding a short string."""
    if type(value) is str:
        return None
    charset: int | None = getattr(value, "charset", None)
    return charset


def write_encoded_string(out: bytearray, text: str, charset: int | None = None) -> None:
    """Plain Text-string for ASCII without a charset; otherwise length, charset and text.

    Non-ASCII text is always labelled (UTF-8 unless the value carries another
    charset that can represent it): unlabelled text is read as Latin-1 by some
    clients (feature-matrix §4.6).
    """
    if charset is None:
        charset = charset_of(text)
    if charset == 0:
        # Any-charset ("*") names no charset a reader can decode with: written as
        # plain text or UTF-8 like unlabelled text (feature-matrix §4.6).
        charset = None
    if charset is None and text.isascii():
        write_text(out, text)
        return
    code = 106
    codec = "utf-8"
    if charset is not None and charset in CHARSETS:
        code, codec = charset, CHARSETS[charset][1]
    try:
        raw = text.encode(codec)
    except UnicodeEncodeError:  # the remembered charset cannot carry the new text
        code, codec, raw = 106, "utf-8", text.encode("utf-8")
    if codec.startswith("utf-16"):
        term = b"\x00\x00"
    elif codec.startswith("utf-32"):
        term = b"\x00\x00\x00\x00"
    else:
        term = b"\x00"
        if b"\x00" in raw:
            raise EncodeError("text contains NUL")
    body = bytearray()
    write_integer(body, code)
    if raw and raw[0] >= 0x80 and term == b"\x00":
        body.append(0x7F)
    body += raw
    body += term
    write_value_length(out, len(body))
    out += body


def content_type_code(ct: str) -> int | None:
    code = CONTENT_TYPE_CODES.get(ct.lower())
    if code is None and ct.startswith(UNKNOWN_CONTENT_TYPE):
        try:
            code = int(ct[len(UNKNOWN_CONTENT_TYPE) :], 16)
        except ValueError:
            return None
    return code


def write_content_type(out: bytearray, ct: str, params: dict[str, Any] | None = None) -> None:
    """Well-known types as a short integer, others as text; general form when parameters."""
    code = content_type_code(ct)
    if not params:
        if code is not None and code < 0x80:
            out.append(code | 0x80)
            return
        if code is None:
            write_text(out, ct)
            return
        # A Long-integer media code only exists in the general form (§8.4.2.24).
    body = bytearray()
    if code is not None:
        write_integer(body, code)
    else:
        write_text(body, ct)
    write_parameters(body, params or {})
    write_value_length(out, len(body))
    out += body


def write_parameters(out: bytearray, params: dict[str, Any]) -> None:
    for name, value in params.items():
        key = name.lower()
        code = PARAMETER_CODES.get(key)
        if key == "charset":
            try:
                cs = charset_code(value)
            except EncodeError:
                write_text(out, key)
                write_text(out, str(value))
                continue
            out.append(0x81)
            if cs == 0:
                out.append(0x80)
            else:
                write_integer(out, cs)
        elif key == "type" and isinstance(value, str):
            out.append(0x89)
            tcode = content_type_code(value)
            if tcode is not None and tcode < 0x80:
                out.append(tcode | 0x80)
            else:
                write_text(out, value)
        elif code is not None and PARAMETERS[code][1] == "text-string":
            out.append(code | 0x80)
            write_text_value(out, str(value))
        elif code is not None and PARAMETERS[code][1] in ("integer", "delta-seconds", "date"):
            out.append(code | 0x80)
            write_integer(out, int(value))
        elif key.startswith("x-wsp-param-") and isinstance(value, Raw):
            write_integer(out, int(key[12:], 16))
            write_value_length(out, len(value.data))
            out += value.data
        else:
            write_text(out, key)
            if isinstance(value, int) and not isinstance(value, bool):
                write_integer(out, value)
            elif value == "":
                out.append(0)
            else:
                write_text(out, str(value))


def write_part_headers(out: bytearray, headers: dict[str, Any]) -> None:
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            _write_part_header(out, name, v)


def _write_part_header(out: bytearray, name: str, value: Any) -> None:
    code = HEADER_CODES.get(name.lower())
    if code == 0x40:
        out.append(0xC0)
        write_quoted(out, str(value))
    elif code is not None and code in _TEXT_HEADERS and isinstance(value, str):
        out.append(code | 0x80)
        write_text(out, value)
    elif code in (0x2E, 0x45) and isinstance(value, dict):
        body = bytearray()
        kind = str(value.get("type", "attachment"))
        if kind.lower() in DISPOSITION_CODES:
            body.append(DISPOSITION_CODES[kind.lower()])
        else:
            write_text(body, kind)
        write_parameters(body, value.get("params") or {})
        out.append(0xAE)
        write_value_length(out, len(body))
        out += body
    elif code is not None and (code == 0x0D or code in _DATE_HEADERS) and isinstance(value, int):
        out.append(code | 0x80)
        write_integer(out, value)
    elif name.startswith("x-wsp-header-") and isinstance(value, (Raw, int)):
        out.append(int(name[13:], 16) | 0x80)
        _write_raw_value(out, value)
    elif code is not None and isinstance(value, (Raw, int)):
        out.append(code | 0x80)
        _write_raw_value(out, value)
    else:
        # Application-header (§8.4.2.6): Token-text name, Application-specific-value.
        write_text(out, name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 0x80:
            out.append(value | 0x80)
        else:
            write_text_value(out, str(value))


def _write_raw_value(out: bytearray, value: Raw | int) -> None:
    if isinstance(value, Raw):
        write_value_length(out, len(value.data))
        out += value.data
    else:
        write_short_integer(out, value)


def encode_part_head(part: Part) -> bytes:
    """Content type and headers of one multipart entry (what HeadersLen counts)."""
    head = bytearray()
    write_content_type(head, part.content_type, part.params)
    write_part_headers(head, part.headers)
    return bytes(head)


def multipart_chunks(parts: list[Part]) -> list[bytes | memoryview]:
    """The multipart body as chunks, so the caller joins part data exactly once."""
    lead = bytearray()
    write_uintvar(lead, len(parts))
    chunks: list[bytes | memoryview] = [bytes(lead)]
    for part in parts:
        head = encode_part_head(part)
        lengths = bytearray()
        write_uintvar(lengths, len(head))
        write_uintvar(lengths, len(part.data))
        chunks.append(bytes(lengths))
        chunks.append(head)
        chunks.append(part.data)
    return chunks


def encode_multipart(parts: list[Part]) -> bytes:
    return b"".join(multipart_chunks(parts))


def decode_multipart(data: bytes) -> list[Part]:
    """Decode a standalone multipart body, e.g. a nested multipart part."""
    data = bytes(data)
    try:
        return read_multipart(data, 0, len(data), memoryview(data))
    except (IndexError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(0, f"malformed multipart: {exc}") from None
