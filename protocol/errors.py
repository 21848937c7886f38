"""The one error type a decoder may raise, and the one an encoder may raise.

Callers (the MM1 handler, the CLI, the fuzzers) rely on decoders raising
nothing but :class:`DecodeError`: a handset's garbage must become a protocol
answer, never a traceback.
"""

from __future__ import annotations


class DecodeError(ValueError):
    """Input bytes that cannot be decoded; ``offset`` is where decoding stopped."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


class EncodeError(ValueError):
    """A value that cannot be represented in the target encoding or version."""
