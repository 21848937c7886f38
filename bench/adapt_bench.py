"""Adaptation benchmark: CPU per picture, and whole-message adaptation per second.

Why: adaptation is the most expensive step of the MMSC (research/performance.md
§1.6: 10-35 ms of CPU per 2 MP JPEG with Pillow). Issue #6's goals are
<= 12 ms of CPU per 2 MP JPEG -> 640x480 within 100 KB on one core, and
>= 3,000 cached adapted retrievals/s on two cores. This script measures the
first directly (``adapt_image`` on camera-like pictures, process CPU time),
the whole pipeline on a three-part message, and the cost of the cached path's
CPU-bound step (the payload read + m-retrieve-conf encoding is the MM1
retrieval path, measured by the MM1 benchmarks).

Run: ``.venv/bin/python bench/adapt_bench.py`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmsc.adapt.images import ImageLimits, adapt_image  # noqa: E402
from mmsc.adapt.pipeline import RELATED, Target  # noqa: E402
from mmsc.adapt.worker import adapt_submission, needs_adaptation  # noqa: E402
from protocol import mms  # noqa: E402
from protocol.mms import MmsPdu  # noqa: E402
from protocol.wsp import Part  # noqa: E402
from tests.test_adapt import photo  # noqa: E402

JPEG_TARGET = ImageLimits(640, 480, 100_000, frozenset({"image/jpeg", "image/gif", "image/png"}))


def smooth_photo(width: int, height: int) -> bytes:
    """Gradients and soft shapes with light sensor noise: closer to a real camera picture
    than ``photo``'s heavy noise (which is the worst case for JPEG decoding)."""
    import io

    from PIL import Image, ImageDraw, ImageFilter

    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for i in range(12):
        x, y = (i * 137) % width, (i * 89) % height
        draw.ellipse((x, y, x + 300, y + 220), fill=(40 + i * 15, 120, 200 - i * 10))
    image = image.filter(ImageFilter.GaussianBlur(6))
    noise = Image.effect_noise((width, height), 25).convert("RGB")
    image = Image.blend(image, noise, 0.06)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def cpu_per_call(fn: object, repeat: int) -> list[float]:
    assert callable(fn)
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    print("pictures: 2 MP camera-like JPEG (1632x1224) -> 640x480 within 100 KB, one core")
    for seed in (1, 2, 3):
        data = photo(1632, 1224, seed=seed, quality=92)
        samples = cpu_per_call(
            lambda d=data: adapt_image(d, "image/jpeg", JPEG_TARGET), args.repeat
        )
        out = adapt_image(data, "image/jpeg", JPEG_TARGET)
        print(
            f"  picture {seed}: {len(data) / 1024:6.0f} KB -> {len(out.data) / 1024:5.1f} KB "
            f"{out.width}x{out.height}: median {statistics.median(samples) * 1e3:5.1f} ms CPU, "
            f"p90 {sorted(samples)[int(len(samples) * 0.9)] * 1e3:5.1f} ms   (goal <= 12 ms)"
        )
    smooth = smooth_photo(1632, 1224)
    samples = cpu_per_call(lambda: adapt_image(smooth, "image/jpeg", JPEG_TARGET), args.repeat)
    out = adapt_image(smooth, "image/jpeg", JPEG_TARGET)
    print(
        f"  smoother picture: {len(smooth) / 1024:6.0f} KB -> {len(out.data) / 1024:5.1f} KB: "
        f"median {statistics.median(samples) * 1e3:5.1f} ms CPU   (goal <= 12 ms)"
    )
    data = photo(4000, 3000, seed=4, quality=92)
    samples = cpu_per_call(
        lambda: adapt_image(data, "image/jpeg", JPEG_TARGET), max(5, args.repeat // 5)
    )
    print(f"  12 MP (4000x3000): median {statistics.median(samples) * 1e3:5.1f} ms CPU")

    parts = [
        Part(
            "application/smil",
            {},
            {"Content-ID": "<smil>"},
            b'<smil><body><par dur="5s"><img src="cid:p"/><text src="cid:t"/></par></body></smil>',
        ),
        Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<t>"}, b"Hello"),
        Part("image/jpeg", {"name": "p.jpg"}, {"Content-ID": "<p>"}, photo(1632, 1224, seed=1)),
    ]
    raw = mms.encode(
        MmsPdu(
            "m-send-req",
            "b",
            "1.2",
            {"From": None, "To": ["+1555/TYPE=PLMN"]},
            RELATED,
            {"start": "<smil>", "type": "application/smil"},
            parts,
        )
    )
    target = Target(max_message_size=100_000)
    samples = cpu_per_call(lambda: adapt_submission(raw, target), args.repeat)
    print(
        f"message: SMIL + text + 2 MP JPEG -> 100 KB class: median "
        f"{statistics.median(samples) * 1e3:5.1f} ms CPU (whole pipeline incl. size check)"
    )
    small = mms.encode(
        MmsPdu(
            "m-send-req",
            "b",
            "1.2",
            {"From": None, "To": ["+1555/TYPE=PLMN"]},
            RELATED,
            {"start": "<smil>", "type": "application/smil"},
            [
                parts[0],
                parts[1],
                Part("image/jpeg", {}, {"Content-ID": "<p>"}, photo(320, 240, seed=9)),
            ],
        )
    )
    n = 2000
    start = time.process_time()
    for _ in range(n):
        needs_adaptation(small, Target())
    per = (time.process_time() - start) / n
    print(f"fits-already check (event loop, no worker): {per * 1e6:6.1f} µs CPU per retrieval")


if __name__ == "__main__":
    main()
