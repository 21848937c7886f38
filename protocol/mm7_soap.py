"""MM7 operations to and from their SOAP Body element (TS 23.140 §8.7, SOAP 1.1 §4).

Both directions walk the element tables of ``mm7_tables``: reading looks each
element up by local name (peers qualify children, leave them unqualified, or put
them in another MM7 namespace; order is not checked), writing emits the elements
in schema order, every one qualified, and only those the target release defines.

Reading raises ``Mm7DecodeError`` with the status TS 23.140's status table gives
(§8.7): 4004 Validation error when a mandatory element is missing or empty, 2007
Message format corrupt when an element is there but its value does not fit its type
(a date, a boolean, a number) or is not one of its enumeration (MessageClass,
Priority, ChargedParty, ContentClass, MMStatus; matched in any case and kept in the
schema's spelling). Two mandatory elements are forgiven: MM7Version (the namespace
already says the release) and SenderIdentification (all its children are optional).
Writing raises ``EncodeError`` for a missing mandatory field or a value outside the
schema's enumeration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from protocol.errors import EncodeError
from protocol.mm7_errors import Mm7DecodeError
from protocol.mm7_ops import (
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
)
from protocol.mm7_tables import (
    ADDRESS_CODINGS,
    ADDRESS_KINDS,
    CANCEL_REQ,
    CHARGED_PARTIES,
    CONTENT_CLASSES,
    DELIVER_REQ,
    DELIVER_RSP,
    DELIVERY_REPORT_REQ,
    DELIVERY_STATUSES,
    MESSAGE_CLASSES,
    MESSAGE_FORMAT_CORRUPT,
    PRIORITIES,
    READ_REPLY_REQ,
    READ_STATUSES,
    REPLACE_REQ,
    STATUS,
    STATUS_ONLY,
    SUBMIT_REQ,
    SUBMIT_RSP,
    VALIDATION_ERROR,
    Element,
)
from protocol.mm7_values import (
    format_bool,
    format_datetime,
    format_relative,
    parse_bool,
    parse_datetime,
    parse_int,
    parse_relative,
)
from protocol.mm7_xml import Node, XmlElement

# Body element -> (dataclass, elements in schema order)
OPERATIONS: Final[dict[str, tuple[type[Any], tuple[Element, ...]]]] = {
    "SubmitReq": (SubmitReq, SUBMIT_REQ),
    "SubmitRsp": (SubmitRsp, SUBMIT_RSP),
    "DeliverReq": (DeliverReq, DELIVER_REQ),
    "DeliverRsp": (DeliverRsp, DELIVER_RSP),
    "CancelReq": (CancelReq, CANCEL_REQ),
    "CancelRsp": (CancelRsp, STATUS_ONLY),
    "ReplaceReq": (ReplaceReq, REPLACE_REQ),
    "ReplaceRsp": (ReplaceRsp, STATUS_ONLY),
    "DeliveryReportReq": (DeliveryReportReq, DELIVERY_REPORT_REQ),
    "DeliveryReportRsp": (DeliveryReportRsp, STATUS_ONLY),
    "ReadReplyReq": (ReadReplyReq, READ_REPLY_REQ),
    "ReadReplyRsp": (ReadReplyRsp, STATUS_ONLY),
    "RSErrorRsp": (RSErrorRsp, STATUS_ONLY),
    "VASPErrorRsp": (VASPErrorRsp, STATUS_ONLY),
}
ERROR_RESPONSES: Final = ("RSErrorRsp", "VASPErrorRsp")
_FORGIVEN: Final = frozenset(("MM7Version", "SenderIdentification"))

# Enumerated values: checked when writing, and when reading (in any case; a value
# outside the enumeration is 2007, as any other value of the wrong format).
_ENUMS: Final[dict[str, frozenset[str]]] = {
    "message_class": MESSAGE_CLASSES,
    "priority": PRIORITIES,
    "charged_party": CHARGED_PARTIES,
    "content_class": CONTENT_CLASSES,
}
_MM_STATUS: Final[dict[str, frozenset[str]]] = {
    "DeliveryReportReq": DELIVERY_STATUSES,
    "ReadReplyReq": READ_STATUSES,
}
# lower case -> the schema's spelling, per enumeration
_SPELLINGS: Final[dict[frozenset[str], dict[str, str]]] = {
    allowed: {value.lower(): value for value in allowed}
    for allowed in (*_ENUMS.values(), *_MM_STATUS.values())
}


def _invalid(element: str, reason: str) -> Mm7DecodeError:
    """A mandatory element missing or empty: 4004 Validation error (TS 23.140 §8.7)."""
    return Mm7DecodeError(VALIDATION_ERROR, f"{element}: {reason}")


def _corrupt(element: str, reason: str) -> Mm7DecodeError:
    """An element whose value has the wrong format: 2007 Message format corrupt."""
    return Mm7DecodeError(MESSAGE_FORMAT_CORRUPT, f"{element}: {reason}")


class _Missing(ValueError):
    """A mandatory part of an element's value is missing (StatusCode of a Status)."""


