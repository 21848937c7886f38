"""Message ids and fetch tokens: unguessable, URL- and file-name-safe, and time-ordered.

Both are keys of B-tree indexes that grow with every accepted message (the
messages' primary key, recipients' token and message_id, events' and outbox's
message_id). A fully random key lands on a random leaf page of each index, so a
commit of a batch dirtied, and the WAL carried, a page per key per index; a key
that starts with the current second lands on the rightmost pages, which the
batch before touched too. PostgreSQL's indexes and UUIDv7 rest on the same
reasoning.
"""

from __future__ import annotations

import os
import threading
import time

# RFC 4648 base32's 32 symbols, lower case, sorted as ASCII sorts them: a later id
# then also sorts later as a string (standard base32 puts "2".."7" after "z").
ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_PAIRS = tuple(a + b for a in ALPHABET for b in ALPHABET)  # 10 bits -> 2 symbols
ID_LENGTH = 24  # 120 bits: 32 of the second, 88 random
RANDOM_BITS = 88
_SHIFTS = tuple(range(110, -1, -10))


class RandomPool:
    """os.urandom read 4 KiB at a time: one getrandom(2) per ~370 ids instead of one per
    id (that system call was 3% of the event loop's time under load, bench/README.md
    session 6). The bytes are the same CSPRNG's; each is handed out once."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0
        # A forked worker must not hand out the ids its parent's pool would.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._buf, self._pos = b"", 0

    def take(self, n: int) -> bytes:
        with self._lock:
            pos = self._pos
            if pos + n > len(self._buf):
                self._buf, pos = os.urandom(max(self.SIZE, n)), 0
            self._pos = pos + n
            return self._buf[pos : pos + n]


_random = RandomPool()


def _symbols(n: int) -> str:
    """The 120-bit ``n`` as 24 symbols of ALPHABET, most significant first.

    Two symbols per table lookup: base64.b32encode is pure Python in 3.11 and took
    9 µs per id here."""
    pairs = _PAIRS
    return "".join([pairs[(n >> shift) & 0x3FF] for shift in _SHIFTS])


def new_id(now: float | None = None) -> str:
    """A Message-ID or fetch token: the current second (32 bits, so ids sort by when
    they were made, to the second), then 88 random bits (the part that makes a
    fetch URL unguessable)."""
    second = int(time.time() if now is None else now) & 0xFFFFFFFF
    return _symbols(second << RANDOM_BITS | int.from_bytes(_random.take(11), "big"))


def random_id(length: int = ID_LENGTH) -> str:
    """``length`` (at most 24) symbols, all random: for names that need no order and may
    be cut short (a node id, a key suffix), where new_id's leading time would not
    tell two apart."""
    if not 0 < length <= ID_LENGTH:
        raise ValueError(f"random_id length must be 1-{ID_LENGTH}")
    return _symbols(int.from_bytes(_random.take(15), "big"))[:length]
