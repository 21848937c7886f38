"""MM1 end to end: a real `mmsc serve`, handsets over HTTP, an SMS gateway sink for the pushes."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from protocol import mms
from protocol.mms import MmsPdu
from protocol.wsp import Part
from tests import media, tshark
from tests.harness import Push, ServerProcess, SmsSink, http, start_server

A, B, C = "+15550000001", "+15550000002", "+15550000003"
MMS_TYPE = {"Content-Type": "application/vnd.wap.mms-message"}
SMIL = b'<smil><body><par dur="5s"><img src="cid:img"/><text src="cid:txt"/></par></body></smil>'


def send_req(
    tid: str,
    to: list[str],
    *,
    report: bool = True,
    expiry: int | None = None,
    subject: str = "Grüße",
) -> bytes:
    headers: dict[str, object] = {
        "From": None,
        "To": [f"{n}/TYPE=PLMN" for n in to],
        "Subject": subject,
        "X-Mms-Message-Class": "Personal",
        "X-Mms-Delivery-Report": "Yes" if report else "No",
        "X-Mms-Read-Report": "Yes" if report else "No",
    }
    if expiry is not None:
        headers["X-Mms-Expiry"] = {"relative": expiry}
    pdu = MmsPdu(
        "m-send-req",
        tid,
        "1.2",
        headers,
        "application/vnd.wap.multipart.related",
        {"start": "<smil>", "type": "application/smil"},
        [
            Part("application/smil", {"charset": "utf-8"}, {"Content-ID": "<smil>"}, SMIL),
            Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<txt>"}, "Hallo 👋".encode()),
            Part("image/jpeg", {"name": "a.jpg"}, {"Content-ID": "<img>"}, media.jpeg()),
        ],
    )
    return mms.encode(pdu)


def post_pdu(url: str, pdu: MmsPdu | bytes, msisdn: str | None = None) -> tuple[int, bytes]:
    body = pdu if isinstance(pdu, bytes) else mms.encode(pdu, check_mandatory=False)
    headers = dict(MMS_TYPE)
    if msisdn:
        headers["X-MSISDN"] = msisdn
    status, data, _ = http("POST", url, body, headers)
    return status, data


def fetch_url(server_mm1: str, location: str, suffix: str = "") -> str:
    """The real fetch URL for a Content-Location whose host is the configured public one."""
    path = urllib.parse.urlsplit(location).path
    return server_mm1 + path + suffix


# Mandatory fields of what the server sends, as AOSP's PduParser.checkMandatoryHeader
# and OMA-MMS-ENC 1.2/1.3 §6 tables ask for them (feature-matrix §4.2-§4.3): a handset
# drops a PDU that lacks one. Type, transaction id, version and Content-Type are
# attributes of MmsPdu (None when absent), everything else is in ``headers``.


def _mandatory(pdu: MmsPdu, mtype: str, *names: str) -> MmsPdu:
    assert pdu.message_type == mtype, (pdu.message_type, mtype)
    assert pdu.mms_version in ("1.0", "1.1", "1.2", "1.3"), (mtype, pdu.mms_version)
    missing = [n for n in names if pdu.headers.get(n) in (None, "", [])]
    assert not missing, (mtype, missing, pdu.headers)
    if "Date" in names:  # a Long-integer of seconds, and a current one
        date = pdu.headers["Date"]
        assert isinstance(date, int) and abs(date - time.time()) < 600, (mtype, date)
    return pdu


def retrieve_conf(body: bytes, *, ok: bool = True) -> MmsPdu:
    """Decode a served m-retrieve-conf and check its mandatory fields: a successful one
    answers a fetch the handset acknowledges (Transaction-ID), with Message-ID and From."""
    names = ("Message-ID", "From") if ok else ("X-Mms-Retrieve-Status",)
    conf = _mandatory(mms.decode(body), "m-retrieve-conf", "Date", *names)
    assert conf.content_type, conf
    if ok:
        assert conf.transaction_id, conf
        assert conf.headers.get("X-Mms-Retrieve-Status") == "Ok", conf.headers
    else:
        assert conf.headers["X-Mms-Retrieve-Status"] != "Ok", conf.headers
    return conf


def delivery_ind(push: Push) -> MmsPdu:
    return _mandatory(push.pdu, "m-delivery-ind", "Message-ID", "To", "Date", "X-Mms-Status")


def read_orig_ind(push: Push) -> MmsPdu:
    names = ("Message-ID", "To", "From", "Date", "X-Mms-Read-Status")
    return _mandatory(push.pdu, "m-read-orig-ind", *names)


def notification_ind(push: Push) -> MmsPdu:
    """A pushed m-notification-ind: AOSP's mandatory set, and Content-Location the last
    field both in the decoded (wire-ordered) headers and in the bytes of the push."""
    names = ("X-Mms-Message-Class", "X-Mms-Message-Size", "X-Mms-Expiry")
    note = _mandatory(push.pdu, "m-notification-ind", *names, "X-Mms-Content-Location")
    assert note.transaction_id, note
    size, expiry = note.headers["X-Mms-Message-Size"], note.headers["X-Mms-Expiry"]
    assert isinstance(size, int) and size > 0, size
    assert isinstance(expiry, dict) and next(iter(expiry.values())) > 0, expiry
    location = note.headers["X-Mms-Content-Location"]
    assert list(note.headers)[-1] == "X-Mms-Content-Location", list(note.headers)
    assert push.raw.endswith(b"\x83" + location.encode() + b"\x00"), push.raw[-80:]
    return note


@pytest.fixture
def sink():
    with SmsSink() as s:
        yield s


@pytest.mark.parametrize("inline_payload_max", [0, 1_000_000], ids=["files", "inline"])
def test_send_notify_fetch_and_reports(
    tmp_path: Path, sink: SmsSink, inline_payload_max: int
) -> None:
    server = start_server(
        tmp_path,
        {
            "storage": {"inline_payload_max": inline_payload_max},
            "mm1": {"public_url": "http://mmsc.test/mms"},
            "notify": {"backend": "kannel", "sendsms_url": sink.url},
        },
    )
    try:
        request = send_req("T1", [B, C])
        status, body = post_pdu(server.mm1 + "/mms", request, A)
        assert status == 200
        conf = mms.decode(body)
        assert conf.message_type == "m-send-conf" and conf.transaction_id == "T1"
        assert conf.headers["X-Mms-Response-Status"] == "Ok"
        message_id = conf.headers["Message-ID"]
        body_files = [p for p in (tmp_path / "payloads").rglob("*") if p.is_file()]
        assert [p.name for p in body_files] == ([] if inline_payload_max else [message_id])

        notes = {p.to: p for p in (sink.next(), sink.next())}
        assert set(notes) == {B, C}
        for push in notes.values():
            n = notification_ind(push)
            assert n.headers["From"] == f"{A}/TYPE=PLMN"
            assert n.headers["X-Mms-Message-Size"] == len(request)
            assert n.headers["X-Mms-Content-Location"].startswith("http://mmsc.test/mms/")
        # Wireshark reads the same push the same way.
        decoded = tshark.decode("wsppush", notes[B].raw)
        assert decoded.ok, decoded.result
        assert decoded.fields("mmse.content_location") == [
            notes[B].pdu.headers["X-Mms-Content-Location"]
        ]

        # B fetches, then acknowledges: A gets a delivery report Retrieved.
        location_b = notes[B].pdu.headers["X-Mms-Content-Location"]
        phone = {"User-Agent": "TestPhone/1.0", "x-wap-profile": '"http://uap.test/p.rdf"'}
        status, body, headers = http("GET", fetch_url(server.mm1, location_b), headers=phone)
        assert status == 200 and headers["Content-Type"] == "application/vnd.wap.mms-message"
        retrieved = retrieve_conf(body)
        assert retrieved.headers["Message-ID"] == message_id
        assert retrieved.headers["From"] == f"{A}/TYPE=PLMN"
        assert retrieved.headers["To"] == [f"{B}/TYPE=PLMN", f"{C}/TYPE=PLMN"]
        assert retrieved.headers["Subject"] == "Grüße"
        original = mms.decode(request)
        assert [bytes(p.data) for p in retrieved.parts] == [bytes(p.data) for p in original.parts]
        assert retrieved.content_type_params == original.content_type_params

        ack = MmsPdu("m-acknowledge-ind", retrieved.transaction_id, "1.2", {})
        assert post_pdu(server.mm1 + "/mms", ack, B)[0] == 204
        report = sink.next()
        assert report.to == A and delivery_ind(report).headers["X-Mms-Status"] == "Retrieved"
        assert report.pdu.headers["Message-ID"] == message_id
        assert report.pdu.headers["To"] == [f"{B}/TYPE=PLMN"]

        # B's read report becomes an m-read-orig-ind to A.
        read = MmsPdu(
            "m-read-rec-ind",
            None,
            "1.2",
            {
                "Message-ID": message_id,
                "To": [f"{A}/TYPE=PLMN"],
                "From": None,
                "X-Mms-Read-Status": "Read",
            },
        )
        assert post_pdu(server.mm1 + "/mms", read, B)[0] == 204
        orig = sink.next()
        assert orig.to == A and read_orig_ind(orig).headers["From"] == f"{B}/TYPE=PLMN"
        assert orig.pdu.headers["Message-ID"] == message_id
        assert orig.pdu.headers["To"] == [f"{A}/TYPE=PLMN"]
        assert orig.pdu.headers["X-Mms-Read-Status"] == "Read"

        # C defers (posting to the fetch URL, as some carrier configs do), then fetches
        # with the transaction id appended to the URL and acknowledges.
        location_c = notes[C].pdu.headers["X-Mms-Content-Location"]
        tid_c = notes[C].pdu.transaction_id
        defer = MmsPdu("m-notifyresp-ind", tid_c, "1.2", {"X-Mms-Status": "Deferred"})
        assert post_pdu(fetch_url(server.mm1, location_c), defer, C)[0] == 204
        deferred = sink.next()
        assert deferred.to == A and delivery_ind(deferred).headers["X-Mms-Status"] == "Deferred"
        status, body, _ = http("GET", fetch_url(server.mm1, location_c, tid_c))
        late = retrieve_conf(body)
        ack = MmsPdu("m-acknowledge-ind", late.transaction_id, "1.2", {})
        assert post_pdu(server.mm1 + "/mms", ack, C)[0] == 204
        final = sink.next()
        assert final.to == A and delivery_ind(final).headers["X-Mms-Status"] == "Retrieved"
        assert final.pdu.headers["To"] == [f"{C}/TYPE=PLMN"]

        # The operator's view: every recipient retrieved, every step an event.
        status, body, _ = http("GET", f"{server.admin}/api/messages/{message_id}")
        trace = json.loads(body)
        assert status == 200
        assert trace["message"]["originator"] == A
        assert sorted((r["address"], r["state"]) for r in trace["recipients"]) == [
            (B, "retrieved"),
            (C, "retrieved"),
        ]
        kinds = [e["event"] for e in trace["events"]]
        # "push-sent", not "notified": a handset may fetch and acknowledge before the
        # push's outcome is recorded, and a retrieved recipient is not made Notified.
        for expected in (
            "accepted",
            "notification-queued",
            "push-sent",
            "retrieved",
            "delivery-report-queued",
            "read-report",
            "deferred",
        ):
            assert expected in kinds, kinds
        assert all("token" not in r for r in trace["recipients"])  # fetch secrets stay secret

        status, body, _ = http("GET", server.admin + "/api/subscribers/" + urllib.parse.quote(B))
        facts = json.loads(body)
        assert status == 200
        assert (facts["user_agent"], facts["uaprof_url"]) == (
            "TestPhone/1.0",
            "http://uap.test/p.rdf",
        )

        status, body, _ = http("GET", server.admin + "/metrics")
        text = body.decode()
        assert 'mmsc_messages_received_total{interface="mm1"} 1.0' in text
        assert 'mmsc_messages_delivered_total{interface="mm1"} 2.0' in text
        assert 'mmsc_notifications_total{kind="notification",result="sent"} 2.0' in text
        assert 'mmsc_notifications_total{kind="delivery-ind",result="sent"}' in text
        assert "mmsc_delivery_latency_seconds_count 2.0" in text
        assert "mmsc_notification_latency_seconds_count 2.0" in text
        # Every write went through a commit batch, and each batch reported its stages
        # (on SQLite with synchronous=FULL, the log's syncfs round too; a barrier only
        # where a body is a file).
        samples = {
            name: float(value)
            for name, _, value in (line.rpartition(" ") for line in text.splitlines())
            if name.startswith(("mmsc_commit_stage_seconds_count", "mmsc_commit_batch_units"))
        }
        batches = samples["mmsc_commit_batch_units_count"]
        assert batches >= 1
        assert samples["mmsc_commit_batch_units_sum"] >= batches
        stages = ["queue", "transaction", "log_sync"]
        if not inline_payload_max:  # bodies as files: made durable by the batch's barrier
            stages.append("barrier")
        for stage in stages:
            assert samples[f'mmsc_commit_stage_seconds_count{{stage="{stage}"}}'] >= 1, stage
        assert samples['mmsc_commit_stage_seconds_count{stage="queue"}'] == batches
        status, _body, _ = http("GET", server.admin + "/readyz")
        assert status == 200
    finally:
        assert server.stop() == 0, "".join(server.log)
    # Every event is a log line of its own, with time, level and logger (the events of
    # one commit are one record: mmsc/log_output.py), all written by the exit.
    assert server.drained.wait(30)
    events = [line for line in server.log if " mmsc.events " in line]
    assert all(
        re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO mmsc\.events message=", line)
        for line in events
    ), events
    for event in ("accepted", "recipient-added", "notification-queued", "notified", "retrieved"):
        assert any(f" event={event} " in line for line in events), (event, events)
    per_recipient = Counter(
        re.search(r"recipient=(\S+)", line).group(1)  # type: ignore[union-attr]
        for line in events
        if " event=recipient-added " in line
    )
    assert len(per_recipient) == 2 and set(per_recipient.values()) == {1}


def test_unfetched_message_expires_with_a_report(tmp_path: Path, sink: SmsSink) -> None:
    server = start_server(
        tmp_path,
        {"mm1": {"min_expiry": 1}, "notify": {"backend": "kannel", "sendsms_url": sink.url}},
    )
    try:
        _status, body = post_pdu(server.mm1 + "/mms", send_req("T9", [B], expiry=1), A)
        message_id = mms.decode(body).headers["Message-ID"]
        note = sink.next()
        assert note.to == B
        location = notification_ind(note).headers["X-Mms-Content-Location"]
        expired = sink.next()
        assert expired.to == A and delivery_ind(expired).headers["X-Mms-Status"] == "Expired"
        assert expired.pdu.headers["Message-ID"] == message_id
        _s, body, _h = http("GET", fetch_url(server.mm1, location))
        gone = retrieve_conf(body, ok=False)
        assert gone.headers["X-Mms-Retrieve-Status"] == "Error-permanent-message-not-found"
        trace = json.loads(http("GET", f"{server.admin}/api/messages/{message_id}")[1])
        assert [r["state"] for r in trace["recipients"]] == ["expired"]
    finally:
        server.stop()


def test_a_fetch_stops_renotification(tmp_path: Path, sink: SmsSink) -> None:
    """B fetches but its m-notifyresp-ind is lost: B is not notified again, while C, who
    did not fetch, is (C is the clock: both were due again in the same scheduler pass).
    The fetch is an event, not a delivery, and B can fetch again."""
    server = start_server(
        tmp_path,
        {
            "mm1": {"public_url": "http://mmsc.test/mms"},
            "notify": {"backend": "kannel", "sendsms_url": sink.url},
            "scheduler": {"notify_backoff": 2, "notify_max_attempts": 2},
        },
    )
    try:
        _status, body = post_pdu(server.mm1 + "/mms", send_req("R1", [B, C]), A)
        message_id = mms.decode(body).headers["Message-ID"]
        notes = {p.to: p for p in (sink.next(), sink.next())}
        url_b = fetch_url(server.mm1, notification_ind(notes[B]).headers["X-Mms-Content-Location"])
        notification_ind(notes[C])  # C's first, checked like B's
        first = retrieve_conf(http("GET", url_b)[1])

        again = sink.next()  # C's second notification, 2 s after the first
        assert (
            again.to == C
            and notification_ind(again).headers["X-Mms-Content-Location"]
            == (notes[C].pdu.headers["X-Mms-Content-Location"])
        )
        trace = json.loads(http("GET", f"{server.admin}/api/messages/{message_id}")[1])
        rid = {r["address"]: r["id"] for r in trace["recipients"]}
        queued = sorted(
            (e["recipient_id"], e["detail"])
            for e in trace["events"]
            if e["event"] == "notification-queued"
        )
        # B's second attempt would have been queued in the pass that queued C's.
        assert queued == sorted(
            [(rid[B], "attempt 1"), (rid[C], "attempt 1"), (rid[C], "attempt 2")]
        )
        fetched = [e for e in trace["events"] if e["event"] == "fetched"]
        assert [(e["recipient_id"], e["state"]) for e in fetched] == [(rid[B], None)]
        # Not a delivery: no Retrieved and no report until the handset says so.
        states = {r["address"]: r["state"] for r in trace["recipients"]}
        assert states == {B: "notified", C: "notified"}
        kinds = {e["event"] for e in trace["events"]}
        assert not kinds & {"retrieved", "delivery-report-queued"}, kinds
        assert sink.pushes.empty()

        later = retrieve_conf(http("GET", url_b)[1])
        assert [bytes(p.data) for p in later.parts] == [bytes(p.data) for p in first.parts]
        trace = json.loads(http("GET", f"{server.admin}/api/messages/{message_id}")[1])
        assert [e["event"] for e in trace["events"]].count("fetched") == 1  # the first only
    finally:
        server.stop()


def wait_for_event(server: ServerProcess, message_id: str, event: str) -> dict[str, Any]:
    """The message's trace once it holds ``event`` (the scheduler works in its own time)."""
    deadline = time.monotonic() + 20
    while True:
        trace: dict[str, Any] = json.loads(
            http("GET", f"{server.admin}/api/messages/{message_id}")[1]
        )
        if any(e["event"] == event for e in trace["events"]):
            return trace
        assert time.monotonic() < deadline, f"no {event} event: {trace['events']}"
        time.sleep(0.05)


