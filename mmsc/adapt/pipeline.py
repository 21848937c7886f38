"""A whole message made fit for one handset: the parts, the SMIL, and the total size.

Pure (bytes in, bytes out), so it runs in a worker process. The budget is the
handset's maximum message size less the encoded m-retrieve-conf's overhead.
Part types are normalised first (``Image/JPG`` is ``image/jpeg``). Text, SMIL
and other small parts are kept first; audio and video are settled next
(transcoded or dropped, largest first, leaving room for a screen-sized picture
each), so that the pictures then share what really is left, in proportion
to their original sizes; if the message still does not fit, the largest
remaining media go first, each replaced by a line in a short text note that the
SMIL shows on a last slide. Text is never dropped: when it alone is over the
limit, it is cut, and says so (issue #6; ../shared/research/performance.md
§3.5 on per-part budgets).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from mmsc.adapt import smil as smil_mod
from mmsc.adapt.formats import EXTENSIONS, accepts, normalise
from mmsc.adapt.images import READABLE_TYPES, ImageError, ImageLimits, UnknownFormat, adapt_image
from mmsc.adapt.media import transcode
from protocol.wsp import Part

RELATED = "application/vnd.wap.multipart.related"
MIXED = "application/vnd.wap.multipart.mixed"
SMIL = "application/smil"
HEADER_RESERVE = 600  # m-retrieve-conf headers (From, To, Subject, Message-ID, ...)
PART_RESERVE = 60  # per-part headers (Content-Type with name and charset, Content-ID)
MIN_IMAGE_BUDGET = 3000
# What the pictures keep when audio and video are settled: a screen-sized JPEG at a
# decent quality takes about a quarter of a byte per pixel (176x208: 9 KB, 640x480: 77 KB).
PICTURE_BYTES_PER_PIXEL = 0.25
# Part of every variant's cache key (mmsc.adapt.targets): bump when the same message
# and target would now adapt differently, so stored variants are not served stale.
PIPELINE_VERSION = 2
NOTE_CID = "mmsc-removed"
CUT_MARK = "\n[cut: the message was too long for this phone]"
# Charset names that Python's codecs do not know as such. UCS-2 is UTF-16 without
# surrogates (checked in _encode_text); "*" (any charset) reads UTF-8.
_CODECS = {"iso-10646-ucs-2": "utf-16-be", "*": "utf-8"}
# Tried before the rest of a handset's list (sorted, to be deterministic): the
# charsets every such handset really reads.
_PREFERRED_CHARSETS = ("us-ascii", "iso-8859-1")


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
    """What a SMIL ``src`` may call this part: its Content-ID, its Content-Location, and
    the name or filename parameter (authoring tools use any of them)."""
    out = []
    cid = _cid(part)
    if cid:
        out.append(cid)
    location = part.headers.get("Content-Location")
    if isinstance(location, str) and location:
        out.append(location)
    for key in ("name", "filename"):
        value = part.params.get(key)
        if isinstance(value, str) and value:
            out.append(value)
    return out


def _normalised(part: Part) -> Part:
    ctype = normalise(part.content_type)
    return part if ctype == part.content_type else replace(part, content_type=ctype)


def _codec(charset: str) -> str | None:
    """The Python codec for a charset label; None for a name Python does not know."""
    try:
        return codecs.lookup(_CODECS.get(charset, charset)).name
    except LookupError:
        return None


def _encode_text(text: str, charsets: frozenset[str]) -> tuple[str, bytes]:
    """(label, bytes): the first charset the handset reads that holds ``text`` without
    loss: UTF-8 when it reads that (or anything, "*"), then its own list; names Python
    does not know are skipped. Latin-1 with "?" for the rest when none does."""
    candidates = []
    if not charsets or "utf-8" in charsets or "*" in charsets:
        candidates.append("utf-8")
    candidates += [c for c in _PREFERRED_CHARSETS if c in charsets]
    candidates += sorted(charsets - {"utf-8", "*", *_PREFERRED_CHARSETS})
    for label in candidates:
        codec = _codec(label)
        if codec is None:
            continue
        if label == "iso-10646-ucs-2" and any(ord(char) > 0xFFFF for char in text):
            continue  # UCS-2 has no surrogate pairs
        try:
            return label, text.encode(codec)
        except UnicodeEncodeError:
            continue
    return "iso-8859-1", text.encode("latin-1", "replace")


def _decode_text(part: Part) -> str:
    """The part's text: its declared charset, else UTF-8, else Latin-1 (reads anything)."""
    data = bytes(part.data)
    declared = part.params.get("charset")
    first = _codec(declared.lower()) if isinstance(declared, str) else None
    for codec in (first, "utf-8"):
        if codec is None:
            continue
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _charset_text(part: Part, target: Target) -> Part:
    """Text in a charset the handset reads, always labelled."""
    label, encoded = _encode_text(_decode_text(part), target.charsets)
    return replace(part, params={**part.params, "charset": label}, data=encoded)


