"""MM7 (3GPP TS 23.140 §8.7): SOAP 1.1 with attachments over HTTP, sans I/O.

``decode(body, content_type)`` takes an HTTP body and its Content-Type and gives one
operation dataclass (``mm7_ops``); ``encode(op)`` gives the HTTP body and its
Content-Type. Nothing here touches a socket: the server feeds bytes in and writes
bytes out.

Decoding is lenient, because MM7 peers are (``../shared/corpus/mm7`` and its
MANIFEST hold real samples):

- the body is plain SOAP (text/xml, application/xml, ...) or multipart/related; the
  envelope is the part named by ``start`` (with or without angle brackets), else the
  first part. A multipart without a boundary parameter gets the boundary from its
  first line; one declared multipart that is plain XML is read as XML;
- element children are matched by local name: fully qualified, unqualified (in no
  namespace under a qualified operation), or in another MM7 namespace; order is not
  checked; unknown elements are ignored;
- the namespace is the first 3GPP MM7 namespace found on the operation element, the
  TransactionID, the SOAPAction (``soap_action=``) or a Fault's detail. A 3GPP URI
  outside ``NAMESPACES`` (a later schema) is read with REL-6 rules and reported by
  its key ("REL-6-MM7-1-5"); a foreign URI is reported as the URI itself. A bare
  key ("REL-5-MM7-1-2") is accepted as SOAPAction. With no namespace anywhere the
  message is in ``default_namespace`` (the peer's configured one, else
  ``DEFAULT_NAMESPACE``) unless its MM7Version is of another release
  (``namespace_for_version``). ``encode`` accepts all these forms, so the answer
  goes back in the caller's namespace;
- ``<Content href>`` is "cid:x", "cid:<x>", percent-encoded, a bare Content-ID or a
  Content-Location; an href that names no part, in a message with exactly one
  attachment, means that attachment (an instantcom-mm7 recovery); attachments
  the href does not name are ignored; with no attachment at all (plain XML, or
  the envelope alone in a multipart) ``content`` stays None and ``content_href``
  keeps the reference;
- booleans "true/false/1/0", dates with or without zone (UTC assumed).

What cannot be read raises ``Mm7DecodeError`` with the status to answer and, when
they could be read, the namespace and TransactionID (``mm7_errors`` lists the
codes). Nothing else escapes ``decode``: the XML is parsed by ``mm7_xml`` with DTDs
refused and size, depth and element count bounded, and the tests fuzz it.

Encoding is strict: elements in schema order, every element qualified in the MM7
namespace (``prefix="mm7"``, or ``prefix=None`` for a default-namespace declaration
as some VASPs require), only elements the target release defines, mandatory ones
present (``EncodeError`` otherwise), the TransactionID in the SOAP Header with
``env:mustUnderstand="1"``, a Fault's faultcode/faultstring/detail unqualified as
SOAP 1.1 §4.4 requires with RSErrorRsp/VASPErrorRsp in the MM7 namespace, and a
message with content as ``multipart/related; type="text/xml"; start="<...>"``.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote, unquote

from protocol.errors import EncodeError
from protocol.mm7_content import (
    Content,
    content_from_mime,
    content_from_parts,
    content_parts,
    mime_content_type,
    mms_content_type,
)
from protocol.mm7_errors import Mm7DecodeError
from protocol.mm7_mime import (
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
from protocol.mm7_ops import (
    OPERATION_TYPES,
    Address,
    CancelReq,
    CancelRsp,
    DeliverReq,
    DeliverRsp,
    DeliveryReportReq,
    DeliveryReportRsp,
    Fault,
    Operation,
    ReadReplyReq,
    ReadReplyRsp,
    ReplaceReq,
    ReplaceRsp,
    ReplyCharging,
    RSErrorRsp,
    SubmitReq,
    SubmitRsp,
    UACapabilities,
    VASPErrorRsp,
    operation_name,
)
from protocol.mm7_soap import OPERATIONS, Writer, read_fault, read_operation, write_operation
from protocol.mm7_tables import (
    CONTENT_REFUSED,
    DEFAULT_NAMESPACE,
    MESSAGE_FORMAT_CORRUPT,
    MM7_VERSIONS,
    NAMESPACE_BASE,
    NAMESPACE_KEY_RE,
    NAMESPACE_URI_RE,
    NAMESPACES,
    SERVER_ERROR,
    SOAP12_ENV,
    SOAP_ENV,
    STATUS,
    UNSUPPORTED_OPERATION,
    VALIDATION_ERROR,
)
from protocol.mm7_xml import Node, XmlElement, is_ncname, parse, serialize

__all__ = [
    "DEFAULT_NAMESPACE",
    "MM7_VERSIONS",
    "NAMESPACES",
    "OPERATION_TYPES",
    "STATUS",
    "Address",
    "CancelReq",
    "CancelRsp",
    "Content",
    "DeliverReq",
    "DeliverRsp",
    "DeliveryReportReq",
    "DeliveryReportRsp",
    "Fault",
    "Mm7DecodeError",
    "Operation",
    "RSErrorRsp",
    "ReadReplyReq",
    "ReadReplyRsp",
    "ReplaceReq",
    "ReplaceRsp",
    "ReplyCharging",
    "SubmitReq",
    "SubmitRsp",
    "UACapabilities",
    "VASPErrorRsp",
    "content_from_parts",
    "content_parts",
    "decode",
    "encode",
    "is_rel5",
    "mime_content_type",
    "mm7_version_for",
    "mms_content_type",
    "namespace_for_version",
    "namespace_key",
    "namespace_uri",
    "operation_name",
]

MAX_SIZE: Final = 10_000_000
SOAP_CONTENT_TYPE: Final = "text/xml; charset=utf-8"
_SOAP_CID: Final = "mm7-envelope"
_DEFAULT_CID: Final = "mm7-content"
_SOAP_NAMESPACES: Final = frozenset((SOAP_ENV, SOAP12_ENV))
_CID_SAFE: Final = "@.-_~!$&'()*+,;=:"
_SALVAGE_SPAN: Final = 64 * 1024
_SALVAGE_TID: Final = re.compile(
    rb"<(?:[A-Za-z_][\w.\-]{0,40}:)?TransactionID\b[^<>]{0,2000}>\s{0,200}([^<\s][^<]{0,199})<"
)
_SALVAGE_NS: Final = re.compile(rb"23\.140/schema/(REL-\d{1,2}-MM7-\d{1,2}-\d{1,2})")
_SALVAGE_VERSION: Final = re.compile(
    rb"<(?:[A-Za-z_][\w.\-]{0,40}:)?MM7Version\b[^<>]{0,2000}>"
    rb"\s{0,200}(\d{1,3}(?:\.\d{1,3}){0,3})\s{0,200}<"
)


# ----------------------------------------------------------------------------- namespaces


def namespace_key(uri: str) -> str | None:
    """The key of a 3GPP MM7 namespace URI ("REL-6-MM7-1-4", also unlisted ones), or None."""
    m = NAMESPACE_URI_RE.match(uri.strip())
    return m.group(1).upper() if m else None


def namespace_uri(namespace: str) -> str:
    """The URI to write for a namespace key, a later 3GPP key, or a URI given as is."""
    if namespace in NAMESPACES:
        return NAMESPACES[namespace]
    if NAMESPACE_KEY_RE.fullmatch(namespace):
        return NAMESPACE_BASE + namespace
    if ":" in namespace and not any(c in namespace for c in "<>\"' \t\r\n"):
        return namespace
    raise EncodeError(f"unknown MM7 namespace {namespace!r}")


def is_rel5(namespace: str) -> bool:
    """Whether ``namespace`` follows the REL-5 schemas (REL-6 elements left out)."""
    return namespace.startswith("REL-5-")


def mm7_version_for(namespace: str) -> str:
    """MM7Version for ``namespace``; the nearest known schema's for one not in the table."""
    if namespace in MM7_VERSIONS:
        return MM7_VERSIONS[namespace]
    return MM7_VERSIONS["REL-5-MM7-1-3" if is_rel5(namespace) else DEFAULT_NAMESPACE]


