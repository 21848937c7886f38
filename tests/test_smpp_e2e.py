"""`mmsc serve` with the smpp backend, end to end against the SMSC double.

A handset posts an m-send-req over HTTP; the server notifies over a real SMPP
bind; the double records the submit_sm octets, which our codec and tshark
must both read as the right m-notification-ind. Also: receipts become events
and never deliveries, and an SMSC outage (even with a kill -9 of the server
in the middle) loses no notification.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol import mms, smpp, wap_push
from tests import tshark
from tests.harness import ServerProcess, http, start_server
from tests.smsc_double import SmscDouble, Submit
from tests.test_mm1_e2e import A, B, C, post_pdu, send_req


@pytest.fixture
def double() -> Iterator[SmscDouble]:
    with SmscDouble() as d:
        yield d


def smpp_server(tmp_path: Path, double: SmscDouble, **smpp: Any) -> ServerProcess:
    return start_server(
        tmp_path,
        {
            "mm1": {"public_url": smpp.pop("public_url", "http://mmsc.test/mms")},
            "notify": {"backend": "smpp", "retry_initial": 0.2, "retry_max": 1},
            "smpp": {
                "port": double.port,
                "password": "secret",
                "source_addr": "MMSC",
                "reconnect_min": 0.1,
                "reconnect_max": 1.0,
                "submit_timeout": 2,
                **smpp,
            },
        },
    )


def send(server: ServerProcess, to: list[str], tid: str = "T1") -> tuple[str, bytes]:
    request = send_req(tid, to)
    status, body = post_pdu(server.mm1 + "/mms", request, A)
    assert status == 200
    conf = mms.decode(body)
    assert conf.headers["X-Mms-Response-Status"] == "Ok"
    return str(conf.headers["Message-ID"]), request


def notification_of(submits: list[Submit]) -> tuple[str, bytes, mms.MmsPdu]:
    """Destination, WSP datagram and MMS PDU of the submit_sm of one push."""
    destinations = {s.pdu.params["destination_addr"] for s in submits}
    assert len(destinations) == 1
    _udh, datagram = wap_push.reassemble([s.pdu.params["short_message"] for s in submits])
    _push, pdu = wap_push.decode_mms_push(datagram)
    return destinations.pop(), datagram, pdu


def trace(server: ServerProcess, message_id: str) -> dict[str, Any]:
    quoted = urllib.parse.quote(message_id, safe="")
    status, body, _ = http("GET", f"{server.admin}/api/messages/{quoted}")
    assert status == 200
    return dict(json.loads(body))


def wait_until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy (the server works in its own time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def test_send_req_becomes_a_submit_sm_that_tshark_reads_as_the_notification(
    tmp_path: Path, double: SmscDouble
) -> None:
    server = smpp_server(tmp_path, double)
    try:
        message_id, request = send(server, [B])
        submit = double.next_submit()
        pdu = submit.pdu
        assert pdu.params["destination_addr"] == B[1:]
        assert pdu.params["source_addr"] == "MMSC"
        assert pdu.params["esm_class"] == 0x40 and pdu.params["data_coding"] == 0x04
        _destination, _datagram, notification = notification_of([submit])
        assert notification.message_type == "m-notification-ind"
        location = notification.headers["X-Mms-Content-Location"]
        assert location.startswith("http://mmsc.test/mms/")
        assert notification.headers["X-Mms-Message-Size"] == len(request)
        assert len(submit.pdu.params["short_message"]) <= 140  # one SMS

        decoded = tshark.decode("smpp", submit.raw)
        assert decoded.ok, decoded.result
        assert decoded.fields("smpp.destination_addr") == [B[1:]]
        assert decoded.fields("smpp.esm.submit.features") == ["0x01"]
        assert decoded.fields("gsm_sms.destination_port") == ["2948"]
        assert decoded.fields("mmse.message_type") == ["0x82"]
        assert decoded.fields("mmse.content_location") == [location]
        assert decoded.fields("mmse.message_size") == [str(len(request))]

        status, body, _ = http("GET", f"{server.admin}/api/notify")
        (bind,) = json.loads(body)["binds"]
        assert status == 200 and bind["bound"] and bind["address"] == f"127.0.0.1:{double.port}"
        assert bind["last_error"] == "" and bind["window"] == 10

        # The MMSC's own record: notified (the SMSC took it), not yet delivered.
        state = wait_until(
            lambda: trace(server, message_id)["recipients"][0]["state"] == "notified"
        )
        assert state
    finally:
        server.stop()


def test_long_notification_arrives_as_concatenated_segments(
    tmp_path: Path, double: SmscDouble
) -> None:
    long_url = "http://mms.operator-with-a-very-long-host-name.example.net/" + "x" * 120
    server = smpp_server(tmp_path, double, public_url=long_url)
    try:
        _message_id, _request = send(server, [B])
        first = double.next_submit()
        header, _ = wap_push.parse_user_data(first.pdu.params["short_message"])
        assert header.reference is not None and header.total >= 2
        submits = [first] + [double.next_submit() for _ in range(header.total - 1)]
        _dest, _datagram, notification = notification_of(submits)
        location = notification.headers["X-Mms-Content-Location"]
        assert location.startswith(long_url + "/")
        decoded = tshark.decode("smpp", b"".join(s.raw for s in submits))
        assert decoded.ok, decoded.result
        assert decoded.fields("mmse.content_location") == [location]
        assert decoded.fields("gsm_sms.udh.mm.msg_parts") == [str(header.total)] * header.total
    finally:
        server.stop()


def test_receipts_are_events_and_never_deliveries(tmp_path: Path, double: SmscDouble) -> None:
    server = smpp_server(tmp_path, double, registered_delivery=1)
    try:
        message_id, _ = send(server, [B])
        submit = double.next_submit()

        def receipt_event() -> dict[str, Any] | None:
            events = trace(server, message_id)["events"]
            return next((e for e in events if e["event"] == "push-receipt"), None)

        event = wait_until(receipt_event)
        assert f"SMS {submit.message_id}" in event["detail"]
        assert "stat:DELIVRD" in event["detail"]
        assert event["state"] is None
        recipient = trace(server, message_id)["recipients"][0]
        assert recipient["state"] == "notified" and recipient["retrieved_at"] is None
        _status, body, _ = http("GET", f"{server.admin}/metrics")
        assert (
            f'mmsc_smpp_receipts_total{{bind="127.0.0.1:{double.port}",state="DELIVRD"}} 1.0'
            in (body.decode())
        )
    finally:
        server.stop()


def test_smsc_outage_and_a_crash_lose_no_notification(tmp_path: Path, double: SmscDouble) -> None:
    server = smpp_server(tmp_path, double)
    try:
        send(server, [C], "warm-up")
        double.next_submit()
        # The SMSC goes away: links dropped, no listener. Messages are still accepted.
        double.stop_listening()
        double.drop_links()
        sent = [send(server, [B], f"T{i}")[0] for i in range(5)]
        # While the SMSC is away the server is killed; a new one takes over the queue.
        server.kill()
        server = smpp_server(tmp_path, double)
        double.resume_listening()
        submits = [double.next_submit(30) for _ in range(5)]
        locations = {notification_of([s])[2].headers["X-Mms-Content-Location"] for s in submits}
        assert len(locations) == 5  # five different messages, none lost
        for message_id in sent:
            wait_until(
                lambda m=message_id: trace(server, m)["recipients"][0]["state"] == "notified"
            )
    finally:
        server.stop()


def test_a_retried_push_resends_the_same_segments(tmp_path: Path, double: SmscDouble) -> None:
    """Same TID and concatenation reference on every attempt: a handset that kept the
    segments of the first attempt can still join them with the second's."""
    answers = [smpp.ESME_RSYSERR]
    double.submit_script = lambda pdu: answers.pop() if answers else smpp.ESME_ROK
    long_url = "http://mms.operator-with-a-very-long-host-name.example.net/" + "z" * 120
    server = smpp_server(tmp_path, double, public_url=long_url)
    try:
        message_id, _ = send(server, [B])
        refused = double.next_submit()
        assert refused.status == smpp.ESME_RSYSERR
        header, _ = wap_push.parse_user_data(refused.pdu.params["short_message"])
        retried = [double.next_submit() for _ in range(header.total)]
        assert retried[0].pdu.params["short_message"] == refused.pdu.params["short_message"]
        notification_of(retried)
        events = [e["event"] for e in trace(server, message_id)["events"]]
        assert "push-retry" in events
    finally:
        server.stop()
