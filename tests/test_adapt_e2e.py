"""Content adaptation end to end: handsets with different UAProfs fetch the same message.

A real `mmsc serve`, an SMS sink for the notifications, and a local HTTP
server that serves UAProf documents (one small phone, one bigger, one dead
URL). The sender posts a 2 MP JPEG, a PNG and text with a SMIL; each
recipient's m-retrieve-conf is checked with our codec and with tshark.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import urllib.parse
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from PIL import Image, ImageDraw

from mmsc.adapt import targets
from mmsc.adapt.targets import MAX_PROFILE_BYTES, ProfileCache, TargetResolver
from mmsc.config import ConfigError
from protocol import mms
from protocol.mms import MmsPdu
from protocol.wsp import Part
from tests import tshark
from tests.harness import LoopbackServer, ServerProcess, SmsSink, http, start_server
from tests.test_adapt import photo
from tests.test_mm1_e2e import fetch_url, post_pdu

A, B, C, D, E = (f"+1555000000{i}" for i in range(1, 6))
# The profile server of these tests is on loopback, on a port of its own: allowed only
# when the operator says so (a public deployment refuses both).
LAB = {"uaprof_allow_private": True, "uaprof_ports": []}

PROFILE = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns:prf="http://www.openmobilealliance.org/tech/profiles/UAPROF/ccppschema-20021212#">
 <rdf:Description rdf:ID="Profile">
  <prf:component><rdf:Description rdf:ID="MmsCharacteristics">
   <prf:MmsMaxMessageSize>{size}</prf:MmsMaxMessageSize>
   <prf:MmsMaxImageResolution>{resolution}</prf:MmsMaxImageResolution>
   <prf:MmsCcppAccept><rdf:Bag>{accept}</rdf:Bag></prf:MmsCcppAccept>
  </rdf:Description></prf:component>
 </rdf:Description>
</rdf:RDF>"""


def profile(size: int, resolution: str, accept: list[str]) -> bytes:
    items = "".join(f"<rdf:li>{t}</rdf:li>" for t in accept)
    return PROFILE.format(size=size, resolution=resolution, accept=items).encode()


