"""Keeping SMIL consistent with the parts that survive adaptation (W3C SMIL 2.0, OMA MMS SMIL).

A SMIL presentation references parts by ``cid:`` URL or by Content-Location.
When a part is converted it keeps its Content-ID, so only a changed name
(``photo.png`` -> ``photo.jpg``) needs rewriting; when a part is dropped the
media element that shows it goes, a slide (``par``) left with nothing to
show goes too, and a last slide shows the note that says what was removed
(a handset shows only what the SMIL references). Anchors such as Mbuni leave
such references dangling, which some handsets render as an error slide
(feature-matrix §1).

The SMIL is parsed with the same hardening as MM7 (no DTD, no entities, no
network); a SMIL we cannot parse is left out and the message is sent as
multipart/mixed, which every handset shows.
"""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from protocol.xml_safe import XmlRefused, doctype_end, parse_bounded

MEDIA = ("img", "text", "audio", "video", "ref", "animation", "textstream")
_MAX_DEPTH = 32  # SMIL is smil/body/par/media: a few levels
_MAX_ELEMENTS = 5_000


class SmilError(ValueError):
    """Not a SMIL document we can rewrite."""


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _key(src: str) -> str:
    """How a ``src`` names a part: ``cid:x`` -> ``x``; a Content-Location as is."""
    src = src.strip()
    if src.lower().startswith("cid:"):
        return src[4:].strip("<>")
    return src


def rewrite(
    smil: bytes, *, renamed: Mapping[str, str], dropped: set[str], note: str | None = None
) -> bytes:
    """``smil`` with references to ``dropped`` parts removed and ``renamed`` ones rewritten,
    and, with ``note`` (a Content-ID), a last slide showing that text part.

    Keys are what ``src`` attributes name (a Content-ID without brackets, a
    Content-Location or a name); ``renamed`` maps an old name to the new one.
    """
    if not renamed and not dropped and note is None and b"<!ENTITY" not in smil.upper():
        return smil  # nothing to change: keep the author's bytes
    if b"<!DOCTYPE" in smil[:2048].upper() or b"<!ENTITY" in smil.upper():
        # Some authoring tools write the SMIL 1.0 DOCTYPE; we never load it, and
        # without it the document is the same for our purposes.
        smil = _strip_doctype(smil)
    try:
        root = parse_bounded(smil, max_depth=_MAX_DEPTH, max_elements=_MAX_ELEMENTS)
    except XmlRefused as exc:
        raise SmilError(exc.reason) from None
    except etree.XMLSyntaxError as exc:
        raise SmilError(f"SMIL is not XML: {exc}") from None
    if _local(root.tag) != "smil":
        raise SmilError("the root element is not smil")
    for element in list(root.iter()):
        if _local(element.tag) not in MEDIA:
            continue
        src = element.get("src")
        if src is None:
            continue
        key = _key(src)
        if key in dropped:
            parent = element.getparent()
            if parent is not None:
                parent.remove(element)
        elif key in renamed:
            new = renamed[key]
            element.set("src", f"cid:{new}" if src.strip().lower().startswith("cid:") else new)
    for par in list(root.iter()):
        if _local(par.tag) == "par" and not any(_local(c.tag) in MEDIA for c in par.iter()):
            parent = par.getparent()
            if parent is not None:
                parent.remove(par)
    if note is not None:
        _add_text_slide(root, note)
    result: bytes = etree.tostring(root, encoding="utf-8", xml_declaration=False)
    return result


def _add_text_slide(root: etree._Element, cid: str) -> None:
    """A last ``par`` showing the text part ``cid``, in the layout's text region if any."""
    namespace = root.tag[: -len("smil")] if isinstance(root.tag, str) else ""
    body = next((e for e in root if _local(e.tag) == "body"), None)
    if body is None:
        body = etree.SubElement(root, f"{namespace}body")
    par = etree.SubElement(body, f"{namespace}par", dur="5000ms")
    text = etree.SubElement(par, f"{namespace}text", src=f"cid:{cid}")
    regions = [e.get("id") for e in root.iter() if _local(e.tag) == "region" and e.get("id")]
    region = next((r for r in regions if "text" in r.lower()), None)
    if region is not None:
        text.set("region", region)


def _strip_doctype(data: bytes) -> bytes:
    start = data.upper().find(b"<!DOCTYPE")
    if start < 0:
        raise SmilError("entity declarations outside a DOCTYPE")
    try:  # Latin-1 keeps byte offsets
        end = doctype_end(data.decode("latin-1"), start)
    except XmlRefused as exc:
        raise SmilError(exc.reason) from None
    stripped = data[:start] + data[end:]
    if b"<!ENTITY" in stripped.upper():
        raise SmilError("entity declarations are not allowed")
    return stripped


def generate(parts: list[tuple[str, str]]) -> bytes:
    """A one-slide-per-visual SMIL for (Content-ID, content type) pairs, for handsets
    that want a presentation when the original message had none."""
    slides: list[str] = []
    pending_text: list[str] = []
    for cid, ctype in parts:
        if ctype.startswith("text/"):
            pending_text.append(f'<text src="cid:{cid}" region="Text"/>')
            continue
        tag = {"image": "img", "audio": "audio", "video": "video"}.get(ctype.split("/")[0])
        if tag is None:
            continue
        region = ' region="Image"' if tag in ("img", "video") else ""
        slides.append(
            f'<par dur="5000ms"><{tag} src="cid:{cid}"{region}/>{"".join(pending_text)}</par>'
        )
        pending_text = []
    if pending_text:
        slides.append(f'<par dur="5000ms">{"".join(pending_text)}</par>')
    layout = (
        '<layout><root-layout width="100%" height="100%"/>'
        '<region id="Image" left="0" top="0" width="100%" height="70%" fit="meet"/>'
        '<region id="Text" left="0" top="70%" width="100%" height="30%" fit="scroll"/></layout>'
    )
    return f"<smil><head>{layout}</head><body>{''.join(slides)}</body></smil>".encode()
