"""MIME for MM7: Content-Type values, multipart bodies (RFC 2045/2046, RFC 2387) and
transfer encodings, on bytes, without the ``email`` package.

MM7 carries SOAP with attachments (TS 23.140 §8.7, "SOAP Messages with
Attachments"): a multipart/related HTTP body whose root part is the envelope and
whose other part is the message content, often itself a multipart/related with SMIL.
The content must reach the store byte for byte, so a multipart is split by finding
its delimiters and each part's body is a slice of the input: nothing is re-serialized.

Lenient where the field is sloppy: LF as well as CRLF line ends, header lines
folded or not, a header block that ends at a line without a colon (a documentation
sample shows it), quoted or bare parameter values, ``name*=charset''value``
(RFC 2231). Strict where silence would lose data: a multipart without its closing
delimiter, or a part count or nesting beyond our limits, is a ``Mm7DecodeError`` (2007).
"""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

from protocol.errors import EncodeError
from protocol.mm7_errors import Mm7DecodeError
from protocol.mm7_tables import MESSAGE_FORMAT_CORRUPT

MAX_PARTS: Final = 1000  # per multipart: an MMS has a handful, an MM7 message two
MAX_HEADER_BYTES: Final = 16 * 1024  # one part's header block
MAX_BOUNDARY: Final = 200  # RFC 2046 §5.1.1 allows 70; peers exceed it a little

_TOKEN: Final = re.compile(r"^[!#$%&'*+\-.0-9A-Z^_`a-z|~]+$")
_BOUNDARY_OK: Final = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]$")


@dataclass(slots=True)
class MimePart:
    """One body part: header names lower-cased (first occurrence kept), body as sent."""

    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    offset: int = 0  # where the part starts in the multipart body

    def content_type(self, default: str = "text/plain") -> tuple[str, dict[str, str]]:
        value = self.headers.get("content-type")
        if value is None:
            return default, {}  # RFC 2045 §5.2
        ctype, params = parse_content_type(value)
        return ctype or default, params

    @property
    def content_id(self) -> str | None:
        value = self.headers.get("content-id")
        return normalize_cid(value) if value is not None else None

    @property
    def content_location(self) -> str | None:
        value = self.headers.get("content-location")
        return value.strip() if value is not None else None


def normalize_cid(value: str) -> str:
    """A Content-ID or ``start`` value without blanks and angle brackets."""
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value


