"""Content adaptation units: images, SMIL and whole messages, with media drawn here."""

from __future__ import annotations

import io
import random
from dataclasses import replace

import pytest
from PIL import Image, ImageDraw

from mmsc.adapt import smil
from mmsc.adapt.images import ImageError, ImageLimits, adapt_image
from mmsc.adapt.pipeline import MIXED, RELATED, Target, adapt
from mmsc.adapt.worker import adapt_submission, needs_adaptation
from protocol import mms
from protocol.mms import MmsPdu
from protocol.wsp import Part

JPEG_PNG_GIF = frozenset({"image/jpeg", "image/png", "image/gif", "text/plain", "application/smil"})


def photo(width: int, height: int, *, seed: int = 1, fmt: str = "JPEG", **save: object) -> bytes:
    """A noisy picture: compresses like a photograph, not like a flat test card."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for _ in range(300):
        x, y = rng.randrange(width), rng.randrange(height)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 200)), fill=colour)
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    image = Image.blend(image, noise, 0.25)
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def info(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


def limits(w: int = 640, h: int = 480, budget: int = 100_000, **kw: object) -> ImageLimits:
    return ImageLimits(w, h, budget, kw.pop("accept", JPEG_PNG_GIF), **kw)  # type: ignore[arg-type]


def test_a_2mp_photo_is_scaled_into_the_box_and_the_budget() -> None:
    data = photo(1600, 1200)
    out = adapt_image(data, "image/jpeg", limits(176, 208, 30_000))
    assert out.changed and out.content_type == "image/jpeg"
    fmt, size = info(out.data)
    assert fmt == "JPEG" and size[0] <= 208 and size[1] <= 176 and len(out.data) <= 30_000
    assert abs(size[0] / size[1] - 4 / 3) < 0.02  # aspect ratio kept


def test_a_fitting_image_is_passed_through_untouched() -> None:
    data = photo(320, 240)
    out = adapt_image(data, "image/jpeg", limits())
    assert not out.changed and out.data == data


def test_png_becomes_jpeg_when_png_is_not_accepted_and_transparency_is_flattened() -> None:
    image = Image.new("RGBA", (300, 200), (255, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((50, 50, 250, 150), fill=(0, 0, 255, 255))
    out_png = io.BytesIO()
    image.save(out_png, "PNG")
    accept = frozenset({"image/jpeg", "image/gif"})
    out = adapt_image(out_png.getvalue(), "image/png", limits(accept=accept))
    assert out.content_type == "image/jpeg"
    with Image.open(io.BytesIO(out.data)) as result:
        assert result.getpixel((5, 5))[0] > 240  # transparent corner became white, not black
        r, _g, b = result.getpixel((150, 100))
        assert b > 200 and r < 60


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = photo(400, 200, exif=exif.tobytes())
    out = adapt_image(data, "image/jpeg", limits(640, 480))
    assert out.changed
    assert info(out.data)[1] == (200, 400)


def test_animated_gif_keeps_frames_and_timing_or_becomes_one_frame() -> None:
    frames = [Image.new("RGB", (400, 300), (i * 50, 255 - i * 50, 0)) for i in range(5)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
    gif = out.getvalue()
    scaled = adapt_image(gif, "image/gif", limits(160, 120, 50_000))
    with Image.open(io.BytesIO(scaled.data)) as result:
        assert result.format == "GIF" and result.size == (160, 120)
        assert result.n_frames == 5 and result.info["duration"] == 120
    still = adapt_image(gif, "image/gif", limits(160, 120, 50_000, animation=False))
    with Image.open(io.BytesIO(still.data)) as result:
        assert getattr(result, "n_frames", 1) == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8\xff\xe0 truncated",
        photo(300, 300)[:200],
        b"GIF89a" + bytes(20),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    ],
)
def test_corrupt_images_raise_image_error(data: bytes) -> None:
    with pytest.raises(ImageError):
        adapt_image(data, "image/jpeg", limits(100, 100, 10_000))


def test_decompression_bomb_is_refused_before_decoding() -> None:
    big = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(big, "PNG")  # tiny file, 400 Mpx
    with pytest.raises(ImageError, match="pixels"):
        adapt_image(big.getvalue(), "image/png", limits(max_pixels=40_000_000))


# ----------------------------------------------------------------------------- SMIL


SMIL_DOC = (
    b'<smil><head><layout><region id="Image"/></layout></head><body>'
    b'<par dur="5s"><img src="cid:big" region="Image"/><text src="cid:txt"/></par>'
    b'<par dur="5s"><video src="cid:vid"/></par>'
    b'<par dur="5s"><img src="photo.png"/></par>'
    b"</body></smil>"
)


def test_smil_follows_dropped_and_renamed_parts() -> None:
    out = smil.rewrite(SMIL_DOC, renamed={"photo.png": "photo.jpg"}, dropped={"vid", "big"})
    assert b"cid:big" not in out and b"cid:vid" not in out
    assert b'src="photo.jpg"' in out and b"cid:txt" in out
    assert out.count(b"<par") == 2  # the video-only slide is gone


def test_smil_with_entities_is_refused() -> None:
    bomb = b'<!DOCTYPE smil [<!ENTITY a "aaaa">]><smil>&a;</smil>'
    with pytest.raises(smil.SmilError):
        smil.rewrite(bomb, renamed={}, dropped=set())


def test_smil_doctype_is_cut_where_it_really_ends() -> None:
    """A ">" inside the DOCTYPE's quoted system id does not end it (XML 1.0 §2.8)."""
    doc = b'<!DOCTYPE smil SYSTEM "odd>name.dtd">' + SMIL_DOC
    out = smil.rewrite(doc, renamed={"photo.png": "photo.jpg"}, dropped=set())
    assert out.startswith(b"<smil") and b'src="photo.jpg"' in out


