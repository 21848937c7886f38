"""What a VASP may do to a message it submitted: cancel it, replace its content.

TS 23.140 §5.5 (MM7_cancel) and §5.6 (MM7_replace): both act only on messages
of the VASP that submitted them, and only while the message has not been
retrieved. A message of another VASP is reported as not found (2005), so a
VASP cannot probe for other VASPs' message ids.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from mmsc.core import ENVELOPE_FIELDS, Mmsc
from mmsc.ids import random_id
from protocol import mms
from protocol.mms import MmsPdu
from protocol.mms_json import value_to_json
from storage import repository as repo

# Results, with the TS 23.140 status code each is answered with.
OK = 1000
NOT_FOUND = 2005  # Message ID Not found
TOO_LATE = 3001  # Not Possible: already retrieved by every recipient (or expired)
CONTENT_REFUSED = 2004  # Multimedia content refused


@dataclass(frozen=True, slots=True)
class OpResult:
    status: int
    detail: str = ""


def _owned(conn: Connection, message_id: str, vasp: str) -> Any:
    message = repo.get_message(conn, message_id)
    if message is None or message.vasp != vasp or message.origin_interface != "mm7":
        return None
    return message


def _fetched(recipient: Any) -> bool:
    """Whether the recipient's handset has the message: it confirmed (Retrieved) or it
    fetched and has not confirmed yet (``retrieved_at`` set by Mmsc.fetched). Either way
    cancelling or replacing it would tell the VASP something untrue."""
    return bool(recipient.state == repo.RETRIEVED or recipient.retrieved_at is not None)


async def cancel(core: Mmsc, message_id: str, vasp: str) -> OpResult:
    """Stop delivery to every recipient that has not fetched yet."""
    now = time.time()

    def unit(conn: Connection) -> tuple[OpResult, list[repo.Event]]:
        if _owned(conn, message_id, vasp) is None:
            return OpResult(NOT_FOUND, "no such message of this VASP"), []
        open_ids = [
            r.id
            for r in repo.list_recipients(conn, message_id)
            if r.state in repo.OPEN_STATES and not _fetched(r)
        ]
        cancelled = [
            rid
            for rid in open_ids
            if repo.set_recipient_state(conn, rid, repo.CANCELLED, now, next_attempt_at=None)
        ]
        if not cancelled:
            return OpResult(TOO_LATE, "already retrieved or expired: nothing to cancel"), []
        events: list[repo.Event] = []
        for rid in cancelled:
            events.append(
                repo.Event(
                    message_id, "cancelled", now, rid, repo.CANCELLED, f"CancelReq from {vasp}"
                )
            )
            events += repo.drop_queued_notification(
                conn, message_id, rid, now, "cancelled by the VASP"
            )
        if len(cancelled) == len(open_ids) and not any(
            _fetched(r) for r in repo.list_recipients(conn, message_id)
        ):
            repo.set_message_state(conn, message_id, "cancelled")
        repo.add_events(conn, events)
        return OpResult(OK, f"{len(cancelled)} recipient(s) cancelled"), events

    result: OpResult = await core.write(unit)
    return result


async def replace(
    core: Mmsc,
    message_id: str,
    vasp: str,
    rebuild: Callable[[MmsPdu], MmsPdu],
    max_size: int,
    earliest_delivery_at: float | None = None,
) -> OpResult:
    """New content for a message nobody has fetched yet; its recipients fetch the new one.

    ``rebuild`` turns the stored m-send-req into the replaced one (new parts, new
    ReadReply...), so what the ReplaceReq does not mention (recipients, subject,
    class) stays as submitted. Its ReadReply, and ``earliest_delivery_at`` (the
    ReplaceReq's EarliestDeliveryTime, None when it has none), also change what the
    core does: read reports, and when recipients not yet notified are.
    """
    now = time.time()

    def check(conn: Connection) -> tuple[OpResult | None, Any]:
        message = _owned(conn, message_id, vasp)
        if message is None:
            return OpResult(NOT_FOUND, "no such message of this VASP"), None
        rows = repo.list_recipients(conn, message_id)
        if any(_fetched(r) for r in rows) or not any(r.state in repo.OPEN_STATES for r in rows):
            return OpResult(TOO_LATE, "already retrieved or expired: cannot replace"), None
        return None, message

    refused: OpResult | None
    refused, message = await core.read(check)
    if refused is not None:
        return refused
    try:
        stored = mms.decode(await core.payloads.get(message.payload_key))
    except KeyError:
        return OpResult(TOO_LATE, "the message body is gone")
    pdu = rebuild(stored)
    raw = mms.encode(pdu, check_mandatory=False)
    if len(raw) > max_size:
        return OpResult(CONTENT_REFUSED, f"{len(raw)} octets exceed the limit of {max_size}")
    key = f"{message_id}-{random_id(8)}"
    await core.payloads.put(key, raw)  # durable before the row that names it
    envelope = {k: v for k, v in pdu.headers.items() if k in ENVELOPE_FIELDS}
    subject = pdu.headers.get("Subject")

    def unit(conn: Connection) -> tuple[tuple[OpResult, str], list[repo.Event]]:
        again, current = check(conn)  # again inside the write: a fetch may have won meanwhile
        if again is not None:
            return (again, key), []
        repo.replace_content(
            conn,
            message_id,
            payload_key=key,
            size=len(raw),
            content_type=pdu.content_type or "application/vnd.wap.multipart.mixed",
            subject=subject if isinstance(subject, str) else None,
            headers={**dict(current.headers or {}), **value_to_json(envelope)},
            read_report=pdu.headers.get("X-Mms-Read-Report") == "Yes",
            earliest_delivery_at=earliest_delivery_at,
        )
        event = repo.Event(message_id, "replaced", now, None, None, f"ReplaceReq from {vasp}")
        repo.add_events(conn, [event])
        return (OpResult(OK, "content replaced"), current.payload_key), [event]

    result: OpResult
    result, obsolete = await core.write(unit)
    # The old body (or the new one, when the replace lost the race) is garbage now.
    with contextlib.suppress(KeyError, OSError):
        await core.payloads.delete(obsolete)
    return result
