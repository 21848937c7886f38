"""The sans-I/O SMPP 3.4 code: PDU codec, receipts and the session state machine."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import smpp
from protocol.errors import DecodeError, EncodeError
from protocol.smpp import Pdu
from protocol.smpp_receipt import Receipt, is_receipt, parse_receipt, parse_receipt_text
from protocol.smpp_session import (
    BindFailed,
    BindParams,
    Bound,
    Ignored,
    LinkFailed,
    MessageReceived,
    RequestAborted,
    RequestTimedOut,
    Response,
    SessionError,
    SessionState,
    SmppSession,
    Unbound,
)
from tests import smpp_fixture
from tests.conftest import CORPUS

# ----------------------------------------------------------------------------- codec


def corpus_pdus() -> list[tuple[str, bytes]]:
    out = []
    for path in sorted((CORPUS / "smpp").glob("*.smpp")):
        for raw in smpp.PduReader().feed(path.read_bytes()):
            out.append((path.name, raw))
    return out


def test_corpus_submit_sm_decode_and_reencode_byte_for_byte() -> None:
    pdus = corpus_pdus()
    assert len(pdus) == 6  # 1 + 3 + 2 submit_sm in the three reference files
    for name, raw in pdus:
        pdu = smpp.decode(raw)
        assert pdu.command_id == smpp.SUBMIT_SM, name
        assert pdu.params["esm_class"] == smpp.ESM_UDHI
        assert pdu.params["data_coding"] == smpp.DATA_CODING_OCTETS
        assert pdu.params["short_message"][1:3] == b"\x05\x04"  # port IE first, as tools write it
        assert smpp.encode(pdu) == raw


def test_submit_sm_matches_the_construct_declaration() -> None:
    """Our table-driven encoder and the independent construct fixture agree octet for octet."""
    user_data = bytes.fromhex("0605040b8423f0") + b"\x01\x06\x03\xbe\xaf\x84payload"
    ours = smpp.encode(
        Pdu(
            smpp.SUBMIT_SM,
            77,
            params={
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "source_addr": "1234",
                "dest_addr_ton": 1,
                "dest_addr_npi": 1,
                "destination_addr": "15557654321",
                "esm_class": smpp.ESM_UDHI,
                "registered_delivery": 1,
                "data_coding": 4,
                "short_message": user_data,
            },
        )
    )
    theirs = smpp_fixture.submit_sm(
        user_data,
        sequence_number=77,
        source_addr="1234",
        destination_addr="15557654321",
        registered_delivery=1,
    )
    assert ours == theirs
    parsed = smpp_fixture.parse_submit_sm(ours)
    assert parsed.body.short_message == user_data


ROUND_TRIPS = [
    Pdu(
        smpp.BIND_TRANSCEIVER,
        1,
        params={
            "system_id": "mmsc",
            "password": "pw",
            "system_type": "WAP",
            "interface_version": 0x34,
            "addr_ton": 1,
            "addr_npi": 1,
            "address_range": "^1555",
        },
    ),
    Pdu(smpp.BIND_TRANSMITTER, 2, params={"system_id": "a", "password": "b"}),
    Pdu(smpp.BIND_RECEIVER, 3, params={"system_id": "a", "password": "b"}),
    Pdu(
        smpp.BIND_TRANSCEIVER_RESP,
        1,
        params={"system_id": "SMSC"},
        tlvs={"sc_interface_version": 0x34},
    ),
    Pdu(smpp.BIND_TRANSMITTER_RESP, 2, params={"system_id": "SMSC"}),
    Pdu(smpp.BIND_RECEIVER_RESP, 3, params={"system_id": "SMSC"}),
    Pdu(smpp.OUTBIND, 4, params={"system_id": "SMSC", "password": "pw"}),
    Pdu(smpp.UNBIND, 5),
    Pdu(smpp.UNBIND_RESP, 5),
    Pdu(smpp.ENQUIRE_LINK, 6),
    Pdu(smpp.ENQUIRE_LINK_RESP, 6),
    Pdu(smpp.GENERIC_NACK, 7, smpp.ESME_RINVCMDID),
    Pdu(
        smpp.SUBMIT_SM,
        8,
        params={"destination_addr": "1555", "short_message": b"\x00\xff"},
        tlvs={
            "sar_msg_ref_num": 0x1234,
            "sar_total_segments": 3,
            "sar_segment_seqnum": 2,
            "source_port": 9200,
            "destination_port": 2948,
            "user_message_reference": 9,
        },
    ),
    Pdu(
        smpp.SUBMIT_SM,
        9,
        params={"destination_addr": "1555", "short_message": b""},
        tlvs={"message_payload": bytes(range(256)) * 10},
    ),
    Pdu(smpp.SUBMIT_SM_RESP, 8, params={"message_id": "4ce2802f-0001"}),
    Pdu(
        smpp.DELIVER_SM,
        10,
        params={"source_addr": "1555", "esm_class": 4, "short_message": b"id:1 stat:DELIVRD"},
        tlvs={
            "receipted_message_id": "1",
            "message_state": 2,
            "network_error_code": b"\x03\x00\x01",
        },
    ),
    Pdu(smpp.DELIVER_SM_RESP, 10, params={"message_id": ""}),
    Pdu(
        smpp.DATA_SM,
        11,
        params={"source_addr": "1", "destination_addr": "2", "esm_class": 0, "data_coding": 4},
        tlvs={"message_payload": b"abc", "destination_port": 2948},
    ),
    Pdu(
        smpp.DATA_SM_RESP,
        11,
        params={"message_id": "x"},
        tlvs={"additional_status_info_text": "fine"},
    ),
    Pdu(smpp.SUBMIT_SM, 12, params={"short_message": b"x"}, tlvs={0x1400: b"vendor"}),
]


@pytest.mark.parametrize("pdu", ROUND_TRIPS, ids=lambda p: f"{p.name}-{p.sequence}")
def test_every_pdu_round_trips(pdu: Pdu) -> None:
    raw = smpp.encode(pdu)
    assert int.from_bytes(raw[:4], "big") == len(raw)
    back = smpp.decode(raw)
    assert (back.command_id, back.sequence, back.status) == (
        pdu.command_id,
        pdu.sequence,
        pdu.status,
    )
    for key, value in pdu.params.items():
        assert back.params[key] == value
    assert back.tlvs == pdu.tlvs
    assert smpp.encode(back) == raw


def test_error_responses_may_omit_the_body() -> None:
    """§4.4.2: submit_sm_resp carries no message_id when command_status is non-zero."""
    raw = smpp.HEADER.pack(16, smpp.SUBMIT_SM_RESP, smpp.ESME_RTHROTTLED, 42)
    pdu = smpp.decode(raw)
    assert pdu.status == smpp.ESME_RTHROTTLED and pdu.params == {}
    raw = smpp.HEADER.pack(16, smpp.BIND_TRANSCEIVER_RESP, smpp.ESME_RINVPASWD, 1)
    assert smpp.decode(raw).params == {}


def test_status_names() -> None:
    assert smpp.status_name(0x58) == "ESME_RTHROTTLED"
    assert smpp.status_name(0x14) == "ESME_RMSGQFUL"
    assert smpp.status_name(0x0B) == "ESME_RINVDSTADR"
    assert smpp.status_name(0x401) == "vendor-0x00000401"
    assert smpp.status_name(0x99) == "0x00000099"
    assert len(smpp.COMMAND_STATUS) == 48


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"\x00\x00\x00\x10\x00\x00\x00", "shorter than the SMPP header"),
        (smpp.HEADER.pack(20, smpp.ENQUIRE_LINK, 0, 1), "command_length 20"),
        (smpp.HEADER.pack(20, smpp.BIND_TRANSMITTER, 0, 1) + b"abcd", "no NUL"),
        (smpp.HEADER.pack(18, smpp.ENQUIRE_LINK, 0, 1) + b"xx", "unexpected octet"),
        (
            smpp.HEADER.pack(16 + 21, smpp.SUBMIT_SM, 0, 1)
            + b"\x00\x01\x01\x00\x01\x01\x00\x40\x00\x00\x00\x00\x00\x00\x04\x00\x05ab\x00\x00",
            "exceeds the PDU",
        ),
        (
            smpp.encode(Pdu(smpp.SUBMIT_SM, 1, params={"short_message": b"x"}))[: -0 or None]
            + b"\x02\x0a\x00\x05\x00",
            "command_length",
        ),
    ],
)
def test_malformed_pdus_raise_decode_error(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        smpp.decode(raw)


def test_tlv_running_past_the_pdu_is_an_error() -> None:
    good = smpp.encode(Pdu(smpp.SUBMIT_SM, 1, params={"short_message": b"x"}))
    body = good[16:] + b"\x02\x0a\x00\x05\x00"  # destination_port claims 5 octets, has 1
    raw = smpp.HEADER.pack(16 + len(body), smpp.SUBMIT_SM, 0, 1) + body
    with pytest.raises(DecodeError, match="runs past the PDU"):
        smpp.decode(raw)


def test_integer_tlv_wider_than_its_field() -> None:
    """A 1-octet TLV written in 2 octets decodes as a number when it fits the field
    and as the octets received when it does not; either way it encodes again
    (a case hypothesis found: privacy_indicator 0x0B84 escaped as an EncodeError)."""
    good = smpp.encode(Pdu(smpp.SUBMIT_SM, 1, params={"short_message": b"x"}))
    for octets, expected in ((b"\x00\x02", 2), (b"\x0b\x84", b"\x0b\x84")):
        body = good[16:] + b"\x02\x01\x00\x02" + octets  # privacy_indicator, 2 octets
        raw = smpp.HEADER.pack(16 + len(body), smpp.SUBMIT_SM, 0, 1) + body
        pdu = smpp.decode(raw)
        assert pdu.tlvs["privacy_indicator"] == expected
        again = smpp.decode(smpp.encode(pdu))
        assert again.tlvs["privacy_indicator"] == expected


def test_encoder_refuses_what_does_not_fit() -> None:
    with pytest.raises(EncodeError, match="system_id"):
        smpp.encode(Pdu(smpp.BIND_TRANSMITTER, 1, params={"system_id": "x" * 16}))
    with pytest.raises(EncodeError, match="short_message"):
        smpp.encode(Pdu(smpp.SUBMIT_SM, 1, params={"short_message": b"x" * 255}))
    with pytest.raises(EncodeError, match="unknown TLV"):
        smpp.encode(Pdu(smpp.SUBMIT_SM, 1, tlvs={"no_such_tlv": 1}))
    with pytest.raises(EncodeError, match="sar_total_segments"):
        smpp.encode(Pdu(smpp.SUBMIT_SM, 1, tlvs={"sar_total_segments": 256}))
    with pytest.raises(EncodeError, match="no optional parameters"):
        smpp.encode(Pdu(smpp.ENQUIRE_LINK, 1, tlvs={"source_port": 1}))


def test_reader_cuts_a_stream_at_any_chunking() -> None:
    pdus = [smpp.encode(p) for p in ROUND_TRIPS]
    stream = b"".join(pdus)
    for chunk in (1, 3, 16, 17, 1000, len(stream)):
        reader = smpp.PduReader()
        got: list[bytes] = []
        for i in range(0, len(stream), chunk):
            got += reader.feed(stream[i : i + chunk])
        assert got == pdus and reader.pending == 0


@pytest.mark.parametrize("length", [0, 15, smpp.MAX_PDU_SIZE + 1])
def test_reader_rejects_impossible_lengths(length: int) -> None:
    with pytest.raises(DecodeError, match="not a PDU length"):
        smpp.PduReader().feed(length.to_bytes(4, "big") + bytes(12))


@given(st.binary(max_size=400))
def test_fuzz_decode_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        smpp.decode(data)


@given(st.sampled_from([smpp.encode(p) for p in ROUND_TRIPS]), st.data())
def test_fuzz_mutated_pdus_raise_only_decode_error(raw: bytes, data: st.DataObject) -> None:
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    mutated[:4] = len(mutated).to_bytes(4, "big")  # keep the framing so the body is exercised
    try:
        pdu = smpp.decode(bytes(mutated))
    except DecodeError:
        return
    smpp.encode(pdu)  # what decodes must encode again


@given(st.binary(max_size=300))
def test_fuzz_session_survives_garbage(data: bytes) -> None:
    session = bound_session()
    session.data_received(data, 1.0)
    session.timer(100.0)
    session.data_to_send()


# ----------------------------------------------------------------------------- receipts


def deliver(text: bytes, esm_class: int = smpp.ESM_TYPE_DELIVERY_RECEIPT, **tlvs: object) -> Pdu:
    return Pdu(
        smpp.DELIVER_SM, 5, params={"esm_class": esm_class, "short_message": text}, tlvs=tlvs
    )


def test_appendix_b_receipt_text() -> None:
    text = (
        b"id:0123456789 sub:001 dlvrd:001 submit date:2611261015 "
        b"done date:2611261016 stat:DELIVRD err:000 text:hello world"
    )
    receipt = parse_receipt(deliver(text))
    assert receipt == Receipt(
        message_id="0123456789",
        state="DELIVRD",
        error="000",
        submitted=datetime(2026, 11, 26, 10, 15, tzinfo=UTC),
        done=datetime(2026, 11, 26, 10, 16, tzinfo=UTC),
        text="hello world",
    )
    assert receipt.final and receipt.delivered


def test_receipt_dialects_and_tlvs() -> None:
    text = (
        b"ID:ab12 SUB:1 DLVRD:0 SUBMIT_DATE:261126101501 DONE_DATE:261126101702 "
        b"STAT:UNDELIV ERR:0x0B"
    )
    receipt = parse_receipt(deliver(text))
    assert receipt is not None
    assert (receipt.message_id, receipt.state, receipt.error) == ("ab12", "UNDELIV", "0x0B")
    assert receipt.done == datetime(2026, 11, 26, 10, 17, 2, tzinfo=UTC)
    assert receipt.final and not receipt.delivered
    # TLVs win over the text; the state comes from message_state.
    tlv = parse_receipt(
        deliver(
            b"id:zzz stat:DELIVRD",
            receipted_message_id="real-id",
            message_state=5,
            network_error_code=b"\x03\x00\x22",
        )
    )
    assert tlv is not None
    assert (tlv.message_id, tlv.state, tlv.network_error) == ("real-id", "UNDELIV", b"\x03\x00\x22")
    enroute = parse_receipt(deliver(b"id:9 stat:ENROUTE", esm_class=smpp.ESM_TYPE_INTERMEDIATE))
    assert enroute is not None and not enroute.final


def test_non_receipts_and_receipts_without_id() -> None:
    assert not is_receipt(deliver(b"hello", esm_class=0))
    assert parse_receipt(deliver(b"hello", esm_class=0)) is None
    assert parse_receipt(deliver(b"stat:DELIVRD")) is None
    assert parse_receipt_text("garbage without fields") == {}


def test_receipt_id_forms_cover_hex_and_decimal() -> None:
    assert Receipt("255", "DELIVRD").id_candidates() == ("255",)
    assert Receipt("255", "DELIVRD").converted_candidates() == ("ff",)
    assert Receipt("00ff", "DELIVRD").id_candidates() == ("00ff", "ff")
    assert Receipt("00ff", "DELIVRD").converted_candidates() == ("255",)
    assert Receipt("4ce2802f-77", "DELIVRD").id_candidates() == ("4ce2802f-77",)
    assert Receipt("4ce2802f-77", "DELIVRD").converted_candidates() == ()
    assert Receipt("²", "DELIVRD").converted_candidates() == ()  # isdigit(), but no number


# ----------------------------------------------------------------------------- session


def answer(session: SmppSession, pdu: Pdu, now: float) -> list[object]:
    return list(session.data_received(smpp.encode(pdu), now))


def sent(session: SmppSession) -> list[Pdu]:
    return [smpp.decode(raw) for raw in smpp.PduReader().feed(session.data_to_send())]


def bound_session(**kwargs: object) -> SmppSession:
    session = SmppSession(BindParams("mmsc", "pw"), **kwargs)  # type: ignore[arg-type]
    session.connection_made(0.0)
    (bind,) = sent(session)
    answer(session, Pdu(smpp.BIND_TRANSCEIVER_RESP, bind.sequence, params={"system_id": "S"}), 0.0)
    assert session.state is SessionState.BOUND
    return session


def test_bind_sends_the_configured_parameters_and_reports_bound() -> None:
    params = BindParams("mmsc", "pw", mode="transmitter", system_type="WAP", addr_ton=1)
    session = SmppSession(params)
    session.connection_made(5.0)
    (bind,) = sent(session)
    assert bind.command_id == smpp.BIND_TRANSMITTER
    assert bind.params == {
        "system_id": "mmsc",
        "password": "pw",
        "system_type": "WAP",
        "interface_version": 0x34,
        "addr_ton": 1,
        "addr_npi": 0,
        "address_range": "",
    }
    assert session.state is SessionState.BINDING and not session.can_submit
    events = answer(
        session,
        Pdu(
            smpp.BIND_TRANSMITTER_RESP,
            bind.sequence,
            params={"system_id": "SMSC"},
            tlvs={"sc_interface_version": 0x34},
        ),
        5.1,
    )
    assert events == [Bound("SMSC", 0x34)]
    assert session.can_submit
    assert "pw" not in repr(params)


def test_refused_and_unanswered_binds() -> None:
    session = SmppSession(BindParams("mmsc", "bad"))
    session.connection_made(0.0)
    (bind,) = sent(session)
    events = answer(session, Pdu(smpp.BIND_TRANSCEIVER_RESP, bind.sequence, smpp.ESME_RINVPASWD), 1)
    assert events == [BindFailed(smpp.ESME_RINVPASWD, "bind refused: ESME_RINVPASWD")]
    assert session.state is SessionState.CLOSED
    silent = SmppSession(BindParams("mmsc", "pw"), response_timeout=2.0)
    silent.connection_made(0.0)
    assert silent.next_deadline() == 2.0
    assert silent.timer(1.9) == []
    (failed,) = silent.timer(2.0)
    assert isinstance(failed, BindFailed) and failed.status is None


def test_window_limits_requests_in_flight() -> None:
    session = bound_session(window=2)
    first = session.submit_sm({"destination_addr": "1"}, 1.0, tag="a")
    second = session.submit_sm({"destination_addr": "2"}, 1.0, tag="b")
    assert not session.can_submit and session.in_flight == 2
    with pytest.raises(SessionError, match="window of 2 is full"):
        session.submit_sm({}, 1.0)
    assert [p.sequence for p in sent(session)] == [first, second]
    events = answer(session, Pdu(smpp.SUBMIT_SM_RESP, second, params={"message_id": "m2"}), 1.5)
    (response,) = events
    assert isinstance(response, Response) and response.ok and response.tag == "b"
    assert response.response.params["message_id"] == "m2"
    assert response.received_at - response.sent_at == 0.5
    assert session.can_submit and session.in_flight == 1
    (nack,) = answer(session, Pdu(smpp.GENERIC_NACK, first, smpp.ESME_RSYSERR), 2.0)
    assert isinstance(nack, Response) and not nack.ok and nack.tag == "a"


def test_responses_time_out_in_order_and_free_the_window() -> None:
    session = bound_session(window=3, response_timeout=10.0)
    session.submit_sm({}, 1.0, tag=1)
    session.submit_sm({}, 2.0, tag=2)
    assert session.next_deadline() == 11.0
    (first,) = session.timer(11.0)
    assert isinstance(first, RequestTimedOut) and first.tag == 1
    assert session.in_flight == 1
    (second,) = session.timer(12.5)
    assert isinstance(second, RequestTimedOut) and second.tag == 2
    # A late answer to a timed-out request is reported, not matched.
    (late,) = answer(session, Pdu(smpp.SUBMIT_SM_RESP, 2), 13.0)
    assert isinstance(late, Ignored)


def test_keepalive_is_sent_when_quiet_and_a_dead_link_is_detected() -> None:
    session = bound_session(enquire_link_interval=30.0, response_timeout=5.0)
    sent(session)
    assert session.next_deadline() == 30.0
    assert session.timer(29.0) == [] and sent(session) == []
    assert session.timer(30.0) == []
    (enquire,) = sent(session)
    assert enquire.command_id == smpp.ENQUIRE_LINK
    assert answer(session, Pdu(smpp.ENQUIRE_LINK_RESP, enquire.sequence), 31.0) == []
    assert session.next_deadline() == 61.0
    session.timer(61.0)
    (again,) = sent(session)
    assert session.timer(65.9) == []
    events = session.timer(66.0)
    assert isinstance(events[-1], LinkFailed) and "enquire_link" in events[-1].reason
    assert session.state is SessionState.CLOSED and again.command_id == smpp.ENQUIRE_LINK


def test_peer_requests_are_answered() -> None:
    session = bound_session()
    assert answer(session, Pdu(smpp.ENQUIRE_LINK, 900), 1.0) == []
    (resp,) = sent(session)
    assert (resp.command_id, resp.sequence) == (smpp.ENQUIRE_LINK_RESP, 900)
    receipt = deliver(b"id:1 stat:DELIVRD")
    (message,) = answer(session, receipt, 1.0)
    assert isinstance(message, MessageReceived) and message.pdu.params["esm_class"] == 4
    session.respond(message.pdu)
    (ack,) = sent(session)
    assert (ack.command_id, ack.sequence, ack.status) == (smpp.DELIVER_SM_RESP, 5, 0)
    (ignored,) = answer(session, Pdu(smpp.SUBMIT_SM, 901, params={"short_message": b""}), 1.0)
    assert isinstance(ignored, Ignored)
    (nack,) = sent(session)
    assert (nack.command_id, nack.status) == (smpp.GENERIC_NACK, smpp.ESME_RINVCMDID)


def test_unreadable_deliver_sm_is_refused_for_good_and_alerts_get_no_answer() -> None:
    """A deliver_sm we cannot decode (a 22-character source_addr) gets deliver_sm_resp
    ESME_RX_P_APPN, so the SMSC stops redelivering it, not generic_nack; an
    alert_notification gets no answer at all (§4.12)."""
    session = bound_session()
    body = smpp.encode(deliver(b"id:1 stat:DELIVRD"))[16:]
    body = body[:3] + b"x" * 22 + body[body.index(b"\x00", 3) :]  # source_addr too long
    raw = smpp.HEADER.pack(16 + len(body), smpp.DELIVER_SM, 0, 77) + body
    (ignored,) = session.data_received(raw, 1.0)
    assert isinstance(ignored, Ignored) and "undecodable" in ignored.reason
    (resp,) = sent(session)
    assert (resp.command_id, resp.sequence, resp.status) == (
        smpp.DELIVER_SM_RESP,
        77,
        smpp.ESME_RX_P_APPN,
    )
    alert = Pdu(
        smpp.ALERT_NOTIFICATION,
        78,
        params={"source_addr": "1", "esme_addr": "mmsc"},
    )
    (ignored,) = answer(session, alert, 1.0)
    assert isinstance(ignored, Ignored)
    assert session.data_to_send() == b""


def test_submit_sm_resp_with_tlvs_keeps_its_message_id() -> None:
    """SMPP 5.0 §4.2.5 TLVs after a submit_sm_resp (sent on 3.4 binds too)."""
    body = b"ABCDEF01\x00" + b"\x00\x1d\x00\x05busy\x00"  # additional_status_info_text
    raw = smpp.HEADER.pack(16 + len(body), smpp.SUBMIT_SM_RESP, 0, 3) + body
    pdu = smpp.decode(raw)
    assert pdu.params["message_id"] == "ABCDEF01"
    assert pdu.tlvs == {"additional_status_info_text": "busy"}
    assert smpp.decode(smpp.encode(pdu)).params["message_id"] == "ABCDEF01"


def test_transmitter_refuses_deliver_sm() -> None:
    session = SmppSession(BindParams("a", "b", mode="transmitter"))
    session.connection_made(0.0)
    (bind,) = sent(session)
    answer(session, Pdu(smpp.BIND_TRANSMITTER_RESP, bind.sequence), 0.0)
    (ignored,) = answer(session, deliver(b"id:1"), 0.1)
    assert isinstance(ignored, Ignored)
    (resp,) = sent(session)
    assert resp.status == smpp.ESME_RINVBNDSTS


def test_unbind_from_either_side_aborts_what_is_outstanding() -> None:
    session = bound_session()
    session.submit_sm({}, 1.0, tag="x")
    sent(session)
    events = answer(session, Pdu(smpp.UNBIND, 77), 2.0)
    assert events == [
        RequestAborted(events[0].request, "x", "unbound by the SMSC"),  # type: ignore[union-attr]
        Unbound(by_peer=True),
    ]
    (resp,) = sent(session)
    assert (resp.command_id, resp.sequence) == (smpp.UNBIND_RESP, 77)
    ours = bound_session()
    ours.unbind(3.0)
    (unbind,) = sent(ours)
    assert ours.state is SessionState.UNBINDING and not ours.can_submit
    assert answer(ours, Pdu(smpp.UNBIND_RESP, unbind.sequence), 3.1) == [Unbound(by_peer=False)]


def test_framing_loss_and_connection_loss() -> None:
    session = bound_session()
    events = session.data_received(b"\x00\x00\x00\x05garbage", 1.0)
    assert isinstance(events[-1], LinkFailed)
    (nack,) = sent(session)
    assert nack.status == smpp.ESME_RINVCMDLEN
    other = bound_session()
    other.submit_sm({}, 1.0, tag="t")
    events = other.connection_lost("reset")
    assert [type(e) for e in events] == [RequestAborted, LinkFailed]
    assert other.connection_lost() == []


def test_undecodable_request_gets_generic_nack_and_session_goes_on() -> None:
    session = bound_session()
    raw = smpp.HEADER.pack(20, smpp.OUTBIND, 0, 33) + b"abcd"  # no NUL in system_id
    (ignored,) = session.data_received(raw, 1.0)
    assert isinstance(ignored, Ignored)
    (nack,) = sent(session)
    assert (nack.command_id, nack.sequence, nack.status) == (smpp.GENERIC_NACK, 33, 1)
    assert session.state is SessionState.BOUND


def test_sequence_numbers_wrap_within_the_valid_range() -> None:
    session = bound_session(window=5)
    session._sequence = 0x7FFFFFFE
    first = session.submit_sm({}, 1.0)
    second = session.submit_sm({}, 1.0)
    assert (first, second) == (0x7FFFFFFF, 1)


def test_receiver_bind_cannot_submit() -> None:
    session = SmppSession(BindParams("a", "b", mode="receiver"))
    session.connection_made(0.0)
    (bind,) = sent(session)
    assert bind.command_id == smpp.BIND_RECEIVER
    answer(session, Pdu(smpp.BIND_RECEIVER_RESP, bind.sequence), 0.0)
    with pytest.raises(SessionError, match="receiver"):
        session.submit_sm({}, 1.0)
    with pytest.raises(ValueError, match="bind mode"):
        BindParams("a", "b", mode="both")
