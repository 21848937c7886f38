"""Property tests: valid PDUs of every type round-trip; any bytes give our error or a PDU."""

from __future__ import annotations

import contextlib
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import mms, wap_push, wsp
from protocol.errors import DecodeError, EncodeError
from protocol.mms_json import pdu_from_json, pdu_to_json
from protocol.mms_tables import MESSAGE_TYPES
from tests.conftest import mms_manifest
from tests.strategies import mms_pdus

# MMSC_HYPOTHESIS_SCALE shrinks or grows every example count (the plain-Python rerun
# in test_pure_python.py uses a fraction; a long fuzzing session can use more).
SCALE = float(os.environ.get("MMSC_HYPOTHESIS_SCALE", "1"))


def examples(n: int) -> int:
    return max(5, int(n * SCALE))


PROFILE = settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _normal(pdu: mms.MmsPdu) -> tuple:
    parts = None
    if pdu.parts is not None:
        parts = [(p.content_type, p.params, p.headers, bytes(p.data)) for p in pdu.parts]
    return (
        pdu.message_type,
        pdu.transaction_id,
        pdu.mms_version,
        pdu.headers,
        pdu.content_type,
        pdu.content_type_params,
        parts,
        None if pdu.body is None else bytes(pdu.body),
    )


@pytest.mark.parametrize("message_type", [name for name, _ in MESSAGE_TYPES.values()])
@PROFILE
@given(data=st.data())
def test_every_pdu_type_roundtrips(message_type: str, data: st.DataObject) -> None:
    pdu = data.draw(mms_pdus(message_type))
    encoded = mms.encode(pdu)
    assert encoded[:2] == bytes((0x8C, mms.MESSAGE_TYPE_CODES[message_type]))
    decoded = mms.decode(encoded)
    assert _normal(decoded) == _normal(pdu)
    # The JSON form carries the same PDU.
    via_json = pdu_from_json(json.loads(json.dumps(pdu_to_json(decoded))))
    assert mms.encode(via_json) == encoded


@PROFILE
@given(pdu=mms_pdus())
def test_strict_header_order(pdu: mms.MmsPdu) -> None:
    """Type, transaction id, version first; Content-Type last; notification Location last."""
    encoded = mms.encode(pdu)
    assert encoded[0] == 0x8C
    pos = 2
    if pdu.transaction_id is not None:
        assert encoded[pos] == 0x98
        pos = encoded.index(0, pos) + 1
    assert encoded[pos] == 0x8D
    if pdu.message_type == "m-notification-ind":
        location = encoded.rindex(b"\x83")
        assert encoded.endswith(b"\x00")
        assert (
            mms.decode(encoded).headers["X-Mms-Content-Location"]
            == mms.decode(encoded[:location] + encoded[location:]).headers["X-Mms-Content-Location"]
        )


@PROFILE
@given(pdu=mms_pdus(), target=st.sampled_from(["1.0", "1.1", "1.2", "1.3"]))
def test_target_version_never_gets_newer_fields(pdu: mms.MmsPdu, target: str) -> None:
    from protocol.mms_tables import FIELD_CODES, FIELDS

    try:
        encoded = mms.encode(pdu, version=target)
    except EncodeError as exc:
        assert "does not exist in MMS" in str(exc)
        return
    decoded = mms.decode(encoded)
    assert decoded.mms_version == target
    limit = mms.parse_version(target)
    for name in decoded.headers:
        code = FIELD_CODES.get(name.lower())
        if code is not None:
            assert FIELDS[code][2] <= limit, f"{name} emitted for MMS {target}"


CORPUS_PDUS = [v.path.read_bytes() for v in mms_manifest() if v.kind == "mms" and not v.negative]
CORPUS_PUSHES = [v.path.read_bytes() for v in mms_manifest() if v.kind == "push"]
SMALL_SEEDS = [d for d in CORPUS_PDUS if len(d) < 4096]


@settings(max_examples=examples(400), deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    decoders = (
        mms.decode,
        wap_push.decode_push,
        wap_push.decode_mms_push,
        wsp.decode_multipart,
        wap_push.parse_user_data,
        wap_push.parse_sms_deliver,
    )
    for decoder in decoders:
        with contextlib.suppress(DecodeError):
            decoder(data)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data)


@settings(max_examples=examples(500), deadline=None)
@given(mutated(SMALL_SEEDS + CORPUS_PUSHES))
def test_mutated_corpus_only_raises_decode_error(data: bytes) -> None:
    """Whatever decodes can be shown as JSON and re-encoded (or refused with EncodeError)."""
    for decoder in (mms.decode, lambda d: wap_push.decode_mms_push(d)[1]):
        try:
            pdu = decoder(data)
        except DecodeError:
            continue
        json.dumps(pdu_to_json(pdu))
        try:
            again = mms.encode(pdu, check_mandatory=False)
        except EncodeError:
            continue
        assert mms.decode(again).message_type == pdu.message_type
