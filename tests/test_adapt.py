"""Content adaptation units: images, SMIL and whole messages, with media drawn here."""

from __future__ import annotations

import io
import random
from dataclasses import replace

import pytest
from PIL import Image, ImageDraw

from mmsc.adapt import smil
from mmsc.adapt.images import ImageError, ImageLimits, adapt_image
from mmsc.adapt.pipeline import CUT_MARK, MIXED, RELATED, Target, adapt
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


# ----------------------------------------------------------------------------- audit fixes


def no_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmsc.adapt import media

    monkeypatch.setattr(media, "ffmpeg", lambda: None)


def send_req(
    content_type: str, params: dict[str, object], parts: list[Part] | None, **kw: object
) -> bytes:
    headers = {"From": "+15550000001/TYPE=PLMN", "To": ["+15550000002/TYPE=PLMN"]}
    return mms.encode(MmsPdu("m-send-req", "T1", "1.2", headers, content_type, params, parts, **kw))  # type: ignore[arg-type]


def test_media_are_settled_before_the_pictures_share_the_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A voice note that cannot fit is dropped first; the photo then has the whole room
    and is a picture, not the 3 KB thumbnail it got when its share was counted first."""
    no_ffmpeg(monkeypatch)
    parts = [
        Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<t>"}, b"look"),
        Part("image/jpeg", {"name": "p.jpg"}, {"Content-ID": "<p>"}, photo(1600, 1200)),
        Part("audio/amr", {"name": "v.amr"}, {"Content-ID": "<a>"}, b"#!AMR\n" + bytes(400_000)),
    ]
    target = Target()
    result = adapt(MIXED, {}, parts, target, measure)
    assert measure(result) <= target.max_message_size
    cids = [p.headers.get("Content-ID") for p in result.parts]
    assert "<a>" not in cids and "<mmsc-removed>" in cids
    picture = next(p for p in result.parts if p.headers.get("Content-ID") == "<p>")
    assert max(info(bytes(picture.data))[1]) >= 480


def test_a_voice_note_that_fits_beside_a_smaller_photo_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 70 KB voice note the handset plays and a photo, 130 KB in all: the note stays
    (it cannot be made smaller without ffmpeg) and the photo takes what is left."""
    no_ffmpeg(monkeypatch)
    note = b"#!AMR\n" + random.Random(1).randbytes(70_000)
    parts = [
        Part("image/jpeg", {"name": "p.jpg"}, {"Content-ID": "<p>"}, photo(1600, 1200)),
        Part("audio/amr", {"name": "v.amr"}, {"Content-ID": "<a>"}, note),
    ]
    target = Target(max_message_size=130_000)
    result = adapt(MIXED, {}, parts, target, measure)
    assert measure(result) <= target.max_message_size
    kept = {p.headers.get("Content-ID"): p for p in result.parts}
    assert bytes(kept["<a>"].data) == note
    assert info(bytes(kept["<p>"].data))[0] == "JPEG"


def test_text_alone_over_the_limit_is_cut_to_fit() -> None:
    text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 2200)[:120_000]
    parts = [
        Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<t>"}, text.encode()),
        Part("image/jpeg", {"name": "p.jpg"}, {"Content-ID": "<p>"}, photo(320, 240)),
    ]
    target = Target(max_message_size=100_000)
    result = adapt(MIXED, {}, parts, target, measure)
    assert measure(result) <= 100_000
    kept = next(p for p in result.parts if p.headers.get("Content-ID") == "<t>")
    out = bytes(kept.data).decode("utf-8")
    assert out.endswith(CUT_MARK) and text.startswith(out.removesuffix(CUT_MARK))
    assert len(out) > 90_000  # cut to what fits, not to nothing
    assert any("cut" in note for note in result.notes)


@pytest.mark.parametrize("kind", ["image", "text"])
def test_a_single_body_is_adapted_not_erased(kind: str) -> None:
    """An m-send-req whose body is one picture or one text (not multipart)."""
    if kind == "image":
        raw = send_req("image/jpeg", {"name": "p.jpg"}, None, body=photo(1600, 1200, quality=20))
    else:
        raw = send_req(
            "text/plain", {"charset": "iso-8859-1"}, None, body="Grüße".encode("latin-1")
        )
    target = Target()
    assert needs_adaptation(raw, target)
    out = mms.decode(adapt_submission(raw, target)[0])
    assert out.content_type == MIXED and out.parts is not None and len(out.parts) == 1
    part = out.parts[0]
    if kind == "image":
        assert part.content_type == "image/jpeg" and part.params["name"] == "p.jpg"
        assert info(bytes(part.data)) == ("JPEG", (640, 480))
    else:
        assert part.params["charset"] == "utf-8" and bytes(part.data).decode() == "Grüße"


