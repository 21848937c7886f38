"""The smpp notification backend and its binds, against the scriptable SMSC double.

Every test talks SMPP over a real loopback socket. The double runs in its own
thread; the backend runs in the test's event loop (asyncio.run per test).
Fault behaviour a real SMSC cannot be made to show on cue lives here:
throttling, a full queue, refusals, silence, dropped links, bad passwords.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from mmsc.config import ConfigError
from mmsc.notify.base import PushRequest, make_backend
from mmsc.notify.smpp import SmppBackend
from mmsc.notify.smpp_config import load_settings
from mmsc.receipts import ReceiptRecorder
from protocol import smpp, wap_push
from protocol.smpp_receipt import Receipt
from tests.smsc_double import SmscDouble

DEST = "+15557654321"


@pytest.fixture
def double() -> Iterator[SmscDouble]:
    with SmscDouble() as d:
        yield d


def bind_table(double: SmscDouble, **overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "port": double.port,
        "password": "secret",
        "response_timeout": 2.0,
        "reconnect_min": 0.05,
        "reconnect_max": 0.5,
        "throttle_pause": 0.05,
    }
    table.update(overrides)
    return table


def backend_for(double: SmscDouble, *binds: dict[str, Any], **smpp_keys: Any) -> SmppBackend:
    tables = list(binds) or [bind_table(double)]
    return SmppBackend(load_settings({"smpp": {"bind": tables, **smpp_keys}}))


def run_with(backend: SmppBackend, body: Callable[[SmppBackend], Awaitable[None]]) -> None:
    async def main() -> None:
        await backend.start()
        try:
            await body(backend)
        finally:
            await backend.close()

    asyncio.run(main())


def push(datagram_size: int = 60, reference: int = 9) -> PushRequest:
    segments = wap_push.segment_datagram(bytes(range(256))[:1] * datagram_size, reference)
    return PushRequest(DEST, tuple(segments), "test:1")


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ----------------------------------------------------------------------------- encodings


def test_one_sms_push_is_one_udh_submit_sm(double: SmscDouble) -> None:
    async def body(backend: SmppBackend) -> None:
        result = await backend.send(push(60))
        assert result.ok, result.detail
        submit = double.next_submit()
        assert result.gateway_ids == (submit.message_id,)

    run_with(backend_for(double), body)
    assert double.submits.empty()


def test_udh_submit_fields(double: SmscDouble) -> None:
    request = push(60)

    async def body(backend: SmppBackend) -> None:
        assert (await backend.send(request)).ok

    run_with(backend_for(double, bind_table(double, registered_delivery=1)), body)
    submit = double.next_submit().pdu
    assert submit.params["short_message"] == request.segments[0].user_data
    assert submit.params["esm_class"] == smpp.ESM_UDHI
    assert submit.params["data_coding"] == smpp.DATA_CODING_OCTETS
    assert submit.params["destination_addr"] == DEST[1:]
    assert (submit.params["dest_addr_ton"], submit.params["dest_addr_npi"]) == (1, 1)
    assert submit.params["source_addr"] == "MMS"
    assert (submit.params["source_addr_ton"], submit.params["source_addr_npi"]) == (5, 0)
    assert submit.params["registered_delivery"] == 1
    assert submit.tlvs == {}


def test_long_push_goes_out_as_ordered_segments_with_one_reference(double: SmscDouble) -> None:
    request = push(400, reference=0x42)
    assert len(request.segments) == 4

    async def body(backend: SmppBackend) -> None:
        result = await backend.send(request)
        assert result.ok and len(result.gateway_ids) == 4

    run_with(backend_for(double, bind_table(double, data_coding=0xF5)), body)
    got = [double.next_submit().pdu for _ in range(4)]
    user_data = [p.params["short_message"] for p in got]
    assert user_data == [s.user_data for s in request.segments]
    assert {p.params["data_coding"] for p in got} == {0xF5}
    header, datagram = wap_push.reassemble(user_data)
    assert header.reference == 0x42 and datagram == bytes(400)


def test_sar_encoding_moves_ports_and_concatenation_into_tlvs(double: SmscDouble) -> None:
    request = push(300, reference=0x17)

    async def body(backend: SmppBackend) -> None:
        assert (await backend.send(request)).ok

    run_with(backend_for(double, bind_table(double, encoding="sar")), body)
    total = len(request.segments)
    for number, segment in enumerate(request.segments, start=1):
        pdu = double.next_submit().pdu
        assert pdu.params["esm_class"] == 0
        assert pdu.params["short_message"] == segment.payload
        assert pdu.tlvs == {
            "source_port": 9200,
            "destination_port": 2948,
            "sar_msg_ref_num": 0x17,
            "sar_total_segments": total,
            "sar_segment_seqnum": number,
        }


def test_payload_encoding_sends_the_whole_datagram_once(double: SmscDouble) -> None:
    request = push(300)

    async def body(backend: SmppBackend) -> None:
        result = await backend.send(request)
        assert result.ok and len(result.gateway_ids) == 1

    run_with(backend_for(double, bind_table(double, encoding="payload")), body)
    pdu = double.next_submit().pdu
    assert pdu.params["short_message"] == b""
    assert pdu.tlvs["message_payload"] == bytes(300)
    assert (pdu.tlvs["source_port"], pdu.tlvs["destination_port"]) == (9200, 2948)
    assert double.submits.empty()


# ----------------------------------------------------------------------------- SMSC answers


def test_throttling_pauses_the_bind_and_retries(double: SmscDouble) -> None:
    answers = [smpp.ESME_RTHROTTLED, smpp.ESME_RMSGQFUL, smpp.ESME_ROK]
    double.submit_script = lambda pdu: answers.pop(0)
    before = counter(
        "mmsc_smpp_submits_total", bind=f"127.0.0.1:{double.port}", result="ESME_RTHROTTLED"
    )

    async def body(backend: SmppBackend) -> None:
        result = await backend.send(push())
        assert result.ok, result.detail

    run_with(backend_for(double), body)
    statuses = [double.next_submit().status for _ in range(3)]
    assert statuses == [smpp.ESME_RTHROTTLED, smpp.ESME_RMSGQFUL, smpp.ESME_ROK]
    after = counter(
        "mmsc_smpp_submits_total", bind=f"127.0.0.1:{double.port}", result="ESME_RTHROTTLED"
    )
    assert after == before + 1


def test_congested_bind_hands_over_to_another(double: SmscDouble) -> None:
    answers = [smpp.ESME_RTHROTTLED]
    double.submit_script = lambda pdu: answers.pop() if answers else smpp.ESME_ROK
    first = bind_table(double, name="a", throttle_pause=30.0)
    second = bind_table(double, name="b", throttle_pause=30.0)

    async def body(backend: SmppBackend) -> None:
        for bind in backend.binds:
            assert await bind.wait_bound(5)
        result = await backend.send(push())
        assert result.ok, result.detail
        assert sum(bind.paused for bind in backend.binds) == 1

    run_with(backend_for(double, first, second), body)
    throttled, accepted = double.next_submit(), double.next_submit()
    assert (throttled.status, accepted.status) == (smpp.ESME_RTHROTTLED, smpp.ESME_ROK)
    assert throttled.connection != accepted.connection  # the retry went over the other bind


def test_a_window_of_throttled_answers_is_one_pause(double: SmscDouble) -> None:
    """One "slow down" heard once per submit in flight is one congestion episode: ten
    answers must not double the pause ten times (to throttle_pause_max)."""
    double.submit_script = lambda pdu: None  # hold the first window
    table = bind_table(double, throttle_pause=0.2, throttle_pause_max=30.0, response_timeout=30)

    async def body(backend: SmppBackend) -> None:
        assert await backend.wait_ready(5)
        sends = [asyncio.create_task(backend.send(push(reference=n))) for n in range(10)]
        for _ in range(10):
            await asyncio.to_thread(double.next_submit, 10)
        double.release_held(smpp.ESME_RTHROTTLED)  # all ten at once; later submits pass
        results = await asyncio.gather(*sends)
        assert all(r.ok for r in results), results
        bind = backend.binds[0]
        assert (bind.pauses, bind.last_pause) == (1, 0.2)

    # Ten doublings would pause for throttle_pause_max, far beyond every push's wait.
    run_with(backend_for(double, table, submit_timeout=5, congestion_max_wait=5), body)
    assert double.submits.qsize() == 10  # each push once more, after the one pause


def test_a_throttled_first_window_costs_no_failed_attempt(double: SmscDouble) -> None:
    """The pause outlasts submit_timeout: waiting for a congested bind is not a failure."""
    answers = itertools.count()
    double.submit_script = lambda pdu: smpp.ESME_RTHROTTLED if next(answers) < 10 else smpp.ESME_ROK
    table = bind_table(double, throttle_pause=0.3)

    async def body(backend: SmppBackend) -> None:
        assert await backend.wait_ready(5)
        results = await asyncio.gather(*(backend.send(push(reference=n)) for n in range(10)))
        assert all(r.ok for r in results), [r.detail for r in results if not r.ok]

    run_with(backend_for(double, table, submit_timeout=0.05), body)
    statuses = [double.next_submit().status for _ in range(20)]
    assert statuses.count(smpp.ESME_RTHROTTLED) == 10 and double.submits.empty()


def test_throttle_back_off_escalates_and_resets_per_episode(double: SmscDouble) -> None:
    answers = [smpp.ESME_RTHROTTLED, smpp.ESME_ROK] * 3
    double.submit_script = lambda pdu: answers.pop(0)
    table = bind_table(double, throttle_pause=0.1)

    async def body(backend: SmppBackend) -> None:
        assert await backend.wait_ready(5)
        bind = backend.binds[0]
        # Sent together: the first is throttled, the second accepted. That acceptance
        # was sent before the pause and says nothing about it ending, so the first
        # push's retry, throttled again, doubles the pause.
        both = await asyncio.gather(
            backend.send(push(reference=1)), backend.send(push(reference=2))
        )
        assert all(r.ok for r in both)
        assert (bind.pauses, bind.last_pause) == (2, 0.2)
        # The retry was accepted after the pause: the next episode starts afresh.
        assert (await backend.send(push(reference=3))).ok
        assert (bind.pauses, bind.last_pause) == (3, 0.1)

    run_with(backend_for(double, table), body)


def test_a_full_queue_pauses_the_bind_once_and_never_escalates(double: SmscDouble) -> None:
    """ESME_RMSGQFUL may be one destination's queue: the bind pauses throttle_pause each
    time, and a push that meets it again after the pause goes back to the outbox."""
    double.submit_script = lambda pdu: smpp.ESME_RMSGQFUL
    table = bind_table(double, throttle_pause=0.1)

    async def body(backend: SmppBackend) -> None:
        assert await backend.wait_ready(5)
        result = await backend.send(push())
        assert result.transient and "ESME_RMSGQFUL twice" in result.detail
        bind = backend.binds[0]
        assert (bind.pauses, bind.last_pause) == (2, 0.1)
        assert await backend.wait_ready(5)  # ready again as soon as that pause is over

    run_with(backend_for(double, table, submit_timeout=5), body)
    assert double.submits.qsize() == 2


def test_refused_destination_is_permanent(double: SmscDouble) -> None:
    double.submit_script = lambda pdu: smpp.ESME_RINVDSTADR

    async def body(backend: SmppBackend) -> None:
        result = await backend.send(push())
        assert not result.ok and result.permanent
        assert "ESME_RINVDSTADR" in result.detail

    run_with(backend_for(double), body)


@pytest.mark.parametrize(
    "first_says, second_says, verdict",
    [
        (smpp.ESME_RINVDSTADR, smpp.ESME_ROK, "ok"),
        (smpp.ESME_RINVDSTADR, smpp.ESME_RINVDSTADR, "permanent"),
        (smpp.ESME_RINVDSTTON, smpp.ESME_RINVDSTADR, "transient"),
    ],
)
def test_a_refusal_is_tried_once_on_every_other_bind(
    first_says: int, second_says: int, verdict: str
) -> None:
    """Permanent only when every bind tried says so: another bind may reach the number."""
    with SmscDouble() as first, SmscDouble() as second:
        first.submit_script = lambda pdu: first_says
        second.submit_script = lambda pdu: second_says
        tables = [bind_table(first, name="a"), bind_table(second, name="b")]

        async def body(backend: SmppBackend) -> None:
            for bind in backend.binds:
                assert await bind.wait_bound(5)
            result = await backend.send(push())
            got = "ok" if result.ok else "permanent" if result.permanent else "transient"
            assert got == verdict, result.detail

        run_with(backend_for(first, *tables), body)
        assert first.next_submit().status == first_says  # bind a first (round robin)
        assert second.next_submit().status == second_says
        assert first.submits.empty() and second.submits.empty()


def test_a_refusal_with_another_bind_silent_stays_a_retry() -> None:
    """Bind a refuses the number for good, bind b never answers before the deadline: b
    gave no verdict, so the push is a retry, not an Unreachable recipient."""
    with SmscDouble() as first, SmscDouble() as second:
        first.submit_script = lambda pdu: smpp.ESME_RINVDSTADR
        second.silent_links.update(range(1, 100))  # answers enquire_link, never a submit
        tables = [
            bind_table(first, name="a"),
            # one unanswered submit and b is dropped to bind again, after the deadline
            bind_table(
                second,
                name="b",
                response_timeout=0.2,
                max_response_timeouts=1,
                reconnect_min=5,
                reconnect_max=5,
            ),
        ]

        async def body(backend: SmppBackend) -> None:
            for bind in backend.binds:
                assert await bind.wait_bound(5)
            result = await backend.send(push())
            assert result.transient, result.detail

        run_with(backend_for(first, *tables, submit_timeout=1), body)
        assert first.next_submit().status == smpp.ESME_RINVDSTADR


@pytest.mark.parametrize("status", [smpp.ESME_RINVDSTTON, smpp.ESME_RINVDSTNPI])
def test_dest_ton_or_npi_refusal_is_a_bind_setting_not_the_subscriber(
    double: SmscDouble, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    double.submit_script = lambda pdu: status

    async def body(backend: SmppBackend) -> None:
        result = await backend.send(push())
        assert result.transient, result.detail

    with caplog.at_level(logging.ERROR, "mmsc.notify.smpp"):
        run_with(backend_for(double), body)
    assert "dest_ton (1) and dest_npi (1)" in caplog.text


def test_system_error_is_transient(double: SmscDouble) -> None:
    double.submit_script = lambda pdu: smpp.ESME_RSYSERR

    async def body(backend: SmppBackend) -> None:
        result = await backend.send(push(400))
        assert result.transient and "segment 1/4" in result.detail

    run_with(backend_for(double), body)


def test_invalid_destination_is_refused_without_a_submit(double: SmscDouble) -> None:
    async def body(backend: SmppBackend) -> None:
        result = await backend.send(PushRequest("not-a-number", push().segments, "x"))
        assert result.permanent

    run_with(backend_for(double), body)
    assert double.submits.empty()


def test_silent_smsc_times_out_as_transient(double: SmscDouble) -> None:
    double.submit_script = lambda pdu: None  # never answer a submit_sm
    table = bind_table(double, response_timeout=0.2)

    async def body(backend: SmppBackend) -> None:
        result = await backend.send(push())
        assert result.transient and "no submit_sm_resp within 0.2 s" in result.detail

    run_with(backend_for(double, table, submit_timeout=0.5), body)
    assert double.next_submit().status is None


def test_window_bounds_submits_in_flight(double: SmscDouble) -> None:
    double.submit_script = lambda pdu: None  # hold every answer until released
    table = bind_table(double, window=3, response_timeout=30.0)

    async def body(backend: SmppBackend) -> None:
        assert await backend.wait_ready(5)
        sends = [asyncio.create_task(backend.send(push())) for _ in range(8)]
        for _ in range(3):
            await asyncio.to_thread(double.next_submit, 10)
        bind = backend.binds[0]
        # Three unanswered fill the window: a fourth cannot be sent before an answer.
        assert bind.load == 1.0 and double.submits.empty()
        double.release_held()
        results = await asyncio.gather(*sends)
        assert all(r.ok for r in results)

    run_with(backend_for(double, table), body)
    assert double.peak_unanswered == 3
    assert double.submits.qsize() == 5


def test_rate_spaces_submits(double: SmscDouble) -> None:
    table = bind_table(double, rate=50.0)

    async def body(backend: SmppBackend) -> None:
        assert await backend.wait_ready(5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(*(backend.send(push()) for _ in range(6)))
        # Six submits at 50/s need at least five intervals of 20 ms, however fast the peer.
        assert loop.time() - started >= 5 / 50 * 0.95
        assert all(r.ok for r in results)

    run_with(backend_for(double, table), body)
    assert double.submits.qsize() == 6


# ----------------------------------------------------------------------------- the link


def test_wrong_password_is_retried_with_back_off_and_never_sends(double: SmscDouble) -> None:
    table = bind_table(double, password="wrong", reconnect_min=0.2, reconnect_max=2.0)

    async def body(backend: SmppBackend) -> None:
        attempts = [await asyncio.to_thread(double.next_bind, 10) for _ in range(4)]
        assert {status for _, status, _ in attempts} == {smpp.ESME_RINVPASWD}
        gaps = [b[2] - a[2] for a, b in itertools.pairwise(attempts)]
        assert gaps[2] > gaps[0]  # doubling back-off (jitter stays within half a step)
        assert not backend.ready
        result = await backend.send(push())
        assert result.transient and "no SMPP bind available" in result.detail
        assert "ESME_RINVPASWD" in backend.binds[0].last_error

    run_with(backend_for(double, table, submit_timeout=0.2), body)
    assert double.submits.empty()


def test_dropped_link_reconnects_and_sends(double: SmscDouble) -> None:
    async def body(backend: SmppBackend) -> None:
        assert await backend.wait_ready(5)
        double.next_bind()
        double.drop_links()
        # The bind notices, reconnects and binds again; the push goes out on the new link.
        await asyncio.to_thread(double.next_bind, 10)
        result = await backend.send(push())
        assert result.ok, result.detail

    run_with(backend_for(double), body)
    assert double.next_submit().connection == 2


def test_a_bind_that_stops_answering_submits_is_bound_again(double: SmscDouble) -> None:
    double.silent_links.add(1)  # the first link keeps answering enquire_link, not submits
    table = bind_table(double, response_timeout=0.2)

    async def body(backend: SmppBackend) -> None:
        assert await backend.wait_ready(5)
        results = [await backend.send(push(reference=n)) for n in range(2)]
        assert all(r.ok for r in results), results
        assert backend.binds[0].binds == 2

    run_with(backend_for(double, table, submit_timeout=3), body)
    unanswered = [double.next_submit() for _ in range(3)]
    assert {(s.connection, s.status) for s in unanswered} == {(1, None)}
    assert [double.next_submit().connection for _ in range(2)] == [2, 2]
    assert double.submits.empty()


def test_invalid_bind_status_answer_binds_again(double: SmscDouble) -> None:
    answers = [smpp.ESME_RINVBNDSTS]
    double.submit_script = lambda pdu: answers.pop() if answers else smpp.ESME_ROK

    async def body(backend: SmppBackend) -> None:
        result = await backend.send(push())
        assert result.ok, result.detail

    run_with(backend_for(double), body)
    refused, accepted = double.next_submit(), double.next_submit()
    assert (refused.status, refused.connection) == (smpp.ESME_RINVBNDSTS, 1)
    assert (accepted.status, accepted.connection) == (smpp.ESME_ROK, 2)


def test_unanswered_enquire_link_drops_the_link(double: SmscDouble) -> None:
    double.answer_enquire_link = False
    table = bind_table(double, enquire_link_interval=0.1, response_timeout=0.2)

    async def body(backend: SmppBackend) -> None:
        await asyncio.to_thread(double.next_bind, 10)
        second = await asyncio.to_thread(double.next_bind, 10)
        assert second[1] == smpp.ESME_ROK

    run_with(backend_for(double, table), body)
    assert double.enquire_links >= 1


def test_close_unbinds_gracefully(double: SmscDouble) -> None:
    async def body(backend: SmppBackend) -> None:
        assert await backend.wait_ready(5)

    run_with(backend_for(double), body)
    assert double.unbinds.get(timeout=5) == 1


def test_receipts_reach_the_sink(double: SmscDouble) -> None:
    receipts: asyncio.Queue[tuple[str, Receipt]] = asyncio.Queue()

    async def sink(bind: str, receipt: Receipt) -> None:
        await receipts.put((bind, receipt))

    backend = backend_for(double, bind_table(double, registered_delivery=1, name="main"))
    backend.receipt_sink = sink

    async def body(backend: SmppBackend) -> None:
        result = await backend.send(push())
        bind, receipt = await asyncio.wait_for(receipts.get(), 5)
        assert bind == "main"
        assert receipt.message_id == result.gateway_ids[0] and receipt.delivered

    run_with(backend, body)


def test_a_receiver_bind_brings_the_receipts_of_a_transmitter_bind(double: SmscDouble) -> None:
    receipts: asyncio.Queue[tuple[str, Receipt]] = asyncio.Queue()

    async def sink(bind: str, receipt: Receipt) -> None:
        await receipts.put((bind, receipt))

    tx = bind_table(double, name="tx", mode="transmitter", registered_delivery=1)
    rx = bind_table(double, name="rx", mode="receiver")
    backend = backend_for(double, tx, rx)
    backend.receipt_sink = sink

    async def body(backend: SmppBackend) -> None:
        for bind in backend.binds:
            assert await bind.wait_bound(5)
        assert backend.ready and not backend.binds[1].usable  # a receiver never sends
        results = [await backend.send(push(reference=n)) for n in range(3)]
        got = [await asyncio.wait_for(receipts.get(), 5) for _ in range(3)]
        assert {bind for bind, _ in got} == {"rx"}
        sent = sorted(i for r in results for i in r.gateway_ids)
        assert sorted(r.message_id for _, r in got) == sent
        assert [b["mode"] for b in backend.status()["binds"]] == ["transmitter", "receiver"]

    run_with(backend, body)
    assert len({double.next_submit().connection for _ in range(3)}) == 1  # all on tx


def test_close_waits_for_a_receipt_being_recorded(double: SmscDouble) -> None:
    """The receipt overtook the commit of its submit: the recorder looks again after a
    delay. Shutdown must wait for it, the SMSC has had its deliver_sm_resp."""

    class LateCommit:
        def __init__(self) -> None:
            self.writes = 0
            self.first = asyncio.Event()

        async def write(self, unit: object) -> bool:
            self.writes += 1
            self.first.set()
            return self.writes > 1  # found on the second look

    core = LateCommit()
    backend = backend_for(double, bind_table(double, registered_delivery=1))
    backend.receipt_sink = ReceiptRecorder(cast(Any, core), retry_delays=(0.3,))

    async def main() -> None:
        await backend.start()
        try:
            assert (await backend.send(push())).ok
            await asyncio.wait_for(core.first.wait(), 5)  # in, and waiting to look again
        finally:
            await backend.close()
        assert core.writes == 2

    asyncio.run(main())


def test_close_gives_up_on_a_receipt_that_never_gets_recorded(double: SmscDouble) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(bind: str, receipt: Receipt) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    backend = backend_for(double, bind_table(double, registered_delivery=1))
    backend.receipt_sink = stuck
    backend.binds[0].receipt_drain_timeout = 0.1

    async def main() -> None:
        await backend.start()
        assert (await backend.send(push())).ok
        await asyncio.wait_for(started.wait(), 5)
        await backend.close()
        assert cancelled.is_set()

    asyncio.run(main())


def test_binds_report_connected_in_metrics(double: SmscDouble) -> None:
    async def body(backend: SmppBackend) -> None:
        assert await backend.wait_ready(5)
        assert REGISTRY.get_sample_value("mmsc_smpp_connected", {"bind": "m1"}) == 1

    run_with(backend_for(double, bind_table(double, name="m1")), body)
    assert REGISTRY.get_sample_value("mmsc_smpp_connected", {"bind": "m1"}) == 0


# ----------------------------------------------------------------------------- configuration


def test_settings_defaults_and_section_level_defaults() -> None:
    settings = load_settings({"smpp": {"password": "pw", "bind": [{"port": 1}, {"port": 2}]}})
    assert [b.port for b in settings.binds] == [1, 2]
    assert {b.params.password for b in settings.binds} == {"pw"}
    first = settings.binds[0]
    assert (first.host, first.name, first.window, first.encoding) == (
        "127.0.0.1",
        "127.0.0.1:1",
        10,
        "udh",
    )
    assert first.params.mode == "transceiver" and first.data_coding == 4
    # No [[smpp.bind]]: [smpp] itself is the one bind (what MMSC_SMPP__* variables set).
    single = load_settings({"smpp": {"host": "10.0.0.1", "source_addr": "+15550001"}})
    (only,) = single.binds
    assert only.host == "10.0.0.1" and (only.source_ton, only.source_npi) == (1, 1)
    assert load_settings({"smpp": {"source_addr": "1234"}}).binds[0].source_ton == 3
    assert isinstance(make_backend({"notify": {"backend": "smpp"}}), SmppBackend)


def test_new_keys_and_their_defaults() -> None:
    settings = load_settings({"smpp": {"congestion_max_wait": 12, "max_response_timeouts": 5}})
    assert settings.congestion_max_wait == 12 and settings.binds[0].max_response_timeouts == 5
    defaults = load_settings({"smpp": {}})
    assert defaults.congestion_max_wait == 30 and defaults.binds[0].max_response_timeouts == 3


def test_receipts_asked_for_with_no_bind_to_bring_them_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "mmsc.notify.smpp"):
        load_settings({"smpp": {"mode": "transmitter", "registered_delivery": 1}})
    assert "no bind is a transceiver or receiver" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "mmsc.notify.smpp"):
        tables = [
            {"name": "t", "mode": "transmitter", "registered_delivery": 1},
            {"name": "r", "mode": "receiver"},
        ]
        settings = load_settings({"smpp": {"bind": tables}})
    assert "no bind is a transceiver or receiver" not in caplog.text
    assert [b.params.mode for b in settings.binds] == ["transmitter", "receiver"]


@pytest.mark.parametrize(
    "section, message",
    [
        ({"mode": "receiver"}, "every bind is a receiver"),
        ({"mode": "sender"}, "smpp.bind[0].mode"),
        ({"max_response_timeouts": 0}, "smpp.bind[0].max_response_timeouts"),
        ({"congestion_max_wait": 0}, "smpp.congestion_max_wait"),
        ({"encoding": "morse"}, "smpp.bind[0].encoding"),
        ({"port": 0}, "smpp.bind[0].port"),
        ({"window": 0}, "smpp.bind[0].window"),
        ({"rate": -1}, "smpp.bind[0].rate"),
        ({"password": "123456789"}, "password at most 8"),
        ({"reconnect_min": 5, "reconnect_max": 1}, "reconnect_max"),
        ({"bind": [{"name": "x"}, {"name": "x"}]}, "names must differ"),
        ({"bind": "nope"}, "smpp.bind"),
        ({"submit_timeout": 0}, "smpp.submit_timeout"),
    ],
)
def test_bad_settings_name_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings({"smpp": section})


def test_failover_when_one_smsc_goes_away() -> None:
    with SmscDouble() as first, SmscDouble() as second:
        tables = [bind_table(first, name="first"), bind_table(second, name="second")]

        async def body(backend: SmppBackend) -> None:
            for bind in backend.binds:
                assert await bind.wait_bound(5)
            first.stop_listening()
            first.drop_links()
            results = [await backend.send(push(reference=n)) for n in range(4)]
            assert all(r.ok for r in results), results
            status = backend.status()
            assert [b["bound"] for b in status["binds"]] == [False, True]

        run_with(backend_for(first, *tables), body)
        assert second.submits.qsize() == 4
        assert first.submits.empty()