def test_smil_nested_too_deep_is_refused() -> None:
    deep = b"<smil>" + b"<par>" * 40 + b"</par>" * 40 + b"</smil>"
    with pytest.raises(smil.SmilError, match="deeper"):
        smil.rewrite(deep, renamed={"a": "b"}, dropped=set())


# ----------------------------------------------------------------------------- messages


def message_parts() -> list[Part]:
    return [
        Part(
            "application/smil",
            {},
            {"Content-ID": "<smil>"},
            SMIL_DOC.replace(b"cid:big", b"cid:img"),
        ),
        Part(
            "text/plain",
            {"charset": "iso-8859-1"},
            {"Content-ID": "<txt>"},
            "Grüße".encode("latin-1"),
        ),
        Part("image/jpeg", {"name": "a.jpg"}, {"Content-ID": "<img>"}, photo(1600, 1200, seed=2)),
        Part(
            "image/png",
            {"name": "photo.png"},
            {"Content-ID": "<png>", "Content-Location": "photo.png"},
            photo(800, 600, seed=3, fmt="PNG"),
        ),
        Part("video/mp4", {"name": "v.mp4"}, {"Content-ID": "<vid>"}, bytes(5000)),
    ]


def measure(result: object) -> int:
    adapted = result
    pdu = MmsPdu(
        "m-retrieve-conf",
        "t",
        "1.2",
        {"Message-ID": "m", "Date": 1, "From": "+1555/TYPE=PLMN", "Subject": "s"},
        adapted.content_type,  # type: ignore[attr-defined]
        adapted.params,  # type: ignore[attr-defined]
        adapted.parts,  # type: ignore[attr-defined]
    )
    return len(mms.encode(pdu, check_mandatory=False))


