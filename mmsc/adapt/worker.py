"""The adaptation job that runs in a worker process: stored m-send-req in, adapted one out.

Module-level and picklable on purpose (ProcessPoolExecutor), and free of any
server state: it sees the stored bytes and the target, nothing else.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, UnidentifiedImageError

from mmsc.adapt.formats import accepts, normalise
from mmsc.adapt.images import FORMAT_TYPES, READABLE_TYPES, real_format
from mmsc.adapt.pipeline import MIXED, RELATED, SMIL, Adapted, Target, adapt
from protocol import mms
from protocol.errors import DecodeError
from protocol.mms import MmsPdu
from protocol.uaprof import normalise_charset
from protocol.wsp import Part

# The m-retrieve-conf adds to the stored envelope: Message-ID, Date, the token as its
# transaction id, X-Mms-Retrieve-Status. Measured with room to spare.
RETRIEVE_OVERHEAD = 120


def _body(pdu: MmsPdu) -> tuple[str, dict[str, Any], list[Part]]:
    """(content type, parameters, parts) of the message body. A single body that is not
    multipart (an m-send-req of one picture or one text) is one part of a
    multipart/mixed, so that it is adapted like any other part instead of vanishing."""
    if pdu.parts is None and pdu.body is not None:
        params = dict(pdu.content_type_params or {})
        return MIXED, {}, [Part(pdu.content_type or "", params, {}, pdu.body)]
    return normalise(pdu.content_type or ""), dict(pdu.content_type_params or {}), pdu.parts or []


def needs_adaptation(raw: bytes, target: Target) -> bool:
    """Cheap check, fit for the event loop: False when every part is already something
    the handset takes (type, picture format and size read from the header only, total
    size), so the common small message never waits for a worker process."""
    if len(raw) + RETRIEVE_OVERHEAD > target.max_message_size:
        return True
    try:
        pdu = mms.decode(raw)
    except DecodeError:
        return False  # served as stored; nothing we could adapt anyway
    content_type, _params, parts = _body(pdu)
    if content_type == RELATED and not _start_names_a_part(pdu):
        return True
    for part in parts:
        ctype = normalise(part.content_type)
        if ctype == SMIL:
            if not target.smil:
                return True
            continue
        if not accepts(target.accept, ctype):
            return True
        if ctype.startswith("text/") and not _labelled_for(part.params.get("charset"), target):
            return True
        if ctype.startswith("image/") and _image_needs_adaptation(part, ctype, target):
            return True
    return target.generate_smil and content_type != RELATED


def _image_needs_adaptation(part: Part, ctype: str, target: Target) -> bool:
    """Whether an accepted picture must still go through the pipeline: its real format
    (not its label) is not accepted, it is too big for the screen, turned, or animated
    for a handset that is not. A type we do not decode (SVG, WBMP) goes as it is."""
    try:
        with Image.open(io.BytesIO(bytes(part.data))) as image:
            mpo = image.format == "MPO"  # a JPEG with more pictures after it
            real = FORMAT_TYPES.get(real_format(image))
            width, height = image.size
            if getattr(image, "is_animated", False) and not mpo and not target.animation:
                return True
            rotated = real == "image/jpeg" and image.getexif().get(0x0112, 1) not in (0, 1)
    except UnidentifiedImageError:
        return ctype in READABLE_TYPES  # ours and unreadable: corrupt, the pipeline drops it
    except (OSError, ValueError, Image.DecompressionBombError):
        return True  # the pipeline decides what to do with it
    if real is None:
        return ctype in READABLE_TYPES
    if not accepts(target.accept, real):
        return True  # a WebP labelled image/jpeg is still a WebP
    box = sorted((target.max_width, target.max_height))
    return rotated or sorted((width, height))[0] > box[0] or max(width, height) > box[1]


def _start_names_a_part(pdu: MmsPdu) -> bool:
    """Whether ``start`` (if any) equals a part's Content-ID byte for byte, as handsets
    compare them (feature-matrix §4.5); ``start=smil`` against ``<smil>`` does not."""
    start = pdu.content_type_params.get("start")
    return not start or any(part.content_id == start for part in pdu.parts or [])


def _labelled_for(charset: object, target: Target) -> bool:
    """Whether text with this charset label can go out as it is: a real charset the
    handset reads (any, when its list has "*"). "*" as a label (WSP's Any-charset,
    feature-matrix §4.6) and a missing label are relabelled by the pipeline."""
    if not isinstance(charset, str) or charset in ("", "*"):
        return False
    name = normalise_charset(charset)
    return not target.charsets or "*" in target.charsets or name in target.charsets


def adapt_submission(raw: bytes, target: Target) -> tuple[bytes, dict[str, Any]]:
    """The stored m-send-req with its body adapted for ``target``, and what was done."""
    pdu = mms.decode(raw)

    def measure(result: Adapted) -> int:
        candidate = MmsPdu(
            "m-retrieve-conf",
            pdu.transaction_id,
            pdu.mms_version,
            dict(pdu.headers),
            result.content_type,
            result.params,
            result.parts,
        )
        return len(mms.encode(candidate, check_mandatory=False)) + RETRIEVE_OVERHEAD

    content_type, params, parts = _body(pdu)
    result = adapt(content_type, params, list(parts), target, measure)
    out = MmsPdu(
        pdu.message_type,
        pdu.transaction_id,
        pdu.mms_version,
        pdu.headers,
        result.content_type,
        result.params,
        result.parts,
    )  # always multipart: a single body comes back as one part of a multipart/mixed
    stats = {
        "converted": result.converted,
        "dropped": result.dropped,
        "bytes_in": result.bytes_in,
        "bytes_out": result.bytes_out,
        "notes": result.notes,
    }
    return mms.encode(out, check_mandatory=False), stats