WBMP = bytes([0, 0, 8, 2]) + bytes(2)  # type 0, 8x2 pixels, all black
SVG = b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>"


@pytest.mark.parametrize(("ctype", "data"), [("image/svg+xml", SVG), ("image/vnd.wap.wbmp", WBMP)])
def test_accepted_types_pillow_cannot_read_are_kept(ctype: str, data: bytes) -> None:
    target = Target(accept=Target().accept | {ctype})
    parts = [
        Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<t>"}, b"hi"),
        Part(ctype, {"name": "x"}, {"Content-ID": "<x>"}, data),
    ]
    assert not needs_adaptation(send_req(MIXED, {}, parts), target)
    result = adapt(MIXED, {}, parts, target, measure)
    assert result.dropped == 0
    kept = next(p for p in result.parts if p.headers.get("Content-ID") == "<x>")
    assert kept.content_type == ctype and bytes(kept.data) == data
    # Not accepted: still dropped (we cannot convert it).
    assert adapt(MIXED, {}, parts, Target(), measure).dropped == 1


@pytest.mark.parametrize(
    ("fmt", "ctype", "feature"),
    [
        ("AVIF", "image/avif", "avif"),
        ("JPEG2000", "image/jp2", "jpg_2000"),
        ("HEIF", "image/heic", None),
    ],
)
def test_avif_jpeg2000_and_heic_become_jpeg(fmt: str, ctype: str, feature: str | None) -> None:
    from PIL import features

    if feature is not None and not features.check(feature):
        pytest.skip(f"Pillow was built without {feature}")
    if fmt == "HEIF":
        pytest.importorskip("pillow_heif")
    out = io.BytesIO()
    Image.open(io.BytesIO(photo(800, 600))).save(out, fmt)
    result = adapt_image(out.getvalue(), ctype, limits())
    assert result.changed and result.content_type == "image/jpeg"
    assert info(result.data) == ("JPEG", (640, 480))


def test_part_types_are_compared_normalised() -> None:
    """``Image/JPG`` is image/jpeg and ``audio/mp3`` is audio/mpeg: both go as they are."""
    jpeg, mp3 = photo(320, 240), b"ID3" + bytes(3000)
    accept = frozenset({"image/jpeg", "audio/mpeg", "text/plain", "application/smil"})
    parts = [
        Part("Image/JPG", {"name": "p.jpg"}, {"Content-ID": "<p>"}, jpeg),
        Part("audio/mp3", {"name": "s.mp3"}, {"Content-ID": "<s>"}, mp3),
    ]
    target = Target(accept=accept)
    assert not needs_adaptation(send_req(MIXED, {}, parts), target)
    result = adapt(MIXED, {}, parts, target, measure)
    assert result.dropped == 0 and result.converted == 0
    assert [bytes(p.data) for p in result.parts] == [jpeg, mp3]
    assert [p.content_type for p in result.parts] == ["image/jpeg", "audio/mpeg"]


@pytest.mark.parametrize(
    ("charsets", "text", "label"),
    [
        ({"*"}, "Grüße, 日本", "utf-8"),
        ({"iso-10646-ucs-2", "utf-16"}, "日本語 Grüße", "iso-10646-ucs-2"),
        ({"iso-8859-1", "shift_jis"}, "日本語のテキスト", "shift_jis"),
        ({"iso-8859-1", "shift_jis"}, "Grüße", "iso-8859-1"),
    ],
)
def test_text_goes_out_in_a_charset_the_handset_reads_without_loss(
    charsets: set[str], text: str, label: str
) -> None:
    raw = send_req(MIXED, {}, [Part("text/plain", {}, {"Content-ID": "<t>"}, text.encode())])
    target = Target(charsets=frozenset(charsets))
    out = mms.decode(adapt_submission(raw, target)[0])
    assert out.parts is not None
    part = out.parts[0]
    codec = "utf-16-be" if label == "iso-10646-ucs-2" else label
    assert part.params["charset"] == label and bytes(part.data).decode(codec) == text