def fetch_token(workdir: Path, message_id: str) -> str:
    """A recipient's fetch token, read from the server's database (no push carried it)."""
    with sqlite3.connect(workdir / "mmsc.db") as db:
        (token,) = db.execute(
            "SELECT token FROM recipients WHERE message_id = ?", (message_id,)
        ).fetchone()
    return str(token)


def metrics_once(server: ServerProcess, sample: str, value: float) -> dict[str, float]:
    """Every mmsc_ sample, once ``sample`` reads ``value``. Counts follow the commit's
    log sync, so a trace (read from the database) may show an event a moment before
    its count."""
    deadline = time.monotonic() + 20
    while True:
        text = http("GET", server.admin + "/metrics")[1].decode()
        samples = {
            name: float(number)
            for name, _, number in (line.rpartition(" ") for line in text.splitlines())
            if name.startswith("mmsc_")
        }
        if samples.get(sample) == value:
            return samples
        assert time.monotonic() < deadline, f"{sample}: {samples.get(sample)}, not {value}"
        time.sleep(0.05)


def test_without_a_notification_backend_pushes_are_dropped_not_sent(tmp_path: Path) -> None:
    """notify.backend "none" (the default): the push is recorded and counted as dropped,
    not sent; the recipient stays pending, not notified, and can still fetch."""
    server = start_server(tmp_path, {"mm1": {"public_url": "http://mmsc.test/mms"}})
    try:
        _status, body = post_pdu(server.mm1 + "/mms", send_req("N1", [B], report=False), A)
        message_id = mms.decode(body).headers["Message-ID"]
        trace = wait_for_event(server, message_id, "push-dropped")
        (dropped,) = [e for e in trace["events"] if e["event"] == "push-dropped"]
        assert dropped["detail"] == (
            f"notification to {B}: no notification backend (notify.backend is none)"
        )
        assert [r["state"] for r in trace["recipients"]] == ["pending"]
        assert "notified" not in [e["event"] for e in trace["events"]]
        counts = metrics_once(
            server, 'mmsc_notifications_total{kind="notification",result="dropped"}', 1.0
        )
        assert 'mmsc_notifications_total{kind="notification",result="sent"}' not in counts
        assert counts["mmsc_notification_latency_seconds_count"] == 0.0
        assert counts['mmsc_events_total{event="push-dropped"}'] == 1.0

        location = f"http://mmsc.test/mms/{fetch_token(tmp_path, message_id)}"
        got = retrieve_conf(http("GET", fetch_url(server.mm1, location))[1])
        assert got.headers["Message-ID"] == message_id
    finally:
        assert server.stop() == 0, "".join(server.log)


