"""MM7 content and its pieces: MIME framing and Content-Type values (mm7_mime), the
conversion between MM7 content and MMS parts (mm7_content), and the XML Schema value
types (mm7_values)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmsc.mm7_convert import related_params
from mmsc.mm7_outbound import mime_content
from protocol import mm7
from protocol.errors import EncodeError
from protocol.mm7 import Content, Mm7DecodeError
from protocol.mm7_mime import (
    _split_params,
    format_content_type,
    parse_content_type,
    sniff_boundary,
    split_multipart,
)
from protocol.mm7_values import (
    format_datetime,
    format_duration,
    parse_bool,
    parse_datetime,
    parse_duration,
    parse_int,
    parse_relative,
)
from protocol.mms import MmsPdu
from protocol.wsp import Part

# ============================================================================= Content-Type


@pytest.mark.parametrize(
    ("value", "ctype", "params"),
    [
        ("text/xml", "text/xml", {}),
        ("Text/XML ; Charset=UTF-8", "text/xml", {"charset": "UTF-8"}),
        (
            'multipart/related; boundary="a;b"; type="text/xml"; start="<x>"',
            "multipart/related",
            {"boundary": "a;b", "type": "text/xml", "start": "<x>"},
        ),
        ('multipart/related; type="text/xml";', "multipart/related", {"type": "text/xml"}),
        ('a/b; x="q\\"uo\\\\te"', "a/b", {"x": 'q"uo\\te'}),
        ("a/b; name*=utf-8''Gr%C3%BC%C3%9Fe.txt", "a/b", {"name": "Grüße.txt"}),
        ("a/b; broken; =x; y=1; y=2", "a/b", {"y": "1"}),
        ("", "", {}),
        # RFC 2231 charsets that are codec names but no charsets (found by atheris):
        # read as UTF-8 rather than raising out of the decoder.
        ("a/b; n*=\x00''%41%ff", "a/b", {"n": "A\ufffd"}),
        ("a/b; n*=idna''%41%ff", "a/b", {"n": "A\ufffd"}),
        ("a/b; n*=punycode''%41%ff", "a/b", {"n": "A\ufffd"}),
        ("a/b; n*=undefined''%41", "a/b", {"n": "A"}),
        ("a/b; n*=no-such-charset''%41", "a/b", {"n": "A"}),
    ],
)
def test_parse_content_type(value: str, ctype: str, params: dict[str, str]) -> None:
    assert parse_content_type(value) == (ctype, params)


def test_format_content_type_quotes_what_is_not_a_token() -> None:
    value = format_content_type(
        "multipart/related", {"boundary": "b-1", "type": "text/xml", "start": "<s>"}
    )
    assert value == 'multipart/related; boundary=b-1; type="text/xml"; start="<s>"'
    assert parse_content_type(value)[1] == {"boundary": "b-1", "type": "text/xml", "start": "<s>"}
    with pytest.raises(EncodeError):
        format_content_type("a/b", {"x": "line\r\nbreak"})


# ============================================================================= multipart


def test_split_multipart_keeps_bodies_byte_exact() -> None:
    body = (
        b"preamble\r\n--b\r\nContent-Type: text/plain\r\nX-Folded: one\r\n two\r\n\r\n"
        b"line 1\r\n--b is not a delimiter\r\n\r\n--b \t\r\nContent-ID: <c>\r\n\r\n"
        b"\x00\xff--b\r\n--bb\r\n--b--\r\nepilogue"
    )
    parts = split_multipart(body, "b")
    assert len(parts) == 2
    assert parts[0].headers == {"content-type": "text/plain", "x-folded": "one two"}
    assert parts[0].body == b"line 1\r\n--b is not a delimiter\r\n"
    assert parts[1].content_id == "c"
    assert parts[1].body == b"\x00\xff--b\r\n--bb"


def test_sniff_boundary() -> None:
    assert sniff_boundary(b"\r\n--abc \r\nx") == "abc"
    assert sniff_boundary(b"<xml/>") is None
    assert sniff_boundary(b"--\r\n") is None


# ============================================================================= content, MMS parts


def test_content_from_parts_and_back() -> None:
    parts = [
        Part(
            "application/smil",
            {"charset": "utf-8", "name": "s.smil"},
            {"Content-ID": "<smil>", "Content-Location": "s.smil"},
            b"<smil/>",
        ),
        Part("image/jpeg", {}, {"Content-ID": "img", "Content-Location": "a.jpg"}, b"\xff\xd8"),
        Part("text/plain", {"charset": "UTF-8"}, {}, "Grüße\r\n--x".encode()),
    ]
    content = mm7.content_from_parts(
        "application/vnd.wap.multipart.related",
        {"start": "<smil>", "type": "application/smil"},
        parts,
        boundary="x-b",
        content_id="c",
    )
    assert content.content_type == "multipart/related"
    assert content.params == {"start": "<smil>", "type": "application/smil", "boundary": "x-b"}
    assert content.content_id == "c"
    back = mm7.content_parts(content)
    assert [(p.content_type, p.params, p.headers, p.payload()) for p in back] == [
        ("application/smil", {"charset": "utf-8", "name": "s.smil"},
         {"Content-ID": "<smil>", "Content-Location": "s.smil"}, b"<smil/>"),
        ("image/jpeg", {}, {"Content-ID": "<img>", "Content-Location": "a.jpg"}, b"\xff\xd8"),
        ("text/plain", {"charset": "utf-8"}, {}, "Grüße\r\n--x".encode()),
    ]  # fmt: skip
    with pytest.raises(EncodeError, match="boundary"):
        mm7.content_from_parts("multipart/mixed", {}, parts, boundary="x")  # "--x" in a part


def test_content_from_parts_draws_a_boundary_not_in_the_parts() -> None:
    content = mm7.content_from_parts("multipart/mixed", {}, [Part("text/plain", {}, {}, b"hi")])
    assert content.params["boundary"].startswith("mm7-")
    assert [p.payload() for p in mm7.content_parts(content)] == [b"hi"]


def test_single_entity_content() -> None:
    content = mm7.content_from_parts("image/gif", {}, [Part("image/gif", {}, {}, b"GIF89a")])
    assert content == Content("image/gif", {}, b"GIF89a")
    only = mm7.content_parts(Content("text/plain", {"charset": "utf-8"}, b"t", "c", "t.txt"))
    assert len(only) == 1
    assert only[0].headers == {"Content-ID": "<c>", "Content-Location": "t.txt"}
    assert only[0].params == {"charset": "utf-8"}
    with pytest.raises(EncodeError):
        mm7.content_from_parts("image/gif", {}, [])


def test_content_parts_decodes_transfer_encodings_and_flattens_nesting() -> None:
    body = (
        b"--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n"
        b"--i\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=C3=A9\r\n--i\r\nContent-Type: text/html\r\n\r\n<p>cafe</p>\r\n--i--\r\n"
        b"\r\n--o\r\nContent-Type: image/png; name=dot.png\r\n"
        b"Content-Transfer-Encoding: BASE64\r\n\r\n"
        + base64.encodebytes(b"\x89PNG" * 30)
        + b"\r\n--o\r\nContent-Type: audio/amr\r\n"
        b'Content-Disposition: attachment; filename="voice.amr"\r\n\r\n#!AMR\r\n--o--\r\n'
    )
    parts = mm7.content_parts(Content("multipart/mixed", {"boundary": "o"}, body))
    assert [p.content_type for p in parts] == ["text/plain", "text/html", "image/png", "audio/amr"]
    assert parts[0].payload() == "café".encode()
    assert parts[2].payload() == b"\x89PNG" * 30
    assert parts[2].headers == {"Content-Location": "dot.png"}  # from name=
    assert parts[3].headers == {"Content-Location": "voice.amr"}  # from filename=


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (Content("multipart/related", {}, b"no boundary anywhere"), "boundary"),
        (Content("multipart/related", {"boundary": "b"}, b"--b\r\n\r\nx"), "closing"),
        (
            Content(
                "multipart/mixed",
                {"boundary": "b"},
                b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\na\r\n--b--",
            ),
            "base64",
        ),
        (
            Content(
                "multipart/mixed",
                {"boundary": "b"},
                b"--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\na\r\n--b--",
            ),
            "Transfer-Encoding",
        ),
    ],
)
def test_broken_content_is_2007(content: Content, reason: str) -> None:
    with pytest.raises(Mm7DecodeError) as info:
        mm7.content_parts(content)
    assert info.value.status_code == 2007 and reason in info.value.reason


def test_mms_and_mime_multipart_names() -> None:
    assert mm7.mms_content_type("multipart/related") == "application/vnd.wap.multipart.related"
    assert mm7.mms_content_type("multipart/mixed") == "application/vnd.wap.multipart.mixed"
    assert mm7.mms_content_type("image/jpeg") == "image/jpeg"
    assert mm7.mime_content_type("application/vnd.wap.multipart.mixed") == "multipart/mixed"
    assert mm7.mime_content_type("text/plain") == "text/plain"


safe_bytes = st.binary(max_size=200).filter(lambda b: b"--" not in b)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["text/plain", "image/jpeg", "application/smil", "audio/amr"]),
            st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
            safe_bytes,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_content_round_trip_property(items: list[tuple[str, str, bytes]]) -> None:
    parts = [Part(t, {}, {"Content-ID": f"<{cid}>"}, data) for t, cid, data in items]
    content = mm7.content_from_parts("multipart/mixed", {}, parts)
    back = mm7.content_parts(content)
    assert [(p.content_type, p.content_id, p.payload()) for p in back] == [
        (t, f"<{cid}>", data) for t, cid, data in items
    ]


# ============================================================================= value types


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        (" TRUE ", True),
        ("1", True),
        ("false", False),
        ("False", False),
        ("0", False),
    ],
)
def test_parse_bool(text: str, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize("text", ["yes", "", "2", "t"])
def test_parse_bool_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bool(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2015-03-16T14:03:51.749Z", datetime(2015, 3, 16, 14, 3, 51, 749000, tzinfo=UTC)),
        ("2015-05-24T18:54:48+00:00", datetime(2015, 5, 24, 18, 54, 48, tzinfo=UTC)),
        ("2015-05-24T18:54:48", datetime(2015, 5, 24, 18, 54, 48, tzinfo=UTC)),
        ("2015-05-24 18:54", datetime(2015, 5, 24, 18, 54, tzinfo=UTC)),
        ("2015-05-24", datetime(2015, 5, 24, tzinfo=UTC)),
        (
            "1970-01-01T06:59:59+0800",
            datetime(1970, 1, 1, 6, 59, 59, tzinfo=timezone(timedelta(hours=8))),
        ),
        (
            "2024-01-01T00:00:00.123456789-05:30",
            datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
    ],
)
def test_parse_datetime(text: str, value: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == value and parsed.utcoffset() == value.utcoffset()


@pytest.mark.parametrize(
    "text", ["", "now", "2015-13-01T00:00:00Z", "2015-02-30", "2015-01-01T25:00", "0000-01-01"]
)
def test_parse_datetime_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_format_datetime() -> None:
    assert format_datetime(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05Z"
    assert format_datetime(datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05Z"  # naive: UTC
    ist = timezone(timedelta(hours=5, minutes=30))
    value = datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=ist)
    assert format_datetime(value) == "2024-01-02T03:04:05.12+05:30"
    assert format_datetime(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT30M", timedelta(minutes=30)),
        ("PT1.5S", timedelta(seconds=1, microseconds=500000)),
        ("P1Y2M3W4D", timedelta(days=365 + 60 + 21 + 4)),
        ("PT0S", timedelta(0)),
    ],
)
def test_durations(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["P", "PT", "P1DT", "-P1D", "1D", "P1H", "P999999999999Y"])
def test_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000)))
def test_duration_round_trip(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3, minutes=-30))]),
    )
)
def test_datetime_round_trip(value: datetime) -> None:
    assert parse_datetime(format_datetime(value)) == value


def test_relative_or_absolute() -> None:
    assert parse_relative("P2D") == timedelta(days=2)
    assert parse_relative("2024-01-01T00:00:00Z") == datetime(2024, 1, 1, tzinfo=UTC)


def test_parse_int() -> None:
    assert parse_int(" 1000 ") == 1000
    for bad in ("", "-1", "1e3", "١٢", "9" * 30):
        with pytest.raises(ValueError):
            parse_int(bad)


def _split_by_characters(value: str) -> list[str]:
    """The reference: a plain walk over the characters (quotes toggle, a backslash escapes
    the next character inside quotes, ";" outside quotes separates)."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            pieces.append("".join(current))
            current = []
            continue
        current.append(ch)
    pieces.append("".join(current))
    return pieces


