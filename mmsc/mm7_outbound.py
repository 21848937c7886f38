"""Requests the MMSC sends to VASPs: DeliverReq, DeliveryReportReq, ReadReplyReq.

They are queued in the same durable outbox as WAP pushes (kinds ``mm7-*``,
destination = the VASP's name), claimed with a lease, and retried with the
push back-off when the VASP cannot be reached, its answer cannot be read, or it
answers 3000 Server Error, 4000 General service error or 4006 Service
unavailable. Any other failure status is final for that request (``is_permanent``).
A DeliverReq that ends without success closes its recipient (Rejected, or
Unreachable when the attempts ran out), one the VASP took makes it Retrieved,
in the commit that records the answer, and the handset that sent the message
gets that delivery report if it asked for one. Every answer is an event on the
message (TS 23.140 §5.3, §5.7, §5.8 for the three operations).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from sqlalchemy.engine import Connection

from mmsc import metrics
from mmsc.core import Mmsc
from mmsc.mm7_client import exchange
from mmsc.mm7_config import VaspAccount, make_boundary
from mmsc.outbox_loop import OutboxLoop
from protocol import mm7, mms
from storage import repository as repo

log = logging.getLogger("mmsc.mm7.outbound")

MM7_KINDS = ("mm7-deliver", "mm7-delivery-report", "mm7-read-reply")
LEASE_SECONDS = 120.0
# MMS X-Mms-Status (as the core records it) -> MM7 MMStatus (TS 23.140 §8.7.5).
DELIVERY_STATUS = {
    "Retrieved": "Retrieved",
    "Rejected": "Rejected",
    "Expired": "Expired",
    "Deferred": "Indeterminate",
    "Unrecognised": "Indeterminate",
    "Forwarded": "Forwarded",
    "Unreachable": "Indeterminate",
}
READ_STATUS = {"Read": "Read", "Deleted without being read": "Deleted"}
RETRY_STATUSES = frozenset((3000, 4000, 4006))  # see is_permanent


def is_permanent(code: int) -> bool:
    """Whether a VASP's failure status ends the request. Only 3000 Server Error, 4000
    General service error and 4006 Service unavailable say "try later" (TS 23.140 §8.7
    status table); any other (4004 Validation error, 3001 Not possible, 2xxx...) is the
    VASP's answer to this very request and would be the same next time."""
    return code not in RETRY_STATUSES


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def mime_content(pdu: mms.MmsPdu) -> mm7.Content | None:
    """The MMS body as the MIME entity an MM7 request carries (TS 23.140 §8.7.3 Content).

    A single-part message (its body in ``pdu.body``, no parts) is that one entity; a
    multipart keeps its kind (related with its ``start`` and ``type``, alternative as
    alternative, anything else as mixed). None only when there is no body at all.
    """
    ctype = (pdu.content_type or "").lower()
    if not pdu.parts:
        if pdu.body is None or ctype.startswith("application/vnd.wap.multipart."):
            return None
        params = {str(k): str(v) for k, v in (pdu.content_type_params or {}).items()}
        return mm7.Content(ctype, params, bytes(pdu.body))
    if ctype == "application/vnd.wap.multipart.related":
        params = {
            k: str(v) for k, v in (pdu.content_type_params or {}).items() if k in ("start", "type")
        }
        return mm7.content_from_parts("multipart/related", params, list(pdu.parts))
    if ctype == "application/vnd.wap.multipart.alternative":
        return mm7.content_from_parts("multipart/alternative", {}, list(pdu.parts))
    return mm7.content_from_parts("multipart/mixed", {}, list(pdu.parts))


