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

import base64
import logging
import ssl
from urllib.parse import quote

from yarl import URL

from mmsc.notify.base import PushRequest, SendResult, valid_destination
from mmsc.notify.http1 import HttpError, Origin
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

    One pool of keep-alive connections (mmsc/notify/http1.py) serves every push,
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
        ca_file: str | None = None,
    ) -> None:
        """``ca_file``: PEM certificates that an https gateway's certificate must chain
        to, instead of the system's (a gateway with an operator's private CA)."""
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
        self._url = url
        self.username = username
        self.source = source
        self.smsc = smsc
        self.timeout_seconds = timeout_seconds
        self.max_concurrency = max_concurrency
        self._ssl: ssl.SSLContext | None = None
        if ca_file is not None:
            if url.scheme != "https":
                raise ValueError("a CA file is only used with an https sendsms URL")
            try:
                self._ssl = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load the CA file {ca_file!r}: {exc}") from None
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
        self._origin: Origin | None = None
        self._closed = False

    def __repr__(self) -> str:  # never show the password (query or user info)
        shown = self._url.with_password("***") if self._url.password else self._url
        return f"KannelBackend({str(shown)!r}, username={self.username!r})"

    async def start(self) -> None:
        """Set up the connection pool; it must be created inside the running loop."""
        if self._closed:
            raise RuntimeError("KannelBackend was closed; make a new one")
        if self._origin is not None:
            return
        url = self._url
        assert url.host is not None and url.port is not None
        authorization = None
        if url.user is not None:  # user:password@ in the URL: HTTP Basic (RFC 7617)
            pair = f"{url.user}:{url.password or ''}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        self._origin = Origin(
            url.scheme,
            url.host,
            url.port,
            max_connections=self.max_concurrency,
            timeout=self.timeout_seconds,
            authorization=authorization,
            ssl_context=self._ssl,
        )

    async def close(self) -> None:
        """Close the pooled connections; later sends are errors."""
        self._closed = True
        origin, self._origin = self._origin, None
        if origin is not None:
            await origin.close()

    def request_url(self, push: PushRequest, segment: SmsSegment) -> str:
        """The exact, already-encoded sendsms URL for one segment."""
        return self.sendsms_url + self._query(push, segment)

    def _target(self, push: PushRequest, segment: SmsSegment) -> str:
        """The request target (path and query) of :meth:`request_url`."""
        return self._url.raw_path_qs + self._query(push, segment)

    def _query(self, push: PushRequest, segment: SmsSegment) -> str:
        params = [("to", _text(push.destination))]
        if segment.udh:
            params.append(("udh", percent_encode_all(segment.udh)))
        params.append(("text", percent_encode_all(segment.payload)))
        query = "&".join(f"{key}={value}" for key, value in params) + "&" + self._fixed
        source = _text(push.source) if push.source is not None else self._source
        if source is not None:
            query += "&from=" + source
        query += self._smsc
        return ("&" if "?" in self.sendsms_url else "?") + query

    async def send(self, push: PushRequest) -> SendResult:
        """Send the segments in order, stopping at the first that the gateway does not take."""
        if self._origin is None:
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
        assert self._origin is not None
        try:
            answer = await self._origin.get(self._target(push, segment), _REPLY_LIMIT)
        except TimeoutError:
            return SendResult(
                ok=False, detail=f"no answer from the gateway within {self.timeout_seconds:g} s"
            )
        except (HttpError, OSError) as exc:
            return SendResult(ok=False, detail=self._redact(f"{type(exc).__name__}: {exc}"))
        status = answer.status
        reply = answer.body.decode("utf-8", "replace").strip()
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
        for password in (self._password, self._url.password):
            if password:
                for secret in {password, _text(password)}:
                    text = text.replace(secret, "***")
        return text
