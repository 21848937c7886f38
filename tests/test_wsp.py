"""WSP primitives against byte strings written by hand from WAP-230-WSP §8.4."""

from __future__ import annotations

import pytest

from protocol import wsp
from protocol.errors import DecodeError, EncodeError
from protocol.wsp_tables import CHARSETS, CONTENT_TYPES, PARAMETERS


def _w(fn, *args) -> bytes:
    out = bytearray()
    fn(out, *args)
    return bytes(out)


@pytest.mark.parametrize(
    ("value", "octets"),
    [
        (0, "00"),
        (0x7F, "7f"),
        (0x80, "8100"),
        (0x3FFF, "ff7f"),
        (0x4000, "818000"),
        (0xFFFFFFFF, "8fffffff7f"),
    ],
)
def test_uintvar(value: int, octets: str) -> None:
    raw = bytes.fromhex(octets)
    assert _w(wsp.write_uintvar, value) == raw
    assert wsp.read_uintvar(raw, 0, len(raw)) == (value, len(raw))


def test_uintvar_limits() -> None:
    with pytest.raises(DecodeError):
        wsp.read_uintvar(b"\x81\x81\x81\x81\x81\x01", 0, 6)  # 6 octets
    with pytest.raises(DecodeError):
        wsp.read_uintvar(b"\x81", 0, 1)  # continuation bit, then nothing


def test_value_length_short_and_long() -> None:
    assert _w(wsp.write_value_length, 30) == b"\x1e"
    assert _w(wsp.write_value_length, 31) == b"\x1f\x1f"
    assert _w(wsp.write_value_length, 200) == b"\x1f\x81\x48"
    buf = b"\x1f\x81\x48" + bytes(200)
    assert wsp.read_value_length(buf, 0, len(buf)) == (200, 3)
    with pytest.raises(DecodeError, match="exceeds"):
        wsp.read_value_length(b"\x05abc", 0, 4)
    with pytest.raises(DecodeError):
        wsp.read_value_length(b"\x20", 0, 1)


def test_integers() -> None:
    assert _w(wsp.write_integer, 5) == b"\x85"
    assert _w(wsp.write_integer, 0x80) == b"\x01\x80"
    assert _w(wsp.write_long_integer, 0x010203) == b"\x03\x01\x02\x03"
    assert wsp.read_integer(b"\x85", 0, 1) == (5, 1)
    assert wsp.read_integer(b"\x02\x01\x00", 0, 3) == (256, 3)
    with pytest.raises(DecodeError):
        wsp.read_long_integer(b"\x04\x01\x02", 0, 3)
    with pytest.raises(EncodeError):
        wsp.write_short_integer(bytearray(), 128)


def test_text_string_quote_and_terminator() -> None:
    assert _w(wsp.write_text, "abc") == b"abc\x00"
    assert _w(wsp.write_text, "é") == b"\x7f\xc3\xa9\x00"  # Quote before an octet >= 0x80
    assert wsp.read_text(b"\x7f\xc3\xa9\x00", 0, 4) == ("é", 4)
    assert wsp.read_text(b"caf\xe9\x00", 0, 5) == ("café", 5)  # Latin-1 fallback
    with pytest.raises(DecodeError, match="unterminated"):
        wsp.read_text(b"abc", 0, 3)
    with pytest.raises(EncodeError):
        wsp.write_text(bytearray(), "\x01control")


ENCODINGS = [
    ("utf-8", "Grüße 😀"),
    ("us-ascii", "plain"),
    *[(f"iso-8859-{n}", "Ab") for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15)],
    ("iso-8859-1", "café"),
    ("iso-8859-5", "Привет"),
    ("iso-10646-ucs-2", "Γειά"),
    ("utf-16", "日本語"),
    ("shift_jis", "日本語"),
    ("euc-kr", "한국어"),
    ("big5", "中文"),
    ("gb2312", "中文"),
]


@pytest.mark.parametrize(("charset", "text"), ENCODINGS)
def test_encoded_string_in_every_charset(charset: str, text: str) -> None:
    code = wsp.charset_code(charset)
    raw = _w(wsp.write_encoded_string, text, code)
    value, pos = wsp.read_encoded_string(raw, 0, len(raw))
    assert pos == len(raw)
    assert value == text
    assert getattr(value, "charset", None) == code


def test_encoded_string_forms() -> None:
    assert _w(wsp.write_encoded_string, "hello") == b"hello\x00"
    # Non-ASCII without a charset is labelled UTF-8 (MIBenum 106 = 0xEA), quoted.
    assert _w(wsp.write_encoded_string, "ü") == b"\x05\xea\x7f\xc3\xbc\x00"
    # Any-charset (0x80) and a textual upper-case charset name are both accepted.
    assert wsp.read_encoded_string(b"\x04\x80abc\x00", 0, 6)[0] == "abc"
    assert wsp.read_encoded_string(b"\x0aUTF-8\x00\xc3\xbc\x00", 0, 11)[0] == "ü"
    assert wsp.read_encoded_string(b"\x00", 0, 1) == ("", 1)
    # What came in as Any-charset goes out plain (ASCII) or as UTF-8, never as "*".
    ascii_any = wsp.read_encoded_string(b"\x04\x80abc\x00", 0, 6)[0]
    assert _w(wsp.write_encoded_string, ascii_any) == b"abc\x00"
    utf8_any = wsp.read_encoded_string(b"\x05\x80\xc3\xbc\x00", 0, 6)[0]
    assert utf8_any == "ü" and _w(wsp.write_encoded_string, utf8_any) == b"\x05\xea\x7f\xc3\xbc\x00"