# ----------------------------------------------------------------------------- decode


class _Seen:
    """What was read so far, for the error that ends the decoding."""

    __slots__ = ("mm7_version", "namespace", "transaction_id")

    def __init__(self) -> None:
        self.namespace: str | None = None
        self.transaction_id: str | None = None
        self.mm7_version: str | None = None


def decode(
    body: bytes,
    content_type: str | None,
    *,
    max_size: int = MAX_SIZE,
    soap_action: str | None = None,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> Operation:
    """The MM7 operation in an HTTP request or response body.

    ``content_type`` is the HTTP Content-Type (None or "" when there was none);
    ``max_size`` bounds the body (2004 beyond it); ``soap_action`` is the SOAPAction
    header, one more place a namespace may come from; ``default_namespace`` is the
    peer's configured one, for a message that names none (``namespace_for_version``).
    Raises only ``Mm7DecodeError``.
    """
    seen = _Seen()
    try:
        return _decode(
            bytes(body), content_type or "", max_size, soap_action, default_namespace, seen
        )
    except Mm7DecodeError as exc:
        if exc.namespace is None:
            exc.namespace = seen.namespace
        if exc.transaction_id is None:
            exc.transaction_id = seen.transaction_id
        if exc.mm7_version is None:
            exc.mm7_version = seen.mm7_version
        raise
    except Exception as exc:  # a bug of ours: still an MM7 answer, never a traceback
        raise Mm7DecodeError(
            SERVER_ERROR,
            f"internal error: {type(exc).__name__}: {exc}",
            namespace=seen.namespace,
            transaction_id=seen.transaction_id,
            mm7_version=seen.mm7_version,
        ) from exc


def _decode(
    body: bytes,
    content_type: str,
    max_size: int,
    soap_action: str | None,
    default_namespace: str,
    seen: _Seen,
) -> Operation:
    if len(body) > max_size:
        raise Mm7DecodeError(CONTENT_REFUSED, f"body of {len(body)} octets exceeds {max_size}")
    ctype, params = parse_content_type(content_type)
    parts: list[MimePart] | None = None
    soap_index = -1
    soap = body
    head = body[:256].lstrip(b" \t\r\n")  # enough to tell XML from MIME, without a copy
    if ctype.startswith("multipart/") or head.startswith(b"--"):
        boundary = params.get("boundary") or sniff_boundary(body)
        if boundary:
            parts = split_multipart(body, boundary)
            soap_index = _soap_part(parts, params.get("start"))
            root_part = parts[soap_index]
            soap = decode_transfer(
                root_part.body, root_part.headers.get("content-transfer-encoding")
            )
        elif not head.startswith(b"<"):
            raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, "multipart body without a boundary")
    try:
        root = parse(soap)
    except Mm7DecodeError:
        _salvage(soap, seen)
        raise
    op = _read_envelope(root, soap_action, default_namespace, seen)
    if isinstance(op, SubmitReq | DeliverReq | ReplaceReq) and parts is not None:
        _attach(op, parts, soap_index)
    return op