def test_a_fetch_while_the_sms_gateway_is_down_drops_the_queued_push_with_an_event(
    tmp_path: Path,
) -> None:
    """The gateway refuses (503), so the notification waits in the outbox for its retry;
    the handset, told some other way, fetches meanwhile: the push is dropped, and the
    trace and mmsc_events_total say so, rather than leave it queued with no story."""
    with SmsSink(status=503) as down:
        server = start_server(
            tmp_path,
            {
                "mm1": {"public_url": "http://mmsc.test/mms"},
                "notify": {"backend": "kannel", "sendsms_url": down.url, "retry_initial": 600},
            },
        )
        try:
            _status, body = post_pdu(server.mm1 + "/mms", send_req("D1", [B], report=False), A)
            message_id = mms.decode(body).headers["Message-ID"]
            wait_for_event(server, message_id, "push-retry")
            location = f"http://mmsc.test/mms/{fetch_token(tmp_path, message_id)}"
            retrieve_conf(http("GET", fetch_url(server.mm1, location))[1])

            trace = wait_for_event(server, message_id, "push-dropped")
            pushes = [
                (e["event"], e["detail"]) for e in trace["events"] if e["event"].startswith("push-")
            ]
            assert pushes == [
                ("push-retry", f"notification to {B}: segment 1/1: HTTP 503 refused"),
                ("push-dropped", f"notification to {B}: recipient fetched the message"),
            ]
            metrics_once(server, 'mmsc_events_total{event="push-dropped"}', 1.0)
        finally:
            assert server.stop() == 0, "".join(server.log)