def test_content_type_forms() -> None:
    assert _w(wsp.write_content_type, "image/jpeg") == b"\x9e"
    assert _w(wsp.write_content_type, "audio/amr") == b"audio/amr\x00"
    raw = _w(
        wsp.write_content_type,
        "application/vnd.wap.multipart.related",
        {"type": "application/smil", "start": "<smil>"},
    )
    assert raw == b"\x1b\xb3\x89application/smil\x00\x8a<smil>\x00"
    ct, params, pos = wsp.read_content_type(raw, 0, len(raw))
    assert (ct, params, pos) == (
        "application/vnd.wap.multipart.related",
        {"type": "application/smil", "start": "<smil>"},
        len(raw),
    )
    # type= as a well-known short integer (0x89 0xB3 style) decodes to the name.
    raw = bytes([3, 0xB3, 0x89, 0xA3])
    assert wsp.read_content_type(raw, 0, 4)[1] == {"type": "application/vnd.wap.multipart.mixed"}
    # Charset by MIBenum, charset "*" and an untyped parameter.
    raw = b"\x0a\x83\x81\xea\x85a.txt\x00"
    assert wsp.read_content_type(raw, 0, len(raw))[:2] == (
        "text/plain",
        {"charset": "utf-8", "name": "a.txt"},
    )
    raw = b"\x03\x83\x81\x80"
    assert wsp.read_content_type(raw, 0, 4)[1] == {"charset": "*"}
    raw = b"\x0f\x83format\x00flowed\x00"
    assert wsp.read_content_type(raw, 0, len(raw))[1] == {"format": "flowed"}


def test_start_parameter_with_and_without_brackets() -> None:
    for start in ("<smil>", "smil"):
        raw = _w(wsp.write_content_type, "application/vnd.wap.multipart.related", {"start": start})
        assert wsp.read_content_type(raw, 0, len(raw))[1]["start"] == start
    # the WSP 1.4 Start (0x19) as a quoted Text-value
    raw = b'\x0a\xb3\x99"<smil>\x00'
    assert wsp.read_content_type(raw, 0, len(raw))[1] == {"start": "<smil>"}


def test_tables_are_complete() -> None:
    assert len(CONTENT_TYPES) == 0x55 and min(CONTENT_TYPES) == 0 and max(CONTENT_TYPES) == 0x54
    assert {PARAMETERS[c][0] for c in PARAMETERS} >= {
        "q",
        "charset",
        "level",
        "type",
        "name",
        "filename",
        "start",
        "start-info",
        "comment",
        "domain",
        "max-age",
        "path",
        "secure",
        "sec",
        "mac",
        "creation-date",
        "modification-date",
        "read-date",
        "size",
    }
    for code in (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 38, 106, 111, 1000, 1015, 2025, 2026):
        assert code in CHARSETS
    for code, name in CONTENT_TYPES.items():
        assert wsp.content_type_code(name) == code


def test_part_headers() -> None:
    part = wsp.Part(
        "image/jpeg",
        {"name": "a.jpg"},
        {
            "Content-ID": "<a>",
            "Content-Location": "a.jpg",
            "Content-Disposition": {"type": "attachment", "params": {"filename": "a.jpg"}},
            "X-Custom": '"quoted',
        },
        b"\xff\xd8",
    )
    raw = wsp.encode_multipart([part])
    (back,) = wsp.decode_multipart(raw)
    assert back.headers == part.headers
    assert back.params == part.params
    assert bytes(back.data) == b"\xff\xd8"
    assert b'\xc0"<a>\x00' in raw  # Content-ID as a Quoted-string (0x40 | 0x80)
    assert b"\x8ea.jpg\x00" in raw  # Content-Location 0x0E


def test_quoted_and_textual_content_id() -> None:
    # Quoted-string Content-ID, and a textual "content-id" application header.
    head = b"\x9e" + b'\xc0"<img>\x00'
    raw = b"\x01" + bytes([len(head), 1]) + head + b"X"
    (part,) = wsp.decode_multipart(raw)
    assert part.content_id == "<img>"
    head = b"\x83" + b"content-id\x00<t1>\x00"
    raw = b"\x01" + bytes([len(head), 1]) + head + b"X"
    (part,) = wsp.decode_multipart(raw)
    assert part.headers == {"Content-ID": "<t1>"}


def test_multipart_lengths_are_checked() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        wsp.decode_multipart(b"\x01\x01\x7f\x83")
    with pytest.raises(DecodeError):
        wsp.decode_multipart(b"\x8f\xff\xff\xff\x7f")  # 2^32-1 entries, no data