@given(st.text(alphabet='ab;"\\= \n\r\t', max_size=40))
def test_parameter_split_matches_a_character_walk(value: str) -> None:
    assert _split_params(value) == _split_by_characters(value)


@pytest.mark.parametrize(
    "value",
    [
        'multipart/related; boundary="a;b"; type="text/xml"',
        'x; name="un\\"ter;minated',
        'x; a="\\',
        'x;;y; "q";',
        "",
    ],
)
def test_parameter_split_examples(value: str) -> None:
    assert _split_params(value) == _split_by_characters(value)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"start": "<smil>", "type": "application/smil"},
            {"start": "<smil>", "type": "application/smil"},
        ),
        (
            {"start": "smil", "type": "application/smil"},
            {"start": "<smil>", "type": "application/smil"},
        ),
        ({"start": "cid:smil"}, {"start": "<smil>", "type": "application/smil"}),
        ({"start": "<CID:smil>"}, {"type": "text/plain"}),  # names no part: the first is root
        ({"start": "<txt>"}, {"start": "<txt>", "type": "text/plain"}),
        ({}, {"type": "text/plain"}),
        # Sinch writes type="text/xml" with a SMIL root: the named root's type wins.
        (
            {"start": "<smil>", "type": "text/xml"},
            {"start": "<smil>", "type": "application/smil"},
        ),
        ({"start": "txt", "type": "application/smil"}, {"start": "<txt>", "type": "text/plain"}),
        # No root named: the VASP's type stays (the first part is the root, RFC 2387 §3.2).
        ({"type": "application/smil"}, {"type": "application/smil"}),
    ],
)
def test_related_params_match_the_content_ids(
    params: dict[str, str], expected: dict[str, str]
) -> None:
    """start is written as the Content-ID it names, byte for byte, as handsets compare
    them; type, required by RFC 2387 §3.1, is the root's type: that of the part start
    names, else the VASP's own, else the first part's."""
    parts = [
        Part("text/plain", {}, {"Content-ID": "<txt>"}, b"hi"),
        Part("application/smil", {}, {"Content-ID": "<smil>"}, b"<smil/>"),
    ]
    assert related_params(params, parts) == expected


