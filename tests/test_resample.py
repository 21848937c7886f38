"""The resampler of content adaptation: the SIMD engine gives Pillow's result, the fallback works.

mmsc.adapt.resample runs cykooz-resizer where it is installed (it is a declared
dependency, so here it must be) and Pillow otherwise. The two engines must be
interchangeable: same filter, same area-aware widening, output within a level
or two, alpha handled premultiplied. The image tests then run once more in a
child process on the Pillow engine, so the fallback is not a path no test takes.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageChops, ImageDraw

from mmsc.adapt import resample
from mmsc.adapt.resample import Filter, resize
from tests.conftest import ROOT
from tests.test_adapt import photo

PILLOW = {Filter.TRIANGLE: Image.Resampling.BILINEAR, Filter.LANCZOS: Image.Resampling.LANCZOS}


def _differences(a: Image.Image, b: Image.Image) -> tuple[int, float]:
    """The largest difference of any sample, and the share of samples more than 2 apart."""
    assert a.mode == b.mode and a.size == b.size
    histogram = ImageChops.difference(a, b).histogram()  # 256 bins per band
    bands = [histogram[i : i + 256] for i in range(0, len(histogram), 256)]
    largest = max(max((v for v, n in enumerate(band) if n), default=0) for band in bands)
    over = sum(sum(band[3:]) for band in bands) / sum(histogram)
    return largest, over


def test_the_simd_engine_is_the_one_installed() -> None:
    assert resample.engine() == "cykooz-resizer"


@pytest.mark.parametrize("filt", list(Filter))
@pytest.mark.parametrize(
    ("src", "dst"), [((816, 612), (640, 480)), ((1632, 1224), (176, 132)), ((300, 200), (299, 1))]
)
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_output_matches_pillow_for_the_same_filter(
    mode: str, src: tuple[int, int], dst: tuple[int, int], filt: Filter
) -> None:
    with Image.open(io.BytesIO(photo(*src, seed=5))) as opened:
        image = opened.convert(mode)
    ours = resize(image, dst, filt)
    assert ours.mode == mode and ours.size == dst
    largest, over = _differences(ours, image.resize(dst, PILLOW[filt]))
    if filt is Filter.TRIANGLE:
        assert largest <= 2
    else:
        # Lanczos rings on hard edges; where its overshoot is clipped the engines differ
        # (Pillow clips between its two passes). Seen: 0.03% of samples, none elsewhere.
        assert over <= 0.001


def test_rgba_is_resized_premultiplied_so_transparent_colour_does_not_bleed() -> None:
    # Opaque white on the left, fully transparent *red* on the right: a resize that does not
    # premultiply smears red into the white edge.
    image = Image.new("RGBA", (200, 100), (255, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, 99, 99), fill=(255, 255, 255, 255))
    out = resize(image, (63, 31), Filter.LANCZOS)
    assert out.mode == "RGBA" and out.size == (63, 31)
    for x in range(out.width):
        r, g, b, a = out.getpixel((x, 15))  # type: ignore[misc]
        if a >= 32:  # visible pixels stay white, whatever the alpha ramp at the edge
            assert min(r, g, b) >= 240, (x, (r, g, b, a))
    assert out.getpixel((0, 15))[3] == 255 and out.getpixel((62, 15))[3] == 0  # type: ignore[index]
    assert _differences(out, image.resize((63, 31), Image.Resampling.LANCZOS))[1] <= 0.001


@pytest.mark.parametrize("mode", ["P", "LA", "1", "I;16", "CMYK"])
def test_modes_the_simd_engine_does_not_take_go_through_pillow(mode: str) -> None:
    image = Image.new("RGB", (120, 90), (10, 200, 30)).convert(mode)
    out = resize(image, (40, 30))
    assert out.mode == mode and out.size == (40, 30)
    assert out.tobytes() == image.resize((40, 30), Image.Resampling.BILINEAR).tobytes()


def test_the_same_size_gives_a_copy_not_the_input() -> None:
    image = Image.new("RGB", (32, 32), (1, 2, 3))
    out = resize(image, (32, 32))
    assert out is not image and out.tobytes() == image.tobytes()
    out.putpixel((0, 0), (9, 9, 9))
    assert image.getpixel((0, 0)) == (1, 2, 3)


def test_image_adaptation_passes_on_the_pillow_engine_too() -> None:
    env = dict(os.environ, MMSC_PILLOW_RESIZE="1", MMSC_HYPOTHESIS_SCALE="0.25")
    probe = subprocess.run(
        [sys.executable, "-c", "from mmsc.adapt import resample; print(resample.engine())"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "pillow"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_adapt.py"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