def _enumeration(operation: str, attr: str) -> frozenset[str] | None:
    return _ENUMS.get(attr) or (_MM_STATUS.get(operation) if attr == "mm_status" else None)


def _enumerated(value: str, allowed: frozenset[str]) -> str:
    """``value`` in the schema's spelling; ValueError when the enumeration lacks it."""
    spelled = _SPELLINGS[allowed].get(value.strip().lower())
    if spelled is None:
        raise ValueError(f"{value!r} is not one of {', '.join(sorted(allowed))}")
    return spelled


# ----------------------------------------------------------------------------- reading


def read_operation(node: Node, *, transaction_id: str, namespace: str) -> Operation:
    """The operation in Body element ``node`` (a known operation name)."""
    cls, elements = OPERATIONS[node.name]
    fields: dict[str, Any] = {"transaction_id": transaction_id, "namespace": namespace}
    for el in elements:
        child = node.child(el.name)
        if child is None and el.kind == "status" and node.child("StatusCode") is not None:
            child = node  # StatusCode/StatusText written directly in the operation
        if child is None:
            if el.mandatory and el.name not in _FORGIVEN:
                raise _invalid(node.name, f"mandatory element {el.name} is missing")
            continue
        mandatory = el.mandatory and el.name not in _FORGIVEN
        if mandatory and child is not node and not child.children and not child.value():
            raise _invalid(node.name, f"mandatory element {el.name} is empty")
        try:
            _READERS[el.kind](child, el, fields)
            allowed = _enumeration(node.name, el.attr)
            if allowed is not None and fields.get(el.attr) is not None:
                fields[el.attr] = _enumerated(fields[el.attr], allowed)
        except _Missing as exc:
            raise _invalid(el.name, str(exc)) from None
        except ValueError as exc:  # a value that does not fit its schema type
            raise _corrupt(el.name, str(exc)) from None
        if mandatory and fields.get(el.attr, 1) in ("", None):
            raise _invalid(node.name, f"mandatory element {el.name} is empty")
    if cls is SubmitReq and not (fields.get("to") or fields.get("cc") or fields.get("bcc")):
        raise _invalid("Recipients", "no recipient address")
    op: Operation = cls(**fields)
    return op


def read_fault(node: Node, *, transaction_id: str | None, namespace: str) -> Fault:
    """A SOAP Fault; its children are matched by local name (some peers qualify them)."""
    detail: RSErrorRsp | VASPErrorRsp | None = None
    detail_node = node.child("detail")
    inner = [c for c in detail_node.children if c.name in ERROR_RESPONSES] if detail_node else []
    if inner:
        try:
            op = read_operation(inner[0], transaction_id=transaction_id or "", namespace=namespace)
        except Mm7DecodeError:
            op = None  # a Fault says enough without a readable detail
        if isinstance(op, RSErrorRsp | VASPErrorRsp):
            detail = op
    actor = node.child("faultactor")
    return Fault(
        transaction_id=transaction_id,
        namespace=namespace,
        mm7_version=detail.mm7_version if detail is not None else None,
        faultcode=_child_text(node, "faultcode").rpartition(":")[2],
        faultstring=_child_text(node, "faultstring"),
        faultactor=actor.value() if actor is not None else None,
        detail=detail,
    )


