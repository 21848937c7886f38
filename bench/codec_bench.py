"""Codec micro-benchmark: our MMS codec against python-messaging 0.5.13 on the same bytes.

Why: the design budgets about 12 µs of CPU per m-send-req decode on the MM1 hot
path (research/performance.md §1.7-1.8) and expects the hand-written codec to be
at least ten times faster than the only other pure-Python MMS codec. This script
measures both claims on the shared corpus and on a synthetic, realistic ~31 KB
m-send-req, so a regression in ``protocol/`` shows up as a number, not a hunch.

Run: ``.venv/bin/python bench/codec_bench.py`` (see bench/README.md). Only the
public codec API (``mms.decode``, ``mms.encode``, ``MmsPdu``, ``wsp.Part``) is
used, so the script keeps working while the codec internals change.
"""

from __future__ import annotations

import argparse
import csv
import functools
import gc
import io
import itertools
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# Measure this checkout's codec, whatever else is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw, ImageFilter

from protocol import mms
from protocol.mms import MmsPdu
from protocol.wsp import Part

ROOT = Path(__file__).resolve().parent.parent

# Synthetic m-send-req -----------------------------------------------------------------

JPEG_SIZE = 30_600  # octets; with SMIL, text and headers the PDU is ~31.4 KB like §1.7's
JPEG_DIMENSIONS = (480, 360)
SEED = 20_240_601  # fixed so every run (and every machine) benchmarks the same picture
SMIL = """<smil xmlns="http://www.w3.org/2001/SMIL20/Language">
  <head>
    <layout>
      <root-layout width="480" height="480"/>
      <region id="Image" left="0" top="0" width="480" height="360" fit="meet"/>
      <region id="Text" left="0" top="360" width="480" height="120" fit="scroll"/>
    </layout>
  </head>
  <body>
    <par dur="5000ms">
      <img src="image0.jpg" region="Image"/>
      <text src="text0.txt" region="Text"/>
    </par>
  </body>
</smil>
"""
TEXT = "Grüße aus Köln! Das Foto vom Dom, wie versprochen. Bis morgen um 19 Uhr? ☺ — Jürgen"
SUBJECT = "Urlaubsgrüße aus Köln ☀"
TO = ("+4915112345678/TYPE=PLMN", "+4917698765432/TYPE=PLMN")
DATE = 1_717_243_200  # 2024-06-01T12:00:00Z


@functools.lru_cache(maxsize=4)
def synthetic_jpeg(size: int = JPEG_SIZE) -> bytes:
    """A deterministic photo-like JPEG of exactly ``size`` octets.

    Why exact: the JPEG encoder's output size differs a little between libjpeg
    builds; the highest quality that fits is chosen and the rest is filled with
    a JPEG comment segment, so the PDU size (and the figures) are comparable
    across machines.
    """
    rng = random.Random(SEED)
    w, h = JPEG_DIMENSIONS
    red = Image.linear_gradient("L").resize((w, h))
    green = red.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    blue = Image.radial_gradient("L").resize((w, h))
    img = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(4, 40)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    noise = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
    img = Image.blend(img, noise.filter(ImageFilter.GaussianBlur(0.6)), 0.25)

    best = b""
    for quality in range(95, 4, -1):
        out = io.BytesIO()
        img.save(out, "JPEG", quality=quality)
        best = out.getvalue()
        if len(best) + 4 <= size:
            break
    pad = size - len(best) - 4  # COM marker (2) + segment length (2) + filler
    if pad < 0 or pad + 2 > 0xFFFF:
        raise ValueError(f"cannot make a {size}-octet JPEG (got {len(best)})")
    comment = b"\xff\xfe" + (pad + 2).to_bytes(2, "big") + b"mmsc bench ".ljust(pad, b".")
    return best[:2] + comment + best[2:]  # right after SOI