class Mm7Outbound:
    def __init__(
        self, core: Mmsc, vasps: dict[str, VaspAccount], *, relay_id: str = "mmsc", batch: int = 50
    ) -> None:
        self.core = core
        self.vasps = vasps
        self.relay_id = relay_id
        self.batch = batch
        self._session: aiohttp.ClientSession | None = None
        self._limits = {name: asyncio.Semaphore(v.max_concurrency) for name, v in vasps.items()}
        self._next_at: dict[str, float] = {}
        # Claimed beyond what the VASPs' concurrency limits let through at once, so the
        # next requests are ready; the rest waits in the outbox.
        in_flight = max(batch, 2 * sum(v.max_concurrency for v in vasps.values()))
        self.requests = OutboxLoop(
            core,
            MM7_KINDS,
            self._send_one,
            name="mm7",
            lease=LEASE_SECONDS,
            batch=batch,
            max_in_flight=in_flight,
            ready=lambda: self._session is not None,
        )

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"User-Agent": "mmsc"})
        await self.requests.start()

    async def close(self) -> None:
        await self.requests.close()  # the requests being sent finish first
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def wake(self) -> None:
        """Requests may have been queued."""
        self.requests.wake()

    async def send_due(self, now: float) -> int:
        """Claim due MM7 requests, send them and record the answers; the number claimed
        (a test's step: the running server's loop does this continuously)."""
        if self._session is None:
            return 0
        return await self.requests.run_batch(now)

    async def _pace(self, account: VaspAccount) -> None:
        if account.rate <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next_at.get(account.name, 0.0))
        self._next_at[account.name] = slot + 1.0 / account.rate
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _send_one(self, row: Any) -> None:
        account = self.vasps.get(row.destination)
        if account is None or not account.deliver_url:
            why = "no such VASP" if account is None else "the VASP has no deliver_url"
            await self._finish(row, ok=False, permanent=True, detail=why, by_vasp=False)
            return
        try:
            request = await self._build(row, account)
        except (KeyError, ValueError) as exc:  # message or body gone (expired, purged)
            detail = f"cannot build: {exc}"
            await self._finish(row, ok=False, permanent=True, detail=detail, by_vasp=False)
            return
        assert self._session is not None
        async with self._limits[account.name]:
            await self._pace(account)
            if not await self.requests.keep_claim(row):
                return
            try:
                answer = await exchange(
                    self._session,
                    account.deliver_url,
                    request,
                    username=account.deliver_username,
                    password=account.deliver_password,
                    namespace=account.namespace,
                    prefix=account.prefix,
                    unqualified_children=account.unqualified_children,
                    boundary=make_boundary(account.boundary_style),
                )
            except mm7.Mm7DecodeError as exc:
                await self._finish(
                    row, ok=False, permanent=False, detail=f"unreadable answer: {exc}"
                )
                return
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                detail = f"{type(exc).__name__}: {exc}"
                await self._finish(row, ok=False, permanent=False, detail=detail)
                return
        if isinstance(answer, mm7.Fault):
            code = answer.detail.status_code if answer.detail is not None else 3000
            text = f"Fault {answer.faultcode} {code}: {answer.faultstring}"
        else:
            code = int(getattr(answer, "status_code", 3000))
            text = f"{code} {getattr(answer, 'status_text', '')}".strip()
        ok = 1000 <= code < 2000
        await self._finish(row, ok=ok, permanent=is_permanent(code), detail=text)

    def _undelivered(
        self, conn: Connection, recipient_id: int, now: float, refused: bool, detail: str
    ) -> list[repo.Event]:
        """A DeliverReq that will not be sent again closes its recipient, so the handset
        that sent the message learns its fate now: Rejected when the VASP refused it,
        Unreachable when the VASP could not be reached before the attempts ran out."""
        status: Literal["Rejected", "Unreachable"] = "Rejected" if refused else "Unreachable"
        return self.core.undelivered(conn, recipient_id, now, status, detail)

    async def _build(self, row: Any, account: VaspAccount) -> Any:
        namespace = account.namespace
        common: dict[str, Any] = {
            "transaction_id": f"mmsc-{row.id}",
            "namespace": namespace,
            "mm7_version": mm7.MM7_VERSIONS.get(namespace, ""),
            "mms_relay_server_id": self.relay_id,
        }
        message = await self.core.read(repo.get_message, row.message_id)
        if message is None:
            raise KeyError(row.message_id)
        info = json.loads(row.pdu or b"{}")
        originator = mm7.Address("Number", message.originator)
        if row.kind == "mm7-deliver":
            recipient = await self.core.read(repo.get_recipient_by_id, row.recipient_id)
            if recipient is None:
                raise KeyError(row.recipient_id)
            pdu = mms.decode(await self.core.payloads.get(message.payload_key))
            return mm7.DeliverReq(
                **common,
                linked_id=message.id,
                sender=originator,
                to=[mm7.Address("ShortCode", recipient.address)],
                time_stamp=_utc(message.created_at),
                priority=message.priority,
                subject=message.subject,
                content=mime_content(pdu),
            )
        vasp_code = mm7.Address("ShortCode", message.originator)
        if row.kind == "mm7-delivery-report":
            return mm7.DeliveryReportReq(
                **common,
                message_id=message.id,
                recipient=mm7.Address("Number", info["recipient"]),
                sender=vasp_code,
                date=_utc(info.get("date", time.time())),
                mm_status=DELIVERY_STATUS.get(info.get("status", ""), "Indeterminate"),
                status_text=info.get("status"),
            )
        return mm7.ReadReplyReq(
            **common,
            message_id=message.id,
            recipient=mm7.Address("Number", info["recipient"]),
            sender=vasp_code,
            time_stamp=_utc(info.get("date", time.time())),
            mm_status=READ_STATUS.get(info.get("status", ""), "Indeterminate"),
            status_text=info.get("status"),
        )

    async def _finish(
        self, row: Any, *, ok: bool, permanent: bool, detail: str, by_vasp: bool = True
    ) -> None:
        """Record the VASP's answer to a request. A DeliverReq the VASP took makes its
        recipient Retrieved, with the sender's delivery report queued, in the same unit
        as the answer: apart, a crash in between left the recipient open until expiry
        and told the sender "Expired" for a message the VASP had. Metrics follow the
        commit, for answers still this node's to record. ``by_vasp`` False: the request
        never reached the VASP (our configuration, or the message is gone), so a final
        failure is not the VASP's refusal."""
        core = self.core
        now = time.time()
        policy = core.policy
        if ok:
            state, retry_at, label = repo.SENT, None, "sent"
        elif permanent or row.attempts >= policy.push_max_attempts:
            state, retry_at, label = repo.FAILED, None, "failed"
        else:
            state, retry_at, label = repo.QUEUED, now + policy.push_delay(row.attempts), "retry"
        if not ok:
            log.warning("%s %s to %s: %s (%s)", row.kind, row.id, row.destination, detail, label)

        def record(conn: Connection) -> tuple[tuple[bool, Any], list[repo.Event]]:
            """(still this node's row, the recipient row if it became Retrieved), events."""
            owned = repo.finish_push(
                conn,
                row.id,
                core.node_id,
                state=state,
                now=now,
                error=None if ok else detail,
                retry_at=retry_at,
            )
            if not owned or row.message_id is None:
                return (owned, None), []
            out = [
                repo.Event(
                    row.message_id, f"{row.kind}-{label}", now, row.recipient_id, None, detail
                )
            ]
            delivered = None
            if row.kind == "mm7-deliver" and row.recipient_id is not None:
                if state == repo.FAILED:
                    refused = permanent and by_vasp
                    out += self._undelivered(conn, row.recipient_id, now, refused, detail)
                elif ok:
                    recipient = repo.get_recipient_by_id(conn, row.recipient_id)
                    if recipient is not None:
                        moved = core.retrieved(conn, recipient, now, cause="delivered to the VASP")
                        delivered = recipient if moved else None
                        out += moved
            repo.add_events(conn, out)
            return (owned, delivered), out

        owned, delivered = await core.write(record)
        if owned:
            metrics.mm7_outbound.labels(row.kind, label).inc()
        if delivered is not None:
            core.delivered(delivered, now, "mm7")
