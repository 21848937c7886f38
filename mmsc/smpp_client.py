"""One SMPP bind kept up over asyncio: the thin I/O adapter around ``SmppSession``.

Everything protocol-shaped (sequence numbers, the window, timeouts, keep-alive)
lives in ``protocol.smpp_session``; this module only moves octets, runs the
session's timer on the event loop clock, reconnects with back-off, paces
submits (``rate``) and pauses the bind when the SMSC says it is congested
(ESME_RTHROTTLED, ESME_RMSGQFUL). A bind that stops answering submit_sm (or
says we are not bound) is dropped and bound again. ``mmsc.notify.smpp``
spreads pushes over several of these.

Congestion is handled per episode, not per answer: with a window of N
submits in flight, one "slow down" from the SMSC comes back N times. Only a
congestion answer to a submit sent after the current pause began says the
pause was too short (and doubles the next one); only an ESME_ROK for a submit
sent after the pause ended says the congestion is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from mmsc import metrics
from protocol import smpp
from protocol.errors import EncodeError
from protocol.smpp_receipt import Receipt, is_receipt, parse_receipt
from protocol.smpp_session import (
    BindFailed,
    BindParams,
    Bound,
    Event,
    Ignored,
    LinkFailed,
    MessageReceived,
    OutbindReceived,
    RequestAborted,
    RequestTimedOut,
    Response,
    SmppSession,
    Unbound,
)

log = logging.getLogger("mmsc.smpp")

CONGESTION = frozenset((smpp.ESME_RTHROTTLED, smpp.ESME_RMSGQFUL))
# How long ``close`` lets receipts already acknowledged to the SMSC finish being recorded.
RECEIPT_DRAIN_TIMEOUT = 10.0
ReceiptHandler = Callable[[str, Receipt], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class BindConfig:
    """One ``[[smpp.bind]]`` table (conf/mmsc.toml documents each key)."""

    name: str
    host: str
    port: int
    params: BindParams
    source_addr: str = ""
    source_ton: int = smpp.TON_ALPHANUMERIC
    source_npi: int = smpp.NPI_UNKNOWN
    dest_ton: int = smpp.TON_INTERNATIONAL
    dest_npi: int = smpp.NPI_ISDN
    window: int = 10
    rate: float = 0.0  # submits per second; 0: as fast as the window allows
    response_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    throttle_pause: float = 1.0
    throttle_pause_max: float = 30.0
    max_response_timeouts: int = 3  # submit_sm_resp missing this many times in a row: rebind
    registered_delivery: int = 0
    data_coding: int = smpp.DATA_CODING_OCTETS
    encoding: str = "udh"  # "udh" | "sar" | "payload"
    service_type: str = ""


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What one submit_sm came to. ``status`` None: no answer (timeout or link lost)."""

    status: int | None
    message_id: str = ""
    detail: str = ""
    latency: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == smpp.ESME_ROK


class _Connection(asyncio.Protocol):
    """Feeds the session from one TCP connection."""

    def __init__(self, bind: SmppBind) -> None:
        self.bind = bind
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.bind._data_received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.bind._connection_lost(self, exc)