def build_send_req(jpeg: bytes | None = None) -> MmsPdu:
    """The synthetic m-send-req: SMIL + UTF-8 text + ~30 KB JPEG, headers as a handset sends."""
    image = synthetic_jpeg() if jpeg is None else jpeg
    parts = [
        Part(
            "application/smil",
            {"charset": "utf-8"},
            {"Content-ID": "<smil>", "Content-Location": "smil.xml"},
            SMIL.encode(),
        ),
        Part(
            "text/plain",
            {"charset": "utf-8", "name": "text0.txt"},
            {"Content-ID": "<text0>", "Content-Location": "text0.txt"},
            TEXT.encode(),
        ),
        Part(
            "image/jpeg",
            {"name": "image0.jpg"},
            {"Content-ID": "<image0>", "Content-Location": "image0.jpg"},
            image,
        ),
    ]
    return MmsPdu(
        message_type="m-send-req",
        transaction_id="T18f3a2c9b01",
        mms_version="1.2",
        headers={
            "Date": DATE,
            "From": None,  # Insert-address-token: the MMSC fills in the sender
            "To": list(TO),
            "Subject": SUBJECT,
            "X-Mms-Message-Class": "Personal",
            "X-Mms-Priority": "Normal",
            "X-Mms-Delivery-Report": "Yes",
            "X-Mms-Read-Report": "No",
            "X-Mms-Expiry": {"relative": 604_800},
        },
        content_type="application/vnd.wap.multipart.related",
        content_type_params={"start": "<smil>", "type": "application/smil"},
        parts=parts,
    )


def header_block(pdu: MmsPdu) -> bytes:
    """The PDU's header fields without Content-Type and body: what a header-only decode reads."""
    return mms.encode(replace(pdu, content_type=None, parts=None, body=None), check_mandatory=False)


# Corpus -----------------------------------------------------------------------------------


def shared_dir() -> Path:
    return Path(os.environ.get("MMSC_SHARED", ROOT.parent / "shared")).resolve()


def corpus_vectors(shared: Path) -> list[tuple[str, bytes]]:
    """Conformant MMS PDUs listed in the corpus manifest (negatives and truncations left out)."""
    manifest = shared / "corpus" / "mms" / "MANIFEST.tsv"
    if not manifest.exists():
        raise SystemExit(f"shared corpus not found at {manifest.parent} (set MMSC_SHARED)")
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = []
    for row in rows:
        name, kind = row["file"], row["pdu_type"]
        if not name.lower().endswith((".mms", ".bin")):
            continue
        if "NEGATIVE" in kind or "truncated" in kind:
            continue
        out.append((name, (manifest.parent / name).read_bytes()))
    return out


# python-messaging adapters -------------------------------------------------------------

PM_MISSING = "python-messaging not installed"


class NotComparable(Exception):
    """python-messaging cannot handle this input faithfully (the message says why)."""


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 80 else text[:77] + "..."


def load_pm() -> Any:
    """python-messaging's ``messaging.mms.message`` module, or None if it is not installed."""
    try:
        from messaging.mms import message
    except ImportError:
        return None
    logging.disable(logging.CRITICAL)  # it logs at error level before re-raising; keep output clean
    return message


def _part_payloads(data: bytes) -> list[bytes]:
    return [bytes(p.data) for p in mms.decode(data).parts or []]


def pm_decoder(pm: Any, data: bytes) -> Callable[[], Any]:
    if pm is None:
        raise NotComparable(PM_MISSING)
    from_data = pm.MMSMessage.from_data
    return lambda: from_data(data)


def pm_reencoder(pm: Any, data: bytes) -> Callable[[], Any]:
    """python-messaging's encode of the message it decoded from ``data``, if it is faithful.

    Its encoder writes only the slide structure it builds itself (a generated
    SMIL plus page parts) and has writers for few header kinds, so re-encoding a
    decoded message usually fails or drops the parts; both count as n/a.
    """
    if pm is None:
        raise NotComparable(PM_MISSING)
    msg = pm.MMSMessage.from_data(data)
    headers = dict(msg.headers)

    def run() -> Any:
        msg.headers = dict(headers)  # its encoder deletes the headers it has written
        return msg.encode()

    out = bytes(run())
    try:
        same = mms.decode(out).message_type == mms.decode(data).message_type
        same = same and _part_payloads(out) == _part_payloads(data)
    except Exception as exc:
        raise NotComparable(f"its output does not decode: {_short(exc)}") from None
    if not same:
        raise NotComparable("its output is not equivalent (own SMIL added, parts dropped)")
    return run


