"""Run the shared tshark wrapper on raw bytes and read its JSON: tshark is our independent oracle.

The wrapper (``../shared/tools/tshark_decode.py``) puts the bytes in a
synthetic capture, runs tshark and turns its PDML into JSON. These helpers
start it, walk the tree it returns and render values the way tshark 4.0
displays them, so tests can derive tshark's expected output from the PDU they
built instead of copying our own encoder's output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOOLS

WRAPPER = TOOLS / "tshark_decode.py"
TIMEOUT = 120  # seconds for one tshark run; a photo-sized PDU takes about 1.5 s


def require_tshark() -> str:
    """Path of tshark; fails (never skips) when it is missing: scripts/test-deps.sh installs it."""
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed: run scripts/test-deps.sh (apt-get install tshark)")
    if not WRAPPER.is_file():
        pytest.fail(f"tshark wrapper not found at {WRAPPER} (set MMSC_SHARED)")
    return path


@dataclass(frozen=True, slots=True)
class Node:
    """One item of tshark's protocol tree (a field, or a protocol layer when ``proto``)."""

    name: str
    show: str
    showname: str
    size: int
    value: str
    proto: bool
    children: tuple[Node, ...]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Node:
        return cls(
            obj.get("name", ""),
            obj.get("show", ""),
            obj.get("showname", ""),
            int(obj.get("size", 0)),
            obj.get("value", ""),
            bool(obj.get("proto")),
            tuple(cls.from_json(k) for k in obj.get("children", ())),
        )

    @property
    def raw(self) -> bytes:
        """The octets tshark attributes to this item; fails if the wrapper truncated them."""
        assert not self.value.endswith("..."), f"{self.name}: raw value truncated (64 octets max)"
        return bytes.fromhex(self.value)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, name: str) -> list[Node]:
        """Every descendant (or self) called ``name``, in tree order."""
        return [n for n in self.walk() if n.name == name]

    def child(self, name: str) -> Node | None:
        return next((c for c in self.children if c.name == name), None)


@dataclass(frozen=True, slots=True)
class Decoded:
    """The wrapper's JSON result plus the parsed tree of every frame."""

    result: dict[str, Any]
    frames: tuple[tuple[Node, ...], ...]

    @property
    def ok(self) -> bool:
        return bool(self.result["ok"])

    @property
    def warnings(self) -> list[str]:
        return list(self.result["warnings"])

    @property
    def expert(self) -> list[dict[str, Any]]:
        return list(self.result["expert"])

    def fields(self, name: str) -> list[str]:
        """Display values of every occurrence of field ``name`` in every frame, in order."""
        return list(self.result["fields"].get(name, []))

    def layers(self, name: str) -> list[Node]:
        """Top-level protocol layers called ``name`` (not ones nested in a multipart)."""
        return [layer for frame in self.frames for layer in frame if layer.name == name]


def decode(mode: str, data: bytes, *, response: bool = False) -> Decoded:
    """Decode ``data`` with the wrapper in ``mode`` (mms, smpp, wsppush)."""
    with tempfile.TemporaryDirectory(prefix="mmsc-tshark-") as tmp:
        path = Path(tmp) / "input.bin"
        path.write_bytes(data)
        cmd = [sys.executable, str(WRAPPER), mode, str(path)]
        if response:
            cmd.append("--response")
        proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, check=False)
    # Exit 0 ok, 1 decoded with problems, 2 target layer absent: all print JSON for the
    # test to judge. 3 is a tool error (tshark missing or failing).
    if proc.returncode not in (0, 1, 2):
        raise RuntimeError(
            f"tshark wrapper exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )
    result = json.loads(proc.stdout)
    frames = tuple(
        tuple(Node.from_json(layer) for layer in frame["layers"]) for frame in result["tree"]
    )
    return Decoded(result, frames)


# ----------------------------------------------------------------------------- tshark's rendering


def abs_time(seconds: int) -> str:
    """FT_ABSOLUTE_TIME as tshark shows it with TZ=UTC: ``Jan  5, 2024 03:00:05.000000000 UTC``."""
    t = datetime.fromtimestamp(seconds, UTC)
    return f"{t:%b} {t.day:2d}, {t.year} {t:%H:%M:%S}.000000000 UTC"


def rel_time(seconds: int) -> str:
    """An FT_RELATIVE_TIME as tshark shows it: ``86400.000000000``."""
    return f"{seconds}.000000000"


def ascii_view(raw: bytes) -> str:
    """Octets read as ASCII the way tshark's PDML shows them.

    tshark reads MMS strings with ENC_ASCII: every octet >= 0x80 becomes U+FFFD
    and control characters are escaped as ``\\xNN``.
    """
    out = []
    for b in raw:
        if b >= 0x80:
            out.append("\ufffd")
        elif b < 0x20 or b == 0x7F:
            out.append(f"\\x{b:02x}")
        else:
            out.append(chr(b))
    return "".join(out)