# ----------------------------------------------------------------------------- Content-Type


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` in lower case and the parameters (names lower-cased).

    Never fails: a malformed parameter is skipped, as every MIME reader does.
    """
    pieces = _split_params(value)
    ctype = pieces[0].strip().lower() if pieces else ""
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, sep, raw = piece.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            continue
        raw = raw.strip()
        text = _unquote(raw) if raw.startswith('"') else raw
        if name.endswith("*"):  # RFC 2231: charset'language'percent-encoded
            name = name[:-1]
            charset, _, rest = text.partition("'")
            _, _, encoded = rest.partition("'")
            try:
                text = unquote(encoded, encoding=charset or "utf-8", errors="replace")
            except (LookupError, ValueError):
                # An unknown name, or a codec that is no charset: one with a NUL in its
                # name, one that refuses errors="replace" (idna), or fails on any byte
                # above 127 whatever it is told (punycode). Read it as UTF-8 instead.
                text = unquote(encoded, errors="replace")
        params.setdefault(name, text)
    return ctype, params


# A quoted string (backslash escapes inside; an unterminated one runs to the end) or a
# parameter separator: scanning for these skips the ";" inside quotes.
_QUOTED_OR_SEMICOLON: Final = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|;', re.S)


def _split_params(value: str) -> list[str]:
    """``value`` cut at each ";" outside double quotes (the pieces keep their quotes).

    Regular expressions, not a loop over characters: every MM7 request has several
    Content-Type headers and this was the MIME reader's largest cost."""
    if '"' not in value:
        return value.split(";")
    pieces: list[str] = []
    start = 0
    for match in _QUOTED_OR_SEMICOLON.finditer(value):
        if match.group() == ";":
            pieces.append(value[start : match.start()])
            start = match.end()
    pieces.append(value[start:])
    return pieces


def _unquote(raw: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in raw[1:]:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            break
        else:
            out.append(ch)
    return "".join(out)


def format_content_type(ctype: str, params: dict[str, str]) -> str:
    """``type/subtype; name="value"``: values quoted unless they are plain tokens."""
    out = [ctype]
    for name, value in params.items():
        if not _TOKEN.match(name):
            raise EncodeError(f"bad MIME parameter name {name!r}")
        out.append(f"{name}={quote_param(value)}")
    return "; ".join(out)


def quote_param(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise EncodeError(f"line break in a MIME parameter value {value!r}")
    if _TOKEN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_header_value(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise EncodeError(f"line break in a MIME header value {value!r}")
    return value


# ----------------------------------------------------------------------------- multipart


def sniff_boundary(body: bytes) -> str | None:
    """The boundary of a multipart body that came without one: its first ``--line``."""
    start = body.lstrip(b" \t\r\n")
    if not start.startswith(b"--"):
        return None
    line = start[2:].split(b"\n", 1)[0].rstrip(b" \t\r")
    if not line or len(line) > MAX_BOUNDARY:
        return None
    return line.decode("latin-1")


def split_multipart(body: bytes, boundary: str) -> list[MimePart]:
    """The parts of a multipart body (RFC 2046 §5.1.1); preamble and epilogue dropped."""
    if not boundary or len(boundary) > MAX_BOUNDARY or any(c in boundary for c in "\r\n"):
        raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"bad multipart boundary {boundary!r}")
    dash = b"--" + boundary.encode("latin-1", "replace")
    pos = _find_delimiter(body, dash, 0, first=True)
    if pos < 0:
        raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, "multipart body without its boundary")
    parts: list[MimePart] = []
    while True:
        after = pos + len(dash)
        if body.startswith(b"--", after):  # close delimiter
            if not parts:
                raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, "multipart body without parts")
            return parts
        start = _line_end(body, after)
        if start < 0:
            raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, "multipart body ends after a boundary")
        nxt = _find_delimiter(body, dash, start, first=False)
        if nxt < 0:
            raise Mm7DecodeError(
                MESSAGE_FORMAT_CORRUPT, "multipart body without its closing boundary", offset=start
            )
        end = nxt
        if end > start and body[end - 1 : end] == b"\n":  # the line break belongs to
            end -= 1  # the delimiter (RFC 2046 §5.1.1)
            if end > start and body[end - 1 : end] == b"\r":
                end -= 1
        if len(parts) >= MAX_PARTS:
            raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"more than {MAX_PARTS} MIME parts")
        parts.append(_read_part(body, start, max(start, end)))
        pos = nxt


_LEADING_BLANKS: Final = re.compile(rb"[ \t\n\r\x0b\x0c]*")  # what bytes.strip() strips


def _find_delimiter(body: bytes, dash: bytes, start: int, *, first: bool) -> int:
    """Next ``--boundary`` at the start of a line and followed by ``--``, blanks or EOL.

    Linear in the body (which may be 10 MB): a candidate that does not start a line
    jumps to the next line that starts with ``dash``, and the blanks allowed before the
    first delimiter are measured once. Slicing the body up to each candidate, or
    stepping one byte at a time through a line of dashes, was quadratic (found by
    fuzzing: a megabyte of dashes took 11 s)."""
    pos = start
    lead = _LEADING_BLANKS.match(body, start) if first else None  # always matches
    blanks = lead.end() if lead is not None else -1
    line_dash = b"\n" + dash
    while True:
        pos = body.find(dash, pos)
        if pos < 0:
            return -1
        if pos != 0 and pos > blanks and body[pos - 1] != 10:  # 10: "\n"
            pos = body.find(line_dash, pos)
            if pos < 0:
                return -1
            pos += 1
        after = pos + len(dash)
        if body.startswith(b"--", after) or _line_end(body, after) >= 0:
            return pos
        if after == len(body):
            return pos  # a delimiter cut off at the very end: reported by the caller
        pos += 1


def _line_end(body: bytes, pos: int) -> int:
    """Position after the line break that ends the delimiter line (transport padding ok)."""
    nl = body.find(b"\n", pos)
    if nl < 0:
        return -1
    if body[pos:nl].strip(b" \t\r"):
        return -1
    return nl + 1


def _read_part(body: bytes, start: int, end: int) -> MimePart:
    headers: dict[str, str] = {}
    pos = start
    last: str | None = None
    while pos < end:
        nl = body.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl
        line = body[pos:line_end].rstrip(b"\r")
        nxt = end if nl < 0 else nl + 1
        if not line:  # the blank line between headers and body
            pos = nxt
            break
        if pos - start > MAX_HEADER_BYTES:
            raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, "MIME part header too long", offset=pos)
        text = _header_text(line)
        if text[:1] in (" ", "\t"):  # a folded line continues the header before it
            if last is not None:
                headers[last] += " " + text.strip()
        elif ":" in text:
            name, _, value = text.partition(":")
            last = name.strip().lower()
            if last in headers:
                last = None  # a repeated header: the first one counts
            else:
                headers[last] = value.strip()
        else:
            break  # not a header line: the body starts here (no blank line was sent)
        pos = nxt
    return MimePart(headers, body[pos:end], start)


def _header_text(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def new_boundary() -> str:
    return "mm7-" + secrets.token_hex(12)


def build_multipart(parts: list[tuple[list[tuple[str, str]], bytes]], boundary: str) -> bytes:
    """A multipart body of ``(headers, body)`` parts, CRLF line ends."""
    if not _BOUNDARY_OK.match(boundary) or len(boundary) > 70:
        raise EncodeError(f"bad multipart boundary {boundary!r}")
    dash = b"--" + boundary.encode("ascii")
    out = bytearray()
    for headers, data in parts:
        if dash in data:
            raise EncodeError(f"boundary {boundary!r} occurs in a part body")
        out += dash + b"\r\n"
        for name, value in headers:
            out += f"{name}: {check_header_value(value)}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += dash + b"--\r\n"
    return bytes(out)


# ----------------------------------------------------------------------------- transfer encoding


def decode_transfer(data: bytes, encoding: str | None) -> bytes:
    """Undo Content-Transfer-Encoding (RFC 2045 §6): base64, quoted-printable, identity."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "7bit", "8bit", "binary"):
        return data
    if enc == "base64":
        cleaned = bytes(b for b in data if b not in b" \t\r\n")
        cleaned = cleaned.rstrip(b"=")
        cleaned += b"=" * (-len(cleaned) % 4)
        try:
            return binascii.a2b_base64(cleaned, strict_mode=False)
        except (binascii.Error, ValueError) as exc:
            raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"bad base64 body: {exc}") from None
    if enc == "quoted-printable":
        try:
            return binascii.a2b_qp(data)
        except (binascii.Error, ValueError) as exc:
            raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"bad quoted-printable: {exc}") from None
    raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"unknown Content-Transfer-Encoding {enc!r}")
