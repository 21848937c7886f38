"""UAProf: what a handset says it can take, read from its profile and its request headers.

A handset names its User Agent Profile (OMA-WAP-UAProf v1.1, an RDF/XML document) by
URL in a request header; the MMSC fetches it (not here: this module does no I/O) and
reads the few attributes content adaptation needs, from the MmsCharacteristics
component (the WAP Forum MMS vocabulary, schema ccppschema-20010111):
MmsMaxMessageSize, MmsMaxImageResolution, MmsCcppAccept, MmsCcppAcceptCharSet and
MmsVersion; plus ScreenSize, Vendor and Model from the hardware component.

Real profiles are sloppy (../shared/research/performance.md §3.3, feature-matrix §3 item 3),
so reading is tolerant:

- Elements are matched by local name only, case-insensitively and ignoring "-" and
  "_": Nokia writes the RDF namespace without its trailing "#", the MMS vocabulary
  appears under the WAP Forum ``mms:`` and the OMA ``prf:`` namespaces, and old
  devices spell ``MmsCcppAcceptCharSet`` as ``MmsCcppAccept-CharSet`` or ``-Charset``.
- Lists may be an ``rdf:Bag``, an ``rdf:Seq``, or bare text ("1.0, 1.1, 1.2").
- ``WxH`` is read with either case of "x"; sizes and resolutions are clamped to sane
  ranges (a 12-byte MmsMaxMessageSize exists in the wild); anything unreadable falls
  back to the caller's defaults, field by field.
- A profile is never trusted beyond that: a field is a number, a MIME type or a
  charset name of bounded length, or it is dropped.

Parsing is hardened, because the document comes from whatever host the handset
named: the input is bounded in size, element depth and element count; a DOCTYPE
(with any internal subset) is cut out of the prolog before the XML parser runs, so
nothing is ever loaded or expanded; references to entities it declared are dropped,
not expanded. (No file of the shared corpus carries a DOCTYPE; the cut keeps such a
file readable instead of refusing it.) lxml only ever sees UTF-8 without a
declaration, so no encoding trick can hide markup from that cut.

Anything that is not a usable profile (not XML, an HTML error page, XML without a
single UAProf attribute) raises ``UaprofError`` and nothing else, so the caller can
fall back to its defaults.

The URL is the handset's to choose, so ``fetchable_address`` says which addresses a
fetch may connect to (the fetcher, mmsc/adapt/targets.py, applies it to every address
a profile host resolves to): never the MMSC's own network by default.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from protocol.errors import DecodeError
from protocol.wsp_tables import CHARSET_CODES, CHARSETS
from protocol.xml_safe import XmlRefused, doctype_end, parse_bounded

# The largest profile of the shared corpus is 21 KB; fifty times that leaves room for
# bigger vendor files and still bounds what a hostile host can make us parse.
MAX_PROFILE_SIZE: Final = 1024 * 1024
# A profile is RDF/Description/component/Description/attribute/Bag/li: depth 7.
MAX_DEPTH: Final = 32
MAX_ELEMENTS: Final = 20_000
MAX_URL_LENGTH: Final = 1024

# Research §3.5: "clamp MmsMaxMessageSize to a sane range (for example 30 KB-5 MB)".
MIN_MESSAGE_SIZE: Final = 30 * 1024
MAX_MESSAGE_SIZE: Final = 5 * 1024 * 1024
# An image side below 64 px is useless for a picture message; above 8192 no handset
# shows it and decoding it costs a worker hundreds of MB.
MIN_IMAGE_SIDE: Final = 64
MAX_IMAGE_SIDE: Final = 8192
MAX_SCREEN_SIDE: Final = 16384
_MAX_LIST: Final = 512  # entries kept per list attribute
_MAX_NAME: Final = 100  # characters kept of Vendor and Model


class UaprofError(DecodeError):
    """Bytes that are not a usable UAProf document (the caller falls back to defaults)."""

    def __init__(self, reason: str, offset: int = 0) -> None:
        super().__init__(offset, reason)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What content adaptation may send to one handset.

    ``max_image`` is (long side, short side): handsets show pictures in either
    orientation and profiles write the box either way (the Galaxy S says 1200x1600),
    so the adapter fits an image into the box turned to match the image.
    """

    max_message_size: int  # bytes, the whole m-retrieve-conf
    max_image: tuple[int, int]  # MmsMaxImageResolution, (long, short)
    accept: frozenset[str]  # normalised MIME types; "*/*" and "type/*" may appear
    charsets: frozenset[str]  # lower-case IANA names; "*" for any
    mms_version: str | None  # the highest MmsVersion listed, "1.2"
    screen: tuple[int, int] | None  # ScreenSize (width, height) as declared
    smil: bool  # application/smil is accepted: keep the presentation
    animation: bool  # animated GIF may be sent (image/gif is accepted)
    vendor: str | None = None
    model: str | None = None

    def accepts(self, content_type: str) -> bool:
        """Whether the handset takes this MIME type (aliases and wildcards included)."""
        ctype = normalise_type(content_type)
        if ctype is None:
            return False
        major = ctype.partition("/")[0]
        return ctype in self.accept or f"{major}/*" in self.accept or "*/*" in self.accept


