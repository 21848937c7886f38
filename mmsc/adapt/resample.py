"""Image downscaling: one resampler for every adaptation step that changes a picture's size.

Why a separate engine: after JPEG ``draft()`` the resize that is left is the
largest cost of adapting a camera picture after the decode itself, and
Pillow's convolution is scalar C (5-6 ms for 816x612 -> 640x480 RGB on the
reference VM, bench/README.md). cykooz-resizer (Rust's fast_image_resize,
SSE4.1/AVX2/Neon) runs the same separable convolution, area-aware like
Pillow's (the filter widens with the downscaling factor, so no aliasing),
in ~1 ms, and its output is within one level of Pillow's for the same
filter. It writes straight into a Pillow image, so nothing is copied on
the way.

Pillow stays the fallback: for modes the resizer does not take (P, LA, I;16,
...), and for installs where the wheel is not available (``MMSC_PILLOW_RESIZE=1``
forces it, which the tests use to cover both engines).
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Any

from PIL import Image

try:  # either the wheel is there or it is not
    from cykooz_resizer import (  # type: ignore[import-untyped]
        FilterType,
        ResizeAlg,
        ResizeOptions,
        Resizer,
    )

    _AVAILABLE = True
except ImportError:  # pragma: no cover - platforms without a wheel
    _AVAILABLE = False


class Filter(Enum):
    """The filters adaptation uses."""

    # After draft() the factor left is under 2. Both engines widen the filter with the
    # factor, and over so small a factor the triangle filter is close to a cubic's
    # sharpness while giving the JPEG encoder less noise to spend bytes on (a 2 MP
    # picture that fits 100 KB at q90 after it needs a second encode after a cubic).
    TRIANGLE = "triangle"
    # Large factors (GIF frames, the budget's 0.7 shrink loop): Lanczos-3.
    LANCZOS = "lanczos"


_PILLOW_FILTERS = {
    Filter.TRIANGLE: Image.Resampling.BILINEAR,
    Filter.LANCZOS: Image.Resampling.LANCZOS,
}
# Modes the fast resizer takes as they are (RGBA is premultiplied by it, as Pillow does).
_FAST_MODES = frozenset({"RGB", "RGBA", "L"})

_resizer: Any = None
_options: dict[Filter, Any] = {}
if _AVAILABLE and not os.environ.get("MMSC_PILLOW_RESIZE"):
    _resizer = Resizer()
    _filter_types = {Filter.TRIANGLE: FilterType.bilinear, Filter.LANCZOS: FilterType.lanczos3}
    for _name, _ftype in _filter_types.items():
        _options[_name] = ResizeOptions(resize_alg=ResizeAlg.convolution(_ftype))


def engine() -> str:
    """Which resampler runs ("cykooz-resizer" or "pillow"): for logs and the benchmark."""
    return "cykooz-resizer" if _resizer is not None else "pillow"


def resize(
    image: Image.Image, size: tuple[int, int], filt: Filter = Filter.TRIANGLE
) -> Image.Image:
    """``image`` scaled to ``size`` with ``filt``; a new image, the input is left alone."""
    if image.size == size:
        return image.copy()
    if _resizer is None or image.mode not in _FAST_MODES:
        return image.resize(size, _PILLOW_FILTERS[filt])
    image.load()
    out = Image.new(image.mode, size)
    # use_alpha follows the mode inside resize_pil: RGBA is resized premultiplied, so a
    # transparent pixel's colour does not bleed into its neighbours.
    _resizer.resize_pil(image, out, _options[filt])
    return out
