"""Hardened XML for MM7: parse untrusted SOAP into a small tree, and write XML strictly.

Parsing (DESIGN.md §4: "XML parsing is hardened"):

- No DTD at all. A document that contains ``<!DOCTYPE`` or ``<!ENTITY`` is refused
  before the parser sees it (also when it is UTF-16 or UTF-32 encoded), and the parsed
  tree is checked again for a doctype. SOAP 1.1 §3 forbids a DTD in a SOAP message, so
  nothing legitimate is lost, and billion-laughs and external entities (file:, http:)
  are refused in microseconds.
- lxml runs with resolve_entities=False, no_network=True, load_dtd=False,
  dtd_validation=False and huge_tree=False (libxml2's own size and depth limits stay on).
- The element depth (``MAX_DEPTH``) and element count (``MAX_ELEMENTS``) are bounded
  while parsing: the tree is built by ``_TreeBuilder`` from the parser's callbacks,
  which stops the parse at the first violation, before a hostile document is built.
- Only leading whitespace before the XML declaration is forgiven (a blank line after
  the HTTP headers is a common slip; it carries no content). A document must start
  with "<" (or be UTF-16/32); UTF-7, which can spell markup in other bytes, is refused.

Every failure is a ``Mm7DecodeError`` with status 2007 (Message format corrupt).

The parsed tree is ``Node``: namespace, local name, attributes by local name, text.
MM7 peers qualify elements inconsistently, so the readers match by local name.

Writing goes through ``XmlElement`` and ``serialize``: qualified names and namespace
declarations are exactly what the caller asks for, attribute values are double-quoted,
and a character XML 1.0 cannot carry is an ``EncodeError``, not a corrupt document.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Final

from protocol.errors import EncodeError
from protocol.mm7_errors import Mm7DecodeError
from protocol.mm7_tables import MESSAGE_FORMAT_CORRUPT
from protocol.xml_safe import XmlRefused, parse_with, target_parser

# A SOAP envelope is Envelope/Body/op/Recipients/To/Number: depth 6, a Fault's detail
# 8. Eight times that is more than any peer needs and far below libxml2's own 256.
MAX_DEPTH: Final = 64
# A SubmitReq to a few thousand recipients stays below this; each element costs lxml a
# few hundred bytes, so the bound also bounds the memory a hostile document can take.
MAX_ELEMENTS: Final = 20_000

_FORBIDDEN: Final = ("<!DOCTYPE", "<!ENTITY")
_BOMS: Final = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
)
_WHITESPACE: Final = b" \t\r\n"
_DECLARED_ENCODING: Final = re.compile(
    rb"<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._\-]{1,40})"
)
# Encodings that can spell "<!DOCTYPE" without those bytes (the parser would still
# refuse the DTD after parsing; this refuses before).
_ESCAPING_ENCODINGS: Final = frozenset((b"utf7", b"unicode11utf7", b"csunicode11utf7"))


@dataclass(slots=True)
class Node:
    """An element of a parsed document: ``ns`` is its namespace URI ("" for none)."""

    ns: str
    name: str
    attrs: dict[str, str] = field(default_factory=dict)  # by local name, first wins
    text: str = ""  # character data before the first child
    tail: str = ""  # character data after this element, inside its parent
    children: list[Node] = field(default_factory=list)

    def child(self, name: str) -> Node | None:
        """The first child element with this local name, in any namespace."""
        for c in self.children:
            if c.name == name:
                return c
        return None

    def all(self, name: str) -> list[Node]:
        return [c for c in self.children if c.name == name]

    def value(self) -> str:
        """The element's character data, stripped; text inside child elements included."""
        return self.all_text().strip()

    def all_text(self) -> str:
        parts = [self.text]
        for c in self.children:
            parts.append(c.all_text())
            parts.append(c.tail)
        return "".join(parts)


def split_tag(tag: str) -> tuple[str, str]:
    """``{uri}local`` -> (uri, local); ``local`` -> ("", local)."""
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        return uri, local
    return "", tag