def _attach(op: SubmitReq | DeliverReq | ReplaceReq, parts: list[MimePart], soap: int) -> None:
    """Replace the Content reference of ``op`` by the attachment it names. With no
    attachment at all (the envelope is the only part) the reference is kept, as for a
    plain SOAP body: the receiver decides what a message without its content gets."""
    if op.content_href is None or len(parts) < 2:
        return
    op.content = content_from_mime(_resolve(op.content_href, parts, soap))
    op.content_href = None
    if op.content.is_multipart:
        content_parts(op.content)  # refuse a corrupt content now, not at delivery


def _soap_part(parts: list[MimePart], start: str | None) -> int:
    """The root part: the one ``start`` names, else the first (RFC 2387 §3.2)."""
    if start:
        wanted = normalize_cid(start)
        for i, part in enumerate(parts):
            if part.content_id == wanted or part.content_location == wanted:
                return i
    return 0


def _read_envelope(
    root: Node, soap_action: str | None, default_namespace: str, seen: _Seen
) -> Operation:
    if root.name != "Envelope":
        raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"root element {root.name} is no Envelope")
    header = root.child("Header")
    tid_node = header.child("TransactionID") if header is not None else None
    tid = tid_node.value() if tid_node is not None else None
    seen.transaction_id = tid or None
    body = root.child("Body")
    if body is None or not body.children:
        raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, "SOAP Envelope without a Body element")
    element = body.children[0]
    detail = element.child("detail") if element.name == "Fault" else None
    inner = detail.children[0] if detail is not None and detail.children else None
    version_node = (inner if inner is not None else element).child("MM7Version")
    if version_node is not None:
        seen.mm7_version = version_node.value() or None
    namespace = _namespace(element, tid_node, soap_action, inner) or namespace_for_version(
        seen.mm7_version, default_namespace
    )
    seen.namespace = namespace
    if element.name == "Fault":
        return read_fault(element, transaction_id=tid or None, namespace=namespace)
    if element.name not in OPERATIONS:
        raise Mm7DecodeError(UNSUPPORTED_OPERATION, f"unsupported operation {element.name}")
    if not tid:
        raise Mm7DecodeError(VALIDATION_ERROR, "SOAP Header has no TransactionID")
    return read_operation(element, transaction_id=tid, namespace=namespace)