def test_bad_requests_get_protocol_answers(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"mm1": {"max_message_size": 4000}})
    url = server.mm1 + "/mms"
    try:
        # No trusted MSISDN header: the sender cannot be established.
        status, body = post_pdu(url, send_req("N1", [B]))
        assert mms.decode(body).headers["X-Mms-Response-Status"] == (
            "Error-permanent-sending-address-unresolved"
        )
        # Too big.
        big = send_req("N2", [B], subject="x" * 5000)
        status, body = post_pdu(url, big, A)
        conf = mms.decode(body)
        assert conf.transaction_id == "N2"
        assert conf.headers["X-Mms-Response-Status"] == "Error-permanent-content-not-accepted"
        # Corrupt after a readable transaction id.
        status, body = post_pdu(url, send_req("N3", [B])[:60], A)
        conf = mms.decode(body)
        assert (status, conf.transaction_id) == (200, "N3")
        assert conf.headers["X-Mms-Response-Status"] == "Error-permanent-message-format-corrupt"
        # The same from a 1.0 handset: the 1.0 word for it (0x83), not the 1.1 one.
        old = bytearray(send_req("N5", [B])[:60])
        assert old[2:6] == b"\x98N5\x00" and old[6] == 0x8D
        old[7] = 0x90  # X-Mms-MMS-Version 1.0
        conf = mms.decode(post_pdu(url, bytes(old), A)[1])
        assert (conf.transaction_id, conf.mms_version) == ("N5", "1.0")
        assert conf.headers["X-Mms-Response-Status"] == "Error-message-format-corrupt"
        # Garbage: no transaction id to answer to.
        status, _body = post_pdu(url, b"\x00\x01garbage", A)
        assert status == 400
        # A PDU type we do not serve gets its own conf with a refusal.
        view = MmsPdu("m-mbox-view-req", "N4", "1.2", {})
        conf = mms.decode(post_pdu(url, view, A)[1])
        assert conf.message_type == "m-mbox-view-conf"
        assert conf.headers["X-Mms-Response-Status"] == "Error-permanent-service-denied"
        # Unknown fetch URL: m-retrieve-conf with not-found, HTTP 200.
        for tail in ("a" * 24, "nope"):  # a token we never issued; no token at all
            status, body, _ = http("GET", server.mm1 + "/mms/" + tail)
            assert status == 200
            assert retrieve_conf(body, ok=False).headers["X-Mms-Retrieve-Status"] == (
                "Error-permanent-message-not-found"
            )
        assert http("PUT", url, b"x")[0] == 405
        # None of that stored anything.
        status, body, _ = http("GET", server.admin + "/metrics")
        assert 'mmsc_messages_received_total{interface="mm1"}' not in body.decode()
        assert not list((tmp_path / "payloads").rglob("*")) or all(
            p.is_dir() for p in (tmp_path / "payloads").rglob("*")
        )
    finally:
        server.stop()


