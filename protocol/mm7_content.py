"""The content of an MM7 message, and its conversion to and from MMS parts.

``Content`` is the MIME entity that ``<Content href="cid:...">`` names (TS 23.140
§8.7): its type and parameters and its body as it came. A multipart content
keeps its structure byte for byte (a multipart/related with SMIL stays that very
multipart), so what is stored is what the VASP sent; a single entity has its
Content-Transfer-Encoding undone (a multipart entity never has one, RFC 2045 §6.4).

``content_parts`` flattens it into the ``wsp.Part`` list the MMS side stores and
serves (nested multiparts are flattened, because a handset shows a nested multipart
as one opaque attachment); ``content_from_parts`` builds the MIME entity of an
outbound DeliverReq from MMS parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from protocol.errors import EncodeError
from protocol.mm7_errors import Mm7DecodeError
from protocol.mm7_mime import (
    MAX_PARTS,
    MimePart,
    build_multipart,
    decode_transfer,
    format_content_type,
    new_boundary,
    normalize_cid,
    parse_content_type,
    sniff_boundary,
    split_multipart,
)
from protocol.mm7_tables import MESSAGE_FORMAT_CORRUPT
from protocol.wsp import Part

MAX_NESTING: Final = 8  # multipart inside multipart; MMS content uses two levels at most

# MIME multipart types and their WSP names in MMS (OMA-MMS-ENC §7.2 / WSP Table 40).
MMS_MULTIPART: Final[dict[str, str]] = {
    "multipart/related": "application/vnd.wap.multipart.related",
    "multipart/mixed": "application/vnd.wap.multipart.mixed",
    "multipart/alternative": "application/vnd.wap.multipart.alternative",
}
MIME_MULTIPART: Final[dict[str, str]] = {wsp: mime for mime, wsp in MMS_MULTIPART.items()}


@dataclass(slots=True)
class Content:
    """A MIME entity: ``content_id`` without angle brackets; ``params`` as in its
    Content-Type (a multipart's include ``boundary``, needed to read ``body``)."""

    content_type: str
    params: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_id: str | None = None
    content_location: str | None = None
    # content_parts() of this body, kept: decoding checks the content once and the
    # conversion to MMS needs the same parts (the body it was read from, the parts).
    parsed: tuple[bytes, list[Part]] | None = field(default=None, repr=False, compare=False)

    @property
    def is_multipart(self) -> bool:
        return self.content_type.startswith("multipart/")


def mms_content_type(content_type: str) -> str:
    """``multipart/related`` -> ``application/vnd.wap.multipart.related``; others as is."""
    return MMS_MULTIPART.get(content_type.lower(), content_type)


def mime_content_type(content_type: str) -> str:
    """``application/vnd.wap.multipart.related`` -> ``multipart/related``; others as is."""
    return MIME_MULTIPART.get(content_type.lower(), content_type)


def content_from_mime(part: MimePart) -> Content:
    """The Content of one body part of an MM7 message (transfer encoding undone)."""
    ctype, params = part.content_type()
    body = part.body
    if not ctype.startswith("multipart/"):
        body = decode_transfer(body, part.headers.get("content-transfer-encoding"))
    return Content(ctype, params, body, part.content_id, part.content_location)


def content_parts(content: Content) -> list[Part]:
    """The MMS parts of ``content``; raises ``Mm7DecodeError`` (2007) for a broken one.

    A multipart gives its parts in order, nested multiparts flattened; a single
    entity gives one part. Each part keeps its Content-Type parameters (charset in
    lower case, ``name``, ...), its Content-ID (with angle brackets, as in MMS) and its
    Content-Location; a part without Content-Location gets its ``name`` or
    Content-Disposition ``filename``, so SMIL that refers to parts by name resolves.
    """
    if not content.is_multipart:
        headers: dict[str, Any] = {}
        if content.content_id:
            headers["Content-ID"] = f"<{content.content_id}>"
        if content.content_location:
            headers["Content-Location"] = content.content_location
        params = {k: v for k, v in content.params.items() if k != "boundary"}
        return [Part(content.content_type, params, headers, content.body)]
    if content.parsed is not None and content.parsed[0] is content.body:
        return list(content.parsed[1])
    out: list[Part] = []
    _flatten(content.body, content.params.get("boundary"), out, 1)
    content.parsed = (content.body, out)
    return list(out)


def _flatten(body: bytes, boundary: str | None, out: list[Part], depth: int) -> None:
    if depth > MAX_NESTING:
        raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"multipart nested deeper than {MAX_NESTING}")
    boundary = boundary or sniff_boundary(body)
    if not boundary:
        raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, "multipart content without a boundary")
    for mime in split_multipart(body, boundary):
        ctype, params = mime.content_type()
        if ctype.startswith("multipart/"):
            _flatten(mime.body, params.get("boundary"), out, depth + 1)
            continue
        if len(out) >= MAX_PARTS:
            raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"more than {MAX_PARTS} parts")
        data = decode_transfer(mime.body, mime.headers.get("content-transfer-encoding"))
        out.append(_mms_part(ctype, params, mime, data))


