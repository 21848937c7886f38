"""MM7 end to end: a VASP talks to a real `mmsc serve` over HTTP, handsets over MM1.

The VASP side is our own MM7 client (mmsc.mm7_client, the same code as
`mmsc mm7 submit`) and a VASP endpoint on loopback (tests/vasp_sink.py) for
what the MMSC sends to the VASP; pushes go to a Kannel-style SMS sink.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mmsc.mm7_client import exchange, submit_request
from mmsc.mm7_outbound import is_permanent
from protocol import mm7, mms
from protocol.mms import MmsPdu
from protocol.wsp import Part
from tests import media
from tests.conftest import CORPUS, ROOT
from tests.harness import ServerProcess, SmsSink, http, start_server
from tests.test_mm1_e2e import fetch_url, metrics_once, post_pdu, send_req
from tests.vasp_sink import VaspSink

A, B, C = "+15550000001", "+15550000002", "+15550000003"
SHORTCODE = "1234"
OTHER_SHORTCODE = "5678"
PASSWORD = "s3cret"
JPEG = media.jpeg(80, 60)


@pytest.fixture
def sink() -> Iterator[SmsSink]:
    with SmsSink() as s:
        yield s


@pytest.fixture
def vasp() -> Iterator[VaspSink]:
    with VaspSink() as v:
        yield v


def mm7_server(
    tmp_path: Path,
    sink: SmsSink,
    vasp: VaspSink,
    vasp_options: dict[str, Any] | None = None,
    notify: dict[str, Any] | None = None,
    **mm1: Any,
) -> ServerProcess:
    return start_server(
        tmp_path,
        {
            "mm1": {"public_url": "http://mmsc.test/mms", "trust_pdu_sender": False, **mm1},
            "notify": {
                "backend": "kannel",
                "sendsms_url": sink.url,
                "retry_initial": 0.2,
                **(notify or {}),
            },
            "mm7": {
                "vasp": [
                    {
                        "name": "acme",
                        "password": PASSWORD,
                        "vasp_id": "acme-id",
                        "shortcodes": [SHORTCODE],
                        "deliver_url": vasp.url,
                        "namespace": "REL-5-MM7-1-2",
                        **(vasp_options or {}),
                    },
                    {"name": "other", "password": "x", "shortcodes": [OTHER_SHORTCODE]},
                ]
            },
        },
    )


def call(server: ServerProcess, op: Any, *, user: str = "acme", password: str = PASSWORD) -> Any:
    async def run() -> Any:
        async with aiohttp.ClientSession() as session:
            return await exchange(
                session, server.mm7 + "/mm7", op, username=user, password=password
            )

    return asyncio.run(run())


def content(text: str = "Hello from ACME", image: bytes = JPEG) -> mm7.Content:
    smil = (
        b'<smil><body><par dur="5s"><img src="cid:img"/><text src="cid:txt"/></par></body></smil>'
    )
    parts = [
        Part("application/smil", {}, {"Content-ID": "<smil>"}, smil),
        Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<txt>"}, text.encode()),
        Part("image/jpeg", {"name": "c.jpg"}, {"Content-ID": "<img>"}, image),
    ]
    return mm7.content_from_parts(
        "multipart/related", {"type": "application/smil", "start": "<smil>"}, parts
    )


def submit(namespace: str, to: list[str], **fields: Any) -> Any:
    values: dict[str, Any] = {
        "transaction_id": f"tx-{namespace}",
        "namespace": namespace,
        "mm7_version": mm7.MM7_VERSIONS[namespace],
        "vasp_id": "acme-id",
        "sender_address": mm7.Address("ShortCode", SHORTCODE),
        "to": [mm7.Address("Number", n) for n in to],
        "subject": "Coupon",
        "delivery_report": True,
        "read_reply": True,
        "content": content(),
    }
    values.update(fields)
    return mm7.SubmitReq(**values)


def fetch(server: ServerProcess, location: str) -> MmsPdu:
    status, body, _ = http("GET", fetch_url(server.mm1, location))
    assert status == 200
    return mms.decode(body)


def messages_received(server: ServerProcess) -> float:
    _status, body, _ = http("GET", server.admin + "/metrics")
    for line in body.decode().splitlines():
        if line.startswith('mmsc_messages_received_total{interface="mm7"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("namespace", ["REL-5-MM7-1-0", "REL-6-MM7-1-4"])
def test_vasp_submit_reaches_two_handsets_with_reports(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink, namespace: str
) -> None:
    server = mm7_server(tmp_path, sink, vasp)
    try:
        rsp = call(server, submit(namespace, [B, C]))
        assert isinstance(rsp, mm7.SubmitRsp), rsp
        assert (rsp.status_code, rsp.namespace, rsp.transaction_id) == (
            1000,
            namespace,
            f"tx-{namespace}",
        )
        assert rsp.mm7_version == mm7.MM7_VERSIONS[namespace]
        message_id = rsp.message_id
        pushes = {p.to: p for p in (sink.next(), sink.next())}
        assert set(pushes) == {B, C}
        for push in pushes.values():
            assert push.pdu.headers["From"] == f"{SHORTCODE}/TYPE=PLMN"
            assert push.pdu.headers["Subject"] == "Coupon"
        # Both fetch: the SMIL presentation and every part arrive intact.
        for handset, push in pushes.items():
            conf = fetch(server, push.pdu.headers["X-Mms-Content-Location"])
            assert conf.headers["Message-ID"] == message_id
            assert conf.content_type == "application/vnd.wap.multipart.related"
            assert [p.content_type for p in conf.parts] == [
                "application/smil",
                "text/plain",
                "image/jpeg",
            ]
            assert bytes(conf.parts[2].data) == JPEG
            ack = MmsPdu("m-acknowledge-ind", conf.transaction_id, "1.2", {})
            assert post_pdu(server.mm1 + "/mms", ack, handset)[0] == 204
        reports = [vasp.next() for _ in range(2)]
        for report in reports:
            assert isinstance(report.op, mm7.DeliveryReportReq)
            assert report.op.namespace == "REL-5-MM7-1-2"  # the VASP's configured version
            assert report.op.message_id == message_id and report.op.mm_status == "Retrieved"
        assert {r.op.recipient.value for r in reports} == {B, C}
        # B reads it: the VASP gets a ReadReplyReq.
        read = MmsPdu(
            "m-read-rec-ind",
            None,
            "1.2",
            {
                "Message-ID": message_id,
                "To": [f"{SHORTCODE}/TYPE=PLMN"],
                "X-Mms-Read-Status": "Read",
            },
        )
        assert post_pdu(server.mm1 + "/mms", read, B)[0] == 204
        reply = vasp.next()
        assert isinstance(reply.op, mm7.ReadReplyReq)
        assert (reply.op.message_id, reply.op.mm_status, reply.op.recipient.value) == (
            message_id,
            "Read",
            B,
        )
    finally:
        server.stop()


def test_mo_message_to_a_short_code_reaches_the_vasp(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    server = mm7_server(tmp_path, sink, vasp)
    try:
        image = b"\xff\xd8" + bytes(range(256)) * 4
        request = MmsPdu(
            "m-send-req",
            "MO-1",
            "1.2",
            {
                "From": None,
                "To": [f"{SHORTCODE}/TYPE=PLMN"],
                "Subject": "WIN",
                "X-Mms-Delivery-Report": "Yes",
            },
            "application/vnd.wap.multipart.mixed",
            {},
            [
                Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<t>"}, b"WIN 42"),
                Part("image/jpeg", {"name": "p.jpg"}, {"Content-ID": "<p>"}, image),
            ],
        )
        status, body = post_pdu(server.mm1 + "/mms", request, A)
        conf = mms.decode(body)
        assert status == 200 and conf.headers["X-Mms-Response-Status"] == "Ok"
        got = vasp.next()
        deliver = got.op
        assert isinstance(deliver, mm7.DeliverReq)
        assert got.authorization is None  # no deliver_username configured
        assert deliver.sender.value == A
        assert [a.value for a in deliver.to] == [SHORTCODE]
        assert deliver.subject == "WIN"
        parts = mm7.content_parts(deliver.content)
        assert [(p.content_type, bytes(p.data)) for p in parts] == [
            ("text/plain", b"WIN 42"),
            ("image/jpeg", image),
        ]
        # The VASP took it: A's delivery report says Retrieved.
        report = sink.next()
        assert report.to == A and report.pdu.message_type == "m-delivery-ind"
        assert report.pdu.headers["X-Mms-Status"] == "Retrieved"
        # Recorded in one unit with the VASP's answer (one clock reading): a crash after
        # that commit cannot leave the recipient open and its sender told "Expired".
        story = trace(server, str(conf.headers["Message-ID"]))
        assert [r["state"] for r in story["recipients"]] == ["retrieved"]
        together = {
            e["event"]: e["at"]
            for e in story["events"]
            if e["event"] in ("mm7-deliver-sent", "retrieved", "delivery-report-queued")
        }
        assert len(together) == 3 and len(set(together.values())) == 1, together
        counts = metrics_once(
            server, 'mmsc_mm7_outbound_total{operation="mm7-deliver",result="sent"}', 1.0
        )
        assert counts['mmsc_messages_delivered_total{interface="mm7"}'] == 1.0
    finally:
        server.stop()


def test_cancel_and_replace_before_retrieval_and_not_after(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    server = mm7_server(tmp_path, sink, vasp)
    ns = "REL-6-MM7-1-4"
    common = {"transaction_id": "t", "namespace": ns, "mm7_version": mm7.MM7_VERSIONS[ns]}
    try:
        # Cancel before anyone fetched: the handset then finds nothing.
        first = call(server, submit(ns, [B], delivery_report=False))
        push = sink.next()
        cancel = mm7.CancelReq(**common, vasp_id="acme-id", message_id=first.message_id)
        assert call(server, cancel).status_code == 1000
        gone = fetch(server, push.pdu.headers["X-Mms-Content-Location"])
        assert gone.headers["X-Mms-Retrieve-Status"] == "Error-permanent-message-not-found"
        # Replace before retrieval: the handset fetches the new content.
        second = call(server, submit(ns, [C], delivery_report=False))
        push = sink.next()
        replace = mm7.ReplaceReq(
            **common,
            vasp_id="acme-id",
            message_id=second.message_id,
            content=content("New text", image=media.jpeg(40, 30)),
        )
        assert call(server, replace).status_code == 1000
        conf = fetch(server, push.pdu.headers["X-Mms-Content-Location"])
        assert bytes(conf.parts[1].data) == b"New text"
        assert conf.headers["Subject"] == "Coupon"  # what the ReplaceReq did not touch stays
        # Fetched but not yet confirmed: the handset has it, so both are refused already.
        assert call(server, replace).status_code == 3001
        early_cancel = mm7.CancelReq(**common, vasp_id="acme-id", message_id=second.message_id)
        assert call(server, early_cancel).status_code == 3001
        ack = MmsPdu("m-acknowledge-ind", conf.transaction_id, "1.2", {})
        post_pdu(server.mm1 + "/mms", ack, C)
        # After retrieval both are refused, and another VASP cannot touch the message.
        assert call(server, replace).status_code == 3001
        late_cancel = mm7.CancelReq(**common, vasp_id="acme-id", message_id=second.message_id)
        assert call(server, late_cancel).status_code == 3001
        foreign = mm7.CancelReq(**common, message_id=second.message_id)
        assert call(server, foreign, user="other", password="x").status_code == 2005
        unknown = mm7.CancelReq(**common, vasp_id="acme-id", message_id="nope")
        assert call(server, unknown).status_code == 2005
    finally:
        server.stop()


def test_each_handset_gets_the_message_in_a_version_it_speaks(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """A ContentClass makes the stored message 1.3; B last sent a 1.2 PDU, C a 1.3 one,
    and the third never sent anything: B and the third get a 1.2 m-retrieve-conf without
    the 1.3-only X-Mms-Content-Class, C the 1.3 one with it (OMA-MMS-ENC §7,
    feature-matrix §4.10)."""
    server = mm7_server(tmp_path, sink, vasp)
    silent = "+15550000004"
    try:
        for handset, version in ((B, "1.2"), (C, "1.3")):
            own = mms.encode(mms.decode(send_req(f"v-{handset}", [A])), version=version)
            conf = mms.decode(post_pdu(server.mm1 + "/mms", own, handset)[1])
            assert conf.headers["X-Mms-Response-Status"] == "Ok"
            assert sink.next().to == A
        rsp = call(server, submit("REL-6-MM7-1-4", [B, C, silent], content_class="image-rich"))
        assert rsp.status_code == 1000, rsp
        pushes = {p.to: p for p in (sink.next(), sink.next(), sink.next())}
        got = {
            handset: fetch(server, push.pdu.headers["X-Mms-Content-Location"])
            for handset, push in pushes.items()
        }
        assert {h: c.headers["X-Mms-Retrieve-Status"] for h, c in got.items()} == dict.fromkeys(
            (B, C, silent), "Ok"
        )
        assert {h: c.mms_version for h, c in got.items()} == {B: "1.2", C: "1.3", silent: "1.2"}
        assert got[C].headers["X-Mms-Content-Class"] == "image-rich"
        assert "X-Mms-Content-Class" not in got[B].headers
        assert "X-Mms-Content-Class" not in got[silent].headers
        assert [bytes(p.data) for p in got[B].parts] == [bytes(p.data) for p in got[C].parts]
    finally:
        server.stop()


def raw_post(
    server: ServerProcess, body: bytes, content_type: str = "text/xml", auth: str | None = None
) -> tuple[int, bytes, dict[str, str]]:
    token = base64.b64encode((auth or f"acme:{PASSWORD}").encode()).decode()
    headers = {"Content-Type": content_type, "Authorization": f"Basic {token}"}
    return http("POST", server.mm7 + "/mm7", body, headers)


def answer_status(body: bytes, content_type: str) -> int:
    answer = mm7.decode(body, content_type)
    if isinstance(answer, mm7.Fault):
        assert answer.detail is not None
        return int(answer.detail.status_code)
    return int(answer.status_code)


def fault_status(body: bytes, content_type: str = "text/xml") -> int:
    fault = mm7.decode(body, content_type)
    assert isinstance(fault, mm7.Fault), fault
    assert fault.detail is not None
    return int(fault.detail.status_code)


def test_bad_input_gets_the_right_status_and_stores_nothing(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    server = mm7_server(tmp_path, sink, vasp, max_message_size=20000)
    # (mm7.max_body_size defaults to 2 x max_message_size + 64 KiB = 105,536 octets)
    ns = "REL-6-MM7-1-4"
    try:
        good_body, good_type = mm7.encode(submit(ns, [B]))
        # Wrong credentials: 401, a Fault with 4001, nothing stored.
        status, body, headers = raw_post(server, good_body, good_type, auth="acme:wrong")
        assert status == 401 and "Basic" in headers.get("WWW-Authenticate", "")
        assert fault_status(body) == 4001
        status, body, _ = raw_post(server, good_body, good_type, auth="nobody:x")
        assert status == 401
        # Not XML at all, and XML bombs: a Fault with a client error, quickly.
        status, body, _ = raw_post(server, b"<not xml")
        assert status == 500 and 2000 <= fault_status(body) < 5000
        entities = ['<!ENTITY a0 "lol">'] + [
            f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
        ]
        bomb = (
            f'<?xml version="1.0"?><!DOCTYPE lolz [{"".join(entities)}]><lolz>&a9;</lolz>'
        ).encode()
        started = time.monotonic()
        status, body, _ = raw_post(server, bomb)
        assert status == 500 and time.monotonic() - started < 5
        external = (
            b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>'
        )
        status, body, _ = raw_post(server, external)
        assert status == 500 and b"root:" not in body
        # Understood but refused: answered in a SubmitRsp.
        foreign = submit(ns, [B], sender_address=mm7.Address("ShortCode", OTHER_SHORTCODE))
        assert call(server, foreign).status_code == 2001
        # No Recipients element at all (our encoder will not write that): 4004.
        body, ctype = mm7.encode(submit(ns, [B]), prefix=None)
        start, end = body.index(b"<Recipients>"), body.index(b"</Recipients>") + 13
        status, answer, headers = raw_post(server, body[:start] + body[end:], ctype)
        assert answer_status(answer, headers["Content-Type"]) == 4004
        # A value of the wrong format, or outside its enumeration: 2007 (TS 23.140 §8.7).
        for good, bad in (
            (b"<DeliveryReport>true<", b"<DeliveryReport>yes<"),
            (b"<Subject>", b"<MessageClass>Foo</MessageClass><Subject>"),
        ):
            status, answer, headers = raw_post(server, body.replace(good, bad), ctype)
            assert status == 500 and fault_status(answer, headers["Content-Type"]) == 2007
        big = submit(ns, [B], content=content(image=bytes(30000)))
        assert call(server, big).status_code == 2004
        assert call(server, submit(ns, [B], vasp_id="someone-else")).status_code == 4001
        # A response element is not a request to an MMSC.
        stray = mm7.DeliverRsp(
            transaction_id="x",
            namespace=ns,
            mm7_version=mm7.MM7_VERSIONS[ns],
            status_code=1000,
            status_text="Success",
            details=None,
        )
        body, ctype = mm7.encode(stray)
        status, answer, _ = raw_post(server, body, ctype)
        assert status == 500 and fault_status(answer) == 4003
        # An unroutable e-mail recipient next to a handset: partial success.
        mixed = submit(ns, [B], cc=[mm7.Address("RFC2822Address", "someone@example.com")])
        partial = call(server, mixed)
        assert partial.status_code == 1100 and "someone@example.com" in (partial.details or "")
        # Broken MIME (the boundary never appears) and a body over the listener's limit.
        status, answer, headers = raw_post(
            server, b"no parts here", 'multipart/related; boundary="xyz"; type="text/xml"'
        )
        assert status == 500 and fault_status(answer, headers["Content-Type"]) == 2007
        status, answer, headers = raw_post(server, b"<x/>" * 30000, "text/xml")
        assert status == 413 and fault_status(answer, headers["Content-Type"]) == 2004
        assert messages_received(server) == 1.0  # only the partial success was stored
    finally:
        server.stop()


def test_cli_submit_prints_the_submit_rsp(tmp_path: Path, sink: SmsSink, vasp: VaspSink) -> None:
    server = mm7_server(tmp_path, sink, vasp)
    picture = tmp_path / "coupon.jpg"
    picture.write_bytes(JPEG)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mmsc.cli",
                "mm7",
                "submit",
                "--url",
                server.mm7 + "/mm7",
                "--user",
                "acme",
                "--vasp-id",
                "acme-id",
                "--to",
                B,
                "--from",
                SHORTCODE,
                "--subject",
                "CLI",
                "--text",
                "from the command line",
                str(picture),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT), "MMSC_MM7_PASSWORD": PASSWORD},
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        answer = json.loads(result.stdout)
        assert answer["operation"] == "SubmitRsp" and answer["status_code"] == 1000
        push = sink.next()
        conf = fetch(server, push.pdu.headers["X-Mms-Content-Location"])
        assert conf.headers["Subject"] == "CLI"
        assert [bytes(p.data) for p in conf.parts] == [b"from the command line", JPEG]
        quoted = urllib.parse.quote(answer["message_id"], safe="")
        status, _, _ = http("GET", f"{server.admin}/api/messages/{quoted}")
        assert status == 200
    finally:
        server.stop()


def test_submit_request_builder_defaults() -> None:
    req = submit_request(to=[B, "1234", "x@y.z"], sender=SHORTCODE, expiry_seconds=60)
    assert [a.kind for a in req.to] == ["Number", "ShortCode", "RFC2822Address"]
    assert req.expiry_date == timedelta(seconds=60)


def eaif_post(
    server: ServerProcess, body: bytes, headers: dict[str, str], auth: str = f"acme:{PASSWORD}"
) -> tuple[int, bytes, dict[str, str]]:
    token = base64.b64encode(auth.encode()).decode()
    all_headers = {
        "Content-Type": "application/vnd.wap.mms-message",
        "Authorization": f"Basic {token}",
        **headers,
    }
    return http("POST", server.mm7 + "/eaif", body, all_headers)


def test_eaif_submission(tmp_path: Path, sink: SmsSink, vasp: VaspSink) -> None:
    server = mm7_server(tmp_path, sink, vasp)
    try:
        pdu = MmsPdu(
            "m-send-req",
            "E1",
            "1.2",
            {"From": None, "To": [f"{C}/TYPE=PLMN"], "Subject": "EAIF"},
            "application/vnd.wap.multipart.mixed",
            {},
            [Part("text/plain", {"charset": "utf-8"}, {}, b"via EAIF")],
        )
        body = mms.encode(pdu, check_mandatory=False)
        # The envelope header names the recipients, not the PDU.
        status, _, headers = eaif_post(
            server, body, {"X-NOKIA-MMSC-To": B, "X-NOKIA-MMSC-From": SHORTCODE}
        )
        assert status == 204 and headers["X-NOKIA-MMSC-Version"] == "3.0"
        message_id = headers["X-NOKIA-MMSC-Message-Id"]
        push = sink.next()
        assert push.to == B and push.pdu.headers["From"] == f"{SHORTCODE}/TYPE=PLMN"
        conf = fetch(server, push.pdu.headers["X-Mms-Content-Location"])
        assert conf.headers["Message-ID"] == message_id
        assert bytes(conf.parts[0].data) == b"via EAIF"
        # Refusals are HTTP statuses.
        assert eaif_post(server, body, {}, auth="acme:wrong")[0] == 401
        assert eaif_post(server, b"\x8c\x80garbage", {})[0] == 400
        assert eaif_post(server, body, {"X-NOKIA-MMSC-From": OTHER_SHORTCODE})[0] == 403
    finally:
        server.stop()


def test_vasp_error_answers_are_events_and_retried(tmp_path: Path, sink: SmsSink) -> None:
    """A VASP answering 3000 (server error) gets the DeliverReq again; each answer is an event."""
    with VaspSink(status=3000) as vasp:
        server = mm7_server(tmp_path, sink, vasp)
        try:
            request = MmsPdu(
                "m-send-req",
                "MO-2",
                "1.2",
                {"From": None, "To": [f"{SHORTCODE}/TYPE=PLMN"]},
                "application/vnd.wap.multipart.mixed",
                {},
                [Part("text/plain", {"charset": "utf-8"}, {}, b"STOP")],
            )
            _status, body = post_pdu(server.mm1 + "/mms", request, A)
            message_id = mms.decode(body).headers["Message-ID"]
            first = vasp.next()
            vasp.status = 1000
            second = vasp.next()
            assert first.op.linked_id == second.op.linked_id == message_id
            quoted = urllib.parse.quote(message_id, safe="")
            _, trace_body, _ = http("GET", f"{server.admin}/api/messages/{quoted}")
            events = [e["event"] for e in json.loads(trace_body)["events"]]
            assert "mm7-deliver-retry" in events
        finally:
            server.stop()


def test_answers_keep_the_callers_namespace_even_an_unknown_one(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    server = mm7_server(tmp_path, sink, vasp)
    try:
        body, ctype = mm7.encode(submit("REL-5-MM7-1-3", [B]), prefix=None)
        # A namespace from a schema we have never seen is read with REL-6 rules and echoed.
        later = body.replace(b"REL-5-MM7-1-3", b"REL-6-MM7-1-9")
        status, answer, headers = raw_post(server, later, ctype)
        assert status == 200, answer
        assert b"REL-6-MM7-1-9" in answer
        assert answer_status(answer, headers["Content-Type"]) == 1000
        # Not an MM7 schema at all, or one from before MM7 existed: 4002, nothing stored.
        uri = b"http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-5-MM7-1-3"
        for wrong in (b"http://example.com/not-mm7", uri.replace(b"REL-5", b"REL-4")):
            status, answer, headers = raw_post(server, body.replace(uri, wrong), ctype)
            assert status == 500 and fault_status(answer, headers["Content-Type"]) == 4002
        assert messages_received(server) == 1.0
    finally:
        server.stop()


def test_per_vasp_dialect_switches(tmp_path: Path, sink: SmsSink, vasp: VaspSink) -> None:
    options = {
        "namespace": "REL-6-MM7-1-0",
        "prefix": "m",
        "unqualified_children": True,
        "boundary_style": "nextpart",
    }
    server = mm7_server(tmp_path, sink, vasp, vasp_options=options)
    try:
        request = MmsPdu(
            "m-send-req",
            "MO-3",
            "1.2",
            {"From": None, "To": [f"{SHORTCODE}/TYPE=PLMN"]},
            "application/vnd.wap.multipart.mixed",
            {},
            [Part("text/plain", {"charset": "utf-8"}, {}, b"HELP")],
        )
        post_pdu(server.mm1 + "/mms", request, A)
        got = vasp.next()
        assert got.op.namespace == "REL-6-MM7-1-0" and got.op.mm7_version == "6.3.0"
        assert 'boundary="----=_NextPart_' in got.content_type
        assert b"<m:DeliverReq " in got.body and b"<MM7Version>6.3.0</MM7Version>" in got.body
        # The VASP's own requests are answered in its dialect too.
        rsp_body, rsp_type = mm7.encode(submit("REL-6-MM7-1-0", [B]), prefix="m")
        status, answer, _ = raw_post(server, rsp_body, rsp_type)
        assert status == 200 and b"<m:SubmitRsp " in answer and b"<MM7Version>" in answer
    finally:
        server.stop()


def test_storage_trouble_is_a_server_fault_and_stores_nothing(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """The payload store's directory replaced by a file (a disk gone bad): the VASP gets
    a SOAP Fault with status 3000 it may retry, the handset Error-transient-failure,
    nothing is counted as received; once the directory is back, both are accepted."""
    server = mm7_server(tmp_path, sink, vasp)
    payloads = tmp_path / "payloads"
    try:
        assert call(server, submit("REL-6-MM7-1-4", [B])).status_code == 1000
        assert sink.next().to == B
        shutil.rmtree(payloads)
        payloads.write_bytes(b"not a directory")
        rsp = call(server, submit("REL-6-MM7-1-4", [C], transaction_id="tx-broken"))
        assert isinstance(rsp, mm7.Fault), rsp
        assert rsp.faultcode.endswith("Server") and rsp.detail is not None
        assert rsp.detail.status_code == 3000 and rsp.transaction_id == "tx-broken"
        status, body = post_pdu(server.mm1 + "/mms", send_req("T-broken", [C]), A)
        assert status == 200
        assert mms.decode(body).headers["X-Mms-Response-Status"] == "Error-transient-failure"
        assert messages_received(server) == 1.0
        payloads.unlink()
        payloads.mkdir()
        assert call(server, submit("REL-6-MM7-1-4", [C])).status_code == 1000
        assert sink.next().to == C
        assert messages_received(server) == 2.0
    finally:
        server.stop()


def test_vasp_start_parameter_is_written_as_the_root_content_id(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """A VASP's ``start=smil`` (no angle brackets) reaches the handset as the root part's
    Content-ID byte for byte, the form handsets compare (feature-matrix §4.5)."""
    server = mm7_server(tmp_path, sink, vasp)
    try:
        loose = content()
        loose = mm7.content_from_parts(
            "multipart/related", {"start": "smil"}, mm7.content_parts(loose)
        )
        rsp = call(server, submit("REL-6-MM7-1-4", [B], content=loose))
        assert rsp.status_code == 1000, rsp
        conf = fetch(server, sink.next().pdu.headers["X-Mms-Content-Location"])
        assert conf.content_type_params["start"] == "<smil>"
        assert conf.content_type_params["type"] == "application/smil"
        root = [p for p in conf.parts if p.content_id == "<smil>"]
        assert [p.content_type for p in root] == ["application/smil"]
    finally:
        server.stop()


def test_content_href_naming_no_attachment_is_refused_and_nothing_stored(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """Sinch's documentation sample is a bare SOAP envelope whose <Content href="cid:generic">
    names an attachment that is not there: refused with 2004 (TS 23.140 §8.7.1: Content is
    the message's content; an empty MMS must not go out), a ReplaceReq likewise."""
    sample = (CORPUS / "mm7" / "sinch__submit_req.xml").read_bytes()
    options = {"vasp_id": "skfdjslkjfdslkfj434das", "shortcodes": ["111122"]}
    server = mm7_server(tmp_path, sink, vasp, vasp_options=options)
    ns = "REL-6-MM7-1-4"
    try:
        status, answer, headers = raw_post(server, sample, "text/xml")
        assert status == 200, answer
        rsp = mm7.decode(answer, headers["Content-Type"])
        assert isinstance(rsp, mm7.SubmitRsp) and rsp.status_code == 2004, rsp
        assert rsp.message_id is None and "names no attachment" in (rsp.details or "")
        assert messages_received(server) == 0.0
        # A ReplaceReq whose href names nothing leaves the stored message as it was.
        first = call(
            server,
            submit(
                ns,
                [B],
                sender_address=mm7.Address("ShortCode", "111122"),
                vasp_id="skfdjslkjfdslkfj434das",
                delivery_report=False,
            ),
        )
        assert first.status_code == 1000, first
        push = sink.next()
        replace = mm7.ReplaceReq(
            transaction_id="r1",
            namespace=ns,
            vasp_id="skfdjslkjfdslkfj434das",
            message_id=first.message_id,
            content_href="cid:nothing-here",
        )
        replaced = call(server, replace)
        assert replaced.status_code == 2004 and "names no attachment" in (replaced.details or "")
        conf = fetch(server, push.pdu.headers["X-Mms-Content-Location"])
        assert bytes(conf.parts[1].data) == b"Hello from ACME"
    finally:
        server.stop()


def test_single_part_mo_message_reaches_the_vasp_with_its_body(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """An m-send-req whose body is one text/plain entity (no multipart) keeps that body in
    the DeliverReq (TS 23.140 §8.7.3: Content is the message's content)."""
    server = mm7_server(tmp_path, sink, vasp)
    try:
        request = MmsPdu(
            "m-send-req",
            "MO-single",
            "1.2",
            {"From": None, "To": [f"{SHORTCODE}/TYPE=PLMN"]},
            "text/plain",
            {"charset": "utf-8"},
            None,
            "STOP Grüße".encode(),
        )
        status, body = post_pdu(server.mm1 + "/mms", request, A)
        assert status == 200 and mms.decode(body).headers["X-Mms-Response-Status"] == "Ok"
        deliver = vasp.next().op
        assert isinstance(deliver, mm7.DeliverReq) and deliver.content is not None
        assert deliver.content.content_type == "text/plain"
        assert deliver.content.params.get("charset") == "utf-8"
        assert deliver.content.body == "STOP Grüße".encode()
    finally:
        server.stop()


def test_distribution_indicator_and_applic_ids_reach_the_handset(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """DistributionIndicator and the Applic-ID fields of a SubmitReq reach the handset in
    its m-retrieve-conf (the 1.3-only Applic fields only for a 1.3 handset), and an
    m-forward-req of a message the VASP marked not for distribution is refused
    (OMA-MMS-ENC 1.2 §6.5, TS 23.140 §8.7.1 DistributionIndicator)."""
    server = mm7_server(tmp_path, sink, vasp)
    try:
        for handset, version in ((B, "1.2"), (C, "1.3")):
            own = mms.encode(mms.decode(send_req(f"v-{handset}", [A])), version=version)
            conf = mms.decode(post_pdu(server.mm1 + "/mms", own, handset)[1])
            assert conf.headers["X-Mms-Response-Status"] == "Ok"
            assert sink.next().to == A
        rsp = call(
            server,
            submit(
                "REL-6-MM7-1-4",
                [B, C],
                delivery_report=False,
                distribution_indicator=False,
                applic_id="com.acme.game",
                reply_applic_id="com.acme.reply",
                aux_applic_info="level=3",
            ),
        )
        assert rsp.status_code == 1000, rsp
        pushes = {p.to: p for p in (sink.next(), sink.next())}
        got = {h: fetch(server, p.pdu.headers["X-Mms-Content-Location"]) for h, p in pushes.items()}
        assert got[C].mms_version == "1.3" and got[B].mms_version == "1.2"
        for conf in got.values():
            assert conf.headers["X-Mms-Distribution-Indicator"] == "No"
        assert got[C].headers["X-Mms-Applic-ID"] == "com.acme.game"
        assert got[C].headers["X-Mms-Reply-Applic-ID"] == "com.acme.reply"
        assert got[C].headers["X-Mms-Aux-Applic-Info"] == "level=3"
        assert "X-Mms-Applic-ID" not in got[B].headers
        forward = MmsPdu(
            "m-forward-req",
            "FW-1",
            "1.2",
            {
                "From": None,
                "To": [f"{A}/TYPE=PLMN"],
                "X-Mms-Content-Location": pushes[B].pdu.headers["X-Mms-Content-Location"],
            },
        )
        conf = mms.decode(post_pdu(server.mm1 + "/mms", forward, B)[1])
        assert conf.message_type == "m-forward-conf"
        assert conf.headers["X-Mms-Response-Status"] == "Error-permanent-service-denied"
    finally:
        server.stop()


def test_no_adaptation_when_the_vasp_forbids_it_or_the_content_is_drm(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """allowAdaptations="false" (stored as X-Mms-Adaptation-Allowed: No) and DRMContent=true
    keep a picture byte for byte for a handset that gets every other picture scaled down
    (TS 23.140 §8.7.1 Content@allowAdaptations, DRMContent)."""
    server = mm7_server(tmp_path, sink, vasp)
    picture = media.jpeg(800, 600)
    try:
        status, _, _ = http(
            "PUT",
            f"{server.admin}/api/subscribers/{urllib.parse.quote(B)}/capabilities",
            json.dumps({"max_image": "160x120"}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200
        served = {}
        for name, fields in (
            ("adapted", {}),
            ("not allowed", {"adaptations": False}),
            ("drm", {"drm_content": True}),
        ):
            rsp = call(
                server,
                submit(
                    "REL-6-MM7-1-4",
                    [B],
                    delivery_report=False,
                    content=content(image=picture),
                    **fields,
                ),
            )
            assert rsp.status_code == 1000, rsp
            conf = fetch(server, sink.next().pdu.headers["X-Mms-Content-Location"])
            served[name] = bytes(conf.parts[2].data)
        assert served["adapted"] != picture and len(served["adapted"]) < len(picture)
        assert served["not allowed"] == picture
        assert served["drm"] == picture
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        (2000, True),
        (2007, True),
        (3000, False),
        (3001, True),
        (3002, True),
        (4000, False),
        (4004, True),
        (4005, True),
        (4006, False),
        (4007, True),
    ],
)
def test_which_vasp_answers_end_a_request(code: int, permanent: bool) -> None:
    """Only Server Error, General service error and Service unavailable say "try again"
    (TS 23.140 §8.7 status table); every other failure is the VASP's last word."""
    assert is_permanent(code) is permanent


def mo_to_the_vasp(server: ServerProcess, tid: str) -> str:
    """A handset's message (asking for a delivery report) to the VASP's short code."""
    request = MmsPdu(
        "m-send-req",
        tid,
        "1.2",
        {"From": None, "To": [f"{SHORTCODE}/TYPE=PLMN"], "X-Mms-Delivery-Report": "Yes"},
        "application/vnd.wap.multipart.mixed",
        {},
        [Part("text/plain", {"charset": "utf-8"}, {}, b"JOIN")],
    )
    status, body = post_pdu(server.mm1 + "/mms", request, A)
    conf = mms.decode(body)
    assert status == 200 and conf.headers["X-Mms-Response-Status"] == "Ok"
    return str(conf.headers["Message-ID"])


def trace(server: ServerProcess, message_id: str) -> dict[str, Any]:
    quoted = urllib.parse.quote(message_id, safe="")
    status, body, _ = http("GET", f"{server.admin}/api/messages/{quoted}")
    assert status == 200
    result: dict[str, Any] = json.loads(body)
    return result


def test_a_vasp_refusing_a_deliver_req_rejects_the_recipient_at_once(
    tmp_path: Path, sink: SmsSink
) -> None:
    """A 4004 answer is not retried: the recipient becomes Rejected and the handset that
    asked for a delivery report gets Rejected (not Expired days later)."""
    with VaspSink(status=4004) as vasp:
        server = mm7_server(tmp_path, sink, vasp)
        try:
            message_id = mo_to_the_vasp(server, "MO-refused")
            assert isinstance(vasp.next().op, mm7.DeliverReq)
            report = sink.next()  # queued in the commit that recorded the answer
            assert report.to == A and report.pdu.message_type == "m-delivery-ind"
            assert report.pdu.headers["X-Mms-Status"] == "Rejected"
            assert report.pdu.headers["Message-ID"] == message_id
            story = trace(server, message_id)
            events = [e["event"] for e in story["events"]]
            assert events.count("mm7-deliver-failed") == 1 and "mm7-deliver-retry" not in events
            assert [r["state"] for r in story["recipients"]] == ["rejected"]
            assert vasp.requests.empty()
        finally:
            server.stop()


def test_a_vasp_unavailable_until_the_last_attempt_makes_the_recipient_unreachable(
    tmp_path: Path, sink: SmsSink
) -> None:
    """4006 Service unavailable is retried; when the attempts are used up the recipient is
    closed as Unreachable and the sender hears so, instead of Expired at expiry."""
    with VaspSink(status=4006) as vasp:
        server = mm7_server(tmp_path, sink, vasp, notify={"max_attempts": 2})
        try:
            message_id = mo_to_the_vasp(server, "MO-unavailable")
            assert isinstance(vasp.next().op, mm7.DeliverReq)
            assert isinstance(vasp.next().op, mm7.DeliverReq)  # retried once
            report = sink.next()
            assert report.to == A and report.pdu.headers["X-Mms-Status"] == "Unreachable"
            story = trace(server, message_id)
            events = [e["event"] for e in story["events"]]
            assert events.count("mm7-deliver-retry") == 1
            assert events.count("mm7-deliver-failed") == 1
            assert [r["state"] for r in story["recipients"]] == ["unreachable"]
        finally:
            server.stop()


def unqualified(op: Any) -> tuple[bytes, str]:
    """``op`` as VASP software writes it that declares no namespace at all."""
    body, ctype = mm7.encode(op, prefix=None)
    uri = mm7.NAMESPACES[op.namespace].encode()
    return body.replace(b' xmlns="' + uri + b'"', b""), ctype


def test_a_request_in_no_namespace_is_answered_in_the_one_it_meant(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """A request that declares no namespace is answered in the one its SOAPAction names,
    else the VASP's configured one, else the release its MM7Version says; Faults use the
    VASP's prefix style and echo its MM7Version (TS 23.140 §8.7)."""
    options = {"namespace": "REL-6-MM7-1-0", "prefix": "m", "unqualified_children": True}
    server = mm7_server(tmp_path, sink, vasp, vasp_options=options)
    rel5 = mm7.NAMESPACES["REL-5-MM7-1-2"].encode()

    def answer(body: bytes, ctype: str, soap_action: str | None = None) -> Any:
        token = base64.b64encode(f"acme:{PASSWORD}".encode()).decode()
        headers = {"Content-Type": ctype, "Authorization": f"Basic {token}"}
        if soap_action is not None:
            headers["SOAPAction"] = soap_action
        status, data, got = http("POST", server.mm7 + "/mm7", body, headers)
        return status, data, mm7.decode(data, got["Content-Type"])

    try:
        body, ctype = unqualified(submit("REL-5-MM7-1-2", [B], delivery_report=False))
        status, data, rsp = answer(body, ctype, f'"{rel5.decode()}"')
        assert status == 200 and isinstance(rsp, mm7.SubmitRsp), data
        assert (rsp.status_code, rsp.namespace, rsp.mm7_version) == (1000, "REL-5-MM7-1-2", "5.3.0")
        assert rel5 in data
        # No SOAPAction: MM7Version 5.3.0 cannot be the configured REL-6 schema.
        status, data, rsp = answer(body, ctype)
        assert (rsp.status_code, rsp.namespace) == (1000, "REL-5-MM7-1-3"), data
        # A REL-6 MM7Version: the VASP's configured REL-6 schema.
        body6, ctype6 = unqualified(submit("REL-6-MM7-1-4", [B], delivery_report=False))
        status, data, rsp = answer(body6, ctype6)
        assert (rsp.status_code, rsp.namespace, rsp.mm7_version) == (1000, "REL-6-MM7-1-0", "6.8.0")
        # A Fault (no Recipients: 4004) in the caller's namespace, the VASP's prefix style,
        # and the caller's MM7Version.
        start, end = body.index(b"<Recipients>"), body.index(b"</Recipients>") + 13
        status, data, fault = answer(body[:start] + body[end:], ctype, rel5.decode())
        assert status == 500 and isinstance(fault, mm7.Fault), data
        assert fault.namespace == "REL-5-MM7-1-2" and fault.detail is not None
        assert fault.detail.status_code == 4004
        assert b"<m:RSErrorRsp " in data and b"<MM7Version>5.3.0</MM7Version>" in data
    finally:
        server.stop()


def test_replace_with_read_reply_makes_read_reports_reach_the_vasp(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """A ReplaceReq's ReadReply takes effect, not only in the header the handset sees
    (TS 23.140 §8.7.6): the recipient's m-read-rec-ind becomes a ReadReplyReq."""
    server = mm7_server(tmp_path, sink, vasp)
    ns = "REL-6-MM7-1-4"
    try:
        rsp = call(server, submit(ns, [B], delivery_report=False, read_reply=None))
        assert rsp.status_code == 1000, rsp
        push = sink.next()
        replace = mm7.ReplaceReq(
            transaction_id="r-1",
            namespace=ns,
            vasp_id="acme-id",
            message_id=rsp.message_id,
            read_reply=True,
        )
        assert call(server, replace).status_code == 1000
        conf = fetch(server, push.pdu.headers["X-Mms-Content-Location"])
        assert conf.headers["X-Mms-Read-Report"] == "Yes"
        read = MmsPdu(
            "m-read-rec-ind",
            None,
            "1.2",
            {
                "Message-ID": rsp.message_id,
                "To": [f"{SHORTCODE}/TYPE=PLMN"],
                "X-Mms-Read-Status": "Read",
            },
        )
        assert post_pdu(server.mm1 + "/mms", read, B)[0] == 204
        reply = vasp.next()
        assert isinstance(reply.op, mm7.ReadReplyReq)
        assert (reply.op.message_id, reply.op.mm_status) == (rsp.message_id, "Read")
    finally:
        server.stop()


def test_replace_with_an_earlier_delivery_time_notifies_at_that_time(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """A message held back for a day by its EarliestDeliveryTime is notified as soon as
    a ReplaceReq's new EarliestDeliveryTime allows (TS 23.140 §8.7.6)."""
    server = mm7_server(tmp_path, sink, vasp)
    ns = "REL-6-MM7-1-4"
    try:
        later = submit(ns, [B], delivery_report=False, earliest_delivery_time=timedelta(days=1))
        rsp = call(server, later)
        assert rsp.status_code == 1000, rsp
        replace = mm7.ReplaceReq(
            transaction_id="r-2",
            namespace=ns,
            vasp_id="acme-id",
            message_id=rsp.message_id,
            earliest_delivery_time=timedelta(0),
        )
        assert call(server, replace).status_code == 1000
        push = sink.next()  # due now, not tomorrow
        assert push.to == B
        conf = fetch(server, push.pdu.headers["X-Mms-Content-Location"])
        assert conf.headers["Message-ID"] == rsp.message_id
        story = trace(server, rsp.message_id)
        assert story["message"]["earliest_delivery_at"] <= time.time()
    finally:
        server.stop()


def test_an_mo_message_to_a_vasp_without_deliver_url_is_unreachable_not_rejected(
    tmp_path: Path, sink: SmsSink, vasp: VaspSink
) -> None:
    """The DeliverReq never reaches a VASP that has no deliver_url: our configuration,
    not the VASP's refusal, so the sender hears "Unreachable"."""
    server = mm7_server(tmp_path, sink, vasp)
    try:
        request = MmsPdu(
            "m-send-req",
            "MO-2",
            "1.2",
            {"From": None, "To": [f"{OTHER_SHORTCODE}/TYPE=PLMN"], "X-Mms-Delivery-Report": "Yes"},
            "text/plain",
            {"charset": "utf-8"},
            None,
            b"HELLO",
        )
        status, body = post_pdu(server.mm1 + "/mms", request, A)
        conf = mms.decode(body)
        assert status == 200 and conf.headers["X-Mms-Response-Status"] == "Ok"
        report = sink.next()
        assert report.to == A and report.pdu.headers["X-Mms-Status"] == "Unreachable"
        story = trace(server, str(conf.headers["Message-ID"]))
        assert [r["state"] for r in story["recipients"]] == ["unreachable"]
    finally:
        server.stop()
