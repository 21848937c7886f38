"""Message ids and fetch tokens (mmsc/ids.py)."""

from __future__ import annotations

import base64
import os
import re

import pytest

from mmsc.ids import ALPHABET, RANDOM_BITS, RandomPool, new_id, random_id
from mmsc.mm1 import TOKEN_RE

_SECOND_SYMBOLS = 6  # the first 30 of the second's 32 bits: whole symbols only


def _value(text: str) -> int:
    value = 0
    for symbol in text:
        value = value << 5 | ALPHABET.index(symbol)
    return value


def test_ids_are_distinct_well_formed_and_match_the_fetch_url_pattern() -> None:
    ids = [new_id() for _ in range(5000)]  # several refills of the pool
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z2-7]{24}", i) for i in ids)
    assert all(TOKEN_RE.fullmatch(i) for i in ids)


def test_the_alphabet_is_base32_s_in_ascii_order() -> None:
    standard = base64.b32encode(bytes(range(256))).decode().lower().rstrip("=")
    assert sorted(ALPHABET) == list(ALPHABET)
    assert set(ALPHABET) == set(standard) and len(ALPHABET) == 32


def test_ids_carry_their_second_and_sort_by_it() -> None:
    """What keeps the indexes' inserts on their rightmost pages."""
    second = 1_764_000_000
    early = [new_id(second + 0.9) for _ in range(50)]
    late = [new_id(second + 1) for _ in range(50)]
    assert max(early) < min(late)
    assert sorted(early + late)[:50] == sorted(early)
    for i in early:
        assert _value(i) >> RANDOM_BITS == second
    # ... and a year of seconds apart still sorts the same way
    assert new_id(second) < new_id(second + 365 * 86400)


def test_the_random_part_is_88_bits() -> None:
    ids = [new_id(1_764_000_000) for _ in range(2000)]
    mask = (1 << RANDOM_BITS) - 1
    randoms = {_value(i) & mask for i in ids}
    assert len(randoms) == len(ids)
    # Every one of the 88 bits is set in some id and clear in another.
    ones = 0
    zeros = 0
    for r in randoms:
        ones |= r
        zeros |= ~r & mask
    assert ones == mask and zeros == mask


def test_random_ids_have_no_time_prefix() -> None:
    ids = [random_id(8) for _ in range(2000)]
    assert all(len(i) == 8 and re.fullmatch(r"[a-z2-7]{8}", i) for i in ids)
    assert len({i[:_SECOND_SYMBOLS] for i in ids}) > 1000  # new_id's would be one
    assert len(random_id()) == 24
    for bad in (0, 25):
        with pytest.raises(ValueError):
            random_id(bad)


def test_a_forked_process_hands_out_other_bytes() -> None:
    pool = RandomPool()
    pool.take(10)  # a partly used pool at the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, pool.take(15))
        os._exit(0)
    os.close(write)
    child = os.read(read, 15)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 15 and child != pool.take(15)