def test_mime_content_of_an_mms_body() -> None:
    """The MMS body of an MO message as the MIME entity of a DeliverReq: a single entity
    stays that entity, multipart/alternative stays alternative, related keeps its root."""
    single = MmsPdu("m-send-req", "t", "1.2", {}, "text/plain", {"charset": "utf-8"}, None, b"STOP")
    content = mime_content(single)
    assert content is not None
    assert (content.content_type, content.params, content.body) == (
        "text/plain",
        {"charset": "utf-8"},
        b"STOP",
    )
    parts = [
        Part("text/plain", {"charset": "utf-8"}, {}, b"plain"),
        Part("text/html", {"charset": "utf-8"}, {}, b"<b>rich</b>"),
    ]
    alternative = MmsPdu(
        "m-send-req", "t", "1.2", {}, "application/vnd.wap.multipart.alternative", {}, parts
    )
    content = mime_content(alternative)
    assert content is not None and content.content_type == "multipart/alternative"
    assert [bytes(p.data) for p in mm7.content_parts(content)] == [b"plain", b"<b>rich</b>"]
    related = MmsPdu(
        "m-send-req",
        "t",
        "1.2",
        {},
        "application/vnd.wap.multipart.related",
        {"start": "<smil>", "type": "application/smil"},
        [Part("application/smil", {}, {"Content-ID": "<smil>"}, b"<smil/>")],
    )
    content = mime_content(related)
    assert content is not None and content.content_type == "multipart/related"
    assert (content.params["start"], content.params["type"]) == ("<smil>", "application/smil")
    assert mime_content(MmsPdu("m-send-req", "t", "1.2", {}, "text/plain", {}, None, None)) is None
