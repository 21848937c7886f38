"""Notification backends against a real HTTP SMS-gateway sink on 127.0.0.1.

The sink behaves like Kannel's smsbox where it matters: it answers
``202 0: Accepted for delivery``, rejects a ``udh`` whose length octet does not
match (smsbox's "UDH field misformed" check), and can be told to fail or to
hang. It records every raw query string so the tests can check the binary
parameters byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_to_bytes

import pytest
from aiohttp import web

from mmsc.config import DEFAULTS, ConfigError, apply_env
from mmsc.notify import (
    KannelBackend,
    NoneBackend,
    NotificationBackend,
    PushRequest,
    SendResult,
    make_backend,
)
from protocol import mms, wap_push

DESTINATION = "+4915112345678"
LONG_LOCATION = "http://mmsc.example/" + "x" * 220

ANSWERS = {
    "202": (202, "0: Accepted for delivery"),
    "200": (200, "Sent."),
    "400": (400, "Wrong sendsms args, rejected"),
    "403": (403, "Authorization failed for sendsms"),
    "429": (429, "Too many requests"),
    "500": (500, "Internal error"),
    "503": (503, "Temporal failure, try again later."),
}


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """pytest-asyncio is not installed: each test drives its own event loop."""
    asyncio.run(body())


class GatewaySink:
    """Records requests and answers as told: a mode per request from ``script``, else ``mode``."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.script: list[str] = []
        self.mode = "202"
        self.release = asyncio.Event()  # ends every "hang"; set when the sink stops
        self.arrived = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = request.rel_url.raw_query_string
        self.queries.append(raw)
        self.arrived.set()
        mode = self.script.pop(0) if self.script else self.mode
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            udh = params(raw).get("udh")
            if udh is not None and len(udh) != udh[0] + 1:
                return web.Response(status=400, text="UDH field misformed, rejected")
            if mode == "hang":
                await self.release.wait()
                mode = "202"
            status, text = ANSWERS[mode]
            return web.Response(status=status, text=text)
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def gateway() -> AsyncIterator[GatewaySink]:
    sink = GatewaySink()
    app = web.Application()
    app.router.add_get("/cgi-bin/sendsms", sink.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    sink.url = f"http://{host}:{port}/cgi-bin/sendsms"
    try:
        yield sink
    finally:
        sink.release.set()  # let any hanging handler finish before the runner stops
        await runner.cleanup()


@contextlib.asynccontextmanager
async def started(backend: KannelBackend) -> AsyncIterator[KannelBackend]:
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def params(raw_query: str) -> dict[str, bytes]:
    """Each parameter's value as the octets it encodes; a repeated key is an error."""
    out: dict[str, bytes] = {}
    for item in raw_query.split("&"):
        key, _, value = item.partition("=")
        assert unquote(key) not in out, f"repeated parameter {key}"
        out[unquote(key)] = unquote_to_bytes(value)
    return out


def notification(location: str) -> bytes:
    pdu = mms.MmsPdu(
        "m-notification-ind",
        "T0001",
        "1.2",
        {
            "From": "+447700900123/TYPE=PLMN",
            "X-Mms-Message-Class": "Personal",
            "X-Mms-Message-Size": 12345,
            "X-Mms-Expiry": {"relative": 604800},
            "X-Mms-Content-Location": location,
        },
    )
    return mms.encode(pdu)


def push_of(location: str = "http://mmsc.example/m/A1", **kwargs: str | None) -> PushRequest:
    segments = wap_push.notification_segments(notification(location), tid=5, reference=0x42)
    fields: dict[str, str | None] = {"destination": DESTINATION, "reference": "msg-1/rcpt-1"}
    fields.update(kwargs)
    return PushRequest(
        destination=fields["destination"] or "",
        segments=tuple(segments),
        reference=fields["reference"] or "",
        source=fields.get("source"),
    )


def free_port() -> int:
    """A port nobody listens on: bound, read, closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ----------------------------------------------------------------------------- Kannel: wire format


def test_one_segment_push_is_one_get_with_binary_udh_and_text() -> None:
    async def body() -> None:
        push = push_of()
        (segment,) = push.segments
        async with gateway() as sink, started(KannelBackend(sink.url)) as backend:
            result = await backend.send(push)
        assert result == SendResult(ok=True, permanent=False, detail=result.detail)
        assert "0: Accepted for delivery" in result.detail
        assert len(sink.queries) == 1
        raw = sink.queries[0]
        got = params(raw)
        assert got["udh"] == segment.udh == bytes.fromhex("0605040b8423f0")
        assert got["text"] == segment.payload
        assert got["to"] == DESTINATION.encode()
        assert got["coding"] == b"1"
        assert not {"username", "password", "from", "smsc"} & got.keys()
        # Every octet of the binary fields is percent-encoded, as in Kannel's own examples.
        fields = dict(item.split("=", 1) for item in raw.split("&"))
        assert fields["udh"] == "%06%05%04%0B%84%23%F0"
        assert re.fullmatch(r"(%[0-9A-F]{2})+", fields["text"])
        # The same answer through the standard library's parser, read as Latin-1.
        qs = parse_qs(raw, encoding="latin-1", strict_parsing=True)
        assert qs["udh"] == [segment.udh.decode("latin-1")]
        assert qs["text"] == [segment.payload.decode("latin-1")]
        assert qs["to"] == [DESTINATION]

    run(body)


def test_credentials_from_and_smsc_are_passed() -> None:
    async def body() -> None:
        async with gateway() as sink:
            backend = KannelBackend(
                sink.url,
                username="mms user",
                password="p&ss=w+rd",
                source="MMS",
                smsc="smsc-1",
            )
            async with started(backend):
                configured = await backend.send(push_of())
                override = await backend.send(push_of(source="+491700000"))
        assert configured.ok and override.ok
        assert "p&ss" not in repr(backend)
        first, second = (params(q) for q in sink.queries)
        assert first["username"] == b"mms user"
        assert first["password"] == b"p&ss=w+rd"
        assert first["from"] == b"MMS"
        assert first["smsc"] == b"smsc-1"
        assert second["from"] == b"+491700000"  # the push's own source wins

    run(body)


def test_sendsms_url_with_its_own_query_is_extended() -> None:
    async def body() -> None:
        async with gateway() as sink, started(KannelBackend(sink.url + "?dlr-mask=0")) as backend:
            assert (await backend.send(push_of())).ok
        got = params(sink.queries[0])
        assert got["dlr-mask"] == b"0"
        assert got["to"] == DESTINATION.encode()

    run(body)


def test_concatenated_push_arrives_in_order_and_reassembles() -> None:
    async def body() -> None:
        push = push_of(LONG_LOCATION)
        assert len(push.segments) == 3
        async with gateway() as sink, started(KannelBackend(sink.url)) as backend:
            result = await backend.send(push)
        assert result.ok, result.detail
        received = [params(q) for q in sink.queries]
        assert len(received) == 3
        for number, (got, segment) in enumerate(zip(received, push.segments, strict=True), 1):
            assert got["udh"] == segment.udh
            assert got["text"] == segment.payload
            udh, _ = wap_push.parse_user_data(got["udh"] + got["text"])
            assert (udh.reference, udh.total, udh.seq) == (0x42, 3, number)
        _header, datagram = wap_push.reassemble([got["udh"] + got["text"] for got in received])
        _push, pdu = wap_push.decode_mms_push(datagram)
        assert pdu.message_type == "m-notification-ind"
        assert pdu.headers["X-Mms-Content-Location"] == LONG_LOCATION

    run(body)


# ----------------------------------------------------------------------------- Kannel: failures


@pytest.mark.parametrize(
    ("mode", "permanent"),
    [("503", False), ("500", False), ("429", False), ("400", True), ("403", False)],
)
def test_gateway_error_status(mode: str, permanent: bool) -> None:
    async def body() -> None:
        async with gateway() as sink, started(KannelBackend(sink.url)) as backend:
            sink.mode = mode
            result = await backend.send(push_of())
        assert not result.ok
        assert result.permanent is permanent
        assert f"HTTP {mode}" in result.detail
        assert "segment 1/1" in result.detail
        assert len(sink.queries) == 1

    run(body)


def test_200_is_success_too() -> None:
    async def body() -> None:
        async with gateway() as sink, started(KannelBackend(sink.url)) as backend:
            sink.mode = "200"
            assert (await backend.send(push_of())).ok

    run(body)


def test_failure_mid_push_names_the_segment_and_stops() -> None:
    async def body() -> None:
        async with gateway() as sink, started(KannelBackend(sink.url)) as backend:
            sink.script = ["202", "503"]
            result = await backend.send(push_of(LONG_LOCATION))
        assert not result.ok and not result.permanent
        assert result.detail.startswith("segment 2/3: HTTP 503")
        assert len(sink.queries) == 2  # the third segment is not sent after a failure

    run(body)


def test_connection_refused_is_transient() -> None:
    async def body() -> None:
        url = f"http://127.0.0.1:{free_port()}/cgi-bin/sendsms"
        async with started(KannelBackend(url, password="secret-pw")) as backend:
            result = await backend.send(push_of())
        assert not result.ok and not result.permanent
        assert "segment 1/1" in result.detail
        assert "secret-pw" not in result.detail

    run(body)


def test_hanging_gateway_times_out_as_transient() -> None:
    async def body() -> None:
        async with gateway() as sink:
            sink.mode = "hang"
            loop = asyncio.get_running_loop()
            async with started(KannelBackend(sink.url, timeout_seconds=0.5)) as backend:
                began = loop.time()
                result = await backend.send(push_of())
                elapsed = loop.time() - began
            await asyncio.wait_for(sink.arrived.wait(), 5)
        assert not result.ok and not result.permanent
        assert "within 0.5 s" in result.detail
        assert 0.4 <= elapsed < 5
        assert len(sink.queries) == 1

    run(body)


def test_invalid_destination_is_permanent_without_a_request() -> None:
    async def body() -> None:
        async with gateway() as sink, started(KannelBackend(sink.url)) as backend:
            for destination in ("", "+49 151", "user@example.com", "+"):
                result = await backend.send(push_of(destination=destination))
                assert not result.ok and result.permanent, destination
                assert "invalid destination" in result.detail
        assert sink.queries == []

    run(body)


def test_oversized_segment_is_permanent_without_a_request() -> None:
    async def body() -> None:
        segment = wap_push.SmsSegment(bytes.fromhex("0605040b8423f0"), bytes(134))
        push = PushRequest(DESTINATION, (segment,), "big")
        async with gateway() as sink, started(KannelBackend(sink.url)) as backend:
            result = await backend.send(push)
        assert not result.ok and result.permanent
        assert "141 octets" in result.detail
        assert sink.queries == []

    run(body)


def test_max_concurrency_bounds_requests_in_flight() -> None:
    async def body() -> None:
        async with gateway() as sink:
            sink.mode = "hang"
            async with started(KannelBackend(sink.url, max_concurrency=2)) as backend:
                sends = [asyncio.create_task(backend.send(push_of())) for _ in range(5)]
                await asyncio.wait_for(sink.arrived.wait(), 5)
                sink.release.set()
                results = await asyncio.gather(*sends)
        assert all(r.ok for r in results)
        assert len(sink.queries) == 5
        assert sink.max_in_flight <= 2

    run(body)


def test_send_outside_start_and_close_is_a_programming_error() -> None:
    async def body() -> None:
        backend = KannelBackend("http://127.0.0.1:1/cgi-bin/sendsms")
        with pytest.raises(RuntimeError, match="start"):
            await backend.send(push_of())
        await backend.start()
        await backend.close()
        await backend.close()  # idempotent
        with pytest.raises(RuntimeError):
            await backend.send(push_of())

    run(body)


def test_push_request_needs_segments() -> None:
    with pytest.raises(ValueError, match="no SMS segments"):
        PushRequest(DESTINATION, (), "empty")


# ----------------------------------------------------------------------------- none and factory


def test_none_backend_drops_and_says_so() -> None:
    """No gateway: the push is reported dropped, not sent (the scheduler must not count
    it as a notification), and not worth retrying (no transient failure)."""

    async def body() -> None:
        backend = NoneBackend()
        await backend.start()
        result = await backend.send(push_of(LONG_LOCATION))
        await backend.close()
        assert result == SendResult(
            ok=False,
            permanent=True,
            detail="no notification backend (notify.backend is none)",
            dropped=True,
        )
        assert not result.transient

    run(body)


def test_make_backend_defaults_to_none() -> None:
    assert isinstance(make_backend({}), NoneBackend)
    assert isinstance(make_backend({"notify": dict(DEFAULTS["notify"])}), NoneBackend)
    assert isinstance(make_backend({"notify": {"backend": "None"}}), NoneBackend)


def test_make_backend_kannel_reads_every_key() -> None:
    backend = make_backend(
        {
            "notify": {
                "backend": "kannel",
                "sendsms_url": "http://kannel.example:13013/cgi-bin/sendsms",
                "sendsms_username": "mmsc",
                "sendsms_password": "pw",
                "sendsms_from": "MMS",
                "sendsms_smsc": "lab",
                "timeout_seconds": 2.5,
                "max_concurrency": 4,
            }
        }
    )
    assert isinstance(backend, KannelBackend)
    assert isinstance(backend, NotificationBackend)
    assert backend.name == "kannel"
    assert backend.sendsms_url == "http://kannel.example:13013/cgi-bin/sendsms"
    assert (backend.username, backend.source, backend.smsc) == ("mmsc", "MMS", "lab")
    assert (backend.timeout_seconds, backend.max_concurrency) == (2.5, 4)

    defaults = make_backend({"notify": {"backend": "kannel"}})
    assert isinstance(defaults, KannelBackend)
    assert defaults.sendsms_url == DEFAULTS["notify"]["sendsms_url"]
    assert (defaults.timeout_seconds, defaults.max_concurrency) == (10.0, 16)
    assert defaults.username is None and defaults.source is None and defaults.smsc is None


def test_make_backend_takes_a_numeric_password_from_the_environment() -> None:
    config: dict[str, dict[str, object]] = {"notify": {"backend": "kannel"}}
    apply_env(config, {"MMSC_NOTIFY__SENDSMS_PASSWORD": "1234"})  # parsed as the integer 1234
    backend = make_backend(config)
    assert isinstance(backend, KannelBackend)
    assert "password=1234" in backend.request_url(push_of(), push_of().segments[0])


@pytest.mark.parametrize(
    ("notify", "message"),
    [
        ({"backend": "carrier-pigeon"}, "unknown backend 'carrier-pigeon'"),
        ({"backend": 3}, "unknown backend 3"),
        ({"backend": "kannel", "sendsms_url": "ftp://x/y"}, "notify.sendsms_url"),
        ({"backend": "kannel", "sendsms_url": "not a url"}, "notify.sendsms_url"),
        ({"backend": "kannel", "timeout_seconds": 0}, "notify.timeout_seconds"),
        ({"backend": "kannel", "timeout_seconds": "soon"}, "notify.timeout_seconds"),
        ({"backend": "kannel", "max_concurrency": 0}, "notify.max_concurrency"),
        ({"backend": "kannel", "max_concurrency": 2.5}, "notify.max_concurrency"),
        ({"backend": "kannel", "sendsms_password": ["x"]}, "notify.sendsms_password"),
    ],
)
def test_make_backend_rejects_bad_configuration(notify: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_backend({"notify": notify})