def test_forward_without_fetching(tmp_path: Path, sink: SmsSink) -> None:
    """B forwards A's message to C (m-forward-req): C gets it with Previously-Sent-By A,
    A learns 'Forwarded', and nobody but B may forward B's copy."""
    server = start_server(
        tmp_path,
        {
            "mm1": {"public_url": "http://mmsc.test/mms"},
            "notify": {"backend": "kannel", "sendsms_url": sink.url},
        },
    )
    try:
        request = send_req("F1", [B])
        first_id = mms.decode(post_pdu(server.mm1 + "/mms", request, A)[1]).headers["Message-ID"]
        location = notification_ind(sink.next()).headers["X-Mms-Content-Location"]
        fwd = MmsPdu(
            "m-forward-req",
            "F2",
            "1.2",
            {"From": None, "To": [f"{C}/TYPE=PLMN"], "X-Mms-Content-Location": location},
        )
        # C is not a recipient of A's message: refused.
        conf = mms.decode(post_pdu(server.mm1 + "/mms", fwd, C)[1])
        assert conf.message_type == "m-forward-conf"
        assert conf.headers["X-Mms-Response-Status"] == "Error-permanent-service-denied"
        conf = mms.decode(post_pdu(server.mm1 + "/mms", fwd, B)[1])
        assert conf.message_type == "m-forward-conf" and conf.transaction_id == "F2"
        assert conf.headers["X-Mms-Response-Status"] == "Ok"
        pushes = {(p.to, p.pdu.message_type): p for p in (sink.next(), sink.next())}
        report = delivery_ind(pushes[(A, "m-delivery-ind")])
        assert report.headers["X-Mms-Status"] == "Forwarded"
        assert report.headers["Message-ID"] == first_id
        note_c = notification_ind(pushes[(C, "m-notification-ind")])
        assert note_c.headers["From"] == f"{B}/TYPE=PLMN"
        _s, body, _h = http("GET", fetch_url(server.mm1, note_c.headers["X-Mms-Content-Location"]))
        got = retrieve_conf(body)
        assert got.headers["From"] == f"{B}/TYPE=PLMN"
        assert got.headers["X-Mms-Previously-Sent-By"][0]["address"] == f"{A}/TYPE=PLMN"
        assert got.headers["Subject"] == "Grüße"
        original = mms.decode(request)
        assert [bytes(p.data) for p in got.parts] == [bytes(p.data) for p in original.parts]
        trace = json.loads(http("GET", f"{server.admin}/api/messages/{first_id}")[1])
        assert [r["state"] for r in trace["recipients"]] == ["forwarded"]
        # A copy its recipient rejected is no longer theirs to forward.
        post_pdu(server.mm1 + "/mms", send_req("F3", [C], report=False), A)
        note = notification_ind(sink.next())
        rejected = MmsPdu(
            "m-notifyresp-ind", note.transaction_id, "1.2", {"X-Mms-Status": "Rejected"}
        )
        assert post_pdu(server.mm1 + "/mms", rejected, C)[0] == 204
        again = MmsPdu(
            "m-forward-req",
            "F4",
            "1.2",
            {
                "From": None,
                "To": [f"{B}/TYPE=PLMN"],
                "X-Mms-Content-Location": note.headers["X-Mms-Content-Location"],
            },
        )
        conf = mms.decode(post_pdu(server.mm1 + "/mms", again, C)[1])
        assert conf.headers["X-Mms-Response-Status"] == "Error-permanent-message-not-found"
    finally:
        server.stop()


