"""The benchmark's own HTTP ends: a keep-alive POST client and a sendsms sink, on bare
asyncio protocols.

Why not aiohttp here: the load generator and the SMS sink share the machine's
two cores with the server under test, and aiohttp's client and server cost
them 100-130 µs of CPU per request each (0.15-0.2 cores apiece at 1,500
requests/s, bench/README.md session 6): CPU the server then does not get,
which no real deployment would take from it (its handsets and its SMS gateway
run elsewhere). These ends only do what the benchmark needs: HTTP/1.1 with
Content-Length bodies on kept-alive connections (the server's answers and the
sendsms GETs of mmsc/notify/http1.py have nothing else). The server under test
still sees complete, ordinary HTTP/1.1 requests, and every answer is still
checked in full by the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass


class ProtocolFailure(Exception):
    """An answer these ends do not understand (the benchmark counts it as an error)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def _head_fields(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The first line and the header fields (names lower-cased) of a message head."""
    first, _, rest = head.partition(b"\r\n")
    fields: dict[bytes, bytes] = {}
    for line in rest.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return first, fields


class _ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("the server closed the connection")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self._lost)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is None or self._waiter.done():
            return
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return
        status_line, fields = _head_fields(bytes(self._buf[:end]))
        try:
            status = int(status_line.split(b" ", 2)[1])
            length = int(fields[b"content-length"])
        except (IndexError, KeyError, ValueError):
            self._waiter.set_exception(ProtocolFailure(f"unreadable answer head {status_line!r}"))
            return
        start = end + 4
        if len(self._buf) < start + length:
            return
        body = bytes(self._buf[start : start + length])
        del self._buf[: start + length]
        ctype = fields.get(b"content-type", b"").decode("latin-1")
        self._waiter.set_result(Answer(status, ctype, body))

    async def exchange(self, request: bytes) -> Answer:
        if self._lost is not None:
            raise self._lost
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._waiter


class PostClient:
    """One kept-alive connection that POSTs prepared request bytes, one at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._proto: _ClientProtocol | None = None

    @staticmethod
    def request(path: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
        """The whole request, built once per prepared message."""
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return head.encode("latin-1") + b"\r\n" + body

    async def post(self, request: bytes) -> Answer:
        if self._proto is None or self._proto._lost is not None:
            loop = asyncio.get_running_loop()
            _transport, self._proto = await loop.create_connection(
                _ClientProtocol, self.host, self.port
            )
        return await self._proto.exchange(request)

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()


_ACCEPTED = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\n"
    b"0: Accepted for delivery"
)
_MALFORMED = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nmalformed"
)


class SendsmsProtocol(asyncio.Protocol):
    """Answers each GET with 202 (or 400 when ``handle`` says the request is malformed);
    ``handle`` gets the request target (path and query) of every GET."""

    def __init__(self, handle: Callable[[bytes], bool]) -> None:
        self._handle = handle
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        out = []
        while (end := self._buf.find(b"\r\n\r\n")) >= 0:
            request_line, fields = _head_fields(bytes(self._buf[:end]))
            if fields.get(b"content-length", b"0") != b"0":
                out.append(_MALFORMED)  # a sendsms GET has no body
                del self._buf[:]
                break
            del self._buf[: end + 4]
            parts = request_line.split(b" ")
            ok = len(parts) == 3 and parts[0] == b"GET" and self._handle(parts[1])
            out.append(_ACCEPTED if ok else _MALFORMED)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
