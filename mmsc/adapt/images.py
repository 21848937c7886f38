"""One image made fit for one handset: orientation, resolution, format and byte budget.

Pure functions over bytes (Pillow, no I/O), so they run in a worker process
(mmsc.adapt.worker) and are tested with images the tests draw themselves.
The order of the steps is what keeps them cheap on 2-12 MP camera pictures
(../shared/research/performance.md §1.6): JPEG ``draft`` decodes at a
reduced scale straight from the DCT, a good filter only runs on what is
left (on a SIMD resampler, mmsc.adapt.resample), and the JPEG quality
search is bounded (at most ~7 encodes).
Hostile input (truncated files, decompression bombs, absurd dimensions) ends
in :class:`ImageError`, which the pipeline turns into a dropped part with a
note, never a crash; an animation whose frames together are too many pixels to
decode cheaply is reduced to its first frame.
Data Pillow does not recognise at all (SVG, WBMP) raises :class:`UnknownFormat`,
so that the pipeline can keep it when the handset takes its type as it is.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from mmsc.adapt.formats import accepts
from mmsc.adapt.resample import Filter, resize

try:  # HEIC, what iPhones send; libheif comes inside the wheel
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - a platform without a pillow-heif wheel
    pass
else:
    register_heif_opener()

# Pillow format name <-> MIME type of the formats we read (and, for the first ones, write).
FORMAT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
    "JPEG2000": "image/jp2",
    "HEIF": "image/heic",
}
TYPE_FORMATS = {v: k for k, v in FORMAT_TYPES.items()}
# Labels for formats we decode: data under one of these that Pillow cannot read is
# corrupt, not merely a format we do not know.
READABLE_TYPES = frozenset(FORMAT_TYPES.values()) | {"image/heif", "image/jpx", "image/j2k"}
# Preferred output when the original format will not do: JPEG for photographs (what
# every MMS handset takes), then the lossless formats (feature-matrix §1: Mbuni's order).
OUTPUT_PREFERENCE = ("image/jpeg", "image/png", "image/gif", "image/bmp")
MIN_QUALITY, MAX_QUALITY = 25, 90
MAX_FRAMES = 200
# Pixels decoded for one animation (frames x canvas): every GIF frame is composited on
# the full canvas, so a 4000x4000 canvas with 200 one-pixel frames costs 3.2 Gpx (16 s)
# from a file of a few KB. Above this only the first frame is kept.
MAX_ANIMATION_PIXELS = 50_000_000
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(ValueError):
    """The bytes are not an image we can adapt safely (corrupt, hostile, unsupported)."""


class UnknownFormat(ImageError):
    """Not a format we decode (SVG, WBMP, ...): not necessarily corrupt."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_width: int
    max_height: int
    budget: int  # bytes this image may take
    accept: frozenset[str]  # MIME types the handset takes ("*/*" means anything)
    animation: bool = True
    max_pixels: int = 40_000_000  # refuse decompression bombs before decoding


@dataclass(frozen=True, slots=True)
class AdaptedImage:
    data: bytes
    content_type: str
    width: int
    height: int
    changed: bool  # False: the original bytes, untouched


