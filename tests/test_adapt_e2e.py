"""Content adaptation end to end: handsets with different UAProfs fetch the same message.

A real `mmsc serve`, an SMS sink for the notifications, and a local HTTP
server that serves UAProf documents (one small phone, one bigger, one dead
URL). The sender posts a 2 MP JPEG, a PNG and text with a SMIL; each
recipient's m-retrieve-conf is checked with our codec and with tshark.
"""

from __future__ import annotations

import io
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image, ImageDraw

from protocol import mms
from protocol.mms import MmsPdu
from protocol.wsp import Part
from tests import tshark
from tests.harness import LoopbackServer, ServerProcess, SmsSink, http, start_server
from tests.test_adapt import photo
from tests.test_mm1_e2e import fetch_url, post_pdu

A, B, C, D, E = (f"+1555000000{i}" for i in range(1, 6))

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
    """UAProf documents on loopback."""

    def __init__(self, documents: dict[str, bytes]) -> None:
        super().__init__()
        self.documents = documents
        self.requests: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{name}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests.append(name)
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
                "adapt": {"uaprof_wait": 5.0, "workers": 1},
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
                    "adapt": {"uaprof_wait": 5.0, "workers": 1},
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
