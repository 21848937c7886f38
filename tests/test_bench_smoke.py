"""The benchmark's synthetic m-send-req is still the message its figures claim to measure.

Why: bench/codec_bench.py quotes µs per decode of a ~31 KB three-part
m-send-req; if the builder drifted in size or shape, or stopped round-tripping
through the codec, those figures would silently describe another message.
No timing runs here.
"""

from __future__ import annotations

import io

from PIL import Image

from bench.codec_bench import JPEG_DIMENSIONS, build_send_req, header_block
from protocol import mms


def test_synthetic_send_req_size_parts_and_roundtrip() -> None:
    pdu = build_send_req()
    wire = mms.encode(pdu)
    assert 30_000 <= len(wire) <= 33_000
    assert wire == mms.encode(build_send_req()), "the builder must be deterministic"

    decoded = mms.decode(wire)
    assert decoded.message_type == "m-send-req"
    assert decoded.mms_version == "1.2"
    assert decoded.headers == pdu.headers
    assert decoded.content_type == pdu.content_type
    assert decoded.content_type_params == pdu.content_type_params
    assert decoded.parts is not None and pdu.parts is not None
    assert len(decoded.parts) == 3
    assert [(p.content_type, p.params, p.headers, bytes(p.data)) for p in decoded.parts] == [
        (p.content_type, p.params, p.headers, bytes(p.data)) for p in pdu.parts
    ]
    assert mms.encode(decoded) == wire


def test_synthetic_jpeg_is_a_real_image() -> None:
    pdu = build_send_req()
    assert pdu.parts is not None
    jpeg = bytes(pdu.parts[2].data)
    with Image.open(io.BytesIO(jpeg)) as img:
        img.load()
        assert img.format == "JPEG" and img.size == JPEG_DIMENSIONS


def test_header_block_decodes_without_a_body() -> None:
    pdu = build_send_req()
    head = mms.decode(header_block(pdu))
    assert head.headers == pdu.headers
    assert head.content_type is None and head.parts is None
