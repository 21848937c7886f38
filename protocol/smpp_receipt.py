"""SMSC delivery receipts carried in deliver_sm / data_sm (SMPP 3.4 §2.11, Appendix B).

Appendix B of SMPP 3.4 only *suggests* the text format
``id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
stat:DDDDDDD err:E text:...``; every SMSC writes its own dialect (upper-case
keys, seconds in the dates, ``submit_date``, missing fields, a hex id in the
submit_sm_resp and a decimal one in the receipt). The TLVs
receipted_message_id, message_state and network_error_code (§5.3.2.12,
§5.3.2.35, §5.3.2.31) are authoritative when present.

A receipt reports what happened to the *SMS*; it never says the handset
fetched the MMS, so callers record it as an event and nothing more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from protocol.smpp import (
    ESM_TYPE_DELIVERY_RECEIPT,
    ESM_TYPE_INTERMEDIATE,
    ESM_TYPE_MASK,
    MESSAGE_STATES,
    Pdu,
)

# stat values of Appendix B and which of them end the SMS's life.
FINAL_STATES = frozenset(("DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "REJECTD", "UNKNOWN"))
# message_state TLV values in the short form Appendix B uses in the text.
_STATE_TEXT = {
    "ENROUTE": "ENROUTE",
    "DELIVERED": "DELIVRD",
    "EXPIRED": "EXPIRED",
    "DELETED": "DELETED",
    "UNDELIVERABLE": "UNDELIV",
    "ACCEPTED": "ACCEPTD",
    "UNKNOWN": "UNKNOWN",
    "REJECTED": "REJECTD",
}

# key:value pairs; keys may contain one space ("submit date") or an underscore; the
# value runs to the next whitespace, except "text", which runs to the end.
_FIELD = re.compile(
    r"(?P<key>id|sub|dlvrd|submit[ _]date|done[ _]date|stat|err)\s*:\s*(?P<value>\S*)",
    re.IGNORECASE,
)
_TEXT = re.compile(r"\btext\s*:(?P<text>.*)\Z", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str
    state: str  # DELIVRD, UNDELIV, ENROUTE, ... (Appendix B spelling)
    error: str = ""
    submitted: datetime | None = None
    done: datetime | None = None
    network_error: bytes | None = None
    text: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def delivered(self) -> bool:
        """The SMS reached the handset; says nothing of the MMS."""
        return self.state == "DELIVRD"

    def id_candidates(self) -> tuple[str, ...]:
        """The forms under which the submit_sm_resp surely reported this id: the id
        itself and without leading zeros (case is the store's business: it indexes
        ids lower-cased, storage.repository.smsc_key)."""
        ident = self.message_id
        forms = [ident]
        if ident.lstrip("0") and ident.lstrip("0") != ident:
            forms.append(ident.lstrip("0"))
        return tuple(dict.fromkeys(forms))

    def converted_candidates(self) -> tuple[str, ...]:
        """The same number in the other base: some SMSCs answer submit_sm with a
        hexadecimal id and put it in decimal into the receipt text (and the other way
        round). A guess, so only for when no id matches as written: decimal "4660"
        is also hexadecimal "1234", which may be another message's decimal id."""
        ident = self.message_id
        if ident.isascii() and ident.isdigit() and len(ident) <= 20:  # int() refuses "²"
            return (f"{int(ident):x}",)
        if re.fullmatch(r"[0-9A-Fa-f]{1,16}", ident):
            return (str(int(ident, 16)),)
        return ()


def _date(value: str) -> datetime | None:
    """YYMMDDhhmm (Appendix B) or YYMMDDhhmmss; None when unreadable.

    The format is chosen by length: strptime alone would read "2611260858" with
    seconds as 08:05:08 (its fields accept a single digit)."""
    formats = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S"}
    fmt = formats.get(len(value))
    if fmt is None or not value.isdigit():
        return None
    try:
        return datetime.strptime(value, fmt).replace(tzinfo=UTC)
    except ValueError:
        return None


def is_receipt(pdu: Pdu) -> bool:
    """Whether a deliver_sm / data_sm is an SMSC receipt rather than a mobile-originated SMS."""
    esm = pdu.params.get("esm_class", 0)
    return esm & ESM_TYPE_MASK in (ESM_TYPE_DELIVERY_RECEIPT, ESM_TYPE_INTERMEDIATE)


def parse_receipt_text(text: str) -> dict[str, str]:
    """The key:value fields of a receipt text, keys lower-case with "_" for " "."""
    fields: dict[str, str] = {}
    body = text
    match = _TEXT.search(text)
    if match is not None:
        fields["text"] = match.group("text").strip()
        body = text[: match.start()]
    for found in _FIELD.finditer(body):
        key = found.group("key").lower().replace(" ", "_")
        fields.setdefault(key, found.group("value"))
    return fields


def parse_receipt(pdu: Pdu) -> Receipt | None:
    """The receipt in ``pdu``, or None when it is not one or names no message id."""
    if not is_receipt(pdu):
        return None
    raw = pdu.params.get("short_message") or pdu.tlvs.get("message_payload") or b""
    fields = parse_receipt_text(bytes(raw).decode("latin-1"))
    tlv_id = pdu.tlvs.get("receipted_message_id")
    message_id = str(tlv_id) if tlv_id else fields.get("id", "")
    if not message_id:
        return None
    state_tlv = pdu.tlvs.get("message_state")
    if isinstance(state_tlv, int) and state_tlv in MESSAGE_STATES:
        state = _STATE_TEXT[MESSAGE_STATES[state_tlv]]
    else:
        state = fields.get("stat", "").upper() or "UNKNOWN"
    network_error = pdu.tlvs.get("network_error_code")
    return Receipt(
        message_id=message_id,
        state=state,
        error=fields.get("err", ""),
        submitted=_date(fields.get("submit_date", "")),
        done=_date(fields.get("done_date", "")),
        network_error=network_error if isinstance(network_error, bytes) else None,
        text=fields.get("text", ""),
    )


def format_receipt_text(
    message_id: str,
    state: str,
    *,
    submitted: datetime,
    done: datetime,
    error: str = "000",
    text: str = "",
) -> str:
    """The Appendix B text, as an SMSC writes it (our SMSC double uses it)."""
    delivered = "001" if state == "DELIVRD" else "000"
    return (
        f"id:{message_id} sub:001 dlvrd:{delivered} "
        f"submit date:{submitted:%y%m%d%H%M} done date:{done:%y%m%d%H%M} "
        f"stat:{state} err:{error} text:{text[:20]}"
    )


__all__ = ["Receipt", "format_receipt_text", "is_receipt", "parse_receipt", "parse_receipt_text"]