def _child_text(node: Node, name: str) -> str:
    child = node.child(name)
    return child.value() if child is not None else ""


def read_address(wrapper: Node) -> Address | None:
    """The address in an addressType element (Sender, Recipient, SenderAddress)."""
    inner = wrapper.child("SenderAddress")
    if inner is not None:  # <Sender><SenderAddress><Number>: a common slip
        wrapper = inner
    for child in wrapper.children:
        if child.name in ADDRESS_KINDS:
            return _address(child)
    text = wrapper.value()
    if text and not wrapper.children:  # bare text, as some VASP platforms write it
        return Address("RFC2822Address" if "@" in text else "Number", text)
    return None


def _address(node: Node) -> Address:
    display = node.attrs.get("displayOnly")
    return Address(
        node.name,
        node.value(),
        parse_bool(display) if display is not None else False,
        node.attrs.get("addressCoding"),
    )


def _r_text(node: Node, el: Element, out: dict[str, Any]) -> None:
    out[el.attr] = node.value()


def _r_bool(node: Node, el: Element, out: dict[str, Any]) -> None:
    out[el.attr] = parse_bool(node.value())


def _r_datetime(node: Node, el: Element, out: dict[str, Any]) -> None:
    out[el.attr] = parse_datetime(node.value())


def _r_reltime(node: Node, el: Element, out: dict[str, Any]) -> None:
    out[el.attr] = parse_relative(node.value())


def _r_address(node: Node, el: Element, out: dict[str, Any]) -> None:
    address = read_address(node)
    if address is None:
        raise ValueError("no address in it")
    out[el.attr] = address


def _r_sender_id(node: Node, el: Element, out: dict[str, Any]) -> None:
    for name, attr in (("VASPID", "vasp_id"), ("VASID", "vas_id")):
        child = node.child(name)
        if child is not None:
            out[attr] = child.value()
    sender = node.child("SenderAddress")
    if sender is not None:
        out["sender_address"] = read_address(sender)


def _r_recipients(node: Node, el: Element, out: dict[str, Any]) -> None:
    for name, attr in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        found: list[Address] = []
        for group in node.all(name):
            found.extend(_address(c) for c in group.children if c.name in ADDRESS_KINDS)
            if not group.children and group.value():  # <To>number</To>
                found.append(Address("Number", group.value()))
        out[attr] = found


def _r_status(node: Node, el: Element, out: dict[str, Any]) -> None:
    code = node.child("StatusCode")
    if code is None:
        raise _Missing("StatusCode is missing")
    out["status_code"] = parse_int(code.value(), maximum=99999)
    text = node.child("StatusText")
    out["status_text"] = text.value() if text is not None else ""
    details = node.child("Details")
    if details is not None:
        out["details"] = details.value()


def _r_reply_charging(node: Node, el: Element, out: dict[str, Any]) -> None:
    size = node.attrs.get("replyChargingSize")
    deadline = node.attrs.get("replyDeadline")
    out[el.attr] = ReplyCharging(
        parse_int(size) if size is not None else None,
        parse_relative(deadline) if deadline is not None else None,
    )


def _r_delivery_condition(node: Node, el: Element, out: dict[str, Any]) -> None:
    out[el.attr] = [parse_int(dc.value()) for dc in node.all("DC")]


def _r_ua_capabilities(node: Node, el: Element, out: dict[str, Any]) -> None:
    stamp = node.attrs.get("TimeStamp")
    out[el.attr] = UACapabilities(
        node.attrs.get("UAProf"), parse_datetime(stamp) if stamp is not None else None
    )


