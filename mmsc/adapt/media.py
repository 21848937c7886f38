"""Audio and video parts: transcoded with ffmpeg when it is installed, kept or dropped when not.

MMS handsets play a short list of formats (OMA MMS conformance: AMR-NB audio,
3GPP/MP4 video with H.263 or H.264); camera phones and VASPs send everything
else. With ffmpeg on the PATH a part the handset cannot take, or that is over
its share of the budget, is transcoded: audio to AMR-NB (8 kHz mono, 12.2
kbit/s) or AAC in 3GP, or MP3; video to H.264/AAC in MP4 or 3GP down a
bitrate/size ladder until it fits. Without ffmpeg, or when it fails or runs
too long, the caller keeps the part if it fits and drops it otherwise: a
missing tool is never a crash (issue #6).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmsc.adapt.formats import accepts

TIMEOUT = 30.0
# (MIME type, ffmpeg output arguments), in order of preference.
AUDIO_TARGETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "audio/amr",
        ("-ac", "1", "-ar", "8000", "-c:a", "libopencore_amrnb", "-b:a", "12.2k", "-f", "amr"),
    ),
    ("audio/mp4", ("-ac", "1", "-c:a", "aac", "-b:a", "32k", "-f", "mp4")),
    ("audio/mpeg", ("-ac", "1", "-c:a", "libmp3lame", "-b:a", "48k", "-f", "mp3")),
)
# Video: (width, height, video kbit/s, audio kbit/s), largest first.
VIDEO_LADDER = ((352, 288, 256, 32), (320, 240, 160, 24), (176, 144, 96, 12))
VIDEO_TYPES = {"video/mp4": "mp4", "video/3gpp": "3gp"}


@dataclass(frozen=True, slots=True)
class Transcoded:
    data: bytes
    content_type: str


@functools.cache
def ffmpeg() -> str | None:
    """The ffmpeg binary, if installed (looked up once per process)."""
    return shutil.which("ffmpeg")


def _run(
    binary: str, data: bytes, args: tuple[str, ...], timeout: float, *, audio_only: bool
) -> bytes | None:
    """One ffmpeg run from a temporary input file (some containers need seeking)."""
    with tempfile.TemporaryDirectory(prefix="mmsc-ff-") as tmp:
        source = Path(tmp) / "in"
        source.write_bytes(data)
        output = Path(tmp) / "out"
        command = [binary, "-nostdin", "-v", "error", "-y", "-i", str(source), "-sn", "-dn"]
        if audio_only:
            command.append("-vn")
        command += [*args, str(output)]
        try:
            result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except (subprocess.TimeoutExpired, OSError):
            return None
        if result.returncode != 0 or not output.exists():
            return None
        return output.read_bytes() or None


def transcode_audio(
    data: bytes, accept: frozenset[str], budget: int, *, timeout: float = TIMEOUT
) -> Transcoded | None:
    """Audio the handset plays within ``budget``; None when impossible (or no ffmpeg)."""
    binary = ffmpeg()
    if binary is None:
        return None
    for ctype, args in AUDIO_TARGETS:
        if not accepts(accept, ctype):
            continue
        out = _run(binary, data, args, timeout, audio_only=True)
        if out is not None and len(out) <= budget:
            return Transcoded(out, ctype)
    return None


def transcode(data: bytes, ctype: str, accept: frozenset[str], budget: int) -> Transcoded | None:
    """Audio or video, whichever ``ctype`` is."""
    if ctype.startswith("audio/"):
        return transcode_audio(data, accept, budget)
    if ctype.startswith("video/"):
        return transcode_video(data, accept, budget)
    return None


def transcode_video(
    data: bytes, accept: frozenset[str], budget: int, *, timeout: float = TIMEOUT
) -> Transcoded | None:
    """Video down the ladder until it fits ``budget``; None when impossible (or no ffmpeg)."""
    binary = ffmpeg()
    if binary is None:
        return None
    for ctype, container in VIDEO_TYPES.items():
        if not accepts(accept, ctype):
            continue
        for width, height, vrate, arate in VIDEO_LADDER:
            args = (
                "-vf",
                f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
                "scale=trunc(iw/2)*2:trunc(ih/2)*2",
                "-c:v",
                "libx264",
                "-profile:v",
                "baseline",
                "-pix_fmt",
                "yuv420p",  # baseline (what handsets decode) is 4:2:0 only
                "-b:v",
                f"{vrate}k",
                "-c:a",
                "aac",
                "-ac",
                "1",
                "-b:a",
                f"{arate}k",
                "-f",
                container,
            )
            out = _run(binary, data, args, timeout, audio_only=False)
            if out is not None and len(out) <= budget:
                return Transcoded(out, ctype)
    return None