# With no usable profile (research §3.5, §3.4): 300 KB = 307200 bytes, the modal UAProf
# value (57% of 3,106 profiles), Android's platform default (300*1024) and the legacy
# AOSP mms_config's 307200, which are the same number; 640x480, again both the modal
# profile value and Android's default. JPEG, GIF and PNG are in practically every
# profile; AMR is the speech codec 3GPP TS 26.140 requires of MMS clients that play
# speech, so an unknown handset keeps a voice note instead of losing it.
DEFAULT: Final = Capabilities(
    max_message_size=300 * 1024,
    max_image=(640, 480),
    accept=frozenset(
        {"image/jpeg", "image/gif", "image/png", "text/plain", "application/smil", "audio/amr"}
    ),
    charsets=frozenset({"utf-8", "us-ascii"}),
    mms_version="1.2",
    screen=None,
    smil=True,
    animation=True,
)

# ------------------------------------------------------------------ value normalisation

# Non-standard spellings in MmsCcppAccept (research §3.2: image/jpg in 2,707 of 3,321
# profiles, x-bmp 1,038, x-ms-bmp 661, pjpeg 383) and their registered types.
TYPE_ALIASES: Final[dict[str, str]] = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/jpe": "image/jpeg",
    "image/x-png": "image/png",
    "image/bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/x-ms-bmp": "image/bmp",
    "image/ms-bmp": "image/bmp",
    "image/x-windows-bmp": "image/bmp",
    "image/svg": "image/svg+xml",
    "image/wbmp": "image/vnd.wap.wbmp",
    "audio/x-amr": "audio/amr",
    "audio/amr-nb": "audio/amr",
    "audio/x-wav": "audio/wav",
    "audio/mp3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mpeg3": "audio/mpeg",
    "audio/mpg": "audio/mpeg",
    "audio/x-mpg": "audio/mpeg",
    "audio/mpg3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "audio/mid": "audio/midi",
    "audio/x-mid": "audio/midi",
    "audio/x-midi": "audio/midi",
    "video/mpeg4": "video/mp4",
}
_TYPE: Final = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/(?:[a-z0-9][a-z0-9!#$&^_.+-]{0,63}|\*)")
_CHARSET: Final = re.compile(r"[a-z0-9][a-z0-9._:+()-]{0,39}")


def normalise_type(text: str) -> str | None:
    """``Image/JPG; q=1`` -> ``image/jpeg``; None for what is not a MIME type (RFC 2045 §5.1)."""
    ctype = text.partition(";")[0].strip().lower()
    if ctype in ("*", "*/*"):
        return "*/*"
    if not _TYPE.fullmatch(ctype):
        return None
    return TYPE_ALIASES.get(ctype, ctype)


def normalise_charset(text: str) -> str | None:
    """An IANA charset name in lower case (``UTF8`` -> ``utf-8``, MIBenum ``106`` ->
    ``utf-8``); None for what cannot be one."""
    name = text.strip().lower()
    # ASCII digits only: "²" is a digit to isdigit() and not a number to int().
    if name.isascii() and name.isdigit() and len(name) <= 5:  # a MIBenum, as WSP encodes
        entry = CHARSETS.get(int(name))
        return entry[0] if entry else None
    if name == "*":
        return "*"
    for spelling in (name, name.replace("_", "-")):
        code = CHARSET_CODES.get(spelling)
        if code is not None:
            return CHARSETS[code][0]
    return name if _CHARSET.fullmatch(name) else None


_RESOLUTION: Final = re.compile(r"(\d{1,6})\s*[x×*]\s*(\d{1,6})", re.IGNORECASE)


def parse_resolution(text: str) -> tuple[int, int] | None:
    """``640x480``, ``2048X2048``, ``176 x 220`` -> (width, height); None otherwise."""
    m = _RESOLUTION.fullmatch(text.strip())
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


def image_box(width: int, height: int) -> tuple[int, int] | None:
    """The orientation-free, clamped box for an MmsMaxImageResolution; None for 0."""
    if width <= 0 or height <= 0:
        return None
    long, short = max(width, height), min(width, height)
    return (
        min(max(long, MIN_IMAGE_SIDE), MAX_IMAGE_SIDE),
        min(max(short, MIN_IMAGE_SIDE), MAX_IMAGE_SIDE),
    )


def clamp_message_size(size: int) -> int:
    return min(max(size, MIN_MESSAGE_SIZE), MAX_MESSAGE_SIZE)


_VERSION: Final = re.compile(r"(\d{1,2})\.(\d{1,2})(?:\.\d{1,3})?")

# --------------------------------------------------------------------- hardened reading

_BOMS: Final = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
)
_DECLARED_ENCODING: Final = re.compile(
    rb"\s*<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._\-]{1,40})"
)
_XML_DECL: Final = re.compile(r"<\?xml\s[^>]{0,300}?\?>|<\?xml\?>")
# A reference to an entity only a DTD could declare (XML 1.0 §4.1): dropped, never
# expanded. The five predefined entities and character references stay.
_ENTITY_REF: Final = re.compile(r"&(?!(?:lt|gt|amp|apos|quot);)[A-Za-z_:][\w.:-]{0,100};")
# An "&" that starts no reference at all ("AT&T" in a vendor name): escaped.
_BARE_AMP: Final = re.compile(r"&(?![A-Za-z_:][\w.:-]{0,100};|#[0-9]{1,8};|#x[0-9A-Fa-f]{1,8};)")


def _decode(data: bytes) -> str:
    """The document as text, whatever its encoding (XML 1.0 Appendix F)."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(name, "replace")
    head = data[:4]
    encoding = "utf-8"
    if len(head) == 4 and b"\x00" in head:  # UTF-16/32 without a byte-order mark
        if head[0] == 0 and head[1] == 0:
            encoding = "utf-32-be"
        elif head[2] == 0 and head[3] == 0:
            encoding = "utf-32-le"
        else:
            encoding = "utf-16-be" if head[0] == 0 else "utf-16-le"
    else:
        declared = _DECLARED_ENCODING.match(data)
        name = declared.group(1).decode("ascii").lower() if declared else ""
        # A file that says UTF-16 but has no NUL in its first characters is not: the
        # declaration was copied from elsewhere (it is ASCII-compatible, as read).
        if name and not name.startswith(("utf-16", "utf16", "utf-32", "utf32", "ucs")):
            encoding = name
    try:
        return data.decode(encoding, "replace")
    except (LookupError, ValueError, TypeError) as exc:  # an unknown or non-text codec
        raise UaprofError(f"unusable encoding {encoding!r}: {exc}") from None


def _after(text: str, i: int, opening: str, closing: str) -> int:
    """The index after the comment or PI that starts at ``i`` in the prolog."""
    end = text.find(closing, i + len(opening))
    if end < 0:
        raise UaprofError("unterminated comment or processing instruction", i)
    return end + len(closing)


def _sanitised(text: str) -> str:
    """The document without its XML declaration and DOCTYPE, entity references dropped."""
    text = text.lstrip("\ufeff \t\r\n")
    if not text.startswith("<"):
        raise UaprofError("not an XML document")
    decl = _XML_DECL.match(text)
    if decl:
        text = text[decl.end() :]
    # Walk the prolog (XML 1.0 §2.8: comments, PIs, at most one DOCTYPE, whitespace).
    # DOCTYPEs are cut out as they are met; the text is rebuilt once, not per DOCTYPE
    # (quadratic in a megabyte of them).
    kept: list[str] = []
    start = i = 0
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if text.startswith("<!DOCTYPE", i):
            kept.append(text[start:i])
            i = start = doctype_end(text, i)
        elif text.startswith("<!--", i):
            i = _after(text, i, "<!--", "-->")
        elif text.startswith("<?", i):
            i = _after(text, i, "<?", "?>")
        else:
            break
    body = text[i:]
    if "<!DOCTYPE" in body or "<!ENTITY" in body:  # not in the prolog: refused
        raise UaprofError("DTD markup outside the prolog", i)
    kept.append(text[start:])
    text = "".join(kept)
    return _BARE_AMP.sub("&amp;", _ENTITY_REF.sub("", text))


def _parse_xml(data: bytes) -> Any:
    """The root element of a bounded, DTD-free parse; UaprofError for anything else."""
    if len(data) > MAX_PROFILE_SIZE:
        raise UaprofError(f"profile larger than {MAX_PROFILE_SIZE} bytes")
    try:
        clean = _sanitised(_decode(data)).encode("utf-8", "replace")
        return parse_bounded(clean, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS)
    except UaprofError:
        raise
    except XmlRefused as exc:
        raise UaprofError(exc.reason, exc.offset) from None
    except Exception as exc:  # lxml raises XMLSyntaxError and, rarely, others
        raise UaprofError(f"XML not well-formed: {exc}") from None


def _key(tag: str) -> str:
    """``{ns}MmsCcppAccept-CharSet`` -> ``mmsccppacceptcharset``."""
    local = tag.rpartition("}")[2]
    return local.lower().replace("-", "").replace("_", "")


_SIZE: Final = "mmsmaxmessagesize"
_IMAGE: Final = "mmsmaximageresolution"
_ACCEPT: Final = "mmsccppaccept"
_CHARSETS: Final = "mmsccppacceptcharset"
_VERSION_KEY: Final = "mmsversion"
_SCREEN: Final = "screensize"
_VENDOR: Final = "vendor"
_MODEL: Final = "model"
_BROWSER_CHARSETS: Final = "ccppacceptcharset"  # the browser's, when the MMS client's is missing
_WANTED: Final = frozenset(
    (_SIZE, _IMAGE, _ACCEPT, _CHARSETS, _VERSION_KEY, _SCREEN, _VENDOR, _MODEL, _BROWSER_CHARSETS)
)
_SPLIT: Final = re.compile(r"[,\s]+")


def _items(element: Any) -> list[str]:
    """An attribute's values: its rdf:li items (Bag or Seq), else its own text."""
    items = [
        "".join(li.itertext())
        for li in element.iter()
        if isinstance(li.tag, str) and _key(li.tag) == "li"
    ]
    if not items:
        items = ["".join(element.itertext())]
    return [s for s in (item.strip() for item in items) if s]


def read_attributes(data: bytes) -> dict[str, list[str]]:
    """The UAProf attributes this module uses, by normalised local name, each with its
    values as written (the first occurrence with a value wins). Raises only ``UaprofError``."""
    root = _parse_xml(data)
    if not isinstance(root.tag, str) or _key(root.tag) == "html":
        raise UaprofError("an HTML page, not a profile")
    found: dict[str, list[str]] = {}
    seen = False
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        key = _key(element.tag)
        if key in _WANTED:
            seen = True
            if key not in found:
                items = _items(element)
                if items:
                    found[key] = items[:_MAX_LIST]
    if not seen:
        raise UaprofError("no UAProf attribute in the document")
    return found


def _tokens(values: list[str]) -> list[str]:
    """List items, also when several share one item or stand outside a Bag ("1.0, 1.1")."""
    return [t for value in values for t in _SPLIT.split(value) if t][:_MAX_LIST]


def _message_size(values: list[str] | None) -> int | None:
    if values and values[0].isascii() and values[0].isdigit() and len(values[0]) <= 12:
        size = int(values[0])
        return clamp_message_size(size) if size > 0 else None
    return None


def _box(values: list[str] | None) -> tuple[int, int] | None:
    parsed = parse_resolution(values[0]) if values else None
    return image_box(*parsed) if parsed else None


def _screen(values: list[str] | None) -> tuple[int, int] | None:
    parsed = parse_resolution(values[0]) if values else None
    if parsed and all(0 < side <= MAX_SCREEN_SIDE for side in parsed):
        return parsed
    return None


def _version(values: list[str] | None) -> str | None:
    best: tuple[int, int] | None = None
    for token in _tokens(values or []):
        m = _VERSION.fullmatch(token)
        if m:
            candidate = (int(m.group(1)), int(m.group(2)))
            best = candidate if best is None else max(best, candidate)
    return f"{best[0]}.{best[1]}" if best else None


def _name(values: list[str] | None) -> str | None:
    if not values:
        return None
    name = " ".join(values[0].split())[:_MAX_NAME]
    return name or None


def _set(values: list[str] | None, normalise: Callable[[str], str | None]) -> frozenset[str] | None:
    names = {n for n in (normalise(t) for t in _tokens(values or [])) if n}
    return frozenset(names) or None


def parse_profile(data: bytes, *, defaults: Capabilities = DEFAULT) -> Capabilities:
    """The capabilities a UAProf document declares, each missing or unusable field taken
    from ``defaults``. Raises only ``UaprofError`` (not a usable profile)."""
    found = read_attributes(data)
    accept = _set(found.get(_ACCEPT), normalise_type)
    charsets = _set(found.get(_CHARSETS), normalise_charset) or _set(
        found.get(_BROWSER_CHARSETS), normalise_charset
    )
    size = _message_size(found.get(_SIZE))
    if accept is None:
        smil, animation = defaults.smil, defaults.animation
    else:
        smil = bool({"application/smil", "application/smil+xml", "application/*", "*/*"} & accept)
        animation = bool({"image/gif", "image/*", "*/*"} & accept)
    return Capabilities(
        max_message_size=size if size is not None else defaults.max_message_size,
        max_image=_box(found.get(_IMAGE)) or defaults.max_image,
        accept=accept if accept is not None else defaults.accept,
        charsets=charsets if charsets is not None else defaults.charsets,
        mms_version=_version(found.get(_VERSION_KEY)) or defaults.mms_version,
        screen=_screen(found.get(_SCREEN)) or defaults.screen,
        smil=smil,
        animation=animation,
        vendor=_name(found.get(_VENDOR)) or defaults.vendor,
        model=_name(found.get(_MODEL)) or defaults.model,
    )


# ----------------------------------------------------------------------- request headers


class Headers(Protocol):
    """A plain mapping or a multidict (aiohttp's ``request.headers``)."""

    def items(self) -> Iterable[tuple[str, str]]: ...


# The header that names the profile (research §3.3, feature-matrix §4.9): x-wap-profile
# by default (WAP-248 UAProf), Profile where an Android carrier config renames it
# (Verizon) and in W3C CC/PP exchange, wap-profile, and "NN-Profile" under an HTTP
# extension declaration (CC/PP exchange: "Opt: ...; ns=19"). The *-diff headers carry
# profile changes, not a URL, and are ignored.
_HEADER_RANK: Final = {"x-wap-profile": 0, "profile": 1, "wap-profile": 2}
_NS_PROFILE: Final = re.compile(r"\d{1,3}-profile")
_HEADER_ITEM: Final = re.compile(r'\s*(?:"([^"]*)"|([^,]*))\s*(?:,|$)')
_URL_FORBIDDEN: Final = re.compile(r"[\x00-\x20\x7f\"<>\\^`{|}]")


def _http_url(text: str) -> str | None:
    url = text.strip().strip("'<>").strip()
    if not url or len(url) > MAX_URL_LENGTH or _URL_FORBIDDEN.search(url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return url


def profile_url(headers: Headers) -> str | None:
    """The first http(s) URL in the highest-ranked profile header; None when there is
    none. A header value may be quoted and may list several profile references
    (URLs and profile-diff names such as "1-Zm9v", comma-separated)."""
    candidates: list[tuple[int, int, str]] = []
    for index, (name, value) in enumerate(headers.items()):
        lower = str(name).strip().lower()
        rank = _HEADER_RANK.get(lower, 3 if _NS_PROFILE.fullmatch(lower) else None)
        if rank is not None and isinstance(value, str):
            candidates.append((rank, index, value))
    for _rank, _index, value in sorted(candidates):
        for m in _HEADER_ITEM.finditer(value[: 4 * MAX_URL_LENGTH]):
            url = _http_url(m.group(1) if m.group(1) is not None else m.group(2))
            if url:
                return url
    return None


# ------------------------------------------------------------------ where a fetch may go

# Well-known NAT64 prefix (RFC 6052): the gateway connects to the IPv4 address in the
# last 32 bits, so that address is the one to judge.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def fetchable_address(address: str, *, allow_private: bool = False) -> bool:
    """Whether a UAProf fetch may connect to ``address`` (an IP address as text; an
    IPv6 zone such as ``%eth0`` is ignored).

    The profile URL comes from any subscriber's request, so without this the MMSC
    would send GET requests wherever a handset points it: its own loopback services,
    the operator's private networks, a cloud metadata endpoint. IPv4 carried in IPv6
    (mapped ``::ffff:a.b.c.d``, 6to4, NAT64) is judged as that IPv4 address.

    Refused always: link-local (169.254/16 with cloud metadata, fe80::/10), multicast,
    unspecified (0.0.0.0 reaches the local host on Linux), broadcast and reserved.
    Refused unless ``allow_private`` (a lab whose profile server is on its own
    network): loopback, private (RFC 1918, fc00::/7, fec0::/10), shared (100.64/10,
    carrier-grade NAT, where an operator's own hosts live) and the other
    special-purpose ranges that are not globally reachable."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            address.partition("%")[0]
        )
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        else:
            ip = ip.ipv4_mapped or ip.sixtofour or ip
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    if ip.is_loopback:
        return allow_private
    if ip.is_reserved:
        return False
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    return allow_private or (ip.is_global and not ip.is_private and not site_local)
