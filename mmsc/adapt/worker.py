"""The adaptation job that runs in a worker process: stored m-send-req in, adapted one out.

Module-level and picklable on purpose (ProcessPoolExecutor), and free of any
server state: it sees the stored bytes and the target, nothing else.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from mmsc.adapt.formats import accepts
from mmsc.adapt.pipeline import RELATED, SMIL, Adapted, Target, adapt
from protocol import mms
from protocol.errors import DecodeError
from protocol.mms import MmsPdu

# The m-retrieve-conf adds to the stored envelope: Message-ID, Date, the token as its
# transaction id, X-Mms-Retrieve-Status. Measured with room to spare.
RETRIEVE_OVERHEAD = 120


def needs_adaptation(raw: bytes, target: Target) -> bool:
    """Cheap check, fit for the event loop: False when every part is already something
    the handset takes (type, picture size read from the header only, total size), so
    the common small message never waits for a worker process."""
    if len(raw) + RETRIEVE_OVERHEAD > target.max_message_size:
        return True
    try:
        pdu = mms.decode(raw)
    except DecodeError:
        return False  # served as stored; nothing we could adapt anyway
    if pdu.content_type == RELATED and not _start_names_a_part(pdu):
        return True
    for part in pdu.parts or []:
        ctype = part.content_type
        if ctype == SMIL:
            if not target.smil:
                return True
            continue
        if not accepts(target.accept, ctype):
            return True
        if ctype.startswith("text/") and not _labelled_for(part.params.get("charset"), target):
            return True
        if ctype.startswith("image/"):
            try:
                with Image.open(io.BytesIO(bytes(part.data))) as image:
                    width, height = image.size
                    if getattr(image, "is_animated", False) and not target.animation:
                        return True
                    rotated = image.format == "JPEG" and image.getexif().get(0x0112, 1) not in (
                        0,
                        1,
                    )
            except (OSError, ValueError, Image.DecompressionBombError):
                return True  # the pipeline decides what to do with it
            box = sorted((target.max_width, target.max_height))
            if rotated or sorted((width, height))[0] > box[0] or max(width, height) > box[1]:
                return True
    return target.generate_smil and pdu.content_type != RELATED


def _start_names_a_part(pdu: MmsPdu) -> bool:
    """Whether ``start`` (if any) equals a part's Content-ID byte for byte, as handsets
    compare them (feature-matrix §4.5); ``start=smil`` against ``<smil>`` does not."""
    start = pdu.content_type_params.get("start")
    return not start or any(part.content_id == start for part in pdu.parts or [])


def _labelled_for(charset: object, target: Target) -> bool:
    """Whether text with this charset label can go out as it is: a real charset the
    handset reads. "*" (WSP's Any-charset, feature-matrix §4.6) and a missing label
    are relabelled by the pipeline, which tries UTF-8, then Latin-1."""
    if not isinstance(charset, str) or charset in ("", "*"):
        return False
    return not target.charsets or charset.lower() in target.charsets


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

    result = adapt(
        pdu.content_type or "",
        dict(pdu.content_type_params or {}),
        list(pdu.parts or []),
        target,
        measure,
    )
    out = MmsPdu(
        pdu.message_type,
        pdu.transaction_id,
        pdu.mms_version,
        pdu.headers,
        result.content_type,
        result.params,
        result.parts,
    )
    stats = {
        "converted": result.converted,
        "dropped": result.dropped,
        "bytes_in": result.bytes_in,
        "bytes_out": result.bytes_out,
        "notes": result.notes,
    }
    return mms.encode(out, check_mandatory=False), stats