def _cut_text(part: Part, keep: int) -> Part:
    """``part`` cut to about ``keep`` bytes on a character boundary, and marked as cut."""
    codec = _codec(str(part.params.get("charset", "utf-8")).lower()) or "utf-8"
    text = bytes(part.data)[: max(keep, 0)].decode(codec, "ignore")
    return replace(part, data=(text + CUT_MARK).encode(codec, "replace"))


def _renamed(part: Part, ctype: str) -> tuple[Part, dict[str, str]]:
    """``part`` relabelled as ``ctype``: the file extension of its name, filename and
    Content-Location follows the new format. Returns the part and {old: new} for each
    of those names, for the SMIL."""
    params = dict(part.params)
    headers = dict(part.headers)
    ext = EXTENSIONS.get(ctype, "")
    renamed: dict[str, str] = {}
    if ext:
        for table, key in ((params, "name"), (params, "filename"), (headers, "Content-Location")):
            value = table.get(key)
            if isinstance(value, str) and value:
                table[key] = renamed[value] = value.rsplit(".", 1)[0] + ext
    return Part(ctype, params, headers, part.data), renamed


def _note(dropped: list[Part]) -> Part:
    lines = ["Some content was removed because your phone cannot show it:"]
    for part in dropped:
        lines.append(f"- {_name(part)} ({part.content_type}, {len(part.data)} bytes)")
    return Part(
        "text/plain",
        {"charset": "utf-8", "name": "removed.txt"},
        {"Content-ID": f"<{NOTE_CID}>", "Content-Location": "removed.txt"},
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
    content_type = normalise(content_type)
    parts = [_normalised(p) for p in parts]
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
    return _cut_to_fit(_text_only(parts, target, result), target, measure)


def _text_only(parts: list[Part], target: Target, last: Adapted) -> Adapted:
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


def _cut_to_fit(result: Adapted, target: Target, measure: Callable[[Adapted], int]) -> Adapted:
    """Text alone over the limit: the longest texts are cut (and say so) until the
    encoded message fits. Dropping the text would leave the handset nothing."""
    notes = list(result.notes)
    parts = list(result.parts)
    for _ in range(len(parts) + 2):  # each round cuts one text to what is left of it
        excess = measure(replace(result, parts=parts)) - target.max_message_size
        if excess <= 0 or not parts:
            break
        index = max(range(len(parts)), key=lambda i: len(parts[i].data))
        longest = parts[index]
        # The mark is added, and stateful encodings may grow when cut: aim a bit lower.
        parts[index] = _cut_text(longest, len(longest.data) - excess - len(CUT_MARK) * 4 - 64)
        notes.append(f"{_name(longest)}: cut from {len(longest.data)} bytes")
    return replace(result, parts=parts, notes=notes, bytes_out=sum(len(p.data) for p in parts))


@dataclass(slots=True)
class _Work:
    """One pass over a message: what is kept (by original index), dropped, renamed."""

    kept: dict[int, Part] = field(default_factory=dict)
    dropped: list[Part] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    converted: set[int] = field(default_factory=set)

    def drop(self, part: Part, why: str) -> None:
        self.dropped.append(part)
        self.notes.append(f"{_name(part)}: {why}")

    def convert(self, index: int, original: Part, ctype: str, data: bytes) -> None:
        """Keep ``data`` as part ``index``. Names are derived from the ``original`` (not
        from an earlier conversion), as the SMIL still uses the original's."""
        new_part = original
        if ctype != original.content_type:
            new_part, renamed = _renamed(original, ctype)
            self.renamed.update(renamed)
        self.kept[index] = replace(new_part, data=data)
        self.converted.add(index)

    def size(self, indices: Iterable[int] | None = None) -> int:
        """Bytes kept so far, of ``indices`` or of everything."""
        chosen = self.kept if indices is None else indices
        return sum(len(self.kept[i].data) for i in chosen)


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
    smil_size = sum(len(p.data) for p in smil_parts)
    work = _Work()
    images: list[int] = []
    media: list[int] = []
    for index, part in enumerate(parts):
        ctype = part.content_type
        if ctype == SMIL:
            continue
        if ctype.startswith("text/"):
            work.kept[index] = _charset_text(part, target)
        elif ctype.startswith("image/"):
            images.append(index)
        elif ctype.startswith(("audio/", "video/")):
            media.append(index)
        elif accepts(target.accept, ctype):
            work.kept[index] = part
        else:
            work.drop(part, f"{ctype} not accepted")
    room = available - smil_size - work.size()
    reserve = _picture_reserve(parts, images, target, room)
    # Media that cannot be made smaller may use part of the pictures' reserve, down to a
    # quarter of it, rather than be dropped: a voice note is worth a smaller photo.
    _settle_media(parts, media, work, target, room - reserve, spare=reserve - reserve // 4)
    _fit_images(parts, images, work, target, available - smil_size - work.size())
    # Still too big (pictures at their smallest): the largest media go first, text stays.
    while work.size() + smil_size > available:
        candidates = [i for i, p in work.kept.items() if not p.content_type.startswith("text/")]
        if not candidates:
            break
        index = max(candidates, key=lambda i: len(work.kept[i].data))
        del work.kept[index]
        # The original: the SMIL still names it by its old name.
        work.drop(parts[index], f"does not fit {max_size} bytes")
    ordered = [work.kept[i] for i in sorted(work.kept)]
    if work.dropped:
        ordered.append(_note(work.dropped))
    out_type, out_params, final = _presentation(
        content_type, params, ordered, smil_parts, work.dropped, work.renamed, target
    )
    return Adapted(
        out_type,
        out_params,
        final,
        work.notes,
        len(work.converted & work.kept.keys()),
        len(work.dropped),
        bytes_in,
        sum(len(p.data) for p in final),
    )


def _picture_reserve(parts: list[Part], images: list[int], target: Target, room: int) -> int:
    """The room audio and video leave to the pictures: a screen-sized picture each, at
    most half of the room and no more than the pictures are."""
    screen = int(target.max_width * target.max_height * PICTURE_BYTES_PER_PIXEL)
    originals = sum(len(parts[i].data) for i in images)
    return min(originals, screen * len(images), max(room, 0) // 2)


def _settle_media(
    parts: list[Part], media: list[int], work: _Work, target: Target, room: int, spare: int = 0
) -> None:
    """Audio and video within ``room``, before the pictures are sized: what the handset
    cannot play is transcoded (or dropped), then the largest is transcoded smaller or
    dropped until they fit. Deciding this first is what lets a photo sent with a video
    use the room the video gives up, instead of being sized for a share of the room the
    video had before it was dropped (a 3 KB thumbnail). ``spare``: room the pictures can
    give up for a part that would otherwise be dropped."""
    for index in media:
        part = parts[index]
        if accepts(target.accept, part.content_type):
            work.kept[index] = part
            continue
        out = transcode(bytes(part.data), part.content_type, target.accept, max(room, 1))
        if out is None:
            work.drop(part, f"{part.content_type} not accepted (and not transcodable)")
        else:
            work.convert(index, part, out.content_type, out.data)
    settled = [i for i in media if i in work.kept]
    while settled and work.size(settled) > room:
        index = max(settled, key=lambda i: len(work.kept[i].data))
        settled.remove(index)
        largest = work.kept.pop(index)
        budget = room - work.size(settled)
        smaller = transcode(bytes(largest.data), largest.content_type, target.accept, budget)
        if smaller is not None and len(smaller.data) < len(largest.data):
            work.convert(index, parts[index], smaller.content_type, smaller.data)
            settled.append(index)
        elif work.size(settled) + len(largest.data) <= room + spare:
            work.kept[index] = largest  # kept as it is: the pictures make do with less
            break
        else:
            work.drop(parts[index], f"does not fit with the rest of the message ({room} bytes)")


def _fit_images(
    parts: list[Part], images: list[int], work: _Work, target: Target, room: int
) -> None:
    """The pictures within ``room``, shared in proportion to their original sizes. A
    type the handset takes that we cannot decode (SVG, WBMP) goes as it is."""
    image_total = sum(len(parts[i].data) for i in images) or 1
    for index in images:
        part = parts[index]
        share = max(int(max(room, 0) * len(part.data) / image_total), MIN_IMAGE_BUDGET)
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
        except UnknownFormat as exc:
            ctype = part.content_type
            if accepts(target.accept, ctype) and ctype not in READABLE_TYPES:
                work.kept[index] = part
            else:
                work.drop(part, str(exc))
            continue
        except ImageError as exc:
            work.drop(part, str(exc))
            continue
        if out.changed:
            work.convert(index, part, out.content_type, out.data)
        else:
            work.kept[index] = part


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
            new_smil = smil_mod.rewrite(
                bytes(smil_parts[0].data),
                renamed=renamed,
                dropped=gone,
                note=NOTE_CID if dropped else None,
            )
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