def test_variant_names_do_not_depend_on_the_hash_seed() -> None:
    """Every process (restart, node) must name the same variant the same way."""
    import os
    import subprocess
    import sys

    script = (
        "from dataclasses import replace\n"
        "from mmsc.adapt.targets import _variant\n"
        "from protocol.uaprof import DEFAULT\n"
        "caps = replace(DEFAULT, accept=DEFAULT.accept | {'image/bmp', 'audio/mpeg', 'video/3gpp',"
        " 'image/vnd.wap.wbmp', 'text/x-vcard'}, charsets=frozenset({'utf-8', 'us-ascii',"
        " 'iso-8859-1', 'shift_jis'}))\n"
        "print(_variant('default', caps, False)[0])\n"
    )
    names = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        names.add(done.stdout.strip())
    assert len(names) == 1 and next(iter(names)).startswith("v-")


def test_transparent_gif_scaled_down_stays_transparent() -> None:
    image = Image.new("P", (800, 600), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    ImageDraw.Draw(image).rectangle((200, 150, 600, 450), fill=1)
    out = io.BytesIO()
    image.save(out, "GIF", transparency=0)
    result = adapt_image(out.getvalue(), "image/gif", limits())
    assert result.content_type == "image/gif" and info(result.data)[1] == (640, 480)
    with Image.open(io.BytesIO(result.data)) as gif:
        corner = gif.convert("RGBA").getpixel((3, 3))
        centre = gif.convert("RGBA").getpixel((320, 240))
    assert isinstance(corner, tuple) and isinstance(centre, tuple)
    assert corner[3] == 0 or corner[:3] == (255, 255, 255)  # clear or white, not black
    assert centre[3] == 255 and centre[0] > 200 and centre[1] < 60


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    gradient = Image.new("I;16", (1024, 64))
    gradient.putdata([x * 64 for x in range(1024)] * 64)
    out = io.BytesIO()
    gradient.save(out, "PNG")
    result = adapt_image(out.getvalue(), "image/png", limits())
    with Image.open(io.BytesIO(result.data)) as picture:
        assert picture.size == (640, 40)
        gray = picture.convert("L")
        mean = sum(gray.tobytes()) / (gray.width * gray.height)
    assert abs(mean - 127) <= 10


def hostile_gif(frames: int = 200) -> bytes:
    """A 4000x4000 canvas (one flat frame, a few KB) and then frames of one pixel each:
    each costs a full-canvas composite to decode."""
    first = io.BytesIO()
    Image.new("P", (4000, 4000), 0).save(first, "GIF")
    tiny = (
        b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 100 ms
        b"\x2c\x05\x00\x05\x00\x01\x00\x01\x00\x00"  # 1x1 at (5, 5), no local palette
        b"\x02\x02\x44\x01\x00"  # LZW: clear, index 0, end
    )
    return first.getvalue()[:-1] + tiny * (frames - 1) + b";"


def test_an_animation_too_costly_to_decode_keeps_its_first_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mmsc.adapt import images

    data = hostile_gif()
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.n_frames == 200
    resized: list[tuple[int, int]] = []
    real_resize = images.resize

    def counting(frame: Image.Image, size: tuple[int, int], method: images.Filter) -> Image.Image:
        resized.append(size)
        return real_resize(frame, size, method)

    monkeypatch.setattr(images, "resize", counting)
    result = adapt_image(data, "image/gif", limits())
    assert len(resized) == 1  # one frame decoded and scaled, not 200
    with Image.open(io.BytesIO(result.data)) as out:
        assert out.size == (480, 480) and getattr(out, "n_frames", 1) == 1


def test_a_failed_variant_is_not_queued_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that timed out is remembered: the next fetch serves the original at once,
    without handing the pool the same job again."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from mmsc.adapt import service

    release = threading.Event()

    def stuck(raw: bytes, target: Target) -> tuple[bytes, dict[str, object]]:
        release.wait(30)
        raise RuntimeError("released")

    async def exists(key: str) -> bool:
        return False

    async def get(key: str) -> bytes:
        return b"stored"

    monkeypatch.setattr(service, "adapt_submission", stuck)
    monkeypatch.setattr(service, "needs_adaptation", lambda raw, target: True)
    core = SimpleNamespace(payloads=SimpleNamespace(exists=exists, get=get))
    adapter = service.AdaptationService(core, timeout=0.05)  # type: ignore[arg-type]
    pool = ThreadPoolExecutor(2)
    submitted: list[None] = []

    def executor() -> ThreadPoolExecutor:  # called once per job handed to the pool
        submitted.append(None)
        return pool

    monkeypatch.setattr(adapter, "_executor", executor)
    row = SimpleNamespace(m_payload_key="p1", message_id="m1")

    async def fetch_twice() -> list[str]:
        return [await adapter.payload_key(row, Target(), "v-x") for _ in range(2)]

    try:
        assert asyncio.run(fetch_twice()) == ["p1", "p1"]
        assert len(submitted) == 1
    finally:
        release.set()
        pool.shutdown()


def test_a_webp_labelled_jpeg_is_converted() -> None:
    webp = photo(320, 240, fmt="WEBP")
    raw = send_req(MIXED, {}, [Part("image/jpeg", {"name": "p.jpg"}, {"Content-ID": "<p>"}, webp)])
    assert needs_adaptation(raw, Target())
    out = mms.decode(adapt_submission(raw, Target())[0])
    assert out.parts is not None and info(bytes(out.parts[0].data))[0] == "JPEG"


SMIL_BY_NAME = (
    b'<smil><head><layout><region id="Image"/><region id="Text"/></layout></head><body>'
    b'<par dur="5s"><img src="photo.png" region="Image"/><text src="cid:txt" region="Text"/></par>'
    b'<par dur="5s"><video src="clip.mp4"/></par>'
    b"</body></smil>"
)
SMIL_ONLY_VIDEO = b'<smil><body><par dur="5s"><video src="cid:vid"/></par></body></smil>'


@pytest.mark.parametrize("doc", [SMIL_BY_NAME, SMIL_ONLY_VIDEO])
def test_every_smil_src_resolves_and_every_part_is_shown(
    doc: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """References by name follow renames and drops; the removal note has a slide."""
    no_ffmpeg(monkeypatch)
    parts = [
        Part("application/smil", {}, {"Content-ID": "<smil>"}, doc),
        Part("video/mp4", {"name": "clip.mp4"}, {"Content-ID": "<vid>"}, bytes(5000)),
    ]
    if doc is SMIL_BY_NAME:
        parts += [
            Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<txt>"}, b"hello"),
            Part(
                "image/png",
                {"name": "photo.png"},
                {"Content-ID": "<img>"},
                photo(300, 200, fmt="PNG"),
            ),
        ]
    target = Target(accept=frozenset({"image/jpeg", "text/plain", "application/smil"}))
    result = adapt(RELATED, {"start": "<smil>"}, parts, target, measure)
    assert result.content_type == RELATED and result.dropped == 1
    tree = smil_tree(bytes(result.parts[0].data))
    srcs = {smil._key(e.get("src")) for e in tree.iter() if e.get("src")}
    refs = {}
    for part in result.parts[1:]:
        names = {
            part.headers.get("Content-ID", "").strip("<>"),
            part.headers.get("Content-Location"),
        }
        names |= {part.params.get("name"), part.params.get("filename")}
        refs[part.headers.get("Content-ID")] = names - {None, ""}
    assert all(any(src in names for names in refs.values()) for src in srcs)  # nothing dangles
    assert all(names & srcs for names in refs.values())  # every part is shown
    assert "<mmsc-removed>" in refs


def smil_tree(data: bytes) -> object:
    from lxml import etree

    return etree.fromstring(data)


def test_a_jpeg_with_more_pictures_after_it_is_a_jpeg() -> None:
    """Pillow reads Android's Ultra HDR and 3D-camera photos as MPO: a JPEG to a handset,
    served as it is when it fits, scaled like any JPEG when it does not."""

    def mpo(width: int, height: int) -> bytes:
        first = Image.open(io.BytesIO(photo(width, height)))
        second = Image.new("RGB", (width // 4, height // 4), "gray")
        out = io.BytesIO()
        first.save(out, "MPO", save_all=True, append_images=[second])
        assert Image.open(io.BytesIO(out.getvalue())).format == "MPO"
        return out.getvalue()

    def message(data: bytes) -> bytes:
        part = Part("image/jpeg", {}, {"Content-Location": "p.jpg"}, data)
        headers = {"From": "+15550000001/TYPE=PLMN", "To": ["+15550000002/TYPE=PLMN"]}
        return mms.encode(MmsPdu("m-send-req", "T1", "1.2", headers, MIXED, {}, [part]))

    small = message(mpo(320, 240))
    assert needs_adaptation(small, Target()) is False
    big = message(mpo(2000, 1500))
    assert needs_adaptation(big, Target())
    (part,) = mms.decode(adapt_submission(big, Target())[0]).parts
    assert info(bytes(part.data)) == ("JPEG", (640, 480))