def _r_content(node: Node, el: Element, out: dict[str, Any]) -> None:
    adapt = node.attrs.get("allowAdaptations")
    if adapt is not None:
        out["adaptations"] = parse_bool(adapt)
    out["content_href"] = node.attrs.get("href", "")


_READERS: Final[dict[str, Callable[[Node, Element, dict[str, Any]], None]]] = {
    "text": _r_text,
    "bool": _r_bool,
    "datetime": _r_datetime,
    "reltime": _r_reltime,
    "address": _r_address,
    "sender_id": _r_sender_id,
    "recipients": _r_recipients,
    "status": _r_status,
    "reply_charging": _r_reply_charging,
    "delivery_condition": _r_delivery_condition,
    "ua_capabilities": _r_ua_capabilities,
    "content": _r_content,
}

# ----------------------------------------------------------------------------- writing


@dataclass(frozen=True, slots=True)
class Writer:
    """How to write: ``q`` qualifies a local name ("mm7:X" or "X"); ``rel5`` leaves the
    REL-6 elements out; ``href`` is the Content reference of this message."""

    q: Callable[[str], str]
    rel5: bool
    version: str
    href: str | None = None
    root_q: Callable[[str], str] | None = None  # the operation element's (children may differ)


def write_operation(op: Operation, w: Writer, *, declare: list[tuple[str, str]]) -> XmlElement:
    """The Body element of ``op`` (not a Fault); ``declare``: its namespace declaration."""
    name = type(op).__name__
    _, elements = OPERATIONS[name]
    root = XmlElement((w.root_q or w.q)(name), list(declare))
    for el in elements:
        if el.rel6 and w.rel5:
            continue
        children = _WRITERS[el.kind](op, el, w)
        if el.mandatory and not children:
            raise EncodeError(f"{name}: mandatory {el.name} is not set")
        root.children.extend(children)
    return root


def _get(op: Operation, attr: str) -> Any:
    return getattr(op, attr, None)


def _leaf(w: Writer, name: str, text: str) -> XmlElement:
    return XmlElement(w.q(name), text=text)


