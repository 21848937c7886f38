"""MM1 answers under the path of ``[mm1] public_url`` as well as ``/mms``: the
Content-Location a handset fetches is ``public_url/<token>``, whatever its path."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmsc.mm1 import route_bases
from protocol import mms
from storage import repository as repo
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


def test_a_fetch_that_meets_a_replace_serves_the_new_content(tmp_path: Path) -> None:
    """A VASP's ReplaceReq deletes the old body at once; a fetch that had read the row
    before gets the new content, not "message not found". The interleaving is forced:
    the handler's first lookup returns the row as it was before the replace."""
    import asyncio
    from dataclasses import replace as changed

    from aiohttp import web

    from mmsc import mm1, mm7_ops
    from mmsc.addresses import NumberPlan, parse_address
    from mmsc.core import Mmsc, Policy
    from storage import db
    from storage.payloads import InMemoryPayloadStore

    async def body() -> None:
        engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'mmsc.db'}")
        await db.upgrade(engine)
        core = Mmsc(engine, InMemoryPayloadStore(), Policy(public_url="http://mmsc.test/mms"))
        await core.start()
        runner = web.AppRunner(mm1.make_app(core, {"mm1": {}}))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            raw = send_req("R2", [B])
            pdu = mms.decode(raw)
            accepted = await core.accept(
                pdu, raw, parse_address(A, NumberPlan()), interface="mm7", vasp="acme"
            )
            ((rid, _),) = accepted.recipients
            token = (await core.read(lambda c: repo.get_recipient_by_id(c, rid))).token
            stale = await core.recipient(token)

            def rebuild(old: mms.MmsPdu) -> mms.MmsPdu:
                return changed(old, headers={**old.headers, "Subject": "Replaced"})

            result = await mm7_ops.replace(core, accepted.message_id, "acme", rebuild, 10**6)
            assert result.status == mm7_ops.OK, result
            lookups = []
            real = core.recipient

            async def first_stale(t: str) -> object:
                lookups.append(t)
                return stale if len(lookups) == 1 else await real(t)

            core.recipient = first_stale  # type: ignore[method-assign]
            status, data, _ = await asyncio.to_thread(
                http, "GET", f"http://127.0.0.1:{port}/mms/{token}"
            )
            conf = mms.decode(data)
            assert (status, conf.headers["X-Mms-Retrieve-Status"]) == (200, "Ok")
            assert conf.headers["Subject"] == "Replaced" and len(lookups) == 2
        finally:
            await runner.cleanup()
            await core.close()
            await engine.dispose()

    asyncio.run(body())