class SmppBind:
    """Keeps one bind up until ``close``; ``submit`` waits for a window slot and the pace."""

    def __init__(self, config: BindConfig, *, on_receipt: ReceiptHandler | None = None) -> None:
        self.config = config
        self.name = config.name
        self.on_receipt = on_receipt
        self._session: SmppSession | None = None
        self._connection: _Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._bound = asyncio.Event()
        self._link_down = asyncio.Event()
        self._slots = asyncio.Semaphore(config.window)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._next_submit_at = 0.0
        # Congestion pauses, on the event loop clock (the session's sent_at uses it too).
        self._paused_until = 0.0
        self._pause_began = -math.inf
        self._pause = 0.0  # length of the current throttling step; 0: no episode under way
        self.pauses = 0  # congestion pauses begun (status, tests)
        self.last_pause = 0.0  # seconds of the latest one
        self._timeouts = 0  # submit_sm_resp missing in a row
        self.receipt_drain_timeout = RECEIPT_DRAIN_TIMEOUT
        self._background: set[asyncio.Task[None]] = set()
        self.state_listeners: list[Callable[[], None]] = []
        self.last_error = ""
        self.binds = 0
        self._bound_since_connect = False
        self._connected = metrics.smpp_connected.labels(self.name)
        self._in_flight = metrics.smpp_in_flight.labels(self.name)
        self._latency = metrics.smpp_submit_seconds.labels(self.name)
        self._connected.set(0)

    # ------------------------------------------------------------------ status

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    @property
    def can_send(self) -> bool:
        """False for a receiver bind: it only brings receipts (§2.2, bind_receiver)."""
        return self.config.params.can_submit

    @property
    def paused(self) -> bool:
        return self._now() < self._paused_until

    @property
    def usable(self) -> bool:
        return self.bound and not self.paused and self.can_send

    @property
    def congested(self) -> bool:
        """Up but pausing for the SMSC: worth waiting for, unlike a bind that is down."""
        return self.bound and self.paused and self.can_send

    def _now(self) -> float:
        """The event loop's clock, which the session's send times use."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # status() outside the loop: asyncio's clock is this one
            return time.monotonic()

    @property
    def load(self) -> float:
        """Share of the window in use: the backend sends to the least loaded bind."""
        session = self._session
        if session is None:
            return 1.0
        return session.in_flight / self.config.window

    def status(self) -> dict[str, Any]:
        session = self._session
        return {
            "name": self.name,
            "address": f"{self.config.host}:{self.config.port}",
            "mode": self.config.params.mode,
            "system_id": self.config.params.system_id,
            "bound": self.bound,
            "paused": self.paused,
            "pauses": self.pauses,
            "last_pause": self.last_pause,
            "in_flight": 0 if session is None or not self.bound else session.in_flight,
            "window": self.config.window,
            "binds": self.binds,
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        return f"SmppBind({self.name!r}, {self.config.host}:{self.config.port})"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"smpp-bind-{self.name}")

    async def wait_bound(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bound.wait(), timeout)
        return self.bound

    async def close(self) -> None:
        """Unbind gracefully (§4.2), stop reconnecting, then let the receipts already
        acknowledged finish being recorded (the SMSC will not send them again)."""
        self._closing = True
        session, connection = self._session, self._connection
        if session is not None and connection is not None and self.bound:
            loop = asyncio.get_running_loop()
            session.unbind(loop.time())
            self._flush()
            self._arm_timer()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._link_down.wait(), self.config.response_timeout)
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._cancel_timer()
        self._set_bound(False)
        await self._drain_receipts()

    async def _drain_receipts(self) -> None:
        """Wait (at most ``receipt_drain_timeout``) for receipts being recorded: each was
        answered with deliver_sm_resp on arrival, so one cut off here is lost for good."""
        tasks = set(self._background)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.receipt_drain_timeout)
        if pending:
            log.warning(
                "smpp %s: %d receipt(s) not recorded within %g s of shutdown; dropped",
                self.name,
                len(pending),
                self.receipt_drain_timeout,
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self) -> None:
        delay = self.config.reconnect_min
        loop = asyncio.get_running_loop()
        while not self._closing:
            self._link_down.clear()
            try:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _Connection(self), self.config.host, self.config.port
                    ),
                    self.config.response_timeout,
                )
            except (OSError, TimeoutError) as exc:
                self.last_error = f"connect to {self.config.host}:{self.config.port}: {exc}"
                log.warning("smpp %s: %s; retrying in %.1f s", self.name, self.last_error, delay)
            else:
                self._connection = connection
                self._bound_since_connect = False
                session = SmppSession(
                    self.config.params,
                    window=self.config.window,
                    response_timeout=self.config.response_timeout,
                    enquire_link_interval=self.config.enquire_link_interval,
                )
                self._session = session
                session.connection_made(loop.time())
                self._flush()
                self._arm_timer()
                await self._link_down.wait()
                if connection.transport is not None:
                    connection.transport.close()
                if self._closing:
                    break
                if self._bound_since_connect:
                    delay = self.config.reconnect_min  # it worked: come back quickly
                log.warning(
                    "smpp %s: link down (%s); reconnecting in %.1f s",
                    self.name,
                    self.last_error or "closed",
                    delay,
                )
            # Full jitter keeps several nodes from reconnecting in lock step.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.config.reconnect_max)

    # ------------------------------------------------------------------ submitting

    def submit_params(self, destination: str) -> dict[str, Any]:
        """The mandatory submit_sm parameters this bind fills in for every push."""
        c = self.config
        return {
            "service_type": c.service_type,
            "source_addr_ton": c.source_ton,
            "source_addr_npi": c.source_npi,
            "source_addr": c.source_addr,
            "dest_addr_ton": c.dest_ton,
            "dest_addr_npi": c.dest_npi,
            "destination_addr": destination.lstrip("+"),
            "registered_delivery": c.registered_delivery,
            "data_coding": c.data_coding,
        }

    async def submit(
        self, params: Mapping[str, Any], tlvs: Mapping[str | int, Any] | None = None
    ) -> SubmitOutcome:
        """Send one submit_sm and wait for its fate; never raises for link trouble."""
        loop = asyncio.get_running_loop()
        async with self._slots:
            await self._pace(loop)
            session = self._session
            if session is None or not self.bound or not session.can_submit:
                return SubmitOutcome(None, detail=f"bind {self.name} is not bound")
            future: asyncio.Future[SubmitOutcome] = loop.create_future()
            sent_at = loop.time()
            try:
                session.submit_sm(params, sent_at, tlvs=tlvs, tag=future)
            except EncodeError as exc:
                return SubmitOutcome(smpp.ESME_RINVMSGLEN, detail=f"cannot encode: {exc}")
            self._in_flight.set(session.in_flight)
            self._flush()
            self._arm_timer()
            outcome = await future
        self._in_flight.set(session.in_flight)
        return outcome

    async def _pace(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hold the submit until any congestion pause is over and the bind's rate allows."""
        while True:
            wait = self._paused_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            rate = self.config.rate
            if rate <= 0:
                return
            now = loop.time()
            slot = max(now, self._next_submit_at)
            self._next_submit_at = slot + 1.0 / rate
            if slot > now:
                await asyncio.sleep(slot - now)
            return

    # ------------------------------------------------------------------ connection callbacks

    def _data_received(self, connection: _Connection, data: bytes) -> None:
        session = self._session
        if connection is not self._connection or session is None:
            return
        events = session.data_received(data, asyncio.get_running_loop().time())
        self._flush()
        if events:
            self._handle(events)
        self._arm_timer()

    def _connection_lost(self, connection: _Connection, exc: Exception | None) -> None:
        if connection is not self._connection:
            return
        session = self._session
        if session is not None:
            reason = f"connection lost: {exc}" if exc else "connection closed by the SMSC"
            self._handle(session.connection_lost(reason))
        self._connection = None
        self._link_down.set()
        self._set_bound(False)

    def _flush(self) -> None:
        session, connection = self._session, self._connection
        if session is None or connection is None or connection.transport is None:
            return
        data = session.data_to_send()
        if data:
            connection.transport.write(data)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _arm_timer(self) -> None:
        session = self._session
        deadline = None if session is None else session.next_deadline()
        if deadline is None:
            self._cancel_timer()
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return  # an earlier (or the same) wake-up is already planned
        self._cancel_timer()
        self._timer_at = deadline
        self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        session = self._session
        if session is None:
            return
        events = session.timer(asyncio.get_running_loop().time())
        self._flush()
        if events:
            self._handle(events)
        self._arm_timer()

    # ------------------------------------------------------------------ events

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Response):
                self._on_response(event)
            elif isinstance(event, RequestTimedOut | RequestAborted):
                self._on_unanswered(event)
            elif isinstance(event, MessageReceived):
                self._on_message(event.pdu)
            elif isinstance(event, Bound):
                self.binds += 1
                self.last_error = ""
                self._bound_since_connect = True
                self._pause = 0.0
                self._timeouts = 0
                log.info(
                    "smpp %s: bound as %s to %s:%d (SMSC %r)",
                    self.name,
                    self.config.params.mode,
                    self.config.host,
                    self.config.port,
                    event.smsc_system_id,
                )
                self._set_bound(True)
            elif isinstance(event, BindFailed):
                self.last_error = event.reason
                self._bound_since_connect = False
                log.error("smpp %s: %s", self.name, event.reason)
                self._drop_link()
            elif isinstance(event, LinkFailed | Unbound):
                if isinstance(event, LinkFailed):
                    self.last_error = event.reason
                elif event.by_peer:
                    self.last_error = "unbound by the SMSC"
                self._drop_link()
            elif isinstance(event, OutbindReceived):
                log.info(
                    "smpp %s: outbind from %r ignored (we bind ourselves)",
                    self.name,
                    event.system_id,
                )
            elif isinstance(event, Ignored):
                log.warning("smpp %s: %s", self.name, event.reason)

    def _on_response(self, event: Response) -> None:
        future = event.tag
        latency = event.received_at - event.sent_at
        self._latency.observe(latency)
        status = event.status
        if event.response.command_id == smpp.GENERIC_NACK and status == smpp.ESME_ROK:
            status = smpp.ESME_RSYSERR  # a nack without a reason is still a refusal
        metrics.smpp_submits.labels(self.name, smpp.status_name(status)).inc()
        self._timeouts = 0  # it answers
        if status in CONGESTION:
            self._congested(status, event.sent_at, event.received_at)
        elif status == smpp.ESME_ROK and event.sent_at >= self._paused_until:
            self._pause = 0.0  # sent after the pause and accepted: the episode is over
        outcome = SubmitOutcome(
            status,
            message_id=str(event.response.params.get("message_id", "")),
            detail=smpp.status_name(status),
            latency=latency,
        )
        if isinstance(future, asyncio.Future) and not future.done():
            future.set_result(outcome)
        if status == smpp.ESME_RINVBNDSTS:
            # §5.1.3: "incorrect bind status for given command": the SMSC no longer
            # counts this session as bound, whatever we think. Bind again.
            self._recycle("submit_sm answered ESME_RINVBNDSTS")

    def _on_unanswered(self, event: RequestTimedOut | RequestAborted) -> None:
        future = event.tag
        if isinstance(event, RequestTimedOut):
            detail = f"no submit_sm_resp within {self.config.response_timeout:g} s"
            label = "timeout"
            self._timeouts += 1
        else:
            detail = event.reason
            label = "aborted"
        metrics.smpp_submits.labels(self.name, label).inc()
        if isinstance(future, asyncio.Future) and not future.done():
            future.set_result(SubmitOutcome(None, detail=detail))
        if self._timeouts >= self.config.max_response_timeouts:
            # A session that answers enquire_link but lets submit_sm outlive the response
            # timer (§2.9 timers) is wedged on the SMSC's side: a new bind may not be.
            self._recycle(f"{self._timeouts} submit_sm in a row unanswered")

    def _recycle(self, reason: str) -> None:
        """Drop a bound link that no longer works; ``_run`` reconnects and binds again."""
        session = self._session
        if session is None or session.closed or self._closing:
            return
        log.warning("smpp %s: %s; dropping the link to bind again", self.name, reason)
        self._timeouts = 0
        # Unanswered submits are aborted (their pushes move on); LinkFailed drops the link.
        self._handle(session.connection_lost(reason))

    def _congested(self, status: int, sent_at: float, now: float) -> None:
        """Pause the bind (§5.1.3: ESME_RTHROTTLED, ESME_RMSGQFUL), once per episode."""
        if sent_at < self._pause_began:
            return  # sent before this pause began: the same "slow down", heard again
        if status == smpp.ESME_RTHROTTLED:
            # Sent after the pause began and still throttled: the pause was too short.
            step = self._pause * 2 if self._pause else self.config.throttle_pause
            self._pause = length = min(step, self.config.throttle_pause_max)
        else:
            # A full queue is often one destination's (handset off): never escalate, or
            # one subscriber would hold the bind up for everyone.
            length = self.config.throttle_pause
        self._pause_began = now
        self._paused_until = max(self._paused_until, now + length)
        self.pauses += 1
        self.last_pause = length
        log.warning(
            "smpp %s: %s, pausing submits for %.1f s",
            self.name,
            smpp.status_name(status),
            length,
        )
        asyncio.get_running_loop().call_at(self._paused_until, self._notify_state)

    def _on_message(self, pdu: smpp.Pdu) -> None:
        session = self._session
        if session is None:
            return
        # Receipts are information, not custody: acknowledge at once so the SMSC does
        # not redeliver, then record (a lost receipt costs an event row, nothing more).
        session.respond(pdu)
        self._flush()
        if not is_receipt(pdu):
            metrics.smpp_receipts.labels(self.name, "mo-ignored").inc()
            log.info("smpp %s: mobile-originated %s ignored", self.name, pdu.name)
            return
        receipt = parse_receipt(pdu)
        if receipt is None:
            metrics.smpp_receipts.labels(self.name, "unreadable").inc()
            log.warning("smpp %s: unreadable receipt %r", self.name, pdu.params)
            return
        metrics.smpp_receipts.labels(self.name, receipt.state).inc()
        if self.on_receipt is not None:
            task = asyncio.get_running_loop().create_task(self.on_receipt(self.name, receipt))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _drop_link(self) -> None:
        self._set_bound(False)
        connection = self._connection
        if connection is not None and connection.transport is not None:
            connection.transport.close()
        self._link_down.set()

    def _set_bound(self, bound: bool) -> None:
        if bound == self._bound.is_set():
            return
        if bound:
            self._bound.set()
        else:
            self._bound.clear()
        self._connected.set(1 if bound else 0)
        self._in_flight.set(0 if not bound or self._session is None else self._session.in_flight)
        self._notify_state()

    def _notify_state(self) -> None:
        for listener in self.state_listeners:
            listener()