def _namespace(
    element: Node, tid: Node | None, soap_action: str | None, inner: Node | None
) -> str | None:
    """The namespace the message names, or None when it names none anywhere."""
    action = (soap_action or "").strip().strip("\"'")
    found = [
        element.ns,
        inner.ns if inner is not None else "",
        tid.ns if tid is not None else "",
        action,
    ]
    for uri in found:
        key = namespace_key(uri) if uri else None
        if key is not None:
            return key
    if NAMESPACE_KEY_RE.fullmatch(action.upper()):  # SOAPAction: REL-5-MM7-1-2, no URI
        return action.upper()
    for uri in found[:3]:  # a foreign namespace, kept to answer in it
        if uri and uri not in _SOAP_NAMESPACES:
            return uri
    return None


def namespace_for_version(mm7_version: str | None, default: str) -> str:
    """The namespace of a message that names none: ``default`` (the peer's configured
    one), unless its MM7Version belongs to another release; then the schema that goes
    with that MM7Version (``MM7_VERSIONS``; the newest when several share it, as the
    REL-5 schemas share 5.3.0), else the newest known schema of that release."""
    version = (mm7_version or "").strip()
    release = version.partition(".")[0]
    if not release.isdigit() or default.startswith(f"REL-{release}-"):
        return default
    exact = [key for key, value in MM7_VERSIONS.items() if value == version]
    same_release = [key for key in MM7_VERSIONS if key.startswith(f"REL-{release}-")]
    return (exact or same_release or [default])[-1]


def _resolve(href: str, parts: list[MimePart], soap_index: int) -> MimePart:
    """The attachment ``href`` names: a cid: URL (RFC 2392), a Content-ID or -Location."""
    others = [p for i, p in enumerate(parts) if i != soap_index]
    ref = href.strip()
    if ref[:4].lower() == "cid:":
        ref = unquote(ref[4:])
    cid = normalize_cid(ref)
    location = ref.strip()
    for part in others:  # exact Content-ID first, then Content-Location, then any case
        if part.content_id == cid:
            return part
    for part in others:
        if part.content_location == location:
            return part
    for part in others:
        if (part.content_id or "").lower() == cid.lower():
            return part
    if len(others) == 1:
        return others[0]
    raise Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"Content href {href!r} names no attachment")


def _salvage(soap: bytes, seen: _Seen) -> None:
    """TransactionID, namespace and MM7Version of XML that does not parse, for the
    fault's sake."""
    head = soap[:_SALVAGE_SPAN]
    m = _SALVAGE_TID.search(head)
    if m is not None:
        seen.transaction_id = m.group(1).decode("utf-8", "replace").strip()
    n = _SALVAGE_NS.search(head)
    if n is not None:
        seen.namespace = n.group(1).decode("ascii")
    v = _SALVAGE_VERSION.search(head)
    if v is not None:
        seen.mm7_version = v.group(1).decode("ascii")


# ----------------------------------------------------------------------------- encode


