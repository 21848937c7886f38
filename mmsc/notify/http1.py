"""A small keep-alive HTTP/1.1 client for one origin: what the sendsms backend needs.

Why not aiohttp's client: every notification is an HTTP GET to the SMS gateway,
and aiohttp's client spends 160-220 µs of CPU on each (session, request and
response objects, cookie handling, tracing hooks), about an eighth of the
server's CPU per accepted message (bench/README.md). A GET with a small answer
needs a fraction of that. This client does GET only, to one scheme/host/port,
over a bounded pool of kept-alive connections; it reads any answer HTTP/1.1
allows (RFC 9112 §6: Content-Length, chunked, or up to the close), keeps the
first ``limit`` bytes of the body and discards the rest.

A kept-alive connection the gateway closed while idle is detected when it ends
before any byte of the answer, and the request is sent once more on a new
connection, as browsers and aiohttp do for idempotent requests.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

MAX_HEAD = 64 * 1024  # status line and headers of one answer


class HttpError(Exception):
    """An answer that is not HTTP/1.x as RFC 9112 has it."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes  # at most the ``limit`` given to get()


class _Stale(Exception):
    """The connection ended before the first byte of the answer."""


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Origin:
    """GETs to ``scheme://host:port``; at most ``max_connections`` at once, each bounded
    by ``timeout`` seconds from the wait for a connection to the end of the answer."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        max_connections: int,
        timeout: float,
        user_agent: str = "mmsc",
        authorization: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` for https: the system's trusted CAs and host name check when
        None (a gateway with a private CA: ``ssl.create_default_context(cafile=...)``)."""
        self.host = host
        self.port = port
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        default = 443 if scheme == "https" else 80
        authority = host if port == default else f"{host}:{port}"
        if ":" in host and not host.startswith("["):  # an IPv6 literal
            authority = f"[{host}]" if port == default else f"[{host}]:{port}"
        auth = f"Authorization: {authorization}\r\n" if authorization else ""
        self._head_tail = (
            f" HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\n{auth}\r\n"
        ).encode("latin-1")
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Conn] = []
        self._closed = False

    async def get(self, target: str, limit: int) -> Reply:
        """GET ``target`` (path and query, already percent-encoded). Raises TimeoutError,
        OSError (refused, reset, ...) or HttpError; the connection is dropped then."""
        if self._closed:
            raise RuntimeError("Origin.get() after close()")
        request = b"GET " + target.encode("ascii") + self._head_tail
        async with self._slots, asyncio.timeout(self.timeout):
            for attempt in (0, 1):
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else await self._open()
                try:
                    reply, keep = await self._exchange(conn, request, limit)
                except _Stale:
                    _close(conn)
                    if reused and attempt == 0:
                        continue  # closed while idle: once more on a new connection
                    raise ConnectionResetError("the gateway closed the connection") from None
                except BaseException:
                    _close(conn)
                    raise
                if keep and not self._closed:
                    self._idle.append(conn)
                else:
                    _close(conn)
                return reply
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)

    async def _open(self) -> _Conn:
        return await asyncio.open_connection(self.host, self.port, ssl=self._ssl, limit=MAX_HEAD)

    async def _exchange(self, conn: _Conn, request: bytes, limit: int) -> tuple[Reply, bool]:
        reader, writer = conn
        writer.write(request)
        first = True
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if first and not exc.partial:
                    raise _Stale from None
                raise HttpError("the answer ended inside its header") from None
            except asyncio.LimitOverrunError:
                raise HttpError(f"answer header longer than {MAX_HEAD} bytes") from None
            first = False
            version, status, headers = _parse_head(head)
            if 100 <= status < 200:
                continue  # an interim answer (RFC 9110 §15.2): the real one follows
            break
        keep = version == "HTTP/1.1" and "close" not in _tokens(headers.get("connection", ""))
        if status in (204, 304):
            return Reply(status, b""), keep
        if "chunked" in _tokens(headers.get("transfer-encoding", "")):
            return Reply(status, await _read_chunked(reader, limit)), keep
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):  # int() refuses "²"
                raise HttpError(f"bad Content-Length {length!r}")
            return Reply(status, await _read_exactly(reader, int(length), limit)), keep
        body = await reader.read(limit)  # delimited by the close (RFC 9112 §6.3 item 8)
        while await reader.read(65536):
            pass
        return Reply(status, body), False


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = parts[1] if len(parts) >= 2 else ""
    # ASCII digits only: latin-1 "\xb2" ("²") is a digit to isdigit() and not to int().
    if not parts[0].startswith("HTTP/1.") or not (status.isascii() and status.isdigit()):
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(f"bad header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return parts[0], int(status), headers


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


async def _read_exactly(reader: asyncio.StreamReader, size: int, limit: int) -> bytes:
    kept = b""
    left = size
    while left:
        chunk = await reader.read(min(left, 65536))
        if not chunk:
            raise HttpError(f"the answer ended {left} bytes short of its Content-Length")
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
        left -= len(chunk)
    return kept


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    kept = b""
    try:
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields, ignored
                return kept
            chunk = await _read_exactly(reader, size, max(limit - len(kept), 0))
            kept += chunk
            if await reader.readexactly(2) != b"\r\n":
                raise HttpError("chunk not followed by CRLF")
    except asyncio.IncompleteReadError:
        raise HttpError("the answer ended inside its chunked body") from None
    except asyncio.LimitOverrunError:
        raise HttpError("chunk line too long") from None


def _close(conn: _Conn) -> None:
    conn[1].close()