def _fit(width: int, height: int, max_w: int, max_h: int) -> tuple[int, int]:
    """The largest size within the box keeping the aspect ratio; the box may be turned
    (a 640x480 limit also allows a 480x640 portrait picture, as handsets rotate)."""
    if (max_w < max_h and width > height) or (max_w > max_h and width < height):
        max_w, max_h = max_h, max_w
    scale = min(max_w / width, max_h / height, 1.0)
    return max(1, int(width * scale)), max(1, int(height * scale))


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
    except UnidentifiedImageError:
        raise UnknownFormat("not an image format we read") from None
    except (OSError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"not a readable image: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(str(exc)) from None
    if width < 1 or height < 1 or width * height > max_pixels:
        raise ImageError(f"{width}x{height} is over the limit of {max_pixels} pixels")
    if real_format(image) not in FORMAT_TYPES:
        raise UnknownFormat(f"format {image.format} is not supported")
    return image


def real_format(image: Image.Image) -> str:
    """Pillow's format name, but MPO (a JPEG with more pictures after it: Android's
    Ultra HDR, 3D cameras) is the JPEG it starts with, to a handset and to us."""
    return "JPEG" if image.format == "MPO" else image.format or ""


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grayscale (PNG, TIFF, JPEG 2000; Pillow's "I" holds it too) scaled to 8
    bits: Pillow's own conversion clips at 255, so a gradient would come out white."""
    if image.mode not in _SIXTEEN_BIT:
        return image
    return image.convert("I").point(lambda value: value / 257).convert("L")


def _frame(image: Image.Image) -> Image.Image:
    """The current frame as RGB, or RGBA when it may be transparent."""
    image = _eight_bit(image)
    return image.convert("RGBA" if image.mode in ("RGBA", "LA", "P", "PA") else "RGB")


def _flatten(frame: Image.Image) -> Image.Image:
    """RGB on white: JPEG has no transparency, and a black background ruins logos."""
    if frame.mode == "RGB":
        return frame  # callers only read it: no copy
    if frame.mode in ("RGBA", "LA") or (frame.mode == "P" and "transparency" in frame.info):
        rgba = frame.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return frame.convert("RGB")


def _jpeg(frame: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=quality, optimize=False, progressive=False)
    return out.getvalue()


def _encode_jpeg(frame: Image.Image, budget: int) -> tuple[bytes, int]:
    """The best JPEG quality that fits ``budget``: one encode at the top quality (most
    pictures fit there), else a bisection started where the size ratio points (<= 6)."""
    first = _jpeg(frame, MAX_QUALITY)
    if len(first) <= budget:
        return first, MAX_QUALITY
    low, high = MIN_QUALITY, MAX_QUALITY - 1
    best: bytes | None = None
    # JPEG size falls roughly linearly with quality in this range: aim near the answer.
    guess = int(MAX_QUALITY * budget / len(first))
    quality = min(max(guess, low), high)
    while low <= high:
        data = _jpeg(frame, quality)
        if len(data) <= budget:
            best, low = data, quality + 1
        else:
            high = quality - 1
        quality = (low + high) // 2
    if best is None:
        out = io.BytesIO()
        frame.save(out, "JPEG", quality=MIN_QUALITY)
        return out.getvalue(), MIN_QUALITY
    return best, low - 1


def _encode(frame: Image.Image, ctype: str) -> bytes:
    out = io.BytesIO()
    fmt = TYPE_FORMATS[ctype]
    if fmt == "JPEG":
        frame = _flatten(frame)
        frame.save(out, fmt, quality=MAX_QUALITY)
    elif fmt == "GIF":
        paletted = _gif_palette(frame)
        paletted.save(out, fmt, transparency=paletted.info.get("transparency"))
    elif fmt == "BMP":
        _flatten(frame).save(out, fmt)
    else:
        frame.save(out, fmt, optimize=True)
    return out.getvalue()


def _gif_palette(frame: Image.Image) -> Image.Image:
    """A GIF-ready paletted frame: 255 colours of the picture flattened on white, and
    index 255 for the pixels that were (mostly) transparent. An adaptive palette of
    the RGBA data alone has no transparent entry, and the clear areas come out black."""
    lowest_alpha = frame.getchannel("A").getextrema()[0] if frame.mode == "RGBA" else 255
    if not isinstance(lowest_alpha, int) or lowest_alpha >= 128:
        return _flatten(frame).convert("P", palette=Image.Palette.ADAPTIVE)
    paletted = _flatten(frame).convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    clear = frame.getchannel("A").point(lambda alpha: 255 if alpha < 128 else 0)
    paletted.paste(255, mask=clear.convert("1"))
    paletted.info["transparency"] = 255
    return paletted


def _animation_is_cheap(image: Image.Image) -> bool:
    """Whether decoding every frame we would keep stays within MAX_ANIMATION_PIXELS.
    Counting frames only reads block headers, nothing is decoded."""
    frames = min(int(getattr(image, "n_frames", 1)), MAX_FRAMES)
    width, height = image.size
    return frames * width * height <= MAX_ANIMATION_PIXELS


def _animated_gif(image: Image.Image, size: tuple[int, int], budget: int) -> bytes | None:
    """Every frame scaled, timing kept; None when it does not fit the budget."""
    frames, durations = [], []
    for index, frame in enumerate(ImageSequence.Iterator(image)):
        if index >= MAX_FRAMES:
            break
        durations.append(int(frame.info.get("duration", 100)))
        frames.append(resize(frame.convert("RGBA"), size, Filter.LANCZOS))
    out = io.BytesIO()
    frames[0].save(
        out,
        "GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=int(image.info.get("loop", 0)),
        disposal=2,
    )
    data = out.getvalue()
    return data if len(data) <= budget else None


def adapt_image(data: bytes, content_type: str, limits: ImageLimits) -> AdaptedImage:
    """``data`` as the handset can show it within ``limits``; ImageError when impossible."""
    image = _open(data, limits.max_pixels)
    original_type = FORMAT_TYPES[real_format(image)]
    width, height = image.size
    animated = (
        image.format != "MPO"  # its other pictures are not frames
        and bool(getattr(image, "is_animated", False))
        and getattr(image, "n_frames", 1) > 1
    )
    target = _fit(width, height, limits.max_width, limits.max_height)
    orientation = image.getexif().get(0x0112, 1) if original_type == "image/jpeg" else 1
    if (
        target == (width, height)
        and orientation in (0, 1)
        and accepts(limits.accept, original_type)
        and len(data) <= limits.budget
        and (limits.animation or not animated)
    ):
        return AdaptedImage(data, original_type, width, height, changed=False)
    try:
        if original_type == "image/jpeg":
            # Decode at 1/2, 1/4 or 1/8 scale when that still covers the target: the
            # cheapest step of all (the DCT does the downscaling).
            image.draft("RGB", target if orientation in (0, 1) else target[::-1])
        image = ImageOps.exif_transpose(image) if orientation not in (0, 1) else image
        width, height = image.size
        target = _fit(width, height, limits.max_width, limits.max_height)
        if (
            animated
            and limits.animation
            and _animation_is_cheap(image)
            and original_type == "image/gif"
            and accepts(limits.accept, "image/gif")
        ):
            gif = _animated_gif(image, target, limits.budget)
            if gif is not None:
                return AdaptedImage(gif, "image/gif", *target, changed=True)
        image.seek(0)
        frame = _frame(image)
        if frame.size != target:
            # After draft() the remaining factor is under 2 (see Filter.TRIANGLE); the
            # SIMD resampler runs it in ~0.9 ms for 816x612 -> 640x480 where Pillow's
            # scalar convolution took 4-6 ms, a third of the 12 ms budget.
            frame = resize(frame, target, Filter.TRIANGLE)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise ImageError(f"cannot decode: {exc}") from None
    return _fit_budget(frame, original_type, limits)


def _fit_budget(frame: Image.Image, original_type: str, limits: ImageLimits) -> AdaptedImage:
    """Encode in an accepted format within the budget, shrinking when quality alone fails.

    The original format is kept when the handset takes it (a PNG coupon stays
    crisp); a lossless format that does not fit falls back to JPEG, the only
    format whose size we can trade for quality.
    """
    if accepts(limits.accept, original_type) and original_type in OUTPUT_PREFERENCE:
        preferred = original_type
    else:
        preferred = next((t for t in OUTPUT_PREFERENCE if accepts(limits.accept, t)), "")
    if not preferred:
        raise ImageError("the handset accepts none of the image formats we can write")
    jpeg_ok = accepts(limits.accept, "image/jpeg")
    for _ in range(8):
        if preferred != "image/jpeg":
            data = _encode(frame, preferred)
            if len(data) <= limits.budget:
                return AdaptedImage(data, preferred, *frame.size, changed=True)
        if jpeg_ok:
            data, _quality = _encode_jpeg(_flatten(frame), limits.budget)
            if len(data) <= limits.budget:
                return AdaptedImage(data, "image/jpeg", *frame.size, changed=True)
        width, height = frame.size
        if width <= 16 or height <= 16:
            break
        frame = resize(frame, (max(1, int(width * 0.7)), max(1, int(height * 0.7))), Filter.LANCZOS)
    raise ImageError(f"cannot fit the picture into {limits.budget} bytes")
