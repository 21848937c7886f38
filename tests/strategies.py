"""Hypothesis strategies for valid MMS PDUs of every type, built from the codec's own tables.

Values are drawn so that a correct codec must give them back unchanged:
texts without control characters, token values by their names, class names
that are not token names, and only the fields the target version defines.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from protocol.mms import MANDATORY, NO_TRANSACTION_ID, MmsPdu
from protocol.mms_tables import (
    ALWAYS_LIST,
    BODY_TYPES,
    FIELDS,
    MESSAGE_TYPES,
    SUPPORTED_VERSIONS,
    Version,
)
from protocol.wsp import Part
from protocol.wsp_tables import CHARSETS, CONTENT_TYPES

SKIP_FIELDS = {0x04, 0x0C, 0x0D, 0x18}  # carried by MmsPdu attributes, not headers

# Printable text: WSP TEXT excludes control characters (WAP-230-WSP §8.4.2.1).
printable = st.characters(
    blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f", max_codepoint=0x2FFFF
)
text = st.text(printable, max_size=40)
ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
token_text = st.from_regex(r"[A-Za-z][A-Za-z0-9\-]{0,15}", fullmatch=True)
address = st.one_of(
    st.from_regex(r"\+?[0-9]{3,15}/TYPE=PLMN", fullmatch=True),
    st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.(com|net)", fullmatch=True),
    st.from_regex(r"192\.0\.2\.[0-9]{1,3}/TYPE=IPv4", fullmatch=True),
    text.filter(bool),
)
long_int = st.integers(min_value=0, max_value=2**63)
small_int = st.integers(min_value=0, max_value=2**31)
time_value = st.one_of(
    st.builds(lambda n: {"absolute": n}, st.integers(0, 2**40)),
    st.builds(lambda n: {"relative": n}, st.integers(0, 2**31)),
)
CLASS_TEXTS = ("Campaign", "NewMessageClass", "x-carrier-class")


def _value_for(code: int) -> st.SearchStrategy[Any]:
    name, kind, _version, table = FIELDS[code]
    if kind == "address":
        return address
    if kind == "text":
        return ascii_text
    if kind == "encoded-string":
        return text
    if kind in ("long-integer",):
        return long_int
    if kind == "integer":
        return small_int
    if kind == "token":
        return st.sampled_from(sorted(table.values()))
    if kind == "class":
        return st.sampled_from([*table.values(), *CLASS_TEXTS])
    if kind == "time":
        return time_value
    if kind == "from":
        return st.one_of(st.none(), address)
    if kind == "prev-sent-by":
        return st.fixed_dictionaries({"forward_count": small_int, "address": address})
    if kind == "prev-sent-date":
        return st.fixed_dictionaries({"forward_count": small_int, "date": long_int})
    if kind == "mm-flags":
        return st.fixed_dictionaries(
            {"op": st.sampled_from(["Add", "Remove", "Filter"]), "value": text}
        )
    if kind == "mbox-total":
        return st.one_of(
            st.builds(lambda n: {"messages": n}, small_int),
            st.builds(lambda n: {"bytes": n}, small_int),
        )
    if kind == "field-name":
        return st.sampled_from(
            sorted(FIELDS[c][0] for c in FIELDS if c not in SKIP_FIELDS and c != 0x28)
        )
    if kind == "element-descriptor":
        return st.fixed_dictionaries(
            {
                "reference": ascii_text.filter(bool),
                "params": st.sampled_from([{}, {"type": "image/jpeg"}, {"type": "text/plain"}]),
            }
        )
    if kind == "generic":
        return st.one_of(st.integers(0, 127), ascii_text)
    raise AssertionError(f"no strategy for {name} ({kind})")


def _header_value(code: int) -> st.SearchStrategy[Any]:
    value = _value_for(code)
    if code in ALWAYS_LIST:
        return st.lists(value, min_size=1, max_size=3)
    return value


content_type = st.sampled_from(
    [
        "text/plain",
        "application/smil",
        "image/jpeg",
        "image/gif",
        "image/png",
        "audio/amr",
        "video/3gpp",
        "application/vnd.wap.multipart.mixed",
        CONTENT_TYPES[0x21],
    ]
)
charset_name = st.sampled_from(sorted(name for code, (name, _) in CHARSETS.items()))
part_params = st.fixed_dictionaries(
    {},
    optional={
        "charset": charset_name,
        "name": ascii_text.filter(bool),
        "filename": ascii_text.filter(bool),
    },
)
part_headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-ID": st.from_regex(r"<[A-Za-z0-9_.\-]{1,20}>", fullmatch=True),
        "Content-Location": ascii_text.filter(bool),
        "X-Custom-Header": ascii_text.filter(bool),
        "Content-Disposition": st.fixed_dictionaries(
            {
                "type": st.sampled_from(["attachment", "inline", "form-data"]),
                "params": st.sampled_from([{}, {"filename": "a.jpg"}]),
            }
        ),
    },
)
part = st.builds(Part, content_type, part_params, part_headers, st.binary(max_size=300))


@st.composite
def mms_pdus(draw: st.DrawFn, message_type: str | None = None) -> MmsPdu:
    """A valid PDU of ``message_type`` (any type when None) for a version that defines it."""
    code = (
        draw(st.sampled_from(sorted(MESSAGE_TYPES)))
        if message_type is None
        else next(c for c, (n, _) in MESSAGE_TYPES.items() if n == message_type)
    )
    mtype, since = MESSAGE_TYPES[code]
    version: Version = draw(st.sampled_from([v for v in SUPPORTED_VERSIONS if v >= since]))
    allowed = [c for c, spec in FIELDS.items() if c not in SKIP_FIELDS and spec[2] <= version]
    mandatory = {
        next(c for c in FIELDS if FIELDS[c][0] == name)
        for name in MANDATORY.get(mtype, ())
        if name != "Content-Type"
    }
    if mtype == "m-send-req":
        mandatory.add(0x17)
    optional = draw(st.sets(st.sampled_from(allowed), max_size=8))
    headers: dict[str, Any] = {}
    for c in sorted(mandatory | optional, key=lambda c: (c not in mandatory, c)):
        if c == 0x13 and mtype in ("m-delete-conf", "m-mbox-delete-conf"):
            # A charset-labelled Response-Text reads as indexed here (see mms.py).
            headers[FIELDS[c][0]] = draw(
                st.one_of(
                    ascii_text,
                    st.fixed_dictionaries({"index": st.integers(0, 1000), "value": text}),
                )
            )
            continue
        headers[FIELDS[c][0]] = draw(_header_value(c))
    if draw(st.booleans()):
        headers["X-App-" + draw(token_text)] = draw(ascii_text)
    tid = (
        None
        if mtype in NO_TRANSACTION_ID and draw(st.booleans())
        else draw(ascii_text.filter(bool))
    )
    content_type_value = None
    params: dict[str, Any] = {}
    parts = None
    body = None
    if mtype in BODY_TYPES:
        if draw(st.booleans()):
            content_type_value = "application/vnd.wap.multipart.related"
            parts = draw(st.lists(part, min_size=1, max_size=4))
            params = {"type": "application/smil", "start": "<smil>"}
        elif draw(st.booleans()):
            content_type_value = "application/vnd.wap.multipart.mixed"
            parts = draw(st.lists(part, min_size=0, max_size=3))
        else:
            content_type_value = "text/plain"
            params = {"charset": "utf-8"}
            body = draw(st.binary(max_size=200))
    return MmsPdu(
        message_type=mtype,
        transaction_id=tid,
        mms_version=f"{version[0]}.{version[1]}",
        headers=headers,
        content_type=content_type_value,
        content_type_params=params,
        parts=parts,
        body=body,
    )