@contextmanager
def pm_send_req(pm: Any, pdu: MmsPdu, *, reduced: bool) -> Iterator[Callable[[], Any]]:
    """python-messaging's encode of the synthetic m-send-req, built through its own API.

    Binary data goes in as Latin-1 text (verifiers.md §2: its encoder does ``ord``
    over the data), UTF-8 strings as their octets for the same reason. With
    ``reduced`` only the headers it can write are set (one To; no Date, Expiry,
    Message-Class, Priority or report flags: it has no writer for those kinds).
    It always generates its own SMIL from the page, so that part differs.
    """
    if pm is None:
        raise NotComparable(PM_MISSING)
    by_type = {p.content_type: p for p in pdu.parts or []}
    jpeg = bytes(by_type["image/jpeg"].data)
    text = bytes(by_type["text/plain"].data).decode("latin-1")
    headers: dict[str, Any] = {
        "Message-Type": "m-send-req",
        "Transaction-Id": pdu.transaction_id,
        "MMS-Version": pdu.mms_version,
        "From": "",  # its spelling of the Insert-address-token
        "To": pdu.headers["To"][0] if reduced else pdu.headers["To"],
        "Subject": str(pdu.headers["Subject"]).encode().decode("latin-1"),
    }
    if not reduced:
        headers.update(
            {
                "Date": pdu.headers["Date"],
                "Message-Class": "Personal",
                "Priority": "Normal",
                "Delivery-Report": "Yes",
                "Read-Reply": "No",
                "Expiry": pdu.headers["X-Mms-Expiry"]["relative"],
            }
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image0.jpg"
        path.write_bytes(jpeg)  # add_image wants a file, and stats it on every encode
        msg = pm.MMSMessage()
        page = pm.MMSMessagePage()
        page.add_image(str(path))
        page.image[0]._data = jpeg.decode("latin-1")
        page.add_text(text)
        msg.add_page(page)
        headers["Content-Type"] = msg.headers["Content-Type"]

        def run() -> Any:
            msg.headers = dict(headers)  # its encoder deletes the headers it has written
            return msg.encode()

        payloads = _part_payloads(bytes(run()))
        if jpeg not in payloads or text.encode("latin-1") not in payloads:
            raise NotComparable("its output lacks the image or text part")
        yield run


# Timing ---------------------------------------------------------------------------------


@dataclass
class Timing:
    """Best-of-N seconds per call, or the reason there is no figure."""

    seconds: float | None = None
    reason: str = ""

    @property
    def us(self) -> float:
        return (self.seconds or float("nan")) * 1e6


def _loop(fn: Callable[[], Any], n: int) -> float:
    it = itertools.repeat(None, n)
    start = time.perf_counter()
    for _ in it:
        fn()
    return time.perf_counter() - start


def measure(fn: Callable[[], Any], target: float, repeat: int) -> Timing:
    """timeit.repeat-style: scale the loop to ~``target`` seconds, keep the best of ``repeat``.

    Why best-of: on a shared, noisy VM the minimum is the figure least disturbed
    by other tenants; a mean mostly measures them. GC is paused while timing,
    as timeit does.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        n, took = 1, _loop(fn, 1)
        while took < target / 5:
            n = min(n * 10, max(n + 1, int(n * target / max(took, 1e-9))))
            took = _loop(fn, n)
        n = max(1, round(n * target / took))
        best = min(_loop(fn, n) for _ in range(repeat))
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(best / n)


def time_or_na(make: Callable[[], Callable[[], Any]], target: float, repeat: int) -> Timing:
    """Time ``make()``'s callable; an exception while preparing or first calling it is n/a."""
    try:
        fn = make()
        fn()
    except NotComparable as exc:
        return Timing(reason=str(exc))
    except Exception as exc:
        return Timing(reason=_short(exc))
    return measure(fn, target, repeat)


# Benchmarks and report --------------------------------------------------------------------


@dataclass
class Row:
    """One input: our figure and python-messaging's for the same bytes."""

    name: str
    size: int
    ours: Timing
    theirs: Timing

    @property
    def speedup(self) -> float | None:
        if self.ours.seconds and self.theirs.seconds:
            return self.theirs.seconds / self.ours.seconds
        return None


@dataclass
class Results:
    synth_size: int
    decode: list[Row]  # [0] full synthetic, [1] its header fields, then the corpus
    encode: list[Row]  # [0] full synthetic, [1] reduced headers, then the corpus


def bench_synthetic(pm: Any, target: float, repeat: int) -> Results:
    """Decode (full and header fields only) and encode of the synthetic m-send-req."""
    pdu = build_send_req()
    wire = mms.encode(pdu)
    decoded = mms.decode(wire)
    if mms.encode(decoded) != wire:  # still worth timing, but the figures need a caveat
        print("  WARNING: the synthetic m-send-req does not re-encode byte for byte")
    head = header_block(pdu)
    name = f"m-send-req synthetic ({len(wire) / 1000:.1f} kB, 3 parts)"

    def ours(fn: Callable[[], Any]) -> Timing:
        return measure(fn, target, repeat)

    def theirs(data: bytes) -> Timing:
        return time_or_na(lambda: pm_decoder(pm, data), target, repeat)

    decode = [
        Row(name, len(wire), ours(lambda: mms.decode(wire)), theirs(wire)),
        Row("  same, header fields only", len(head), ours(lambda: mms.decode(head)), theirs(head)),
    ]
    reduced = replace(pdu, headers={"From": None, "To": [TO[0]], "Subject": SUBJECT})
    reduced_wire = mms.encode(reduced)
    encode = [
        Row(name, len(wire), ours(lambda: mms.encode(decoded)), Timing()),
        Row(
            "  same, only headers p-m can write",
            len(reduced_wire),
            ours(lambda: mms.encode(reduced)),
            Timing(),
        ),
    ]
    for row, is_reduced in zip(encode, (False, True), strict=True):
        try:
            with pm_send_req(pm, pdu, reduced=is_reduced) as run:
                row.theirs = measure(run, target, repeat)
        except NotComparable as exc:
            row.theirs = Timing(reason=str(exc))
        except Exception as exc:
            row.theirs = Timing(reason=_short(exc))
    return Results(len(wire), decode, encode)


def bench_corpus(pm: Any, shared: Path, target: float, repeat: int) -> tuple[list[Row], list[Row]]:
    """Decode of every conformant corpus PDU, and re-encode of our decode of it."""
    decode: list[Row] = []
    encode: list[Row] = []
    for name, data in corpus_vectors(shared):
        ours = time_or_na(lambda d=data: lambda: mms.decode(d), target, repeat)
        theirs = time_or_na(lambda d=data: pm_decoder(pm, d), target, repeat)
        decode.append(Row(name, len(data), ours, theirs))
        try:
            pdu = mms.decode(data)
            size = len(mms.encode(pdu, check_mandatory=False))
        except Exception as exc:
            encode.append(Row(name, 0, Timing(reason=_short(exc)), Timing(reason="-")))
            continue
        encoder = lambda p=pdu: lambda: mms.encode(p, check_mandatory=False)  # noqa: E731
        ours = time_or_na(encoder, target, repeat)
        theirs = time_or_na(lambda d=data: pm_reencoder(pm, d), target, repeat)
        encode.append(Row(name, size, ours, theirs))
    return decode, encode


def _figure(t: Timing) -> str:
    if t.seconds is None:
        return f"n/a ({t.reason})"
    return f"{t.us:10.2f} {1 / t.seconds:11,.0f}"


def print_table(title: str, rows: list[Row]) -> None:
    width = max(len(r.name) for r in rows)
    head = f"{'input':<{width}} {'bytes':>9} | {'ours µs/op':>10} {'ops/s':>11} |"
    print(f"\n{title}\n{head} {'p-m µs/op':>10} {'ops/s':>11} | {'speedup':>8}")
    print("-" * (len(head) + 35))
    for r in rows:
        line = f"{r.name:<{width}} {r.size:9,} | {_figure(r.ours):>22} | {_figure(r.theirs):>22}"
        print(line + (f" | {r.speedup:7.1f}x" if r.speedup else ""))


def summarise(res: Results, corpus_decode: list[Row]) -> None:
    """The figures the goals are about, with an honest PASS/MISS for each."""
    synth_dec, synth_head = res.decode[0], res.decode[1]
    speedups = [r.speedup for r in [synth_dec, *corpus_decode] if r.speedup]
    enc_speedups = [r.speedup for r in res.encode if r.speedup]
    median = statistics.median(speedups) if speedups else None
    print("\nSUMMARY")
    if median is not None:
        print(
            f"  decode speedup over python-messaging: median {median:.2f}x over the "
            f"{len(speedups)} inputs both decode (min {min(speedups):.1f}x, "
            f"max {max(speedups):.1f}x)"
        )
    else:
        print("  decode speedup over python-messaging: n/a (no input that both decode)")
    if enc_speedups:
        print(
            f"  encode speedup over python-messaging: median {statistics.median(enc_speedups):.1f}x"
            f" over the {len(enc_speedups)} input(s) it can encode faithfully (only the"
            " synthetic m-send-req cut down to the headers it can write, so far)"
        )
    else:
        print("  encode speedup over python-messaging: n/a (it encodes none of the inputs)")
    print(
        f"  synthetic m-send-req ({res.synth_size:,} B): decode {synth_dec.ours.us:.2f} µs/op, "
        f"header fields only {synth_head.ours.us:.2f} µs/op, "
        f"encode {res.encode[0].ours.us:.2f} µs/op"
    )
    speed_ok = median is not None and median >= 10
    print(
        f"  goal >= 10x python-messaging (median decode speedup): {'PASS' if speed_ok else 'MISS'}"
        f" ({f'{median:.2f}x' if median is not None else 'no comparison'})"
    )
    us = synth_dec.ours.us
    print(
        f"  goal < 15 µs per m-send-req decode on one core: {'PASS' if us < 15 else 'MISS'}"
        f" ({us:.2f} µs)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MMS codec benchmark vs python-messaging.")
    parser.add_argument(
        "--target", type=float, default=0.2, help="seconds per synthetic m-send-req measurement"
    )
    parser.add_argument(
        "--corpus-target",
        type=float,
        default=0.1,
        help="seconds per measurement for corpus rows (shorter, to bound the run time)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure (best)")
    parser.add_argument(
        "--headline-repeat",
        type=int,
        default=15,
        help="measurements per synthetic m-send-req figure: more tries at a quiet moment",
    )
    parser.add_argument("--cpu", type=int, help="pin the process to this CPU first")
    parser.add_argument("--no-corpus", action="store_true", help="synthetic m-send-req only")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    started = time.perf_counter()
    pm = load_pm()
    pm_version = "not installed"
    if pm is not None:
        from importlib.metadata import version

        pm_version = version("python-messaging")
    import protocol

    build = "mypyc-compiled" if protocol.COMPILED else "plain Python (not compiled)"
    print(f"python {sys.version.split()[0]}; codec {ROOT / 'protocol'} ({build})")
    print("  p-m = python-messaging")
    print(
        f"  {pm_version}; best of {args.headline_repeat} x ~{args.target} s (synthetic rows), "
        f"best of {args.repeat} x ~{args.corpus_target} s (corpus rows); "
        f"CPUs {sorted(os.sched_getaffinity(0))}"
    )
    reference = measure(lambda: sum(range(1000)), args.target, args.headline_repeat)
    print(f"  machine reference: sum(range(1000)) takes {reference.us:.2f} µs here")
    res = bench_synthetic(pm, args.target, args.headline_repeat)
    corpus_decode: list[Row] = []
    if not args.no_corpus:
        corpus_decode, corpus_encode = bench_corpus(
            pm, shared_dir(), args.corpus_target, args.repeat
        )
        res.decode += corpus_decode
        res.encode += corpus_encode
    print_table("DECODE (speedup = python-messaging time / ours)", res.decode)
    print_table("ENCODE (corpus rows: encode of our decode of the file)", res.encode)
    summarise(res, corpus_decode)
    print(f"  total run time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
