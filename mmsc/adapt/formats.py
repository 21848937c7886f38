"""What a handset's accept list means, and the file extension of each output type.

One definition for the image step, the media step, the pipeline and the
event-loop pre-check, so that "accepted" cannot mean different things in
different places.
"""

from __future__ import annotations

from protocol.uaprof import normalise_type

# File-name extension of each type the adaptation writes (a converted part is renamed).
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "audio/amr": ".amr",
    "audio/mp4": ".m4a",
    "audio/mpeg": ".mp3",
    "video/mp4": ".mp4",
    "video/3gpp": ".3gp",
}


def accepts(accept: frozenset[str], ctype: str) -> bool:
    """Whether ``ctype`` is in ``accept``, directly or through ``*/*`` or ``major/*``."""
    return "*/*" in accept or f"{ctype.split('/')[0]}/*" in accept or ctype in accept


def normalise(ctype: str) -> str:
    """``Image/JPG`` -> ``image/jpeg``, ``audio/mp3`` -> ``audio/mpeg``: senders label parts
    as loosely as profiles list types (protocol.uaprof.TYPE_ALIASES), and both sides
    are compared normalised. What is not a MIME type at all is only lower-cased."""
    return normalise_type(ctype) or ctype.strip().lower()
