"""The background loops: queue due notifications, expire, and drain the push outbox.

Nothing here runs inside an HTTP request. The scheduler moves due recipients
into the outbox (one transaction: the next attempt is planned in the same
commit that queues this one, so two nodes never queue the same attempt); the
sender claims outbox rows with a lease, hands them to the notification
backend and records the outcome. A crash between claim and outcome only
delays: the lease runs out and another pass (or node) sends again, so
pushes are delivered at least once.

In a running server the pass loop queues due recipients and expires old
ones; pushes (and MM7 requests, mmsc/mm7_outbound.py) go out through an
:class:`~mmsc.outbox_loop.OutboxLoop` each, which keeps claiming while earlier
rows are still being sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from sqlalchemy.engine import Connection

from mmsc import metrics
from mmsc.core import Mmsc
from mmsc.mm7_outbound import Mm7Outbound
from mmsc.notify.base import NotificationBackend, PushRequest, SendResult
from mmsc.outbox_loop import OutboxLoop, RecordBatcher
from protocol import wap_push
from storage import repository as repo

log = logging.getLogger("mmsc.scheduler")

LEASE_SECONDS = 60.0
RECONCILE_INTERVAL = 3600.0  # seconds between looks for orphaned bodies ([storage])
RECONCILE_FIRST = 60.0  # the first look, after the start
PUSH_KINDS = ("notification", "delivery-ind", "read-orig-ind")  # what the SMS backend carries


DEPTHS_MAX_SHARE = 0.02  # of the wall time spent counting the queue depths


def depths_interval(floor: float, cost: float) -> float:
    """Seconds until the next queue-depth count: ``floor`` (the sweep interval), or more
    when one count took so long that counting every ``floor`` would spend more than
    DEPTHS_MAX_SHARE of the time on it."""
    return max(floor, cost / DEPTHS_MAX_SHARE)


class Scheduler:
    def __init__(
        self,
        core: Mmsc,
        backend: NotificationBackend,
        *,
        poll_interval: float = 1.0,
        batch: int = 100,
        send_concurrency: int = 32,
        ref16: bool = False,
        lease: float = LEASE_SECONDS,
        coalesce: float = 0.005,
        reconcile_interval: float = RECONCILE_INTERVAL,
    ) -> None:
        """``coalesce``: the least time between two passes of the running loop, in seconds
        (see :meth:`_run`); ``reconcile_interval``: seconds between two looks for stored
        bodies no message names (Mmsc.reconcile_payloads), 0 for never."""
        self.core = core
        self.backend = backend
        self.mm7: Mm7Outbound | None = None  # MM7 requests to VASPs, when any VASP is set up
        self.poll_interval = poll_interval
        self.batch = batch
        self.ref16 = ref16
        self._sem = asyncio.Semaphore(send_concurrency)
        self.pushes = OutboxLoop(
            core,
            PUSH_KINDS,
            self._send_one,
            name="push",
            lease=lease,
            batch=batch,
            max_in_flight=max(batch, 2 * send_concurrency),
            poll_interval=poll_interval,
            ready=lambda: backend.ready,
        )
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconcile_interval = reconcile_interval
        self._reconciler: asyncio.Task[None] | None = None
        self.sweep_interval = 1.0
        self.coalesce = coalesce
        self._last_sweep = 0.0
        self._last_depths = 0.0
        self.depths_interval = self.sweep_interval  # see update_depths
        core.wakeup_callbacks.append(self.wake)
        self._records: RecordBatcher[_Outcome, _Recorded] = RecordBatcher(core, self._record)
        self._counters: dict[tuple[str, str], Counter] = {}  # see _counter

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler")
        if self.reconcile_interval > 0:
            self._reconciler = asyncio.create_task(self._reconcile(), name="reconciler")
        await self.pushes.start()

    async def close(self) -> None:
        """Stop the pass loop and the push loop; pushes being sent finish and their
        outcome is recorded."""
        self._stop.set()
        self._wake.set()
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pushes.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = 0.0
        while not self._stop.is_set():
            # Under load every accepted message wakes the pass: one pass per message
            # would pay its fixed cost (a transaction, the due query, a claim) per
            # message. Waiting until ``coalesce`` after the previous pass lets a pass
            # take what arrived meanwhile, for at most that much notification latency.
            pause = last + self.coalesce - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            last = loop.time()
            self._wake.clear()
            try:
                busy = await self._pass(time.time(), explicit=False)
            except Exception:
                log.exception("scheduler pass failed; retrying")
                busy = False
            # The pass (or the request that woke it) may have queued pushes or MM7 requests.
            self.pushes.wake()
            if self.mm7 is not None:
                self.mm7.wake()
            if busy:
                continue  # more may be due right away
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def run_once(self, now: float | None = None) -> bool:
        """One pass; True if it did work (so another pass may find more at once).

        Under load a pass follows a pass; the expiry sweep and the queue-depth
        gauges scan more than the due rows, so they run at most once a second
        (or whenever the caller passes its own clock, as tests do).
        """
        explicit = now is not None
        now = time.time() if now is None else now
        busy = await self._pass(now, explicit=explicit)
        # While the backend cannot send (no SMPP bind up) pushes stay queued and their
        # attempts are not spent: an SMSC outage must not use up a notification's retries.
        sent = await self.send_pushes(now) if self.backend.ready else 0
        if self.mm7 is not None:
            sent += await self.mm7.send_due(now)
        return busy or bool(sent)

    async def _pass(self, now: float, *, explicit: bool) -> bool:
        """Everything of a pass but sending pushes (the push loop's job)."""
        expired = 0
        if explicit or now - self._last_sweep >= self.sweep_interval:
            self._last_sweep = now
            expired = await self._step("expiry sweep", self.core.expire_due(now, self.batch))
            expired += await self._step("purge", self.core.purge_expired(now, self.batch))
        queued = await self._step("notification pass", self.core.notify_due(now, self.batch))
        if explicit or now - self._last_depths >= self.depths_interval:
            self._last_depths = now
            await self.update_depths()
        return bool(expired or queued)

    async def _reconcile(self) -> None:
        """Look for orphaned bodies a minute after the start (what a crash left is
        older than the reconciler's age limit an hour after it was written), then every
        ``reconcile_interval``; a scan of a large store runs beside the passes. Expired
        UAProf profiles are dropped on the same schedule."""
        delay = min(RECONCILE_FIRST, self.reconcile_interval)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
                return
            await self._step("payload reconciliation", self.core.reconcile_payloads())
            await self._step("profile pruning", self.core.prune_profiles(time.time()))
            delay = self.reconcile_interval

    @staticmethod
    async def _step(name: str, work: Awaitable[int]) -> int:
        """One step of a pass. A step that fails is logged and the others still run:
        one message the expiry sweep cannot close must not stop every notification."""
        try:
            return await work
        except Exception:
            log.exception("scheduler %s failed; the pass goes on", name)
            return 0

    async def update_depths(self) -> None:
        """Set the mmsc_queue_depth gauges, and space the next count by what this one cost.

        The count reads every open recipient's index entry: with a million messages
        waiting for retrieval (a week of a carrier's unfetched MMS) it took 70 ms on
        SQLite here (bench/README.md, session 11). Once a second, that would be 7% of a
        core for one gauge; ``depths_interval`` keeps it under 2%."""
        started = time.monotonic()
        depths = await self.core.read_in_thread(repo.queue_depths)  # a count: off the loop
        for state, count in depths.items():
            metrics.queue_depth.labels(state).set(count)
        self.depths_interval = depths_interval(self.sweep_interval, time.monotonic() - started)

    async def send_pushes(self, now: float) -> int:
        """Claim one batch of due pushes, send them and record the outcomes (a test's
        step; the running server's push loop does the same without waiting in between)."""
        return await self.pushes.run_batch(now)

    def reference_for(self, push_id: int) -> int:
        """The concatenation reference of a push, derived from its outbox id: every retry,
        on any node, sends the same segments, so a handset holding some segments of an
        earlier attempt can still complete the datagram (3GPP TS 23.040 §9.2.3.24.1)."""
        return push_id & (0xFFFF if self.ref16 else 0xFF)

    async def _send_one(self, row: Any) -> None:
        core = self.core
        policy = core.policy
        segments = wap_push.notification_segments(
            row.pdu, tid=row.id & 0xFF, reference=self.reference_for(row.id), ref16=self.ref16
        )
        request = PushRequest(
            destination=row.destination,
            segments=tuple(segments),
            reference=f"{row.kind}:{row.id}",
            source=None,
        )
        async with self._sem:
            if not await self.pushes.keep_claim(row):
                return
            try:
                result = await self.backend.send(request)
            except Exception as exc:
                log.exception("backend %s raised", self.backend.name)
                result = SendResult(ok=False, permanent=False, detail=f"backend error: {exc}")
        now = time.time()
        if result.dropped:
            state, retry_at, label = repo.DROPPED, None, "dropped"
        elif result.ok:
            state, retry_at, label = repo.SENT, None, "sent"
        elif result.permanent or row.attempts >= policy.push_max_attempts:
            state, retry_at, label = repo.FAILED, None, "failed"
        else:
            state, retry_at, label = repo.QUEUED, now + policy.push_delay(row.attempts), "retry"
        outcome = _Outcome(
            row,
            result,
            label,
            repo.PushOutcome(row.id, state, None if result.ok else result.detail, retry_at, now),
        )
        owned, created_at = await self._records.add(outcome)
        # Counted once committed, and only by the node whose outcome was recorded: after a
        # lease takeover the other node's outcome stands, and one push is one count.
        if owned:
            self._counter(row.kind, label).inc()
        if created_at is not None:
            metrics.notification_latency.observe(max(now - created_at, 0.0))

    def _counter(self, kind: str, result: str) -> Counter:
        """The mmsc_notifications_total child (labels() looks it up under a lock, per call)."""
        counter = self._counters.get((kind, result))
        if counter is None:
            counter = self._counters[kind, result] = metrics.notifications.labels(kind, result)
        return counter

    def _record(
        self, conn: Connection, outcomes: list[_Outcome]
    ) -> tuple[list[_Recorded], list[repo.Event]]:
        """Record a batch of push outcomes in a fixed number of statements; per outcome,
        whether it was still this node's to record, and the message's acceptance time
        when it was the recipient's first notification (for the latency metric).

        A dropped notification (no backend sends pushes) leaves its recipient as it is,
        open for a fetch, but ends its re-notification: every later push would be
        dropped the same way, and each would only add events."""
        core = self.core
        owned = repo.finish_pushes(conn, core.node_id, [o.push for o in outcomes])
        mine = [o for o in outcomes if o.row.id in owned]
        repo.remember_smsc_id_rows(  # SMPP: the SMSC's ids, for its delivery receipts
            conn,
            [
                (smsc_id, o.row.id, o.row.message_id, o.row.recipient_id, o.push.now)
                for o in mine
                for smsc_id in o.result.gateway_ids or ()
            ],
        )
        now = max((o.push.now for o in mine), default=0.0)
        notifications = [
            o for o in mine if o.row.kind == "notification" and o.row.recipient_id is not None
        ]
        first = repo.mark_notified(
            conn, [o.row.recipient_id for o in notifications if o.result.ok], now
        )
        repo.stop_renotifying(
            conn, [o.row.recipient_id for o in notifications if o.result.dropped], now
        )
        out: list[repo.Event] = []
        recorded: list[_Recorded] = []
        for o in outcomes:
            row, result = o.row, o.result
            is_mine = row.id in owned
            first_notification = (
                is_mine and result.ok and row.kind == "notification" and row.recipient_id in first
            )
            if first_notification:
                first.discard(row.recipient_id)  # one "notified" per recipient
            recorded.append((is_mine, row.m_created_at if first_notification else None))
            if not is_mine or row.message_id is None:
                continue
            detail = f"{row.kind} to {row.destination}: {result.detail}".strip()
            out.append(
                repo.Event(
                    row.message_id, f"push-{o.label}", o.push.now, row.recipient_id, None, detail
                )
            )
            if (
                o.push.state == repo.FAILED
                and result.permanent
                and row.kind == "notification"
                and row.recipient_id is not None
            ):
                out += core.unreachable(conn, row.recipient_id, o.push.now, result.detail)
            if first_notification:
                out.append(
                    repo.Event(
                        row.message_id, "notified", now, row.recipient_id, repo.NOTIFIED, None
                    )
                )
        repo.add_events(conn, out)
        return recorded, out


@dataclass(slots=True, eq=False)
class _Outcome:
    row: Any  # the claimed outbox row
    result: SendResult
    label: str  # sent | failed | retry | dropped
    push: repo.PushOutcome


# What recording one outcome found: whether the push was still this node's (else another
# node took it over and records its own outcome), and the message's acceptance time when
# it was the recipient's first notification.
_Recorded = tuple[bool, float | None]