def test_mutated_pdus_never_crash_or_half_store(tmp_path: Path) -> None:
    """Random damage to real m-send-reqs: every answer is a protocol answer (never 5xx),
    and exactly the messages answered Ok are stored, each with its body."""
    import random

    server = start_server(tmp_path, {})
    rng = random.Random(20261126)
    base = send_req("M", [B, C])
    oks = 0
    try:
        for i in range(150):
            data = bytearray(base)
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(data))
                action = rng.choice(["flip", "cut", "insert"])
                if action == "flip":
                    data[pos] = rng.randrange(256)
                elif action == "cut":
                    del data[pos:]
                    if not data:
                        data = bytearray(b"\x8c")
                else:
                    data[pos:pos] = rng.randbytes(rng.randint(1, 8))
            status, body = post_pdu(server.mm1 + "/mms", bytes(data), A)
            assert status in (200, 204, 400), (i, status, body[:200])
            if status == 200:
                answer = mms.decode(body)
                assert answer.message_type.endswith("-conf")
                if answer.headers.get("X-Mms-Response-Status") == "Ok":
                    oks += 1
        text = http("GET", server.admin + "/metrics")[1].decode()
        received = 0.0
        for line in text.splitlines():
            if line.startswith('mmsc_messages_received_total{interface="mm1"}'):
                received = float(line.split()[-1])
        assert received == oks
        assert 0 < oks < 150  # the damage both spared and broke messages
        stored = [p for p in (tmp_path / "payloads").rglob("*") if p.is_file()]
        assert len(stored) == oks
        assert not [p for p in stored if p.name.endswith(".tmp")]
    finally:
        assert server.stop() == 0


