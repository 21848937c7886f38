"""The one lxml parser configuration for untrusted XML (MM7 SOAP, UAProf, SMIL).

No entity resolution, no network, no DTD loading or validation, no huge trees,
comments and processing instructions dropped. This alone is not enough: lxml
still reads ``file:`` URLs named by an external DTD, so each caller also keeps
DOCTYPEs away from it (mm7_xml refuses them, uaprof and smil cut them out first,
with :func:`doctype_end`).
"""

from __future__ import annotations

import re
from typing import Any, Final

from lxml import etree  # type: ignore[import-untyped, unused-ignore]

_OPTIONS: Final[dict[str, bool]] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
    "collect_ids": False,
}


def pull_parser() -> Any:
    """A fresh incremental parser (callers bound size, depth and element count as they go)."""
    return etree.XMLPullParser(events=("start", "end"), **_OPTIONS)


def target_parser(target: object) -> Any:
    """A parser that builds nothing itself: it calls ``target``'s ``start(tag, attrib)``,
    ``end(tag)``, ``data(text)``, ``doctype(...)`` and ``close()`` as it reads (lxml's
    parser target interface), and :func:`parse_with` returns what ``close()`` returns.
    An exception raised by a callback stops the parse and comes out of it unchanged,
    so the target can bound depth and element count as the document is read, like
    :func:`parse_bounded` does. Comments and processing instructions never reach it.

    Keep the parser and reuse it (one per thread: a parser is not thread-safe):
    creating one inspects the target's ``start`` method, which costs far more than
    parsing a small document."""
    return etree.XMLParser(target=target, **_OPTIONS)


def parse_with(data: bytes, parser: Any) -> Any:
    """``data`` through a :func:`target_parser`."""
    return etree.fromstring(data, parser)


class XmlRefused(ValueError):
    """Markup refused before or while parsing; ``offset`` is where (0 if unknown)."""

    def __init__(self, reason: str, offset: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


_FEED_CHUNK: Final = 64 * 1024


def parse_bounded(data: bytes, *, max_depth: int, max_elements: int) -> Any:
    """The root element of ``data``, parsed incrementally so that a document nested
    deeper than ``max_depth`` or with more than ``max_elements`` elements is refused
    (XmlRefused) before it is built. lxml's own errors (XMLSyntaxError) pass through."""
    parser = pull_parser()
    depth = count = 0
    for start in range(0, len(data), _FEED_CHUNK):
        parser.feed(data[start : start + _FEED_CHUNK])
        for event, _element in parser.read_events():
            if event == "end":
                depth -= 1
                continue
            depth += 1
            count += 1
            if depth > max_depth:
                raise XmlRefused(f"XML nested deeper than {max_depth}")
            if count > max_elements:
                raise XmlRefused(f"XML has more than {max_elements} elements")
    root: Any = parser.close()
    if root.getroottree().docinfo.doctype:  # the caller's check missed one: never go on
        raise XmlRefused("XML with DOCTYPE is refused")
    return root


def _skip_literal_or_comment(text: str, i: int) -> int:
    """If a quoted literal, comment or PI starts at ``i`` inside a DTD, the index after it."""
    if text[i] in "\"'":
        opening, closing = text[i], text[i]
    elif text.startswith("<!--", i):
        opening, closing = "<!--", "-->"
    elif text.startswith("<?", i):
        opening, closing = "<?", "?>"
    else:
        return i
    end = text.find(closing, i + len(opening))
    if end < 0:
        raise XmlRefused("unterminated literal, comment or processing instruction", i)
    return end + len(closing)


_DTD_MARKUP: Final = re.compile(r"[\"'<\[\]>]")


def doctype_end(text: str, start: int) -> int:
    """The index after the ``<!DOCTYPE ...>`` that starts at ``start`` (XML 1.0 §2.8):
    its closing ">" is the first one outside literals, comments and the internal subset.
    (Bytes decoded as Latin-1 keep their offsets.)"""
    i = start + len("<!DOCTYPE")
    in_subset = False
    while (m := _DTD_MARKUP.search(text, i)) is not None:
        i = m.start()
        after = _skip_literal_or_comment(text, i)
        if after != i:
            i = after
            continue
        char = text[i]
        if char == "[" and not in_subset:
            in_subset = True
        elif char == "]" and in_subset:
            in_subset = False
        elif char == ">" and not in_subset:
            return i + 1
        i += 1
    raise XmlRefused("unterminated DOCTYPE", start)
