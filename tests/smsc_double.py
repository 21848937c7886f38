"""A scriptable SMSC on loopback, built on our own sans-I/O SMPP codec.

Jasmin is the real peer; this double exists for what a real SMSC cannot be
told to do on cue: throttle, fill its queue, refuse a destination, stay
silent, drop the link, send receipts. It runs its own event loop in a
thread, so the test (and an `mmsc serve` subprocess) talk to it over real
sockets; everything it receives is handed over through thread-safe queues
with timeouts, never by sleeping.

Run as a script (``python -m tests.smsc_double --port N``) it answers every
submit_sm at once, which is what the SMPP benchmark needs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from protocol import smpp
from protocol.smpp import Pdu
from protocol.smpp_receipt import format_receipt_text

# What to do with one submit_sm: a command_status to answer with, or None for silence.
SubmitScript = Callable[[Pdu], int | None]


@dataclass
class Submit:
    """A submit_sm as the double received it."""

    pdu: Pdu
    connection: int
    message_id: str
    status: int | None
    raw: bytes = b""
    received_at: float = 0.0


# What each bind command lets the SMSC send back on the link (SMPP 3.4 §2.2).
_RECEIVES = {smpp.BIND_TRANSMITTER: False, smpp.BIND_RECEIVER: True, smpp.BIND_TRANSCEIVER: True}


@dataclass
class _Link:
    number: int
    writer: asyncio.StreamWriter
    bound: bool = False
    receives: bool = False  # bound as receiver or transceiver: deliver_sm may go here
    unanswered: int = 0
    peak_unanswered: int = 0
    system_id: str = ""
    held: list[tuple[Pdu, str]] = field(default_factory=list)


@dataclass
class SmscDouble:
    system_id: str = "mmsc"
    password: str = "secret"
    answer_enquire_link: bool = True
    receipt_state: str | None = "DELIVRD"  # sent when registered_delivery asks; None: never
    submit_script: SubmitScript | None = None
    silent_links: set[int] = field(default_factory=set)  # submit_sm never answered there
    port: int = 0
    submits: queue.Queue[Submit] = field(default_factory=queue.Queue)
    bind_attempts: queue.Queue[tuple[str, int, float]] = field(default_factory=queue.Queue)
    unbinds: queue.Queue[int] = field(default_factory=queue.Queue)
    enquire_links: int = 0
    links: dict[int, _Link] = field(default_factory=dict)
    peak_unanswered: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None

    # ------------------------------------------------------------------ running

    def __enter__(self) -> SmscDouble:
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("SMSC double did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        started.set()
        loop.run_forever()
        self._server.close()
        for link in list(self.links.values()):
            link.writer.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the double's loop and wait for it."""
        assert self._loop is not None
        done = threading.Event()

        def wrapper() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(wrapper)
        if not done.wait(10):
            raise RuntimeError("SMSC double loop is stuck")

    def drop_links(self) -> None:
        """Close every connection without unbinding, as a crashed SMSC would."""

        def close() -> None:
            for link in list(self.links.values()):
                transport = link.writer.transport
                transport.abort()

        self.call(close)

    def release_held(self, status: int = smpp.ESME_ROK) -> None:
        """Answer every submit_sm held so far (the script returned None for them), and
        answer the ones still to come at once."""

        def answer() -> None:
            self.submit_script = None
            for link in self.links.values():
                for pdu, message_id in link.held:
                    params = {"message_id": message_id}
                    self._send(link, Pdu(smpp.SUBMIT_SM_RESP, pdu.sequence, status, params))
                link.unanswered -= len(link.held)
                link.held.clear()

        self.call(answer)

    def stop_listening(self) -> None:
        assert self._server is not None
        self.call(self._server.close)

    def resume_listening(self) -> None:
        async def reopen() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(reopen(), self._loop).result(10)

    def next_submit(self, timeout: float = 20) -> Submit:
        return self.submits.get(timeout=timeout)

    def next_bind(self, timeout: float = 20) -> tuple[str, int, float]:
        return self.bind_attempts.get(timeout=timeout)

    # ------------------------------------------------------------------ protocol

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(next(self._numbers), writer)
        self.links[link.number] = link
        framer = smpp.PduReader()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for raw in framer.feed(data):
                    if not self._handle(link, smpp.decode(raw), raw):
                        return
                await writer.drain()
        except (ConnectionError, smpp.DecodeError):
            pass
        finally:
            self.links.pop(link.number, None)
            writer.close()

    def _send(self, link: _Link, pdu: Pdu) -> None:
        link.writer.write(smpp.encode(pdu))

    def _handle(self, link: _Link, pdu: Pdu, raw: bytes) -> bool:
        cid = pdu.command_id
        if cid in (smpp.BIND_TRANSMITTER, smpp.BIND_TRANSCEIVER, smpp.BIND_RECEIVER):
            ok = (
                pdu.params["system_id"] == self.system_id
                and pdu.params["password"] == self.password
            )
            status = smpp.ESME_ROK if ok else smpp.ESME_RINVPASWD
            self.bind_attempts.put((pdu.params["system_id"], status, time.monotonic()))
            link.bound = ok
            link.receives = ok and _RECEIVES[cid]
            link.system_id = pdu.params["system_id"]
            resp = Pdu(cid | smpp.RESPONSE_BIT, pdu.sequence, status, {"system_id": "double"})
            self._send(link, resp)
        elif cid == smpp.ENQUIRE_LINK:
            self.enquire_links += 1
            if self.answer_enquire_link:
                self._send(link, Pdu(smpp.ENQUIRE_LINK_RESP, pdu.sequence))
        elif cid == smpp.UNBIND:
            self.unbinds.put(link.number)
            self._send(link, Pdu(smpp.UNBIND_RESP, pdu.sequence))
            return False
        elif cid == smpp.SUBMIT_SM:
            self._submit(link, pdu, raw)
        elif cid in (smpp.DELIVER_SM_RESP, smpp.ENQUIRE_LINK_RESP, smpp.GENERIC_NACK):
            pass
        else:
            self._send(link, Pdu(smpp.GENERIC_NACK, pdu.sequence, smpp.ESME_RINVCMDID))
        return True

    def _submit(self, link: _Link, pdu: Pdu, raw: bytes) -> None:
        if not link.bound:
            self._send(link, Pdu(smpp.SUBMIT_SM_RESP, pdu.sequence, smpp.ESME_RINVBNDSTS))
            return
        if link.number in self.silent_links:
            status = None  # wedged: keeps the link (and enquire_link) but not submits
        elif self.submit_script is not None:
            status = self.submit_script(pdu)
        else:
            status = smpp.ESME_ROK
        message_id = f"{next(self._ids):08x}"
        self.submits.put(Submit(pdu, link.number, message_id, status, raw, time.monotonic()))
        if status is None:
            link.unanswered += 1
            link.held.append((pdu, message_id))
            link.peak_unanswered = max(link.peak_unanswered, link.unanswered)
            self.peak_unanswered = max(self.peak_unanswered, link.unanswered)
            return
        params = {"message_id": message_id if status == smpp.ESME_ROK else ""}
        self._send(link, Pdu(smpp.SUBMIT_SM_RESP, pdu.sequence, status, params))
        if status == smpp.ESME_ROK and pdu.params.get("registered_delivery", 0) & 0x01:
            self._receipt(link, pdu, message_id)

    def _receipt(self, link: _Link, submit: Pdu, message_id: str) -> None:
        """Deliver a receipt as an SMSC does: on the submitting link if it is a transceiver,
        else on a receiver (or transceiver) link of the same system_id; none bound: lost."""
        if self.receipt_state is None:
            return
        if not link.receives:
            others = (
                o for o in self.links.values() if o.receives and o.system_id == link.system_id
            )
            found = next(others, None)
            if found is None:
                return
            link = found
        now = datetime.now(UTC)
        text = format_receipt_text(message_id, self.receipt_state, submitted=now, done=now)
        deliver = Pdu(
            smpp.DELIVER_SM,
            next(self._ids) & 0x7FFFFFFF,
            params={
                "source_addr_ton": submit.params["dest_addr_ton"],
                "source_addr_npi": submit.params["dest_addr_npi"],
                "source_addr": submit.params["destination_addr"],
                "destination_addr": submit.params["source_addr"],
                "esm_class": smpp.ESM_TYPE_DELIVERY_RECEIPT,
                "short_message": text.encode("ascii"),
            },
            tlvs={"receipted_message_id": message_id, "message_state": 2},
        )
        self._send(link, deliver)


def main() -> None:
    """A fast, always-accepting SMSC for bench/smpp_bench.py."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password", default="secret")
    args = parser.parse_args()
    double = SmscDouble(password=args.password, port=args.port, receipt_state=None)
    double.submits = _Discard()
    with double:
        print(f"smsc-double listening on 127.0.0.1:{double.port}", flush=True)
        threading.Event().wait()


class _Discard(queue.Queue[Submit]):
    """A queue that keeps nothing (the benchmark sends millions)."""

    def put(self, item: Submit, block: bool = True, timeout: float | None = None) -> None:
        return None


if __name__ == "__main__":
    main()