def _mms_part(ctype: str, params: dict[str, str], mime: MimePart, data: bytes) -> Part:
    part_params: dict[str, Any] = {}
    for name, value in params.items():
        if name == "boundary":
            continue
        part_params[name] = value.lower() if name == "charset" else value
    headers: dict[str, Any] = {}
    cid = mime.content_id
    if cid:
        headers["Content-ID"] = f"<{cid}>"
    location = mime.content_location or params.get("name")
    if not location and "content-disposition" in mime.headers:
        location = parse_content_type(mime.headers["content-disposition"])[1].get("filename")
    if location:
        headers["Content-Location"] = location
    return Part(ctype, part_params, headers, data)


def content_from_parts(
    content_type: str,
    params: dict[str, Any],
    parts: list[Part],
    *,
    boundary: str | None = None,
    content_id: str | None = None,
) -> Content:
    """The MIME entity of MMS ``parts`` (``content_type``: the MMS body type, WSP or MIME
    name). A multipart type gives a multipart entity whose parameters are ``params``
    (``start``, ``type``) plus the boundary; any other type needs exactly one part."""
    mime_type = mime_content_type(content_type)
    if not mime_type.startswith("multipart/"):
        if len(parts) != 1:
            raise EncodeError(f"{content_type} content needs exactly one part, not {len(parts)}")
        part = parts[0]
        return Content(
            mime_content_type(part.content_type),
            _str_params(part.params),
            part.payload(),
            content_id,
            _header(part, "Content-Location"),
        )
    built: list[tuple[list[tuple[str, str]], bytes]] = []
    for part in parts:
        headers = [
            (
                "Content-Type",
                format_content_type(mime_content_type(part.content_type), _str_params(part.params)),
            )
        ]
        cid = _header(part, "Content-ID")
        if cid:
            headers.append(("Content-ID", f"<{normalize_cid(cid)}>"))
        location = _header(part, "Content-Location")
        if location:
            headers.append(("Content-Location", location))
        headers.append(("Content-Transfer-Encoding", "binary"))
        built.append((headers, part.payload()))
    chosen = boundary or new_boundary()
    while boundary is None and any(chosen.encode() in data for _, data in built):
        chosen = new_boundary()  # a random boundary met in a part: draw again
    body = build_multipart(built, chosen)
    out_params = _str_params(params)
    out_params.pop("boundary", None)
    out_params["boundary"] = chosen
    return Content(mime_type, out_params, body, content_id)


def _str_params(params: dict[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in params.items() if v is not None}


def _header(part: Part, name: str) -> str | None:
    value = part.headers.get(name)
    return value if isinstance(value, str) and value else None
