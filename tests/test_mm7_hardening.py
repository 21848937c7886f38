"""MM7 decoding is hardened (DESIGN.md §4): hostile XML and MIME are refused quickly with
Mm7DecodeError, and no input makes decode raise anything else (hypothesis fuzzing)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import mm7, mm7_xml
from protocol.mm7 import Mm7DecodeError
from tests.growth import LINEAR_BOUND, growth
from tests.test_mm7_protocol import (
    MM7_CORPUS,
    NS6,
    OPERATION_NAMES,
    envelope,
    full_operation,
    manifest,
    read_sample,
    submit,
)

SCALE = float(os.environ.get("MMSC_HYPOTHESIS_SCALE", "1"))
FAST = 0.5  # seconds: a refusal must not cost a worker more than this


def examples(n: int) -> int:
    return max(5, int(n * SCALE))


def refused_quickly(call: Callable[[], object]) -> Mm7DecodeError:
    start = time.perf_counter()
    with pytest.raises(Mm7DecodeError) as info:
        call()
    elapsed = time.perf_counter() - start
    assert elapsed < FAST, f"refusal took {elapsed:.3f} s"
    return info.value


def billion_laughs(levels: int = 10) -> bytes:
    entities = ['<!ENTITY lol0 "lol">']
    for i in range(1, levels):
        refs = "".join(f"&lol{i - 1};" for _ in range(10))
        entities.append(f'<!ENTITY lol{i} "{refs}">')
    doctype = "<!DOCTYPE env:Envelope [" + "".join(entities) + "]>"
    body = submit(f"<Subject>&lol{levels - 1};</Subject>")
    return envelope(body).replace(b"?>", b"?>" + doctype.encode(), 1)


def with_doctype(doctype: str, inner: str) -> bytes:
    return envelope(submit(inner)).replace(b"?>", b"?>" + doctype.encode(), 1)


HOSTILE: dict[str, bytes] = {
    "billion-laughs": billion_laughs(),
    "quadratic-blowup": with_doctype(
        '<!DOCTYPE e [<!ENTITY a "' + "x" * 50_000 + '">]>',
        "<Subject>" + "&a;" * 2000 + "</Subject>",
    ),
    "external-file": with_doctype(
        '<!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', "<Subject>&xxe;</Subject>"
    ),
    "external-http": with_doctype(
        '<!DOCTYPE e [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">]>', "<Subject>&xxe;</Subject>"
    ),
    "parameter-entity": with_doctype(
        '<!DOCTYPE e [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>', ""
    ),
    "external-dtd": with_doctype('<!DOCTYPE e SYSTEM "http://127.0.0.1:9/e.dtd">', ""),
    "utf16-billion-laughs": billion_laughs()
    .decode()
    .replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    .encode("utf-16"),
    "utf16-no-bom-xxe": with_doctype(
        '<!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', "<Subject>&xxe;</Subject>"
    )
    .decode()
    .replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16LE"?>')
    .encode("utf-16-le"),
}


def utf7(body: bytes) -> bytes:
    """The document in UTF-7, with "<" and "!" spelled as base64 runs."""
    head, _, rest = body.decode().partition("?>")
    head = head.replace('version="1.0"', 'version="1.0" encoding="UTF-7"')
    return (head + "?>").encode() + rest.replace("<", "+ADw-").replace("!", "+ACE-").encode()


HOSTILE["utf7-billion-laughs"] = utf7(billion_laughs())
HOSTILE["utf7-xxe"] = utf7(HOSTILE["external-file"])


@pytest.mark.parametrize("name", list(HOSTILE))
def test_dtds_and_entities_are_refused_quickly(name: str) -> None:
    body = HOSTILE[name]
    err = refused_quickly(lambda: mm7.decode(body, "text/xml"))
    assert err.status_code == 2007
    assert "DOCTYPE" in err.reason or "ENTITY" in err.reason or "UTF-7" in err.reason
    # the same inside a multipart
    wrapped = b"--b\r\nContent-Type: text/xml\r\n\r\n" + body + b"\r\n--b--\r\n"
    assert refused_quickly(lambda: mm7.decode(wrapped, "multipart/related")).status_code == 2007


@pytest.mark.parametrize(
    "name", ["external-file", "billion-laughs", "parameter-entity", "utf7-billion-laughs"]
)
def test_the_parser_itself_neither_expands_nor_fetches(name: str) -> None:
    """Below the DOCTYPE refusal, lxml runs without entity resolution and network: even a
    document that got past the first check is refused and expands nothing."""
    err = refused_quickly(lambda: mm7_xml._parse_checked(HOSTILE[name]))
    assert err.status_code == 2007
    assert "root:" not in err.reason  # nothing of /etc/passwd


def test_documents_that_do_not_start_with_markup_are_refused() -> None:
    ebcdic = envelope(submit()).decode().encode("cp037")  # libxml2 would read EBCDIC
    err = refused_quickly(lambda: mm7.decode(ebcdic, "text/xml"))
    assert err.status_code == 2007 and "not an XML document" in err.reason


@pytest.mark.parametrize("depth", [mm7_xml.MAX_DEPTH + 1, 300, 100_000])
def test_deep_nesting_is_refused(depth: int) -> None:
    body = envelope(submit("<Subject>" + "<a>" * depth + "</a>" * depth + "</Subject>"))
    err = refused_quickly(lambda: mm7.decode(body, "text/xml"))
    assert err.status_code == 2007
    assert "deeper" in err.reason or "not well-formed" in err.reason


def test_depth_within_the_limit_is_read() -> None:
    depth = mm7_xml.MAX_DEPTH - 6  # Envelope/Body/SubmitReq/Subject hold the rest
    body = envelope(submit("<Subject>" + "<a>" * depth + "x" + "</a>" * depth + "</Subject>"))
    op = mm7.decode(body, "text/xml")
    assert isinstance(op, mm7.SubmitReq) and op.subject == "x"


def test_too_many_elements_are_refused() -> None:
    body = envelope(submit("<Extra>" + "<a/>" * (mm7_xml.MAX_ELEMENTS + 1) + "</Extra>"))
    err = refused_quickly(lambda: mm7.decode(body, "text/xml"))
    assert err.status_code == 2007 and "elements" in err.reason


def test_the_parser_kept_per_thread_starts_afresh_after_a_refusal() -> None:
    """mm7_xml keeps one parser and tree builder per thread: a document refused half-way
    leaves nothing behind for the next one, and threads do not share one."""
    deep = envelope(submit("<Subject>" + "<a>" * 100 + "</a>" * 100 + "</Subject>"))
    broken = envelope(submit("<Subject>x</Subject><Oops>"))
    for bad in (deep, broken):
        with pytest.raises(mm7.Mm7DecodeError):
            mm7.decode(bad, "text/xml")
        op = mm7.decode(envelope(submit("<Subject>after</Subject>")), "text/xml")
        assert isinstance(op, mm7.SubmitReq) and op.subject == "after"

    def subjects(tag: str) -> list[str | None]:
        out = []
        for i in range(200):
            doc = envelope(submit(f"<Subject>{tag}{i}</Subject>"))
            out.append(mm7.decode(doc, "text/xml").subject)
        return out

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(subjects, "abcd"))
    assert results == [[f"{tag}{i}" for i in range(200)] for tag in "abcd"]


def test_oversized_body_is_refused_before_parsing() -> None:
    body = envelope(submit("<Subject>" + "x" * 5_000_000 + "</Subject>"))
    err = refused_quickly(lambda: mm7.decode(body, "text/xml", max_size=1_000_000))
    assert err.status_code == 2004 and "exceeds" in err.reason
    assert isinstance(mm7.decode(body, "text/xml"), mm7.SubmitReq)  # the default allows it


def test_many_mime_parts_are_refused() -> None:
    body = b"".join(b"--b\r\n\r\nx\r\n" for _ in range(1001)) + b"--b--\r\n"
    err = refused_quickly(lambda: mm7.decode(body, "multipart/related; boundary=b"))
    assert err.status_code == 2007 and "parts" in err.reason


def test_deeply_nested_content_multipart_is_refused() -> None:
    inner = b"leaf"
    for level in range(12):
        b = f"n{level}".encode()
        inner = (
            (
                b"--" + b + b"\r\nContent-Type: multipart/mixed; boundary=" + b"n%d" % (level - 1)
                if level
                else b"--" + b + b"\r\nContent-Type: text/plain"
            )
            + b"\r\n\r\n"
            + inner
            + b"\r\n--"
            + b
            + b"--"
        )
    content = mm7.Content("multipart/mixed", {"boundary": "n11"}, inner)
    err = refused_quickly(lambda: mm7.content_parts(content))
    assert err.status_code == 2007 and "nested" in err.reason


# ============================================================================= fuzzing

PROFILE = settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "",
        "text/xml",
        "application/xml; charset=utf-8",
        "multipart/related",
        'multipart/related; boundary="b1"; type="text/xml"; start="<mm7-envelope>"',
        "multipart/related; boundary=",
        'multipart/related; boundary="mm7-fixed"; start=nowhere',
        'multipart/mixed; boundary="\\"',
        'text/plain; charset="unterminated',
    ]
)


def _seeds() -> list[tuple[bytes, str]]:
    seeds = [
        mm7.encode(full_operation(name, ns), boundary="mm7-fixed")
        for name in OPERATION_NAMES
        for ns in (NS6, "REL-5-MM7-1-1")
    ]
    for sample in manifest():
        msg = read_sample(MM7_CORPUS / sample.file)
        seeds.append((msg.body, msg.content_type))
    return seeds


SEEDS = _seeds()
TOKENS = [
    b"<",
    b">",
    b"</",
    b"&",
    b"&amp;",
    b"&#0;",
    b"&#x110000;",
    b'"',
    b"=",
    b":",
    b"\x00",
    b"\xff\xfe",
    b"\r\n",
    b"\r\n\r\n",
    b"--mm7-fixed",
    b"--mm7-fixed--",
    b"--b1\r\n",
    b"Content-Type: multipart/related; boundary=x\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"<?xml version='1.0' encoding='utf-16'?>",
    b"cid:",
    b"xmlns:mm7='urn:x'",
    b"<mm7:Content href='cid:zz'/>",
    b"<StatusCode>",
    b"99999999999999999999999",
    b"P99999999999Y",
    b"9999-99-99T99:99:99+99:99",
]


def _check(body: bytes, content_type: str | None) -> None:
    try:
        op = mm7.decode(body, content_type)
    except Mm7DecodeError as exc:
        assert exc.status_code != 3000, f"internal error: {exc}"
        assert exc.status_code in mm7.STATUS
        return
    assert type(op) in mm7.OPERATION_TYPES
    content = getattr(op, "content", None)
    if content is not None:  # whatever decoded also flattens
        try:
            mm7.content_parts(content)
        except Mm7DecodeError as exc:
            assert exc.status_code == 2007


@PROFILE
@given(body=st.binary(max_size=2000), content_type=CONTENT_TYPES)
def test_fuzz_random_bytes(body: bytes, content_type: str | None) -> None:
    _check(body, content_type)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, str | None]:
    body, content_type = draw(st.sampled_from(SEEDS))
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        action = draw(st.integers(0, 4))
        if action == 0:
            data[pos] = draw(st.integers(0, 255))
        elif action == 1:
            del data[pos : pos + draw(st.integers(1, 64))]
        elif action == 2:
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif action == 3:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[pos:]
    if draw(st.booleans()):
        content_type = draw(CONTENT_TYPES)
    return bytes(data), content_type


@PROFILE
@given(mutated())
def test_fuzz_mutated_valid_messages(case: tuple[bytes, str | None]) -> None:
    _check(*case)


@st.composite
def mime_bodies(draw: st.DrawFn) -> bytes:
    pieces = st.sampled_from(
        [
            b"--b\r\n",
            b"--b--\r\n",
            b"--b",
            b"\r\n",
            b"\n",
            b"Content-Type: multipart/related; boundary=c\r\n",
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-ID: <c>\r\n",
            b"Content-Transfer-Encoding: base64\r\n",
            b"Content-Transfer-Encoding: quoted-printable\r\n",
            b"Content-Transfer-Encoding: x-unknown\r\n",
            b" folded\r\n",
            b"--c\r\n",
            b"--c--\r\n",
            b"aGVsbG8=",
            b"=3D=ZZ=\r\n",
            b"no header line\r\n",
            b"\x00\xff",
        ]
    )
    return b"".join(draw(st.lists(pieces, max_size=30)))


@PROFILE
@given(mime_bodies(), st.sampled_from(["multipart/related", "multipart/mixed; boundary=b"]))
def test_fuzz_content_parts(body: bytes, content_type: str) -> None:
    content = mm7.Content(content_type.split(";")[0], {"boundary": "b"}, body)
    try:
        parts = mm7.content_parts(content)
    except Mm7DecodeError as exc:
        assert exc.status_code == 2007
        return
    assert all(isinstance(p.payload(), bytes) for p in parts)


@PROFILE
@given(mime_bodies())
def test_fuzz_multipart_envelopes(body: bytes) -> None:
    soap = b"--b\r\nContent-Type: text/xml\r\n\r\n" + envelope(submit('<Content href="cid:c"/>'))
    _check(soap + b"\r\n" + body, "multipart/related; boundary=b")


# Found by coverage-guided fuzzing (atheris): work quadratic in the body, which may be
# 10 MB, and RFC 2231 charsets that are codec names but no charsets.


def test_a_body_of_dashes_is_scanned_in_linear_time() -> None:
    def decode(n: int) -> None:
        with pytest.raises(Mm7DecodeError):
            mm7.decode(b"x" + b"-" * n, "multipart/related; boundary=-")

    assert growth(decode, 250_000) < LINEAR_BOUND


def test_xml_text_in_many_pieces_is_joined_in_linear_time() -> None:
    """lxml hands text over in pieces, one per entity reference."""

    def decode(n: int) -> None:
        with pytest.raises(Mm7DecodeError):  # not a SOAP envelope
            mm7.decode(b"<Envelope>" + b"a&amp;" * (n // 6) + b"</Envelope>", "text/xml")

    assert growth(decode, 250_000) < LINEAR_BOUND


def test_text_split_by_entities_and_children_keeps_its_place() -> None:
    root = mm7_xml.parse(b"<a>x&amp;y<b/>t&lt;u<c>in&gt;</c>v</a>")
    assert root.text == "x&y"
    assert [(child.name, child.text, child.tail) for child in root.children] == [
        ("b", "", "t<u"),
        ("c", "in>", "v"),
    ]


@pytest.mark.parametrize("charset", ["\x00", "idna", "punycode", "undefined"])
def test_a_codec_that_is_no_charset_in_a_content_type_is_no_internal_error(
    charset: str,
) -> None:
    content_type = f"multipart/related; boundary=b; x*={charset}''%ff"
    with pytest.raises(Mm7DecodeError) as info:
        mm7.decode(b"--b\r\n\r\n--b--\r\n", content_type)
    assert info.value.status_code != 3000, info.value.reason  # 3000: a bug of ours
    soap = envelope(submit('<Content href="cid:c"/>'))
    body = (
        b"--b\r\nContent-Type: text/xml\r\n\r\n" + soap + b"\r\n--b\r\nContent-ID: <c>\r\n"
        b"Content-Type: text/plain; name*=" + charset.encode() + b"''%41%ff\r\n\r\nhi\r\n--b--\r\n"
    )
    decoded = mm7.decode(body, "multipart/related; boundary=b")
    assert isinstance(decoded, mm7.SubmitReq)
