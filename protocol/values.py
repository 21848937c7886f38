"""Value types the codec returns, kept out of the compiled modules.

``wsp`` and ``mms`` may be compiled with mypyc, which cannot compile
subclasses of ``str`` and ``list``; these small classes stay plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Raw:
    """A value we could not interpret, kept byte for byte so it can be re-emitted."""

    data: bytes


class EncodedString(str):
    """A decoded Encoded-string-value that remembers the charset it came with."""

    __slots__ = ("charset",)
    charset: int | None

    def __new__(cls, text: str, charset: int | None = None) -> EncodedString:
        obj = super().__new__(cls, text)
        obj.charset = charset
        return obj


class Repeated(list[Any]):
    """A non-list field that occurred more than once (kept, in order)."""