def _w_text(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    if el.name == "MM7Version":
        return [_leaf(w, el.name, w.version)]
    value = _get(op, el.attr)
    if value is None:
        return []
    if not isinstance(value, str):
        raise EncodeError(f"{el.name} must be a string, not {type(value).__name__}")
    allowed = _ENUMS.get(el.attr) or (
        _MM_STATUS.get(type(op).__name__) if el.attr == "mm_status" else None
    )
    if allowed is not None and value not in allowed:
        raise EncodeError(f"{el.name} {value!r} is not one of {sorted(allowed)}")
    if el.mandatory and not value:
        return []
    return [_leaf(w, el.name, value)]


def _w_bool(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    value = _get(op, el.attr)
    return [] if value is None else [_leaf(w, el.name, format_bool(bool(value)))]


def _w_datetime(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    value = _get(op, el.attr)
    if value is None:
        return []
    if not isinstance(value, datetime):
        raise EncodeError(f"{el.name} must be a datetime")
    return [_leaf(w, el.name, format_datetime(value))]


def _relative(name: str, value: Any) -> str:
    if not isinstance(value, datetime | timedelta):
        raise EncodeError(f"{name} must be a datetime or a timedelta")
    try:
        return format_relative(value)
    except ValueError as exc:
        raise EncodeError(f"{name}: {exc}") from None


def _w_reltime(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    value = _get(op, el.attr)
    return [] if value is None else [_leaf(w, el.name, _relative(el.name, value))]


def write_address(w: Writer, address: Address) -> XmlElement:
    if address.kind not in ADDRESS_KINDS:
        raise EncodeError(f"address kind {address.kind!r} is not one of {ADDRESS_KINDS}")
    node = XmlElement(w.q(address.kind), text=address.value)
    if address.display_only:
        node.attrs.append(("displayOnly", "true"))
    if address.address_coding is not None:
        if address.address_coding not in ADDRESS_CODINGS:
            raise EncodeError(f"addressCoding {address.address_coding!r} is not known")
        if not w.rel5:
            node.attrs.append(("addressCoding", address.address_coding))
    return node


def _w_address(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    value = _get(op, el.attr)
    if value is None:
        return []
    return [XmlElement(w.q(el.name), children=[write_address(w, value)])]


def _w_sender_id(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    node = XmlElement(w.q(el.name))
    for name, attr in (("VASPID", "vasp_id"), ("VASID", "vas_id")):
        value = _get(op, attr)
        if value is not None:
            node.children.append(_leaf(w, name, value))
    sender = _get(op, "sender_address")
    if sender is not None:
        node.children.append(XmlElement(w.q("SenderAddress"), children=[write_address(w, sender)]))
    return [node]


def _w_recipients(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    node = XmlElement(w.q(el.name))
    for name, attr in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        addresses = _get(op, attr) or []
        if addresses:
            group = XmlElement(w.q(name), children=[write_address(w, a) for a in addresses])
            node.children.append(group)
    return [node] if node.children else []


def _w_status(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    code = _get(op, "status_code")
    if not isinstance(code, int) or not 0 <= code <= 99999:
        raise EncodeError(f"StatusCode must be an integer 0..99999, not {code!r}")
    node = XmlElement(w.q(el.name))
    node.children.append(_leaf(w, "StatusCode", str(code)))
    node.children.append(_leaf(w, "StatusText", _get(op, "status_text") or STATUS.get(code, "")))
    details = _get(op, "details")
    if details is not None:
        node.children.append(_leaf(w, "Details", details))
    return [node]


def _w_reply_charging(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    value = _get(op, el.attr)
    if value is None:
        return []
    node = XmlElement(w.q(el.name))
    if value.size is not None:
        if not isinstance(value.size, int) or value.size < 1:
            raise EncodeError("replyChargingSize must be a positive integer")
        node.attrs.append(("replyChargingSize", str(value.size)))
    if value.deadline is not None:
        node.attrs.append(("replyDeadline", _relative("replyDeadline", value.deadline)))
    return [node]


def _w_delivery_condition(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    values = _get(op, el.attr) or []
    if not values:
        return []
    for dc in values:
        if not isinstance(dc, int) or dc < 1:
            raise EncodeError("DeliveryCondition DC values must be positive integers")
    return [XmlElement(w.q(el.name), children=[_leaf(w, "DC", str(dc)) for dc in values])]


def _w_ua_capabilities(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    value = _get(op, el.attr)
    if value is None:
        return []
    node = XmlElement(w.q(el.name))
    if value.ua_prof is not None:
        node.attrs.append(("UAProf", value.ua_prof))
    if value.time_stamp is not None:
        node.attrs.append(("TimeStamp", format_datetime(value.time_stamp)))
    return [node]


def _w_content(op: Operation, el: Element, w: Writer) -> list[XmlElement]:
    if w.href is None:
        return []
    node = XmlElement(w.q(el.name), [("href", w.href)])
    adapt = _get(op, "adaptations")
    if adapt is not None:
        node.attrs.append(("allowAdaptations", format_bool(bool(adapt))))
    return [node]


_WRITERS: Final[dict[str, Callable[[Operation, Element, Writer], list[XmlElement]]]] = {
    "text": _w_text,
    "bool": _w_bool,
    "datetime": _w_datetime,
    "reltime": _w_reltime,
    "address": _w_address,
    "sender_id": _w_sender_id,
    "recipients": _w_recipients,
    "status": _w_status,
    "reply_charging": _w_reply_charging,
    "delivery_condition": _w_delivery_condition,
    "ua_capabilities": _w_ua_capabilities,
    "content": _w_content,
}