class ProfileServer(LoopbackServer):
    """UAProf documents on loopback; ``redirects`` maps a name to a Location."""

    def __init__(
        self, documents: dict[str, bytes], redirects: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.documents = documents
        self.redirects = redirects or {}
        self.requests: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{name}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests.append(name)
        if name in self.redirects:
            raise web.HTTPFound(self.redirects[name])
        if name not in self.documents:
            return web.Response(status=404, text="<html>gone</html>")
        return web.Response(body=self.documents[name], content_type="text/xml")


def coupon_png() -> bytes:
    """A flat graphic, as coupons are: small as PNG, and PNG is what it should stay."""
    image = Image.new("RGB", (400, 300), (250, 250, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 380, 280), outline=(200, 0, 0), width=8)
    draw.text((60, 130), "50% OFF", fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def sink() -> Iterator[SmsSink]:
    with SmsSink() as s:
        yield s


def send(server: ServerProcess) -> tuple[str, bytes]:
    smil = (
        b'<smil><body><par dur="5s"><img src="cid:photo"/><text src="cid:txt"/></par>'
        b'<par dur="5s"><img src="coupon.png"/></par></body></smil>'
    )
    parts = [
        Part("application/smil", {}, {"Content-ID": "<smil>"}, smil),
        Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<txt>"}, "Grüße 👋".encode()),
        Part("image/jpeg", {"name": "photo.jpg"}, {"Content-ID": "<photo>"}, photo(1632, 1224)),
        Part(
            "image/png",
            {"name": "coupon.png"},
            {"Content-ID": "<coupon>", "Content-Location": "coupon.png"},
            coupon_png(),
        ),
    ]
    pdu = MmsPdu(
        "m-send-req",
        "AD1",
        "1.2",
        {"From": None, "To": [f"{n}/TYPE=PLMN" for n in (B, C, D, E)], "Subject": "Pics"},
        "application/vnd.wap.multipart.related",
        {"start": "<smil>", "type": "application/smil"},
        parts,
    )
    raw = mms.encode(pdu)
    status, body = post_pdu(server.mm1 + "/mms", raw, A)
    conf = mms.decode(body)
    assert status == 200 and conf.headers["X-Mms-Response-Status"] == "Ok", conf.headers
    return str(conf.headers["Message-ID"]), raw


def fetch(server: ServerProcess, location: str, profile_url: str) -> bytes:
    headers = {"x-wap-profile": f'"{profile_url}"', "User-Agent": "TestPhone/1.0"}
    status, body, _ = http("GET", fetch_url(server.mm1, location), headers=headers)
    assert status == 200
    return body


def metric(server: ServerProcess, name: str) -> float:
    _status, body, _ = http("GET", server.admin + "/metrics")
    for line in body.decode().splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def images_of(pdu: MmsPdu) -> list[tuple[str | None, tuple[int, int], int]]:
    out = []
    for part in pdu.parts or []:
        if part.content_type.startswith("image/"):
            with Image.open(io.BytesIO(bytes(part.data))) as image:
                out.append((image.format, image.size, len(part.data)))
    return out


def test_each_handset_gets_a_variant_within_its_profile(tmp_path: Path, sink: SmsSink) -> None:
    documents = {
        "small.xml": profile(
            102400, "176x208", ["image/jpeg", "image/gif", "text/plain", "application/smil"]
        ),
        "big.xml": profile(
            614400,
            "1024x768",
            ["image/jpeg", "image/png", "image/gif", "text/plain", "application/smil"],
        ),
    }
    with ProfileServer(documents) as profiles:
        server = start_server(
            tmp_path,
            {
                "mm1": {"public_url": "http://mmsc.test/mms"},
                "notify": {"backend": "kannel", "sendsms_url": sink.url},
                "adapt": {"uaprof_wait": 5.0, "workers": 1, **LAB},
            },
        )
        small_url, big_url = f"{profiles.base}/small.xml", f"{profiles.base}/big.xml"
        try:
            # B and C have used the MMSC before (their handsets showed their profiles).
            for handset, url in ((B, small_url), (C, big_url)):
                hello = MmsPdu(
                    "m-send-req",
                    f"hello-{handset}",
                    "1.2",
                    {"From": None, "To": [f"{A}/TYPE=PLMN"]},
                    "application/vnd.wap.multipart.mixed",
                    {},
                    [Part("text/plain", {"charset": "utf-8"}, {}, b"hi")],
                )
                status, _, _ = http(
                    "POST",
                    server.mm1 + "/mms",
                    mms.encode(hello),
                    {
                        "Content-Type": "application/vnd.wap.mms-message",
                        "X-MSISDN": handset,
                        "x-wap-profile": url,
                    },
                )
                assert status == 200
                assert sink.next().to == A
            message_id, raw = send(server)
            pushes = {p.to: p for p in (sink.next(), sink.next(), sink.next(), sink.next())}
            # Notifications announce what each handset will be served, at most: a handset
            # that sees a size over its limit may not even try to fetch.
            announced = {to: p.pdu.headers["X-Mms-Message-Size"] for to, p in pushes.items()}
            assert announced[B] <= 307200 < len(raw)  # its profile's 100 KB, or the default
            assert announced[C] <= 614400
            assert announced[D] == len(raw)  # never seen: the stored size

            # The small phone: within 100 KB, pictures within 176x208, all JPEG, SMIL consistent.
            body = fetch(server, pushes[B].pdu.headers["X-Mms-Content-Location"], small_url)
            assert len(body) <= 102400 < len(raw)
            small = mms.decode(body)
            assert small.message_type == "m-retrieve-conf"
            pictures = images_of(small)
            assert [fmt for fmt, _, _ in pictures] == ["JPEG", "JPEG"]
            assert all(max(size) <= 208 and min(size) <= 176 for _, size, _ in pictures)
            smil = bytes(small.parts[0].data)
            assert small.parts[0].content_type == "application/smil"
            assert b'src="coupon.jpg"' in smil and b"cid:photo" in smil
            names = {p.headers.get("Content-Location") for p in small.parts}
            assert "coupon.jpg" in names
            text = next(p for p in small.parts if p.content_type == "text/plain")
            assert bytes(text.data).decode() == "Grüße 👋" and text.params["charset"] == "utf-8"
            decoded = tshark.decode("mms", body, response=True)
            assert decoded.ok, decoded.result
            assert decoded.fields("mmse.message_type") == ["0x84"]

            # The bigger phone: a larger variant (PNG kept, pictures up to 1024x768).
            body_big = fetch(server, pushes[C].pdu.headers["X-Mms-Content-Location"], big_url)
            big = mms.decode(body_big)
            assert len(body) < len(body_big) <= 614400
            big_pictures = images_of(big)
            assert sorted(fmt for fmt, _, _ in big_pictures) == ["JPEG", "PNG"]
            assert max(max(size) for _, size, _ in big_pictures) > 208
            assert all(max(size) <= 1024 and min(size) <= 768 for _, size, _ in big_pictures)

            # The same variant again: served from the cache, not adapted twice.
            misses = metric(server, 'mmsc_adaptation_cache_total{result="miss"}')
            again = mms.decode(
                fetch(server, pushes[B].pdu.headers["X-Mms-Content-Location"], small_url)
            )
            assert [bytes(p.data) for p in again.parts] == [bytes(p.data) for p in small.parts]
            assert metric(server, 'mmsc_adaptation_cache_total{result="miss"}') == misses
            assert metric(server, 'mmsc_adaptation_cache_total{result="hit"}') >= 1

            # A dead profile URL: the default class (300 KB, 640x480), without waiting long.
            body_dead = fetch(
                server, pushes[D].pdu.headers["X-Mms-Content-Location"], f"{profiles.base}/gone.xml"
            )
            dead = mms.decode(body_dead)
            assert len(body_dead) <= 307200
            assert all(max(size) <= 640 for _, size, _ in images_of(dead))

            # An operator's override for E beats everything its handset says.
            override = {"max_message_size": 60000, "max_image": "160x120"}
            status, _, _ = http(
                "PUT",
                f"{server.admin}/api/subscribers/{urllib.parse.quote(E)}/capabilities",
                json.dumps(override).encode(),
                {"Content-Type": "application/json"},
            )
            assert status == 200
            bad = http(
                "PUT",
                f"{server.admin}/api/subscribers/{urllib.parse.quote(E)}/capabilities",
                b'{"max_image": "huge"}',
                {"Content-Type": "application/json"},
            )
            assert bad[0] == 400 and b"max_image" in bad[1]
            body_e = fetch(server, pushes[E].pdu.headers["X-Mms-Content-Location"], big_url)
            assert len(body_e) <= 60000
            assert all(max(size) <= 160 for _, size, _ in images_of(mms.decode(body_e)))

            quoted = urllib.parse.quote(message_id, safe="")
            _, trace, _ = http("GET", f"{server.admin}/api/messages/{quoted}")
            adapted = [e for e in json.loads(trace)["events"] if e["event"] == "adapted"]
            assert len(adapted) == 4  # small, big, default, override: one per variant

            # Profiles live in the database too: a restarted server does not fetch again.
            server.stop()
            server = start_server(
                tmp_path,
                {
                    "mm1": {"public_url": "http://mmsc.test/mms"},
                    "notify": {"backend": "kannel", "sendsms_url": sink.url},
                    "adapt": {"uaprof_wait": 5.0, "workers": 1, **LAB},
                },
            )
            fetched_before = profiles.requests.count("small.xml")
            again = fetch(server, pushes[B].pdu.headers["X-Mms-Content-Location"], small_url)
            assert len(again) <= 102400
            assert profiles.requests.count("small.xml") == fetched_before == 1
            # What the handsets told the first server (B with its own message, D with its
            # fetch) is in the database: it still bounds what the new server announces.
            _message_id, raw = send(server)
            pushes = {p.to: p for p in (sink.next(), sink.next(), sink.next(), sink.next())}
            assert pushes[B].pdu.headers["X-Mms-Message-Size"] <= 307200 < len(raw)
            assert pushes[D].pdu.headers["X-Mms-Message-Size"] <= 307200
        finally:
            server.stop()


# ------------------------------------------------------- where a profile fetch may go
# The handset names the URL, so these run ProfileCache against real loopback servers:
# a refused URL must cost the server no request at all.

SMALL = profile(102400, "176x208", ["image/jpeg", "text/plain"])


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


class MapResolver(AbstractResolver):
    """DNS from a table: a name answers with its next list of addresses (the last list
    again once the others are used up), so a test can rebind a name between lookups."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        queue = self.answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


async def fetched(cache: ProfileCache, url: str) -> bool:
    """Run the fetch ``url`` starts to its end; whether it gave a profile."""
    cache.lookup(url)
    await cache.wait(url)
    return cache.cached(url) is not None


def port_of(server: ProfileServer) -> int:
    return int(server.base.rsplit(":", 1)[1])


def test_loopback_profile_refused_by_default_and_fetched_when_allowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with ProfileServer({"small.xml": SMALL}) as server:
        url = f"{server.base}/small.xml"
        headers = {"x-wap-profile": url, "User-Agent": "TestPhone/1.0"}

        async def go() -> None:
            # The port is allowed here, so only the address refuses it.
            public = TargetResolver({"adapt": {"uaprof_ports": [port_of(server)]}})
            try:
                public.prefetch(headers)
                await public.profiles.wait(url)
                assert public.profiles.cached(url) is None
                assert url in public.profiles._entries  # a negative entry: not fetched again
                assert await public.resolve(headers) == await TargetResolver({}).resolve(
                    {"User-Agent": "TestPhone/1.0"}
                )  # the device class, as for a dead profile
            finally:
                await public.close()
            # The default ports refuse it too, whatever the address.
            ports = TargetResolver({"adapt": {"uaprof_allow_private": True}})
            try:
                assert not await fetched(ports.profiles, url)
            finally:
                await ports.close()
            assert server.requests == []

            lab = TargetResolver({"adapt": LAB})
            try:
                assert await fetched(lab.profiles, url)
                _variant, target = await lab.resolve(headers)
                assert (target.max_width, target.max_height) == (208, 176)
            finally:
                await lab.close()
            assert server.requests == ["small.xml"]

        with caplog.at_level(logging.INFO, "mmsc.adapt.uaprof"):
            run(go())
        refused = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) == 2 and all(r.levelno == logging.INFO for r in refused)
        assert "not a public address" in refused[0].getMessage()
        assert "port" in refused[1].getMessage()


def test_public_name_resolving_to_loopback_is_refused() -> None:
    with ProfileServer({"small.xml": SMALL}) as server:
        url = f"http://uaprof.vendor.example:{port_of(server)}/small.xml"

        async def go(allow_private: bool) -> bool:
            resolver = MapResolver({"uaprof.vendor.example": [["127.0.0.1"]]})
            cache = ProfileCache(
                ports=[port_of(server)], allow_private=allow_private, resolver=resolver
            )
            try:
                return await fetched(cache, url)
            finally:
                await cache.close()

        assert asyncio.run(go(allow_private=False)) is False
        assert server.requests == []
        assert asyncio.run(go(allow_private=True)) is True  # the name does reach the server
        assert server.requests == ["small.xml"]


def test_rebinding_between_check_and_connect_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Public when checked, loopback when the connector resolves: refused at connect."""
    with ProfileServer({"small.xml": SMALL}) as server:
        url = f"http://uaprof.vendor.example:{port_of(server)}/small.xml"
        resolver = MapResolver({"uaprof.vendor.example": [["93.184.216.34"], ["127.0.0.1"]]})

        async def go() -> None:
            cache = ProfileCache(ports=[port_of(server)], resolver=resolver)
            try:
                assert not await fetched(cache, url)
            finally:
                await cache.close()

        with caplog.at_level(logging.INFO, "mmsc.adapt.uaprof"):
            run(go())
        assert resolver.calls == ["uaprof.vendor.example"] * 2  # the check, the connector
        assert server.requests == []
        assert any("resolves to 127.0.0.1" in r.getMessage() for r in caplog.records)


def test_redirects_are_checked_hop_by_hop(caplog: pytest.LogCaptureFixture) -> None:
    with ProfileServer({}) as internal:
        redirects = {
            "moved.xml": "/small.xml",
            "metadata.xml": "http://169.254.169.254/latest/meta-data/",
            "internal.xml": f"{internal.base}/small.xml",  # a port not allowed
            "mapped.xml": "http://[::ffff:169.254.169.254]/latest/meta-data/",
            "loop.xml": "/loop.xml",
        }
        with ProfileServer({"small.xml": SMALL}, redirects) as server:

            async def go() -> None:
                cache = ProfileCache(allow_private=True, ports=[port_of(server), 80])
                try:
                    assert await fetched(cache, f"{server.base}/moved.xml")
                    for name in ("metadata.xml", "internal.xml", "mapped.xml", "loop.xml"):
                        assert not await fetched(cache, f"{server.base}/{name}"), name
                finally:
                    await cache.close()

            with caplog.at_level(logging.INFO, "mmsc.adapt.uaprof"):
                run(go())
            assert server.requests == [
                "moved.xml",
                "small.xml",
                "metadata.xml",
                "internal.xml",
                "mapped.xml",
                *["loop.xml"] * (1 + targets.MAX_REDIRECTS),
            ]
        assert internal.requests == []
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 4
    assert "169.254.169.254 is not a public address" in refused[0]
    assert "port" in refused[1]
    assert "::ffff:a9fe:a9fe is not a public address" in refused[2]
    assert "redirects" in refused[3]


def test_memory_cache_stays_at_its_cap() -> None:
    with ProfileServer({"small.xml": SMALL}) as server:
        urls = [f"{server.base}/small.xml?n={n}" for n in range(6)]

        async def go() -> None:
            cache = ProfileCache(allow_private=True, ports=[], max_entries=3)
            try:
                for url in urls[:3]:
                    assert await fetched(cache, url)
                cache.lookup(urls[0])  # used again: now the most recent
                for url in urls[3:5]:
                    assert await fetched(cache, url)
                assert cache.size == 3
                assert [cache.cached(u) is not None for u in urls[:5]] == [
                    True,
                    False,
                    False,
                    True,
                    True,
                ]
                # Refused URLs count too: a flood of made-up ones cannot grow memory.
                for n in range(10):
                    assert not await fetched(cache, f"http://10.0.0.{n}:{n + 1}/p.xml")
                assert cache.size == 3
            finally:
                await cache.close()

        run(go())
        assert len(server.requests) == 5


def test_cache_cap_and_private_switch_are_configurable() -> None:
    resolver = TargetResolver({})
    assert resolver.profiles.max_entries == targets.MAX_CACHED_PROFILES == 10_000
    assert resolver.profiles.allow_private is False
    assert resolver.profiles.ports == {80, 443}
    resolver = TargetResolver(
        {
            "adapt": {
                "uaprof_cache_entries": 5,
                "uaprof_allow_private": "true",
                "uaprof_ports": "80, 8080",  # as text from MMSC_ADAPT__UAPROF_PORTS
            }
        }
    )
    profiles = resolver.profiles
    assert (profiles.max_entries, profiles.allow_private, profiles.ports) == (5, True, {80, 8080})
    for bad in (
        {"uaprof_allow_private": "maybe"},
        {"uaprof_cache_entries": 0},
        {"uaprof_ports": [0]},
        {"uaprof_ports": "http"},
        {"uaprof_ports": 80},
    ):
        with pytest.raises(ConfigError, match=r"adapt\.uaprof_"):
            TargetResolver({"adapt": bad})


def test_fetches_run_at_most_concurrency_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        cache = ProfileCache(concurrency=2)
        active, most, two_in, gate = 0, 0, asyncio.Event(), asyncio.Event()

        async def download(url: str) -> bytes | None:
            nonlocal active, most
            active += 1
            most = max(most, active)
            if active == 2:
                two_in.set()
            await gate.wait()
            active -= 1
            return None

        monkeypatch.setattr(cache, "_download", download)
        urls = [f"http://uaprof.vendor.example/{n}.xml" for n in range(5)]
        for url in urls:
            cache.lookup(url)
        await two_in.wait()  # by now every other fetch has run up to the semaphore
        assert most == 2
        gate.set()
        for url in urls:
            await cache.wait(url)
        assert most == 2 and cache.size == 5
        await cache.close()

    run(go())


def test_fetches_waiting_for_a_slot_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "MAX_QUEUED_FETCHES", 2)

    async def go() -> None:
        cache = ProfileCache()
        for n in range(3):
            cache.lookup(f"http://10.0.0.1/{n}.xml")
        assert len(cache._fetching) == 2  # the third URL is tried again on a later request
        await cache.close()

    run(go())


def test_oversized_profile_is_not_read() -> None:
    big = SMALL + b"<!--" + b"x" * MAX_PROFILE_BYTES + b"-->"
    with ProfileServer({"big.xml": big, "small.xml": SMALL}) as server:

        async def go() -> None:
            cache = ProfileCache(allow_private=True, ports=[])
            try:
                assert not await fetched(cache, f"{server.base}/big.xml")
                assert await fetched(cache, f"{server.base}/small.xml")
            finally:
                await cache.close()

        run(go())