def test_acknowledge_posted_to_the_fetch_url(tmp_path: Path, sink: SmsSink) -> None:
    """Carrier configs with enabledNotifyWapMMSC POST the m-acknowledge-ind to the
    Content-Location rather than to the MMSC URL (feature-matrix §4.8): it is accepted
    and makes the recipient Retrieved, and the sender gets its report only if it asked."""
    server = start_server(
        tmp_path,
        {
            "mm1": {"public_url": "http://mmsc.test/mms"},
            "notify": {"backend": "kannel", "sendsms_url": sink.url},
        },
    )
    try:
        ids = {}
        for subject, report in (("wants", True), ("quiet", False)):
            request = send_req(subject, [B], report=report, subject=subject)
            conf = mms.decode(post_pdu(server.mm1 + "/mms", request, A)[1])
            ids[subject] = conf.headers["Message-ID"]

        def trace(message_id: str) -> dict[str, Any]:
            return json.loads(http("GET", f"{server.admin}/api/messages/{message_id}")[1])

        notes = [notification_ind(sink.next()) for _ in ids]
        assert sorted(n.headers["Subject"] for n in notes) == ["quiet", "wants"]
        for note in notes:
            message_id = ids[note.headers["Subject"]]
            url = fetch_url(server.mm1, note.headers["X-Mms-Content-Location"])
            got = retrieve_conf(http("GET", url)[1])
            assert got.headers["Message-ID"] == message_id
            recipients = trace(message_id)["recipients"]
            assert [r["state"] for r in recipients] == ["notified"]  # a fetch is no delivery
            ack = MmsPdu("m-acknowledge-ind", got.transaction_id, "1.2", {})
            assert post_pdu(url, ack, B)[0] == 204
            recipients = trace(message_id)["recipients"]  # the 204 follows the commit
            assert [r["state"] for r in recipients] == ["retrieved"]
        report = sink.next()
        assert report.to == A and delivery_ind(report).headers["X-Mms-Status"] == "Retrieved"
        assert report.pdu.headers["Message-ID"] == ids["wants"]
        assert report.pdu.headers["To"] == [f"{B}/TYPE=PLMN"]
        for subject, reports in (("wants", 1), ("quiet", 0)):
            kinds = [(e["event"], e["detail"]) for e in trace(ids[subject])["events"]]
            assert ("retrieved", "acknowledge") in kinds, kinds
            assert [k for k, _ in kinds].count("delivery-report-queued") == reports, kinds
        assert sink.pushes.empty()
    finally:
        server.stop()