def _encoding_of(data: bytes) -> str | None:
    """The encoding to scan a document in, when it is not ASCII-compatible."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    head = data[:4]
    if len(head) == 4 and b"\x00" in head:
        if head[0] == 0 and head[1] == 0:
            return "utf-32-be"
        if head[2] == 0 and head[3] == 0:
            return "utf-32-le"
        return "utf-16-be" if head[0] == 0 else "utf-16-le"
    return None


def _refuse_dtd(data: bytes) -> None:
    encoding = _encoding_of(data)
    if encoding is None:  # ASCII-compatible: the markers are these very bytes
        found = [m for m in _FORBIDDEN if m.encode() in data]
    else:
        text = data.decode(encoding, "replace")
        found = [m for m in _FORBIDDEN if m in text]
    if found:
        raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"XML with {found[0][2:]} is refused")


def parse(data: bytes) -> Node:
    """Parse one untrusted XML document; raises only ``Mm7DecodeError`` (2007)."""
    if _encoding_of(data) is None:
        data = data.lstrip(_WHITESPACE)
        if not data:
            raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, "empty XML document")
        if not data.startswith(b"<"):  # neither ASCII-compatible XML nor UTF-16/32
            raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, "not an XML document")
        declared = _DECLARED_ENCODING.match(data)
        if declared and declared.group(1).lower().replace(b"-", b"") in _ESCAPING_ENCODINGS:
            raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, "XML in UTF-7 is refused")
    _refuse_dtd(data)
    return _parse_checked(data)


def _parse_checked(data: bytes) -> Node:
    """The parse itself, the second line of defence (the tests call it directly)."""
    try:
        return _parse_bounded(data)
    except Mm7DecodeError:
        raise
    except Exception as exc:  # lxml raises XMLSyntaxError and, rarely, others
        raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"XML not well-formed: {exc}") from None


_per_thread = threading.local()  # a _TreeBuilder and its parser (see target_parser)
_TAGS: dict[Any, tuple[str, str]] = {}  # {uri}local -> (uri, local): names repeat


def _parse_bounded(data: bytes) -> Node:
    builder: _TreeBuilder | None = getattr(_per_thread, "builder", None)
    if builder is None:
        builder = _per_thread.builder = _TreeBuilder()
        _per_thread.parser = target_parser(builder)
    try:
        root: Node = parse_with(data, _per_thread.parser)
    except XmlRefused as exc:
        raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, exc.reason) from None
    finally:
        builder.reset()  # ready for the next document, refused or not; the tree is the caller's
    return root


class _TreeBuilder:
    """Builds the Node tree straight from lxml's parser callbacks (xml_safe.target_parser),
    counting depth and elements as it goes.

    Why not an lxml tree converted afterwards: for the 800-byte envelope of a SubmitReq,
    the pull parser's events and a walk over lxml's element proxies made ``parse`` take
    139 µs on a slow day here; built from the callbacks, 88 (bench/README.md, session 8)."""

    def __init__(self) -> None:
        self.stack: list[Node] = []
        self.root: Node | None = None
        self.count = 0
        # Character data since the last start or end tag, joined once at the next one:
        # lxml hands it over in chunks (one per entity reference, for one), and adding
        # each to the node's text recopied all of it, quadratic in a 10 MB body.
        self.chunks: list[str] = []

    def reset(self) -> None:
        """Ready for the next document (the builder outlives each parse, see
        _parse_bounded; a refused one leaves its half-built tree behind)."""
        self.stack = []
        self.root = None
        self.count = 0
        self.chunks = []

    def start(self, tag: Any, attrib: Any) -> None:
        if self.chunks:
            self._flush_text()
        if len(self.stack) >= MAX_DEPTH:
            raise XmlRefused(f"XML nested deeper than {MAX_DEPTH}")
        self.count += 1
        if self.count > MAX_ELEMENTS:
            raise XmlRefused(f"XML has more than {MAX_ELEMENTS} elements")
        split = _TAGS.get(tag)
        if split is None:
            if len(_TAGS) >= 1024:  # bounded: a peer may invent names at will
                _TAGS.clear()
            split = _TAGS[tag] = split_tag(str(tag))
        attrs: dict[str, str] = {}
        if attrib:
            for key, value in attrib.items():
                attrs.setdefault(split_tag(str(key))[1], str(value))
        node = Node(split[0], split[1], attrs)
        if self.stack:
            self.stack[-1].children.append(node)
        else:
            self.root = node
        self.stack.append(node)

    def end(self, tag: Any) -> None:
        if self.chunks:
            self._flush_text()
        self.stack.pop()

    def data(self, text: Any) -> None:
        if self.stack:  # outside the root element there is only whitespace
            self.chunks.append(str(text))

    def _flush_text(self) -> None:
        """Character data before an element's first child is its text; after a child, that
        child's tail (the shape of an lxml tree)."""
        text = "".join(self.chunks)
        self.chunks = []
        parent = self.stack[-1]
        if parent.children:
            parent.children[-1].tail += text
        else:
            parent.text += text

    def doctype(self, *_declaration: Any) -> None:
        raise XmlRefused("XML with DOCTYPE is refused")  # parse() refused one already

    def close(self) -> Node:
        if self.root is None:
            raise XmlRefused("XML without a root element")
        return self.root


# ----------------------------------------------------------------------------- writing

# XML 1.0 Char production (§2.2): what a document may contain at all.
_INVALID_CHARS: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NCNAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(slots=True)
class XmlElement:
    """An element to write: ``tag`` is the name as written (``mm7:SubmitReq``)."""

    tag: str
    attrs: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    children: list[XmlElement] = field(default_factory=list)


def is_ncname(name: str) -> bool:
    return bool(_NCNAME.match(name))


def _checked(value: str) -> str:
    bad = _INVALID_CHARS.search(value)
    if bad:
        raise EncodeError(f"character U+{ord(bad.group()):04X} cannot be written in XML")
    return value


def _escape_text(value: str) -> str:
    return _checked(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(value: str) -> str:
    return (
        _escape_text(value)
        .replace('"', "&quot;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


def serialize(root: XmlElement) -> bytes:
    """The document as UTF-8 with an XML declaration; compact (no added whitespace)."""
    out: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    _write(root, out)
    return "".join(out).encode("utf-8")


def _write(el: XmlElement, out: list[str]) -> None:
    out.append("<" + el.tag)
    for name, value in el.attrs:
        out.append(f' {name}="{_escape_attr(value)}"')
    if el.text is None and not el.children:
        out.append("/>")
        return
    out.append(">")
    if el.text is not None:
        out.append(_escape_text(el.text))
    for child in el.children:
        _write(child, out)
    out.append(f"</{el.tag}>")