def test_small_phone_gets_a_message_within_its_limits() -> None:
    target = Target(
        max_message_size=100_000,
        max_width=176,
        max_height=208,
        accept=frozenset({"image/jpeg", "image/gif", "text/plain", "application/smil"}),
    )
    params = {"start": "<smil>", "type": "application/smil"}
    result = adapt(RELATED, params, message_parts(), target, measure)
    assert measure(result) <= 100_000
    types = [p.content_type for p in result.parts]
    assert types[0] == "application/smil" and result.content_type == RELATED
    assert "image/png" not in types and "video/mp4" not in types
    for part in result.parts:
        if part.content_type.startswith("image/"):
            fmt, (w, h) = info(bytes(part.data))
            assert fmt == "JPEG" and max(w, h) <= 208 and min(w, h) <= 176
    text = next(p for p in result.parts if p.headers.get("Content-ID") == "<txt>")
    assert text.params["charset"] == "utf-8" and bytes(text.data).decode() == "Grüße"
    converted = next(p for p in result.parts if p.headers.get("Content-ID") == "<png>")
    assert (
        converted.params["name"] == "photo.jpg"
        and converted.headers["Content-Location"] == "photo.jpg"
    )
    smil_out = bytes(result.parts[0].data)
    assert b"cid:vid" not in smil_out and b'src="photo.jpg"' in smil_out
    note = next(p for p in result.parts if p.headers.get("Content-ID") == "<mmsc-removed>")
    assert b"v.mp4" in bytes(note.data)
    assert result.dropped == 1 and result.converted == 2


def test_bigger_phone_gets_a_bigger_variant() -> None:
    small = adapt(RELATED, {}, message_parts(), Target(max_message_size=100_000), measure)
    large = adapt(
        RELATED,
        {},
        message_parts(),
        Target(max_message_size=600_000, max_width=1024, max_height=768, accept=frozenset({"*/*"})),
        measure,
    )
    assert measure(large) <= 600_000 and measure(large) > measure(small)


def test_without_smil_the_message_becomes_mixed() -> None:
    result = adapt(RELATED, {}, message_parts(), Target(smil=False), measure)
    assert result.content_type == MIXED
    assert "application/smil" not in [p.content_type for p in result.parts]


def test_a_smil_is_generated_when_wanted() -> None:
    parts = [p for p in message_parts() if p.content_type != "application/smil"]
    result = adapt(MIXED, {}, parts, Target(generate_smil=True), measure)
    assert result.content_type == RELATED and result.params["start"] == "<smil>"
    assert b"cid:img" in bytes(result.parts[0].data)


def test_text_is_kept_when_nothing_else_fits() -> None:
    target = Target(max_message_size=2_000)
    result = adapt(RELATED, {}, message_parts(), target, measure)
    assert measure(result) <= 2_000
    texts = [bytes(p.data) for p in result.parts if p.content_type == "text/plain"]
    assert "Grüße".encode() in texts


# ----------------------------------------------------------------------------- audio, video


def ffmpeg_media(args: list[str], suffix: str) -> bytes:
    """A clip generated by ffmpeg's own test sources (lavfi)."""
    import subprocess
    import tempfile
    from pathlib import Path

    from mmsc.adapt import media

    binary = media.ffmpeg()
    assert binary is not None, "ffmpeg is installed by scripts/test-deps.sh"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"clip{suffix}"
        subprocess.run(
            [binary, "-v", "error", "-y", *args, str(out)], check=True, capture_output=True
        )
        return out.read_bytes()


def wav(seconds: int = 3) -> bytes:
    return ffmpeg_media(["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"], ".wav")


def movie() -> bytes:
    return ffmpeg_media(
        [
            "-f", "lavfi", "-i", "testsrc=size=640x480:rate=25:duration=3",
            "-f", "lavfi", "-i", "sine=duration=3",
            "-c:v", "libx264", "-b:v", "2000k", "-c:a", "aac", "-shortest",
        ],
        ".mp4",
    )  # fmt: skip


def test_audio_the_handset_cannot_play_is_transcoded() -> None:
    parts = [
        Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<t>"}, b"listen"),
        Part(
            "audio/x-wav",
            {"name": "tone.wav"},
            {"Content-ID": "<a>", "Content-Location": "tone.wav"},
            wav(),
        ),
    ]
    target = Target(accept=frozenset({"text/plain", "audio/mpeg"}))
    result = adapt(MIXED, {}, parts, target, measure)
    audio = next(p for p in result.parts if p.headers.get("Content-ID") == "<a>")
    assert audio.content_type == "audio/mpeg" and audio.params["name"] == "tone.mp3"
    assert audio.headers["Content-Location"] == "tone.mp3"
    assert bytes(audio.data)[:3] == b"ID3" or bytes(audio.data)[0] == 0xFF
    assert result.converted == 1 and result.dropped == 0