def test_fetch_url_tolerates_extras_and_stays_valid(tmp_path: Path, sink: SmsSink) -> None:
    """The fetch URL with a query or more path appended (carrier configs, feature-matrix
    §4.8) still serves the message, and it keeps serving it after the handset has
    acknowledged it (a handset that fetches again must not get 404 or not-found)."""
    server = start_server(
        tmp_path,
        {
            "mm1": {"public_url": "http://mmsc.test/mms"},
            "notify": {"backend": "kannel", "sendsms_url": sink.url},
        },
    )
    try:
        request = send_req("U1", [B])
        message_id = mms.decode(post_pdu(server.mm1 + "/mms", request, A)[1]).headers["Message-ID"]
        note = notification_ind(sink.next())
        location = note.headers["X-Mms-Content-Location"]
        sent = [bytes(p.data) for p in mms.decode(request).parts or []]
        assert len(sent) == 3

        def fetch(suffix: str) -> MmsPdu:
            status, body, headers = http("GET", fetch_url(server.mm1, location, suffix))
            assert status == 200, (suffix, status)
            assert headers["Content-Type"] == "application/vnd.wap.mms-message", suffix
            conf = retrieve_conf(body)
            assert conf.headers["Message-ID"] == message_id, suffix
            assert [bytes(p.data) for p in conf.parts or []] == sent, suffix
            return conf

        suffixes = ("", "?something", "/extra", f"?tid={note.transaction_id}")
        first, *_ = [fetch(suffix) for suffix in suffixes]
        ack = MmsPdu("m-acknowledge-ind", first.transaction_id, "1.2", {})
        assert post_pdu(server.mm1 + "/mms", ack, B)[0] == 204
        report = sink.next()
        assert report.to == A and delivery_ind(report).headers["X-Mms-Status"] == "Retrieved"
        trace = json.loads(http("GET", f"{server.admin}/api/messages/{message_id}")[1])
        assert [r["state"] for r in trace["recipients"]] == ["retrieved"]
        for suffix in suffixes:  # after the acknowledgement: the same message, Ok
            assert fetch(suffix).transaction_id == first.transaction_id
    finally:
        server.stop()
