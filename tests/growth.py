"""How a decoder's time grows with its input, to catch quadratic paths.

A decoder accepts inputs up to its size cap (10 MB for MM7, 1 MB for UAProf), so
work that is quadratic in the input is a denial of service even when each test
input is fast. A bound on seconds would depend on the machine; the ratio of two
sizes does not: about 4 when the input grows 4 times and the work is linear, about
16 when it is quadratic.
"""

from __future__ import annotations

import time
from collections.abc import Callable

LINEAR_BOUND = 8.0  # between linear (4) and quadratic (16) growth over a factor of 4


def growth(call: Callable[[int], object], n: int) -> float:
    """time(call(4n)) / time(call(n)), the best of three runs of each."""

    def best(size: int) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            call(size)
            times.append(time.perf_counter() - start)
        return min(times)

    return best(4 * n) / best(n)
