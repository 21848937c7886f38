"""A whole message made fit for one handset: the parts, the SMIL, and the total size.

Pure (bytes in, bytes out), so it runs in a worker process. The budget is the
handset's maximum message size less the encoded m-retrieve-conf's overhead;
text, SMIL and other small parts are kept first, images share what is left
in proportion to their original sizes, and if the message still does not fit,
the largest remaining media go first, each replaced by a line in a short text
note. A message is never refused for size while its text alone fits
(issue #6; ../shared/research/performance.md §3.5 on per-part budgets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mmsc.adapt import smil as smil_mod
from mmsc.adapt.formats import EXTENSIONS, accepts
from mmsc.adapt.images import ImageError, ImageLimits, adapt_image
from mmsc.adapt.media import transcode
from protocol.wsp import Part

RELATED = "application/vnd.wap.multipart.related"
MIXED = "application/vnd.wap.multipart.mixed"
SMIL = "application/smil"
HEADER_RESERVE = 600  # m-retrieve-conf headers (From, To, Subject, Message-ID, ...)
PART_RESERVE = 60  # per-part headers (Content-Type with name and charset, Content-ID)
MIN_IMAGE_BUDGET = 3000


@dataclass(frozen=True, slots=True)
class Target:
    """What the handset takes (built from its capabilities by mmsc.adapt.service)."""

    max_message_size: int = 300 * 1024
    max_width: int = 640
    max_height: int = 480
    accept: frozenset[str] = frozenset(
        {"image/jpeg", "image/gif", "image/png", "text/plain", SMIL, "audio/amr"}
    )
    charsets: frozenset[str] = frozenset({"utf-8", "us-ascii"})
    smil: bool = True  # keep (and fix) the SMIL presentation
    generate_smil: bool = False  # write one when the message had none
    animation: bool = True
    max_pixels: int = 40_000_000


@dataclass(slots=True)
class Adapted:
    content_type: str
    params: dict[str, object]
    parts: list[Part]
    notes: list[str] = field(default_factory=list)
    converted: int = 0
    dropped: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


def _name(part: Part) -> str:
    for key in ("name", "filename"):
        value = part.params.get(key)
        if isinstance(value, str) and value:
            return value
    location = part.headers.get("Content-Location")
    if isinstance(location, str) and location:
        return location
    return part.content_type


def _cid(part: Part) -> str | None:
    value = part.headers.get("Content-ID")
    return value.strip("<>") if isinstance(value, str) else None


def _refs(part: Part) -> list[str]:
    """What a SMIL ``src`` may call this part: its Content-ID and its Content-Location."""
    out = []
    cid = _cid(part)
    if cid:
        out.append(cid)
    location = part.headers.get("Content-Location")
    if isinstance(location, str):
        out.append(location)
    return out


def _charset_text(part: Part, target: Target) -> Part:
    """Text in a charset the handset reads, always labelled (UTF-8 unless it reads only
    something else)."""
    data = bytes(part.data)
    declared = part.params.get("charset")
    charset = declared.lower() if isinstance(declared, str) else None
    text: str | None = None
    for candidate in ([charset] if charset else []) + ["utf-8", "latin-1"]:
        try:
            text = data.decode(candidate)
            break
        except (LookupError, UnicodeDecodeError):
            continue
    if text is None:  # latin-1 decodes anything; kept for type checkers
        text = data.decode("latin-1")
    wanted = "utf-8"
    if target.charsets and "utf-8" not in target.charsets:
        for name in ("iso-8859-1", "us-ascii", *sorted(target.charsets)):
            if name in target.charsets:
                wanted = name
                break
    try:
        encoded = text.encode(wanted)
    except (LookupError, UnicodeEncodeError):
        encoded = text.encode(wanted if wanted != "us-ascii" else "ascii", "replace")
    params = dict(part.params)
    params["charset"] = wanted
    return replace(part, params=params, data=encoded)


def _renamed(part: Part, ctype: str) -> tuple[Part, str | None, str | None]:
    """``part`` relabelled as ``ctype``: the file extension in name and Content-Location
    follows the new format. Returns the part and the old/new Content-Location."""
    params = dict(part.params)
    headers = dict(part.headers)
    ext = EXTENSIONS.get(ctype, "")
    old_location = headers.get("Content-Location")
    new_location = None
    for key in ("name", "filename"):
        value = params.get(key)
        if isinstance(value, str) and ext:
            params[key] = value.rsplit(".", 1)[0] + ext
    if isinstance(old_location, str) and ext:
        new_location = old_location.rsplit(".", 1)[0] + ext
        headers["Content-Location"] = new_location
    return (
        Part(ctype, params, headers, part.data),
        old_location if isinstance(old_location, str) else None,
        new_location,
    )


def _note(dropped: list[Part]) -> Part:
    lines = ["Some content was removed because your phone cannot show it:"]
    for part in dropped:
        lines.append(f"- {_name(part)} ({part.content_type}, {len(part.data)} bytes)")
    return Part(
        "text/plain",
        {"charset": "utf-8", "name": "removed.txt"},
        {"Content-ID": "<mmsc-removed>", "Content-Location": "removed.txt"},
        "\n".join(lines).encode(),
    )


def adapt(
    content_type: str,
    params: dict[str, object],
    parts: list[Part],
    target: Target,
    measure: Callable[[Adapted], int] | None = None,
) -> Adapted:
    """The message for ``target``; ``measure`` gives the encoded size of a candidate (the
    whole m-retrieve-conf), so the final answer provably fits ``max_message_size``."""
    result = _adapt_once(content_type, params, parts, target, target.max_message_size)
    if measure is None:
        return result
    limit = target.max_message_size
    for _ in range(4):
        size = measure(result)
        if size <= target.max_message_size:
            return result
        limit -= size - target.max_message_size + 256
        if limit <= 0:
            break
        result = _adapt_once(content_type, params, parts, target, limit)
    return _text_only(content_type, params, parts, target, result)


def _text_only(
    content_type: str, params: dict[str, object], parts: list[Part], target: Target, last: Adapted
) -> Adapted:
    texts = [_charset_text(p, target) for p in parts if p.content_type.startswith("text/")]
    others = [p for p in parts if not p.content_type.startswith("text/") and p.content_type != SMIL]
    kept = [*texts, _note(others)] if others else texts
    return Adapted(
        MIXED,
        {},
        kept,
        [*last.notes, "text only"],
        0,
        len(others),
        last.bytes_in,
        sum(len(p.data) for p in kept),
    )


def _adapt_once(
    content_type: str,
    params: dict[str, object],
    parts: list[Part],
    target: Target,
    max_size: int,
) -> Adapted:
    bytes_in = sum(len(p.data) for p in parts)
    available = max_size - HEADER_RESERVE - PART_RESERVE * (len(parts) + 1)
    smil_parts = [p for p in parts if p.content_type == SMIL]
    kept: list[Part] = []
    renamed: dict[str, str] = {}
    images: list[Part] = []
    dropped: list[Part] = []
    notes: list[str] = []
    converted = 0
    for part in parts:
        ctype = part.content_type
        if ctype == SMIL:
            continue
        if ctype.startswith("text/"):
            kept.append(_charset_text(part, target))
        elif ctype.startswith("image/"):
            images.append(part)
        elif accepts(target.accept, ctype):
            kept.append(part)
        elif ctype.startswith(("audio/", "video/")):
            media = transcode(bytes(part.data), ctype, target.accept, max(available // 2, 1))
            if media is None:
                dropped.append(part)
                notes.append(f"{_name(part)}: {ctype} not accepted (and not transcodable)")
            else:
                new_part, old_loc, new_loc = _renamed(part, media.content_type)
                if old_loc and new_loc:
                    renamed[old_loc] = new_loc
                kept.append(replace(new_part, data=media.data))
                converted += 1
        else:
            dropped.append(part)
            notes.append(f"{_name(part)}: {ctype} not accepted")
    fixed = sum(len(p.data) for p in kept) + sum(len(p.data) for p in smil_parts)
    image_total = sum(len(p.data) for p in images) or 1
    image_room = max(available - fixed, 0)
    adapted_images: list[Part] = []
    for part in images:
        share = max(int(image_room * len(part.data) / image_total), MIN_IMAGE_BUDGET)
        limits = ImageLimits(
            target.max_width,
            target.max_height,
            share,
            target.accept,
            target.animation,
            target.max_pixels,
        )
        try:
            out = adapt_image(bytes(part.data), part.content_type, limits)
        except ImageError as exc:
            dropped.append(part)
            notes.append(f"{_name(part)}: {exc}")
            continue
        if not out.changed:
            adapted_images.append(part)
            continue
        converted += 1
        new_part = part
        if out.content_type != part.content_type:
            new_part, old_loc, new_loc = _renamed(part, out.content_type)
            if old_loc and new_loc:
                renamed[old_loc] = new_loc
        adapted_images.append(replace(new_part, data=out.data))
    # Keep the original order of the parts that survive.
    ordered: list[Part] = []
    image_iter = iter(adapted_images)
    dropped_ids = {id(p) for p in dropped}
    kept_iter = iter(kept)
    for part in parts:
        if part.content_type == SMIL or id(part) in dropped_ids:
            continue
        if part.content_type.startswith("image/"):
            ordered.append(next(image_iter))
        else:
            ordered.append(next(kept_iter))
    # Still too big: the largest media go first, text stays.

    def total(items: list[Part]) -> int:
        return sum(len(p.data) for p in items) + sum(len(p.data) for p in smil_parts)

    while total(ordered) > available:
        candidates = [p for p in ordered if not p.content_type.startswith("text/")]
        if not candidates:
            break
        largest = max(candidates, key=lambda p: len(p.data))
        index = ordered.index(largest)
        ordered.remove(largest)
        if largest.content_type.startswith(("audio/", "video/")):
            room = available - total(ordered)
            smaller = transcode(bytes(largest.data), largest.content_type, target.accept, room)
            if smaller is not None and len(smaller.data) < len(largest.data):
                new_part, old_loc, new_loc = _renamed(largest, smaller.content_type)
                if old_loc and new_loc:
                    renamed[old_loc] = new_loc
                ordered.insert(index, replace(new_part, data=smaller.data))
                converted += 1
                continue
        dropped.append(largest)
        notes.append(f"{_name(largest)}: does not fit {max_size} bytes")
    if dropped:
        ordered.append(_note(dropped))
    out_type, out_params, final = _presentation(
        content_type, params, ordered, smil_parts, dropped, renamed, target
    )
    return Adapted(
        out_type,
        out_params,
        final,
        notes,
        converted,
        len(dropped),
        bytes_in,
        sum(len(p.data) for p in final),
    )


def _presentation(
    content_type: str,
    params: dict[str, object],
    parts: list[Part],
    smil_parts: list[Part],
    dropped: list[Part],
    renamed: dict[str, str],
    target: Target,
) -> tuple[str, dict[str, object], list[Part]]:
    """The multipart type and SMIL of the adapted message."""
    if not target.smil:
        return MIXED, {}, parts
    if smil_parts:
        gone = {ref for p in dropped for ref in _refs(p)}
        try:
            new_smil = smil_mod.rewrite(bytes(smil_parts[0].data), renamed=renamed, dropped=gone)
        except smil_mod.SmilError:
            return MIXED, {}, parts
        smil_part = replace(smil_parts[0], data=new_smil)
        out_params = dict(params) if content_type == RELATED else {}
        start = _cid(smil_part)
        if start:
            # start and the root's Content-ID byte for byte, both bracketed: handsets
            # compare them as strings (feature-matrix §4.5).
            out_params["start"] = f"<{start}>"
            if smil_part.headers.get("Content-ID") != f"<{start}>":
                headers = {**smil_part.headers, "Content-ID": f"<{start}>"}
                smil_part = replace(smil_part, headers=headers)
        out_params["type"] = SMIL
        return RELATED, out_params, [smil_part, *parts]
    if target.generate_smil and parts:
        numbered = []
        for index, part in enumerate(parts):
            if _cid(part) is None:
                headers = dict(part.headers)
                headers["Content-ID"] = f"<part{index}>"
                part = replace(part, headers=headers)
            numbered.append(part)
        refs = [(_cid(p) or "", p.content_type) for p in numbered]
        smil_part = Part(SMIL, {}, {"Content-ID": "<smil>"}, smil_mod.generate(refs))
        return RELATED, {"start": "<smil>", "type": SMIL}, [smil_part, *numbered]
    return (content_type if content_type in (RELATED, MIXED) else MIXED), dict(params), parts
