"""A short, bounded measurement of memory read bandwidth, cached in the data dir.

Spec sheets lie and decode speed follows bandwidth, so the agent measures it once at enrolment
(or when asked) by summing a buffer much larger than the caches. Bounded: a 64 MiB buffer,
at most 8 passes or 2 seconds. With numpy the sum is a streaming read; without it, a bytes
copy is timed and counted as read + write traffic.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BUFFER_BYTES = 64 * 1024 * 1024
MAX_PASSES = 8
MAX_SECONDS = 2.0


@dataclass(frozen=True)
class Bandwidth:
    gbps: float
    method: str  # "numpy-sum" | "bytes-copy"
    buffer_bytes: int
    passes: int
    measured_at: float


def measure(buffer_bytes: int = BUFFER_BYTES) -> Bandwidth:
    try:
        import numpy as np
    except ImportError:
        return _measure_copy(buffer_bytes)
    data = np.ones(buffer_bytes // 8, dtype=np.float64)
    data.sum()  # fault the pages in before timing
    best = float("inf")
    started = time.perf_counter()
    passes = 0
    while passes < MAX_PASSES and time.perf_counter() - started < MAX_SECONDS:
        t0 = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - t0)
        passes += 1
    return Bandwidth(data.nbytes / best / 1e9, "numpy-sum", data.nbytes, passes, time.time())


def _measure_copy(buffer_bytes: int) -> Bandwidth:
    src = bytes(buffer_bytes)
    best = float("inf")
    started = time.perf_counter()
    passes = 0
    while passes < MAX_PASSES and time.perf_counter() - started < MAX_SECONDS:
        t0 = time.perf_counter()
        bytearray(src)
        best = min(best, time.perf_counter() - t0)
        passes += 1
    return Bandwidth(2 * buffer_bytes / best / 1e9, "bytes-copy", buffer_bytes, passes,
                     time.time())


def cached(data_dir: Path, remeasure: bool = False) -> Bandwidth:
    """The cached measurement, measuring (and caching) it when absent or asked."""
    path = data_dir / "bandwidth.json"
    if not remeasure:
        try:
            return Bandwidth(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            pass
    result = measure()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(result)))
    tmp.replace(path)
    return result