def test_video_is_transcoded_down_the_ladder_to_fit() -> None:
    clip = movie()
    parts = [Part("video/mp4", {"name": "clip.mp4"}, {"Content-ID": "<v>"}, clip)]
    target = Target(max_message_size=120_000, accept=frozenset({"text/plain", "video/3gpp"}))
    result = adapt(MIXED, {}, parts, target, measure)
    video = next(p for p in result.parts if p.headers.get("Content-ID") == "<v>")
    assert video.content_type == "video/3gpp" and len(video.data) < 120_000 < len(clip)
    assert bytes(video.data)[4:8] == b"ftyp"


def test_without_ffmpeg_media_is_kept_if_playable_and_dropped_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mmsc.adapt import media

    monkeypatch.setattr(media, "ffmpeg", lambda: None)
    parts = [
        Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<t>"}, b"hi"),
        Part("audio/amr", {"name": "v.amr"}, {"Content-ID": "<amr>"}, b"#!AMR\n" + bytes(500)),
        Part("audio/x-wav", {"name": "w.wav"}, {"Content-ID": "<wav>"}, bytes(2000)),
    ]
    result = adapt(MIXED, {}, parts, Target(), measure)
    cids = [p.headers.get("Content-ID") for p in result.parts]
    assert "<amr>" in cids and "<wav>" not in cids and "<mmsc-removed>" in cids
    assert result.dropped == 1


@pytest.mark.parametrize(
    ("charset", "adapted"),
    [("utf-8", False), ("us-ascii", False), ("*", True), (None, True), ("iso-8859-1", True)],
)
def test_text_labels_the_handset_cannot_read_are_relabelled(
    charset: str | None, adapted: bool
) -> None:
    """WSP's Any-charset "*" (feature-matrix §4.6), a missing label or a charset outside
    the handset's list: the text goes out as UTF-8, labelled; a label it reads stays."""
    text = "Grüße".encode("latin-1") if charset in ("*", "iso-8859-1") else b"Hello"
    params = {} if charset is None else {"charset": charset}
    pdu = MmsPdu(
        "m-send-req",
        "T1",
        "1.2",
        {"From": "+15550000001/TYPE=PLMN", "To": ["+15550000002/TYPE=PLMN"]},
        MIXED,
        {},
        [Part("text/plain", params, {"Content-Location": "t.txt"}, text)],
    )
    raw = mms.encode(pdu)
    target = Target()
    assert needs_adaptation(raw, target) is adapted
    if adapted:
        out, _ = adapt_submission(raw, target)
        part = mms.decode(out).parts[0]
        assert part.params["charset"] == "utf-8"
        assert bytes(part.data).decode("utf-8") == text.decode("latin-1" if charset else "utf-8")


@pytest.mark.parametrize(
    ("start", "smil_cid"), [("smil", "<smil>"), ("<smil>", "smil"), ("<other>", "<smil>")]
)
def test_start_and_the_root_content_id_are_made_to_match(start: str, smil_cid: str) -> None:
    """A handset finds the presentation by comparing start with the Content-IDs as
    strings (feature-matrix §4.5): a mismatch is adapted into "<smil>" on both sides."""
    smil_doc = b'<smil><body><par><text src="cid:txt"/></par></body></smil>'
    pdu = MmsPdu(
        "m-send-req",
        "T1",
        "1.2",
        {"From": "+15550000001/TYPE=PLMN", "To": ["+15550000002/TYPE=PLMN"]},
        RELATED,
        {"start": start, "type": "application/smil"},
        [
            Part("application/smil", {}, {"Content-ID": smil_cid}, smil_doc),
            Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<txt>"}, b"Hi"),
        ],
    )
    raw = mms.encode(pdu)
    assert needs_adaptation(raw, Target())
    out = mms.decode(adapt_submission(raw, Target())[0])
    assert out.content_type_params["start"] == "<smil>"
    assert out.parts[0].content_type == "application/smil"
    assert out.parts[0].content_id == "<smil>"
    fitting = mms.encode(
        replace(pdu, content_type_params={"start": "<smil>", "type": "application/smil"})
    )
    assert needs_adaptation(fitting, Target()) is (smil_cid != "<smil>")
