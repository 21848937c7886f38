"""WAP Push over our own SMPP 3.4 binds (the ``smpp`` notification backend).

A push is the SMS segments the scheduler already cut (same bytes, same
concatenation reference on every retry). Each segment becomes one submit_sm
on the least loaded usable bind; a bind that drops or times out only moves
the segment to another bind (or makes it wait for one, up to
``submit_timeout``), so failover costs no notification. A congested bind
(paused after ESME_RTHROTTLED / ESME_RMSGQFUL) is waited for up to
``congestion_max_wait`` instead: the scheduler counts an attempt for every
send, and "the SMSC asked us to slow down" must not use up a subscriber's
attempts. Only answers that would come back the same every time end a push
for good (``PERMANENT``): a destination the SMSC will never reach, said by
every bind that was tried. Everything else is "try later", and the durable
outbox (storage.repository) keeps the push until it goes out.

Encodings, per bind (``encoding``):
- ``udh`` (default): UDH in short_message, esm_class UDHI, data_coding 0x04
  (or 0xF5), as WAP-259-WDP Annex A and most SMSCs expect.
- ``sar``: the same segments with no UDH; ports and concatenation go in the
  source_port/destination_port and sar_* TLVs (SMPP 3.4 §5.3.2.20-27).
- ``payload``: the whole WSP datagram in one message_payload TLV with the
  port TLVs; the SMSC segments it. A payload bind that takes over a push
  half-sent by another bind sends the rest as ``udh`` segments (the handset
  can still join them: same reference).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from mmsc.notify.base import PushRequest, SendResult, valid_destination
from mmsc.notify.smpp_config import SmppSettings
from mmsc.smpp_client import CONGESTION, SmppBind, SubmitOutcome
from protocol import smpp
from protocol.errors import DecodeError
from protocol.smpp_receipt import Receipt
from protocol.wap_push import WAP_PUSH_PORT, WAP_PUSH_SOURCE_PORT, SmsSegment, parse_user_data

log = logging.getLogger("mmsc.notify.smpp")

# Statuses that will not change if the same push is submitted again: the destination
# itself is refused (SMPP 3.4 §5.1.3). Configuration mistakes (source address, bind
# status, system type) are deliberately NOT here: every push would fail the same way
# and an operator fixes them, after which the queued pushes must still go out.
PERMANENT = frozenset(
    (
        smpp.ESME_RINVDSTADR,
        smpp.ESME_RX_P_APPN,
        0x66,  # ESME_RX_R_APPN: the receiver rejects this message
    )
)
# §5.1.3 RINVDSTTON / RINVDSTNPI judge the bind's dest_ton / dest_npi, which every push
# on that bind carries: a configuration mistake (transient, logged as an error).
BIND_SETTINGS = frozenset((smpp.ESME_RINVDSTTON, smpp.ESME_RINVDSTNPI))
# No verdict on the push: no answer (status None), or the SMSC no longer counts the
# session as bound (the bind rebinds): the segment goes again, there or elsewhere.
UNSENT = frozenset((None, smpp.ESME_RINVBNDSTS))

ReceiptSink = Callable[[str, Receipt], Coroutine[Any, Any, None]]


def segment_submit(
    bind: SmppBind, destination: str, segment: SmsSegment
) -> tuple[dict[str, Any], dict[str | int, Any]]:
    """submit_sm parameters and TLVs for one SMS segment on ``bind``."""
    params = bind.submit_params(destination)
    if bind.config.encoding == "sar":
        try:
            udh, _ = parse_user_data(segment.udh)
        except DecodeError:
            udh = None
        tlvs: dict[str | int, Any] = {
            "source_port": WAP_PUSH_SOURCE_PORT
            if udh is None or udh.src_port is None
            else udh.src_port,
            "destination_port": WAP_PUSH_PORT
            if udh is None or udh.dst_port is None
            else udh.dst_port,
        }
        if udh is not None and udh.reference is not None:
            tlvs["sar_msg_ref_num"] = udh.reference
            tlvs["sar_total_segments"] = udh.total
            tlvs["sar_segment_seqnum"] = udh.seq
        params["esm_class"] = 0
        params["short_message"] = segment.payload
        return params, tlvs
    params["esm_class"] = smpp.ESM_UDHI if segment.udh else 0
    params["short_message"] = segment.user_data
    return params, {}


def payload_submit(
    bind: SmppBind, destination: str, segments: tuple[SmsSegment, ...]
) -> tuple[dict[str, Any], dict[str | int, Any]]:
    """One submit_sm carrying the whole datagram in message_payload (§5.3.2.32)."""
    params = bind.submit_params(destination)
    params["esm_class"] = 0
    params["short_message"] = b""
    tlvs: dict[str | int, Any] = {
        "source_port": WAP_PUSH_SOURCE_PORT,
        "destination_port": WAP_PUSH_PORT,
        "message_payload": b"".join(segment.payload for segment in segments),
    }
    return params, tlvs


class SmppBackend:
    """Sends pushes over one or more binds; see the module docstring for the policy."""

    name = "smpp"

    def __init__(self, settings: SmppSettings, *, receipt_sink: ReceiptSink | None = None) -> None:
        if not settings.binds:
            raise ValueError("the smpp backend needs at least one bind")
        if not any(config.params.can_submit for config in settings.binds):
            raise ValueError("the smpp backend needs a bind that can send (not a receiver)")
        self.settings = settings
        self.submit_timeout = settings.submit_timeout
        self.congestion_max_wait = settings.congestion_max_wait
        self.receipt_sink = receipt_sink
        self.binds = [SmppBind(config, on_receipt=self._receipt) for config in settings.binds]
        self._changed: asyncio.Event | None = None
        self._turn = 0
        for bind in self.binds:
            bind.state_listeners.append(self._on_bind_change)

    def __repr__(self) -> str:
        return f"SmppBackend({[b.name for b in self.binds]})"

    @property
    def ready(self) -> bool:
        """At least one bind can take a submit now (receiver binds never can); the
        scheduler holds pushes otherwise."""
        return any(bind.usable for bind in self.binds)

    def status(self) -> dict[str, Any]:
        """What /api/notify shows an operator: is each bind up, how busy, why not."""
        return {
            "backend": self.name,
            "ready": self.ready,
            "binds": [bind.status() for bind in self.binds],
        }

    async def start(self) -> None:
        self._changed = asyncio.Event()
        for bind in self.binds:
            await bind.start()

    async def close(self) -> None:
        await asyncio.gather(*(bind.close() for bind in self.binds))

    def _on_bind_change(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _receipt(self, bind: str, receipt: Receipt) -> None:
        if self.receipt_sink is None:
            log.info(
                "smpp %s: receipt for %s: %s (no sink)", bind, receipt.message_id, receipt.state
            )
            return
        try:
            await self.receipt_sink(bind, receipt)
        except Exception:
            log.exception("smpp %s: recording the receipt for %s failed", bind, receipt.message_id)

    async def wait_ready(self, timeout: float) -> bool:
        """True once some bind is usable (tests and startup use it)."""
        loop = asyncio.get_running_loop()
        return await self._choose(loop.time() + timeout) is not None

    async def _choose(
        self,
        deadline: float,
        congestion_deadline: float | None = None,
        exclude: Collection[SmppBind] = (),
    ) -> SmppBind | None:
        """The usable bind with the most free window, round robin among equals, leaving
        out ``exclude``. Waits for one until ``deadline``, or until ``congestion_deadline``
        (when later) while some candidate is up but paused by the SMSC."""
        assert self._changed is not None, "SmppBackend.send() before start()"
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            count = len(self.binds)
            best: SmppBind | None = None
            congested = False
            for offset in range(count):
                bind = self.binds[(self._turn + offset) % count]
                if bind in exclude:
                    continue
                congested = congested or bind.congested
                if bind.usable and (best is None or bind.load < best.load):
                    best = bind
            if best is not None:
                self._turn = (self._turn + 1) % count
                return best
            limit = deadline
            if congested and congestion_deadline is not None:
                limit = max(deadline, congestion_deadline)
            remaining = limit - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def send(self, push: PushRequest) -> SendResult:
        if not valid_destination(push.destination):
            return SendResult(
                ok=False, permanent=True, detail=f"invalid destination {push.destination!r}"
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.submit_timeout
        congestion_deadline = started + self.congestion_max_wait
        segments = push.segments
        total = len(segments)
        ids: list[str] = []
        index = 0
        last: SubmitOutcome | None = None
        # Per segment: the binds that refused it (-> was that permanent), and those that
        # answered ESME_RMSGQFUL for it.
        refused: dict[SmppBind, bool] = {}
        refusals: list[str] = []
        queue_full: set[SmppBind] = set()
        while index < total:
            bind = await self._choose(deadline, congestion_deadline, refused)
            if bind is None:
                if refused:  # the binds left to try never came: no verdict from them
                    return self._refused(push, index, refusals, refused, every_bind=False)
                why = "no SMPP bind available" if last is None else f"last answer: {last.detail}"
                waited = f"not sent after {loop.time() - started:.1f} s"
                return self._give_up(push, index, f"segment {index + 1}/{total} {waited} ({why})")
            if bind.config.encoding == "payload" and index == 0:
                params, tlvs = payload_submit(bind, push.destination, segments)
                covers = total
            else:
                params, tlvs = segment_submit(bind, push.destination, segments[index])
                covers = 1
            outcome = await bind.submit(params, tlvs)
            if outcome.ok:
                ids.append(outcome.message_id)
                index += covers
                refused, refusals, queue_full = {}, [], set()  # verdicts are per segment
                continue
            last = outcome
            status = outcome.status
            where = f"segment {index + 1}/{total}"
            if status in UNSENT:
                # Lost link, no answer, or a bind being recycled: the same bytes may go
                # through another bind (or this one, bound again) before the deadline.
                if loop.time() >= deadline:
                    return self._give_up(push, index, f"{where}: {outcome.detail}")
                continue
            if status in CONGESTION:
                if status == smpp.ESME_RMSGQFUL:
                    if bind in queue_full:
                        # Full again after a pause: most likely this destination's own
                        # queue. Back off through the outbox rather than hold the bind.
                        return self._give_up(push, index, f"{where}: {outcome.detail} twice")
                    queue_full.add(bind)
                if loop.time() >= max(deadline, congestion_deadline):
                    return self._give_up(push, index, f"{where}: {outcome.detail}")
                continue
            if status in BIND_SETTINGS:
                log.error(
                    "smpp %s: %s: check this bind's dest_ton (%d) and dest_npi (%d)",
                    bind.name,
                    outcome.detail,
                    bind.config.dest_ton,
                    bind.config.dest_npi,
                )
            refused[bind] = status in PERMANENT
            refusals.append(f"{bind.name}: {outcome.detail}")
            if not any(b.bound and b.can_send and b not in refused for b in self.binds):
                return self._refused(push, index, refusals, refused)
            # Another bind may have other settings or reach another SMSC: try it once.
        return SendResult(
            ok=True,
            detail=f"{len(ids)} submit_sm accepted, SMSC id(s) {', '.join(ids)}",
            gateway_ids=tuple(ids),
        )

    def _refused(
        self,
        push: PushRequest,
        sent: int,
        refusals: list[str],
        refused: dict[SmppBind, bool],
        *,
        every_bind: bool = True,
    ) -> SendResult:
        """Permanent only when every bind that can send said, for good, that the destination
        is unreachable (``every_bind``: none was left to try; a bind that timed out or went
        down before answering gave no verdict, so the push stays a retry)."""
        detail = f"segment {sent + 1}/{len(push.segments)} refused by {'; '.join(refusals)}"
        permanent = every_bind and all(refused.values())
        return self._give_up(push, sent, detail, permanent=permanent)

    def _give_up(
        self, push: PushRequest, sent: int, detail: str, *, permanent: bool = False
    ) -> SendResult:
        if sent:
            detail += f" ({sent} earlier segment(s) were accepted)"
        log.warning(
            "push %s to %s failed (%s): %s",
            push.reference,
            push.destination,
            "permanent" if permanent else "transient",
            detail,
        )
        return SendResult(ok=False, permanent=permanent, detail=detail)
