"""Real media for end-to-end tests: pictures drawn with Pillow, so that content
adaptation sees what handsets send (a fake JPEG is rightly dropped as corrupt)."""

from __future__ import annotations

import functools
import io

from PIL import Image, ImageDraw


@functools.cache
def jpeg(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    image = Image.new("RGB", (width, height), colour)
    ImageDraw.Draw(image).rectangle((4, 4, width // 2, height // 2), fill=(20, 20, 220))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()
