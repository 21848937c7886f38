"""The ESME side of one SMPP 3.4 session, as a state machine that never touches a socket.

The caller owns the connection and the clock: it feeds received octets and
the current (monotonic) time in, writes ``data_to_send()`` out, and calls
``timer(now)`` when ``next_deadline()`` passes. Everything the session has
to say comes back as event objects. That keeps sequence numbers, the
outstanding window, response timeouts and enquire_link keep-alive (SMPP 3.4
§2.2-§2.9, §4.11) testable to the microsecond without an event loop, and it
lets the asyncio client in ``mmsc.smpp`` stay a thin adapter (the aioquic/h11
model).

States (§2.2): OPEN (connected, not bound) -> BINDING -> BOUND ->
UNBINDING -> CLOSED. A bind that is refused, an unbind from either side, a
framing error or an unanswered enquire_link all end in CLOSED; the session
is not reused after that, the caller reconnects with a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from protocol import smpp
from protocol.errors import DecodeError
from protocol.smpp import Pdu

# Requests an SMSC may send to an ESME, and how the session answers each (§2.3, §4).
_PEER_REQUESTS = frozenset((smpp.DELIVER_SM, smpp.DATA_SM, smpp.ENQUIRE_LINK, smpp.UNBIND))
_BIND_COMMANDS = {
    "transmitter": smpp.BIND_TRANSMITTER,
    "receiver": smpp.BIND_RECEIVER,
    "transceiver": smpp.BIND_TRANSCEIVER,
}
_MAX_SEQUENCE = 0x7FFFFFFF  # §3.2: sequence_number 0x00000001 to 0x7FFFFFFF


class SessionState(Enum):
    OPEN = "open"
    BINDING = "binding"
    BOUND = "bound"
    UNBINDING = "unbinding"
    CLOSED = "closed"


class SessionError(RuntimeError):
    """A request the session cannot send in its present state (a caller's bug)."""


@dataclass(frozen=True, slots=True)
class BindParams:
    """What goes into bind_transmitter/receiver/transceiver (§4.1.1)."""

    system_id: str
    password: str
    mode: str = "transceiver"
    system_type: str = ""
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def __post_init__(self) -> None:
        if self.mode not in _BIND_COMMANDS:
            raise ValueError(f"bind mode {self.mode!r}: expected one of {sorted(_BIND_COMMANDS)}")

    @property
    def can_submit(self) -> bool:
        return self.mode != "receiver"

    @property
    def can_receive(self) -> bool:
        return self.mode != "transmitter"

    def __repr__(self) -> str:  # never print the password
        return f"BindParams(system_id={self.system_id!r}, mode={self.mode!r})"


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Bound:
    """The SMSC accepted the bind; ``smsc_system_id`` is how it names itself."""

    smsc_system_id: str
    interface_version: int | None


@dataclass(frozen=True, slots=True)
class BindFailed:
    """The SMSC refused the bind (``status``) or never answered (``status`` None)."""

    status: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to one of our requests; generic_nack counts as an answer."""

    request: Pdu
    response: Pdu
    tag: Any
    sent_at: float
    received_at: float

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def ok(self) -> bool:
        return self.response.status == smpp.ESME_ROK and self.response.command_id != (
            smpp.GENERIC_NACK
        )


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """No answer within the response timeout; the SMSC may still have acted on it."""

    request: Pdu
    tag: Any
    sent_at: float


@dataclass(frozen=True, slots=True)
class RequestAborted:
    """The session closed with this request unanswered; its fate is unknown."""

    request: Pdu
    tag: Any
    reason: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A deliver_sm or data_sm from the SMSC. The caller must ``respond`` to it."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class OutbindReceived:
    """The SMSC asks us to bind as a receiver on this connection (§2.2.1)."""

    system_id: str
    password: str


@dataclass(frozen=True, slots=True)
class Unbound:
    """The session is closed by an unbind, ours (``by_peer`` False) or the SMSC's."""

    by_peer: bool


@dataclass(frozen=True, slots=True)
class LinkFailed:
    """The connection cannot go on (framing lost, keep-alive unanswered): close it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A PDU the session dropped (an answer to nothing, say); for logs and metrics."""

    pdu: Pdu | None
    reason: str


Event = (
    Bound
    | BindFailed
    | Response
    | RequestTimedOut
    | RequestAborted
    | MessageReceived
    | OutbindReceived
    | Unbound
    | LinkFailed
    | Ignored
)


@dataclass(slots=True)
class _Outstanding:
    request: Pdu
    tag: Any
    sent_at: float
    deadline: float
    counted: bool  # occupies a window slot (application requests do; keep-alive does not)


_KEEPALIVE = object()
_BIND = object()
_UNBIND = object()


@dataclass(slots=True)
class SmppSession:
    """One bind on one connection. Times are seconds from any monotonic clock."""

    bind: BindParams
    window: int = 10
    response_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    state: SessionState = SessionState.OPEN
    _sequence: int = 0
    _out: bytearray = field(default_factory=bytearray)
    _reader: smpp.PduReader = field(default_factory=smpp.PduReader)
    _outstanding: dict[int, _Outstanding] = field(default_factory=dict)
    _in_window: int = 0
    _last_received: float = 0.0
    _keepalive_pending: bool = False

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be at least 1")
        if self.response_timeout <= 0 or self.enquire_link_interval <= 0:
            raise ValueError("timeouts must be positive")

    # ------------------------------------------------------------------ queries

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def in_flight(self) -> int:
        """Application requests sent and not yet answered."""
        return self._in_window

    @property
    def can_submit(self) -> bool:
        return (
            self.state is SessionState.BOUND
            and self.bind.can_submit
            and self._in_window < self.window
        )

    def data_to_send(self) -> bytes:
        """Octets to write to the connection, in order; empties the buffer."""
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_deadline(self) -> float | None:
        """When ``timer`` next has work: a response timeout or a keep-alive to send."""
        if self.state is SessionState.CLOSED:
            return None
        deadline: float | None = None
        if self._outstanding:
            deadline = next(iter(self._outstanding.values())).deadline
        if self.state is SessionState.BOUND and not self._keepalive_pending:
            keepalive = self._last_received + self.enquire_link_interval
            deadline = keepalive if deadline is None else min(deadline, keepalive)
        return deadline

    # ------------------------------------------------------------------ requests

    def connection_made(self, now: float) -> None:
        """The TCP connection is up: send the bind request."""
        if self.state is not SessionState.OPEN:
            raise SessionError(f"connection_made in state {self.state.value}")
        self._last_received = now
        params = {
            "system_id": self.bind.system_id,
            "password": self.bind.password,
            "system_type": self.bind.system_type,
            "interface_version": smpp.INTERFACE_VERSION,
            "addr_ton": self.bind.addr_ton,
            "addr_npi": self.bind.addr_npi,
            "address_range": self.bind.address_range,
        }
        self.state = SessionState.BINDING
        self._send_request(
            Pdu(_BIND_COMMANDS[self.bind.mode], params=params), now, _BIND, counted=False
        )

    def submit_sm(
        self,
        params: Mapping[str, Any],
        now: float,
        *,
        tlvs: Mapping[str | int, Any] | None = None,
        tag: Any = None,
    ) -> int:
        """Queue a submit_sm; returns its sequence number. Check ``can_submit`` first."""
        return self.request(smpp.SUBMIT_SM, params, now, tlvs=tlvs, tag=tag)

    def request(
        self,
        command_id: int,
        params: Mapping[str, Any],
        now: float,
        *,
        tlvs: Mapping[str | int, Any] | None = None,
        tag: Any = None,
    ) -> int:
        """Queue any application request (submit_sm, data_sm, query_sm) in the window."""
        if not self.can_submit:
            if self.state is not SessionState.BOUND:
                raise SessionError(
                    f"cannot send {smpp.COMMAND_NAMES.get(command_id)}: "
                    f"session is {self.state.value}"
                )
            if not self.bind.can_submit:
                raise SessionError("a receiver bind cannot submit")
            raise SessionError(f"window of {self.window} is full")
        pdu = Pdu(command_id, params=dict(params), tlvs=dict(tlvs) if tlvs else {})
        return self._send_request(pdu, now, tag, counted=True)

    def unbind(self, now: float) -> None:
        """Start a graceful unbind (§4.2). Outstanding requests may still be answered."""
        if self.state is SessionState.BOUND:
            self.state = SessionState.UNBINDING
            self._send_request(Pdu(smpp.UNBIND), now, _UNBIND, counted=False)
        elif self.state in (SessionState.OPEN, SessionState.BINDING):
            self.state = SessionState.CLOSED

    def respond(self, request: Pdu, status: int = smpp.ESME_ROK, message_id: str = "") -> None:
        """Answer a deliver_sm or data_sm that a MessageReceived event carried."""
        if self.state is SessionState.CLOSED:
            return
        params = {"message_id": message_id}
        self._out += smpp.encode(
            Pdu(request.command_id | smpp.RESPONSE_BIT, request.sequence, status, params)
        )

    def _next_sequence(self) -> int:
        self._sequence = 1 if self._sequence >= _MAX_SEQUENCE else self._sequence + 1
        while self._sequence in self._outstanding:  # only after 2^31 requests in flight
            self._sequence = 1 if self._sequence >= _MAX_SEQUENCE else self._sequence + 1
        return self._sequence

    def _send_request(self, pdu: Pdu, now: float, tag: Any, *, counted: bool) -> int:
        pdu.sequence = self._next_sequence()
        self._out += smpp.encode(pdu)
        self._outstanding[pdu.sequence] = _Outstanding(
            pdu, tag, now, now + self.response_timeout, counted
        )
        if counted:
            self._in_window += 1
        return pdu.sequence

    # ------------------------------------------------------------------ input

    def data_received(self, data: bytes, now: float) -> list[Event]:
        """Feed octets read from the connection; returns what they meant."""
        if self.state is SessionState.CLOSED:
            return []
        self._last_received = now
        try:
            frames = self._reader.feed(data)
        except DecodeError as exc:
            self._out += smpp.encode(Pdu(smpp.GENERIC_NACK, 0, smpp.ESME_RINVCMDLEN))
            return self._close(f"framing lost: {exc.reason}", LinkFailed(exc.reason))
        events: list[Event] = []
        for frame in frames:
            self._handle_frame(frame, now, events)
            if self.closed:
                break
        return events

    def _handle_frame(self, frame: bytes, now: float, events: list[Event]) -> None:
        header = smpp.peek_header(frame)
        assert header is not None  # PduReader only yields whole PDUs
        _, command_id, status, sequence = header
        try:
            pdu = smpp.decode(frame)
        except DecodeError as exc:
            if command_id & smpp.RESPONSE_BIT:
                # An answer we cannot read is still an answer: its status and sequence count.
                pdu = Pdu(command_id, sequence, status)
            elif command_id in (smpp.DELIVER_SM, smpp.DATA_SM):
                # A message we cannot read is answered as refused for good (§5.1.3
                # ESME_RX_P_APPN), not with generic_nack: many SMSCs redeliver a nacked
                # deliver_sm forever and hold back the ones queued behind it.
                self.respond(Pdu(command_id, sequence), smpp.ESME_RX_P_APPN)
                events.append(Ignored(None, f"undecodable {command_id:#x}: {exc.reason}"))
                return
            else:
                self._out += smpp.encode(Pdu(smpp.GENERIC_NACK, sequence, smpp.ESME_RINVMSGLEN))
                events.append(Ignored(None, f"undecodable {command_id:#x}: {exc.reason}"))
                return
        if pdu.is_response:
            self._handle_response(pdu, now, events)
        else:
            self._handle_request(pdu, events)

    def _handle_response(self, pdu: Pdu, now: float, events: list[Event]) -> None:
        pending = self._outstanding.pop(pdu.sequence, None)
        if pending is None:
            events.append(Ignored(pdu, "response to no outstanding request"))
            return
        if pending.counted:
            self._in_window -= 1
        expected = pending.request.command_id | smpp.RESPONSE_BIT
        if pdu.command_id not in (expected, smpp.GENERIC_NACK):
            events.append(Ignored(pdu, f"answers {pending.request.name} with {pdu.name}"))
            pdu = Pdu(smpp.GENERIC_NACK, pdu.sequence, pdu.status or smpp.ESME_RSYSERR)
        tag = pending.tag
        if tag is _BIND:
            if pdu.status == smpp.ESME_ROK and pdu.command_id != smpp.GENERIC_NACK:
                self.state = SessionState.BOUND
                version = pdu.tlvs.get("sc_interface_version")
                events.append(
                    Bound(
                        pdu.params.get("system_id", ""),
                        version if isinstance(version, int) else None,
                    )
                )
            else:
                reason = f"bind refused: {smpp.status_name(pdu.status)}"
                events.extend(self._close(reason, BindFailed(pdu.status, reason)))
        elif tag is _KEEPALIVE:
            self._keepalive_pending = False
        elif tag is _UNBIND:
            events.extend(self._close("unbound", Unbound(by_peer=False)))
        else:
            events.append(Response(pending.request, pdu, tag, pending.sent_at, now))

    def _handle_request(self, pdu: Pdu, events: list[Event]) -> None:
        command_id = pdu.command_id
        if command_id == smpp.ENQUIRE_LINK:
            self._out += smpp.encode(Pdu(smpp.ENQUIRE_LINK_RESP, pdu.sequence))
        elif command_id == smpp.UNBIND:
            self._out += smpp.encode(Pdu(smpp.UNBIND_RESP, pdu.sequence))
            events.extend(self._close("unbound by the SMSC", Unbound(by_peer=True)))
        elif command_id in (smpp.DELIVER_SM, smpp.DATA_SM):
            if self.state is not SessionState.BOUND or not self.bind.can_receive:
                self.respond(pdu, smpp.ESME_RINVBNDSTS)
                events.append(Ignored(pdu, f"{pdu.name} while {self.state.value}"))
            else:
                events.append(MessageReceived(pdu))
        elif command_id == smpp.ALERT_NOTIFICATION:
            # §4.12: alert_notification has no response.
            events.append(Ignored(pdu, "alert_notification (a handset became available)"))
        elif command_id == smpp.OUTBIND:
            events.append(
                OutbindReceived(pdu.params.get("system_id", ""), pdu.params.get("password", ""))
            )
        else:
            # §3.3: a command the receiver does not support is answered with generic_nack.
            self._out += smpp.encode(Pdu(smpp.GENERIC_NACK, pdu.sequence, smpp.ESME_RINVCMDID))
            events.append(Ignored(pdu, f"{pdu.name} is not for an ESME"))

    # ------------------------------------------------------------------ time

    def timer(self, now: float) -> list[Event]:
        """Expire unanswered requests and send a keep-alive when the link has been quiet."""
        events: list[Event] = []
        if self.state is SessionState.CLOSED:
            return events
        # Deadlines grow with insertion order (one timeout for all), so stop at the first
        # request still in time.
        while self._outstanding:
            sequence, pending = next(iter(self._outstanding.items()))
            if pending.deadline > now:
                break
            del self._outstanding[sequence]
            if pending.counted:
                self._in_window -= 1
            if pending.tag is _BIND:
                reason = f"no bind response within {self.response_timeout:g} s"
                return events + self._close(reason, BindFailed(None, reason))
            if pending.tag is _KEEPALIVE:
                reason = f"enquire_link unanswered for {self.response_timeout:g} s"
                return events + self._close(reason, LinkFailed(reason))
            if pending.tag is _UNBIND:
                return events + self._close("unbind unanswered", Unbound(by_peer=False))
            events.append(RequestTimedOut(pending.request, pending.tag, pending.sent_at))
        if (
            self.state is SessionState.BOUND
            and not self._keepalive_pending
            and now - self._last_received >= self.enquire_link_interval
        ):
            self._keepalive_pending = True
            self._send_request(Pdu(smpp.ENQUIRE_LINK), now, _KEEPALIVE, counted=False)
        return events

    def connection_lost(self, reason: str = "connection lost") -> list[Event]:
        """The transport is gone: every unanswered request's fate is now unknown."""
        if self.state is SessionState.CLOSED:
            return []
        return self._close(reason, LinkFailed(reason))

    def _close(self, reason: str, final: Event) -> list[Event]:
        self.state = SessionState.CLOSED
        events: list[Event] = [
            RequestAborted(o.request, o.tag, reason)
            for o in self._outstanding.values()
            if o.counted
        ]
        self._outstanding.clear()
        self._in_window = 0
        self._keepalive_pending = False
        events.append(final)
        return events


__all__ = [
    "BindFailed",
    "BindParams",
    "Bound",
    "Event",
    "Ignored",
    "LinkFailed",
    "MessageReceived",
    "OutbindReceived",
    "RequestAborted",
    "RequestTimedOut",
    "Response",
    "SessionError",
    "SessionState",
    "SmppSession",
    "Unbound",
]
