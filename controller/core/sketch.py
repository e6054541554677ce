"""A mergeable quantile sketch with a relative-error guarantee (DDSketch's log buckets).

A value x > 0 falls in bucket ``i = ceil(log_gamma(x))`` with ``gamma = (1 + a) / (1 - a)``;
the bucket's representative ``2 gamma^i / (gamma + 1)`` is within ``a`` (relative) of every
value in it. Merging adds counts, so per-minute sketches merge into hours and fleets exactly as
if the values had been sketched together, and a quantile read from any merge is within ``a``
of the true value at that rank. Averaging per-minute percentiles has no such bound.

``ALPHA`` = 1 %: a p95 TTFT of 800 ms reads as 792-808 ms. Buckets are sparse; typical
minute rollups of one device hold a handful of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-9  # at or below: counted as zero


@dataclass
class Sketch:
    buckets: dict[int, int] = field(default_factory=dict)
    zeros: int = 0

    @property
    def count(self) -> int:
        return self.zeros + sum(self.buckets.values())

    def add(self, value: float, n: int = 1) -> None:
        if value <= MIN_VALUE or math.isnan(value):
            self.zeros += n
            return
        index = math.ceil(math.log(value) / _LOG_GAMMA)
        self.buckets[index] = self.buckets.get(index, 0) + n

    def extend(self, values: Iterable[float]) -> Sketch:
        for v in values:
            self.add(v)
        return self

    def merge(self, other: Sketch) -> Sketch:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.zeros += other.zeros
        return self

    def _at_rank(self, rank: int) -> float:
        if rank < self.zeros:
            return 0.0
        seen = self.zeros
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                return 2 * GAMMA**index / (GAMMA + 1)
        raise IndexError(rank)

    def quantile(self, q: float) -> float | None:
        """The q-quantile with linear interpolation between ranks (as ``percentile`` does on
        raw values); None when empty."""
        n = self.count
        if n == 0:
            return None
        pos = min(max(q, 0.0), 1.0) * (n - 1)
        low, high = math.floor(pos), math.ceil(pos)
        a = self._at_rank(low)
        return a if high == low else a + (self._at_rank(high) - a) * (pos - low)

    def encode(self) -> str:
        """``z:ZEROS,i:n,i:n``: compact and stable (sorted) for storage."""
        parts = [f"z:{self.zeros}"] if self.zeros else []
        parts += [f"{i}:{n}" for i, n in sorted(self.buckets.items())]
        return ",".join(parts)

    @classmethod
    def decode(cls, text: str) -> Sketch:
        sketch = cls()
        for part in filter(None, text.split(",")):
            key, _, n = part.partition(":")
            if key == "z":
                sketch.zeros += int(n)
            else:
                sketch.buckets[int(key)] = sketch.buckets.get(int(key), 0) + int(n)
        return sketch


def percentile(values: list[float], q: float) -> float | None:
    """Exact q-quantile of raw values, linear interpolation between ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = min(max(q, 0.0), 1.0) * (len(ordered) - 1)
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