def encode(
    op: Operation,
    *,
    namespace: str | None = None,
    prefix: str | None = "mm7",
    boundary: str | None = None,
    unqualified_children: bool = False,
) -> tuple[bytes, str]:
    """The HTTP body and Content-Type of ``op``; raises ``EncodeError``.

    ``unqualified_children`` is a compatibility switch for VASP software that
    expects only the operation element in the MM7 namespace and its children in
    none (elementFormDefault="unqualified", as several deployed stacks write);
    it needs a prefix, since a default namespace would qualify the children too.
    """
    if unqualified_children and not prefix:
        raise EncodeError("unqualified children need a namespace prefix")
    try:
        return _encode(op, namespace or op.namespace, prefix, boundary, unqualified_children)
    except (TypeError, AttributeError) as exc:  # a field of the wrong type
        raise EncodeError(f"{operation_name(op)}: {exc}") from None


def _encode(
    op: Operation,
    namespace: str,
    prefix: str | None,
    boundary: str | None,
    unqualified_children: bool = False,
) -> tuple[bytes, str]:
    uri = namespace_uri(namespace)
    if prefix is not None and (not is_ncname(prefix) or prefix.lower() in ("env", "xml", "xmlns")):
        raise EncodeError(f"bad namespace prefix {prefix!r}")
    declare = [(f"xmlns:{prefix}" if prefix else "xmlns", uri)]

    def q(name: str) -> str:
        return f"{prefix}:{name}" if prefix else name

    content = op.content if isinstance(op, SubmitReq | DeliverReq | ReplaceReq) else None
    href: str | None = None
    cid = ""
    if content is not None:
        cid = content.content_id or _DEFAULT_CID
        href = "cid:" + quote(cid, safe=_CID_SAFE)
    elif isinstance(op, SubmitReq | DeliverReq | ReplaceReq):
        href = op.content_href
    writer = Writer(
        (lambda name: name) if unqualified_children else q,
        is_rel5(namespace),
        op.mm7_version or mm7_version_for(namespace),
        href,
        root_q=q,
    )

    envelope = XmlElement("env:Envelope", [("xmlns:env", SOAP_ENV)])
    if not op.transaction_id and not isinstance(op, Fault):
        raise EncodeError(f"{operation_name(op)}: TransactionID is mandatory")
    if op.transaction_id:  # a Fault to a request whose TransactionID was unreadable has none
        tid = XmlElement(q("TransactionID"), [*declare, ("env:mustUnderstand", "1")])
        tid.text = op.transaction_id
        envelope.children.append(XmlElement("env:Header", children=[tid]))
    body = XmlElement("env:Body")
    if isinstance(op, Fault):
        body.children.append(_fault(op, writer, declare))
    else:
        body.children.append(write_operation(op, writer, declare=declare))
    envelope.children.append(body)
    xml = serialize(envelope)
    if content is None:
        return xml, SOAP_CONTENT_TYPE

    soap_cid = _SOAP_CID if cid != _SOAP_CID else _SOAP_CID + "-1"
    content_headers = [
        ("Content-Type", format_content_type(content.content_type, content.params)),
        ("Content-ID", f"<{cid}>"),
    ]
    if content.content_location:
        content_headers.append(("Content-Location", content.content_location))
    if not content.is_multipart:
        content_headers.append(("Content-Transfer-Encoding", "binary"))
    soap_headers = [("Content-Type", SOAP_CONTENT_TYPE), ("Content-ID", f"<{soap_cid}>")]
    chosen = boundary or new_boundary()
    while boundary is None and (chosen.encode() in content.body or chosen.encode() in xml):
        chosen = new_boundary()
    data = build_multipart([(soap_headers, xml), (content_headers, content.body)], chosen)
    params = {"boundary": chosen, "type": "text/xml", "start": f"<{soap_cid}>"}
    return data, format_content_type("multipart/related", params)


def _fault(fault: Fault, writer: Writer, declare: list[tuple[str, str]]) -> XmlElement:
    code = fault.faultcode or "Server"
    node = XmlElement("env:Fault")
    node.children.append(XmlElement("faultcode", text=code if ":" in code else f"env:{code}"))
    node.children.append(XmlElement("faultstring", text=fault.faultstring))
    if fault.faultactor is not None:
        node.children.append(XmlElement("faultactor", text=fault.faultactor))
    if fault.detail is not None:
        version = fault.detail.mm7_version or fault.mm7_version or writer.version
        inner = Writer(writer.q, writer.rel5, version, None, root_q=writer.root_q)
        written = write_operation(fault.detail, inner, declare=declare)
        node.children.append(XmlElement("detail", children=[written]))
    return node
