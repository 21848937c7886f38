"""WAP Push through Kannel's sendsms HTTP interface (smsbox ``/cgi-bin/sendsms``).

Many labs and small operators already run Kannel in front of their SMSCs
(SMPP, UCP/EMI, CIMD2, modems), and Mbuni used exactly this path, so it is the
first real transport (feature-matrix §1c, §3.5). Each SMS segment goes out as
one GET with:

- ``udh``: the User Data Header *including* its length octet. smsbox rejects a
  ``udh`` whose length is not ``udh[0] + 1`` ("UDH field misformed"), which is
  what ``SmsSegment.udh`` already holds, e.g. ``%06%05%04%0B%84%23%F0``.
- ``text``: the WSP push bytes of that segment, ``coding=1`` (8-bit data).

Both are binary, so every octet is percent-encoded rather than trusting a
URL encoder's idea of "safe" characters. We segment ourselves and send one
GET per SMS, so the sendsms-user's ``max-messages``/``concatenation`` settings
(the usual cause of lost long notifications, §3.5) do not matter.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import aiohttp
from yarl import URL

from mmsc.notify.base import PushRequest, SendResult, valid_destination
from protocol.wap_push import SMS_USER_DATA, SmsSegment

log = logging.getLogger("mmsc.notify.kannel")

# How much of a reply body goes into SendResult.detail: Kannel answers one line.
_REPLY_LIMIT = 200


def percent_encode_all(data: bytes) -> str:
    """``%XX`` for every octet: binary SMS data must arrive at smsbox unchanged."""
    return "%" + data.hex("%").upper() if data else ""  # bytes.hex(sep): C speed


def _text(value: str) -> str:
    return quote(value, safe="")


class KannelBackend:
    """Sends each segment of a push as one Kannel sendsms request.

    One aiohttp session (and its keep-alive connection pool) serves every push,
    because a connection per notification throttles the gateway (feature-matrix
    §3.9). ``max_concurrency`` bounds the requests in flight, per process.
    """

    name = "kannel"
    ready = True  # smsbox answers 503 while bearerbox is down; that is a retry

    def __init__(
        self,
        sendsms_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        source: str | None = None,
        smsc: str | None = None,
        timeout_seconds: float = 10.0,
        max_concurrency: int = 16,
    ) -> None:
        url = URL(sendsms_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"expected an http(s) URL, got {sendsms_url!r}")
        if url.fragment:
            raise ValueError(f"unexpected fragment in {sendsms_url!r}")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency!r}")
        self.sendsms_url = str(url)
        self.username = username
        self.source = source
        self.smsc = smsc
        self.timeout_seconds = timeout_seconds
        self.max_concurrency = max_concurrency
        self._password = password
        # The parameters every request shares, percent-encoded once (quote() is not cheap
        # at a few thousand requests per second).
        fixed = [("coding", "1")]
        if username is not None:
            fixed.append(("username", _text(username)))
        if password is not None:
            fixed.append(("password", _text(password)))
        self._fixed = "&".join(f"{key}={value}" for key, value in fixed)
        self._source = _text(source) if source is not None else None
        self._smsc = "&smsc=" + _text(smsc) if smsc is not None else ""
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._closed = False

    def __repr__(self) -> str:  # never show the password
        return f"KannelBackend({self.sendsms_url!r}, username={self.username!r})"

    async def start(self) -> None:
        """Open the shared HTTP session; it must be created inside the running loop."""
        if self._closed:
            raise RuntimeError("KannelBackend was closed; make a new one")
        if self._session is not None:
            return
        self._semaphore = asyncio.Semaphore(self.max_concurrency)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_concurrency),
            timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
            headers={"User-Agent": "mmsc"},
        )

    async def close(self) -> None:
        """Close the session and its pooled connections; later sends are errors."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def request_url(self, push: PushRequest, segment: SmsSegment) -> str:
        """The exact, already-encoded sendsms URL for one segment."""
        params = [("to", _text(push.destination))]
        if segment.udh:
            params.append(("udh", percent_encode_all(segment.udh)))
        params.append(("text", percent_encode_all(segment.payload)))
        query = "&".join(f"{key}={value}" for key, value in params) + "&" + self._fixed
        source = _text(push.source) if push.source is not None else self._source
        if source is not None:
            query += "&from=" + source
        query += self._smsc
        separator = "&" if "?" in self.sendsms_url else "?"
        return f"{self.sendsms_url}{separator}{query}"

    async def send(self, push: PushRequest) -> SendResult:
        """Send the segments in order, stopping at the first that the gateway does not take."""
        if self._session is None or self._semaphore is None:
            raise RuntimeError("KannelBackend.send() before start() or after close()")
        problem = self._check(push)
        if problem is not None:
            log.warning("push %s to %s not sent: %s", push.reference, push.destination, problem)
            return SendResult(ok=False, permanent=True, detail=problem)
        total = len(push.segments)
        replies: list[str] = []
        for number, segment in enumerate(push.segments, start=1):
            result = await self._send_segment(push, segment)
            if not result.ok:
                detail = f"segment {number}/{total}: {result.detail}"
                if number > 1:
                    detail += f" ({number - 1} earlier segment(s) were accepted)"
                log.warning(
                    "push %s to %s failed (%s): %s",
                    push.reference,
                    push.destination,
                    "permanent" if result.permanent else "transient",
                    detail,
                )
                return SendResult(ok=False, permanent=result.permanent, detail=detail)
            replies.append(result.detail)
        log.debug("push %s to %s: %d segment(s) accepted", push.reference, push.destination, total)
        return SendResult(ok=True, detail=f"{total} segment(s) accepted: {replies[-1]}")

    def _check(self, push: PushRequest) -> str | None:
        """Reasons the gateway would certainly refuse the push, found without asking it."""
        if not valid_destination(push.destination):
            return f"invalid destination {push.destination!r}"
        for number, segment in enumerate(push.segments, start=1):
            if segment.udh and len(segment.udh) != segment.udh[0] + 1:
                return f"segment {number}: UDH length octet does not match the UDH"
            if len(segment.user_data) > SMS_USER_DATA:
                return (
                    f"segment {number}: {len(segment.user_data)} octets of user data, "
                    f"one SMS holds {SMS_USER_DATA}"
                )
        return None

    async def _send_segment(self, push: PushRequest, segment: SmsSegment) -> SendResult:
        """One GET; every network or HTTP trouble becomes a SendResult."""
        assert self._session is not None and self._semaphore is not None
        url = URL(self.request_url(push, segment), encoded=True)
        try:
            async with (
                self._semaphore,
                self._session.get(url, allow_redirects=False) as response,
            ):
                body = await response.content.read(_REPLY_LIMIT)
                status = response.status
        except TimeoutError:
            return SendResult(
                ok=False, detail=f"no answer from the gateway within {self.timeout_seconds:g} s"
            )
        except (aiohttp.ClientError, OSError) as exc:
            return SendResult(ok=False, detail=self._redact(f"{type(exc).__name__}: {exc}"))
        reply = body.decode("utf-8", "replace").strip()
        detail = f"HTTP {status} {reply}".rstrip()
        if 200 <= status < 300:
            return SendResult(ok=True, detail=reply or f"HTTP {status}")
        # 4xx is the gateway refusing this request (bad UDH, number on a black list,
        # malformed destination): the same request would be refused again. 429 and 5xx
        # (smsbox answers 503 "Temporal failure" when bearerbox is down) are load or
        # outage, and anything else (3xx, 1xx) is a gateway we do not understand yet.
        # 401/403 is how Kannel refuses bad credentials or a denied IP: an operator fixes
        # that, and the queued notifications must still go out then, so retry those.
        permanent = 400 <= status < 500 and status not in (401, 403, 429)
        return SendResult(ok=False, permanent=permanent, detail=detail)

    def _redact(self, text: str) -> str:
        """Exception texts may quote the URL, which carries the password."""
        if self._password:
            for secret in {self._password, _text(self._password)}:
                text = text.replace(secret, "***")
        return text
