"""`mmsc serve` notifying through Jasmin, a real SMS gateway's SMPP server.

Jasmin was written by others from the same spec: it binds us, answers our
submit_sm, and its MT interceptor records every short_message it accepted,
which we decode with our codec and with tshark. It also plays the outage (a
stop of 30 s, then a start) and the wrong password.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from protocol import mms, smpp, wap_push
from tests import tshark
from tests.harness import ServerProcess, http, start_server
from tests.jasmin import Jasmin, jasmin_server  # noqa: F401  (the session fixture)
from tests.test_mm1_e2e import A, B, C, post_pdu, send_req
from tests.test_smpp_e2e import trace, wait_until

OUTAGE_SECONDS = 30.0


def jasmin_mmsc(tmp_path: Path, jasmin: Jasmin, **smpp_keys: Any) -> ServerProcess:
    keys: dict[str, Any] = {
        "host": jasmin.host,
        "port": jasmin.port,
        "system_id": jasmin.system_id,
        "password": jasmin.password,
        "source_addr": "MMSC",
        "reconnect_min": 0.5,
        "reconnect_max": 4.0,
        "submit_timeout": 5,
        "enquire_link_interval": 5,
        "response_timeout": 5,
    }
    keys.update(smpp_keys)
    return start_server(
        tmp_path,
        {
            "mm1": {"public_url": keys.pop("public_url", "http://mmsc.test/mms")},
            "notify": {"backend": "smpp", "retry_initial": 0.5, "retry_max": 2},
            "smpp": keys,
        },
    )


def send(server: ServerProcess, to: str, tid: str) -> tuple[str, int]:
    request = send_req(tid, [to])
    status, body = post_pdu(server.mm1 + "/mms", request, A)
    assert status == 200
    conf = mms.decode(body)
    assert conf.headers["X-Mms-Response-Status"] == "Ok", conf.headers
    return str(conf.headers["Message-ID"]), len(request)


def records_to(
    jasmin: Jasmin, destination: str, count: int, timeout: float = 60
) -> list[dict[str, Any]]:
    """The submit_sm Jasmin recorded for ``destination`` once there are ``count`` of them."""

    def found() -> list[dict[str, Any]]:
        mine = [r for r in jasmin.received() if r.get("destination_addr") == destination[1:]]
        return mine if len(mine) >= count else []

    return list(wait_until(found, timeout))


def decode_notifications(records: list[dict[str, Any]]) -> list[Any]:
    """Group the recorded segments by push and decode each with our codec."""
    singles, partial = [], {}
    for record in records:
        user_data = record["short_message"]
        header, _ = wap_push.parse_user_data(user_data)
        if header.reference is None:
            singles.append([user_data])
        else:
            partial.setdefault(header.reference, []).append(user_data)
    out = []
    for group in singles + list(partial.values()):
        _udh, datagram = wap_push.reassemble(group)
        out.append(wap_push.decode_mms_push(datagram)[1])
    return out


def tshark_reads(records: list[dict[str, Any]]) -> tshark.Decoded:
    """tshark on the submit_sm PDUs exactly as Jasmin holds them (its interceptor's ``pdu``)."""
    decoded = tshark.decode("smpp", b"".join(r["pdu"] for r in records))
    assert decoded.ok, decoded.result
    return decoded


def test_send_req_reaches_jasmin_as_the_notification(
    tmp_path: Path,
    jasmin_server: Jasmin,  # noqa: F811
) -> None:
    destination = "+15551110001"
    server = jasmin_mmsc(tmp_path, jasmin_server)
    try:
        message_id, size = send(server, destination, "J1")
        (record,) = records_to(jasmin_server, destination, 1)
        assert record["user"] == jasmin_server.system_id
        assert record["source_addr"] == "MMSC"
        assert len(record["short_message"]) <= 140
        # Our codec reads Jasmin's copy of the PDU as what we meant to send.
        pdu = smpp.decode(record["pdu"])
        assert pdu.command_id == smpp.SUBMIT_SM and pdu.params["esm_class"] == smpp.ESM_UDHI
        assert pdu.params["data_coding"] == smpp.DATA_CODING_OCTETS
        assert pdu.params["short_message"] == record["short_message"]
        (notification,) = decode_notifications([record])
        assert notification.message_type == "m-notification-ind"
        location = notification.headers["X-Mms-Content-Location"]
        assert location.startswith("http://mmsc.test/mms/")
        assert notification.headers["X-Mms-Message-Size"] == size
        decoded = tshark_reads([record])
        assert decoded.fields("gsm_sms.destination_port") == ["2948"]
        assert decoded.fields("mmse.content_location") == [location]
        assert decoded.fields("mmse.message_size") == [str(size)]
        # Jasmin's submit_sm_resp made the recipient "notified", with the SMSC's id kept.
        wait_until(lambda: trace(server, message_id)["recipients"][0]["state"] == "notified")
        events = [e["event"] for e in trace(server, message_id)["events"]]
        assert "push-sent" in events
    finally:
        server.stop()


def test_long_notification_reaches_jasmin_concatenated(
    tmp_path: Path,
    jasmin_server: Jasmin,  # noqa: F811
) -> None:
    destination = "+15551110002"
    long_url = "http://mms.operator-with-a-very-long-host-name.example.net/" + "y" * 120
    server = jasmin_mmsc(tmp_path, jasmin_server, public_url=long_url)
    try:
        send(server, destination, "J2")
        first = records_to(jasmin_server, destination, 1)[0]
        header, _ = wap_push.parse_user_data(first["short_message"])
        assert header.reference is not None and header.total >= 2
        records = records_to(jasmin_server, destination, header.total)
        (notification,) = decode_notifications(records)
        location = notification.headers["X-Mms-Content-Location"]
        assert location.startswith(long_url + "/")
        decoded = tshark_reads(records)
        assert decoded.fields("mmse.content_location") == [location]
    finally:
        server.stop()


def test_jasmin_down_for_30_seconds_loses_no_notification(
    tmp_path: Path,
    jasmin_server: Jasmin,  # noqa: F811
) -> None:
    server = jasmin_mmsc(tmp_path, jasmin_server)
    destination = "+15551110003"
    try:
        send(server, C, "warm-up")
        records_to(jasmin_server, C, 1)
        jasmin_server.stop()
        outage_began = time.monotonic()
        sent = [send(server, destination, f"J3-{i}")[0] for i in range(5)]
        # While Jasmin is away the messages wait in the outbox and the bind keeps trying.
        wait_until(lambda: metric(server, "mmsc_smpp_connected") == 0.0)
        remaining = OUTAGE_SECONDS - (time.monotonic() - outage_began)
        if remaining > 0:
            time.sleep(remaining)  # the outage itself (the scenario), not a synchronisation
        assert not [r for r in jasmin_server.received() if r["destination_addr"] == destination[1:]]
        for message_id in sent:
            assert trace(server, message_id)["recipients"][0]["state"] == "pending"
        jasmin_server.start()
        records = records_to(jasmin_server, destination, 5, timeout=90)
        locations = {n.headers["X-Mms-Content-Location"] for n in decode_notifications(records)}
        assert len(locations) == 5
        for message_id in sent:
            wait_until(
                lambda m=message_id: trace(server, m)["recipients"][0]["state"] == "notified"
            )
    finally:
        server.stop()
        if not jasmin_server.is_up():
            jasmin_server.start()


def test_wrong_password_is_refused_logged_and_retried(
    tmp_path: Path,
    jasmin_server: Jasmin,  # noqa: F811
) -> None:
    server = jasmin_mmsc(tmp_path, jasmin_server, password="wrongpw", reconnect_min=0.2)
    try:
        message_id, _ = send(server, B, "J4")

        def refusals() -> list[str]:
            lines = [line for line in server.log if "bind refused" in line]
            return lines if len(lines) >= 3 else []

        lines = wait_until(refusals, 60)
        assert any(
            smpp.status_name(s) in lines[0] for s in (smpp.ESME_RINVPASWD, smpp.ESME_RBINDFAIL)
        )
        assert server.proc.poll() is None  # no crash
        assert http("GET", server.admin + "/healthz")[0] == 200
        assert metric(server, "mmsc_smpp_connected") == 0.0
        assert trace(server, message_id)["recipients"][0]["state"] == "pending"
    finally:
        server.stop()


def metric(server: ServerProcess, name: str) -> float | None:
    _status, body, _ = http("GET", server.admin + "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None
