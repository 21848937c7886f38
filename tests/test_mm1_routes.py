"""MM1 answers under the path of ``[mm1] public_url`` as well as ``/mms``: the
Content-Location a handset fetches is ``public_url/<token>``, whatever its path."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmsc.mm1 import route_bases
from protocol import mms
from tests.harness import SmsSink, http, start_server
from tests.test_mm1_e2e import post_pdu, send_req

A, B = "+15550000001", "+15550000002"


@pytest.fixture
def sink() -> Iterator[SmsSink]:
    with SmsSink() as s:
        yield s


def test_route_bases() -> None:
    assert route_bases("http://mmsc.test/mms") == ["/mms"]
    assert route_bases("http://mmsc.test/mms/") == ["/mms"]
    assert route_bases("http://mmsc.test/m") == ["/mms", "/m"]
    assert route_bases("http://mmsc.test:8002/a/b/") == ["/mms", "/a/b"]
    assert route_bases("http://mmsc.test") == ["/mms", ""]


@pytest.mark.parametrize("public_path", ["/m", ""])
def test_fetch_under_the_public_url_path(tmp_path: Path, sink: SmsSink, public_path: str) -> None:
    server = start_server(
        tmp_path,
        {
            "mm1": {"public_url": "http://mmsc.test" + public_path},
            "notify": {"backend": "kannel", "sendsms_url": sink.url},
        },
    )
    try:
        # Handsets post to the public path too (the MMSC URL of their APN settings).
        status, body = post_pdu(server.mm1 + (public_path or "/"), send_req("R1", [B]), A)
        assert status == 200
        assert mms.decode(body).headers["X-Mms-Response-Status"] == "Ok"
        location = sink.next().pdu.headers["X-Mms-Content-Location"]
        path = urllib.parse.urlsplit(location).path
        assert path.startswith(public_path + "/") and path.count("/") == public_path.count("/") + 1
        token = path.rsplit("/", 1)[1]
        for fetch_path in (path, f"/mms/{token}"):
            status, body, _ = http("GET", server.mm1 + fetch_path)
            conf = mms.decode(body)
            assert (status, conf.message_type) == (200, "m-retrieve-conf")
            assert conf.headers["X-Mms-Retrieve-Status"] == "Ok"
    finally:
        server.stop()
